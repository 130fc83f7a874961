"""The GSFM network and its ablation switches (config-as-code; training configs extend this).

  lfm_filter / hfm_filter  'low' | 'high' | 'none' (full band) | 'off'   paper Tables 3 and 5
  sigma                    Gaussian width of both filters, in frequency bins   paper Fig. 6
  spectral_form            'exact' (official function) | 'half' (cheaper, not the official function)
  boundary_branch          the decoder's boundary branch (off: STCN decoder)   paper Table 5
  dtype                    compute dtype of convs and matmuls: 'float32' | 'bfloat16' (FFTs stay float32) |
                           'auto' (bfloat16 on GPU/TPU, float32 on CPU)
  width_divisor            every channel count divided by it: 1 = GSFM (official weights need 1); 4 or 8 build
                           a narrow network of the same depth (the CPU demo and the training-machinery tests)
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
  return config
