"""The GSFM network and its ablation switches (config-as-code; training configs extend this).

  lfm_filter / hfm_filter  'low' | 'high' | 'none' (full band) | 'off'   paper Tables 3 and 5
  sigma                    Gaussian width of both filters, in frequency bins   paper Fig. 6
  spectral_form            'exact' (official function) | 'half' (cheaper, not the official function)
  boundary_branch          the decoder's boundary branch (off: STCN decoder)   paper Table 5
  dtype                    compute dtype of convs and matmuls: 'float32' | 'bfloat16' (FFTs stay float32) |
                           'auto' (bfloat16 on GPU/TPU, float32 on CPU)
  width_divisor            every channel count divided by it: 1 = GSFM (official weights need 1); 4 or 8 build
                           a narrow network of the same depth (the CPU demo and the training-machinery tests)

SFM and FFR switches (docs/sfm_ffr.md; the defaults are GSFM: same parameters, same outputs):
  ars_stages               () or any of ('layer2', 'layer3'): SFM's adaptive resampling at the input of those
                           stride-2 stages of the key encoder (the value encoder reuses the frame's grids; the
                           decoder undoes each warp where it meets that stage's skip)
  ars_radius, ars_sigma    the grid's Gaussian window: half-width R and width σ, in pixels of the ARS input
  ars_clip                 (A_min, A_max) of the attention A = exp(a)
  msau_refine              MSAU's multi-scale relation refinement after each undone warp (gate starts at 0)
  msau_dilations           its neighbour dilations
  lfm_shape / hfm_shape    'gaussian' (GSFM's g, width sigma) | 'ideal' (FFR's box around DC on the unshifted
                           grid: LFM keeps it, HFM removes it)
  lfm_cutoff / hfm_cutoff  half-width of the box in cycles per pixel (≥ 0.5 keeps every bin); FFR's μ is a
                           cutoff by gsfm_jax.models.frequency.mu_to_cutoff (default reading c = μ)
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.single_object = False
  config.lfm_filter = 'low'
  config.hfm_filter = 'high'
  config.sigma = 7.0
  config.spectral_form = 'exact'
  config.boundary_branch = True
  config.dtype = 'float32'
  config.width_divisor = 1
  config.ars_stages = ()
  config.ars_radius = 5
  config.ars_sigma = 3.0
  config.ars_clip = (0.1, 100.0)
  config.msau_refine = False
  config.msau_dilations = (1, 2, 4, 8)
  config.lfm_shape = 'gaussian'
  config.hfm_shape = 'gaussian'
  config.lfm_cutoff = 0.4
  config.hfm_cutoff = 0.4
  return config
