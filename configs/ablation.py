"""The paper's ablations as named configs (the paper's Tables 3 and 5 and Fig. 6).

  python -m gsfm_jax.train --config=ablation:NAME --workdir=runs/NAME            # stage 3
  python -m gsfm_jax.train --config=ablation:NAME/pretrain --workdir=runs/NAME_pretrain   # stage 0

Stage 3 of NAME starts from `runs/NAME_pretrain`: the parameters differ between variants, so each one is
pretrained with its own network. NAME is one of:

  Table 3 (band enhanced by LFM / HFM; 'full' = spectral 1×1 convs with no filter):
    t3_full_high, t3_high_high, t3_low_full, t3_low_low, t3_low_high (= GSFM)
    The 'attention instead of LFM' row is not provided: neither the paper nor the official code defines
    that module, so any version of it would be invented.
  Table 5 (components on / off):
    t5_none (STCN), t5_lfm, t5_hfm, t5_boundary, t5_lfm_hfm, t5_lfm_boundary, t5_hfm_boundary, t5_all (= GSFM)
  Fig. 6 (Gaussian width in frequency bins): sigma3, sigma5, sigma7 (= GSFM), sigma10, sigma15
  SFM (docs/sfm_ffr.md): sfm_ars (ARS before layer2 and layer3, warps undone in
    the decoder), sfm_ars_layer2, sfm_ars_layer3 (one stage), sfm_ars_msau (+ MSAU's relation refinement)
  FFR (docs/sfm_ffr.md): ffr_ideal (LFM and HFM as FFR's box at μ = 0.4, c = μ), and the cutoff sweep
    ffr_mu0.1, ffr_mu0.2, ffr_mu0.3, ffr_mu0.4 (= ffr_ideal) under the same reading of μ
"""

import itertools

import ml_collections

from configs import main, pretrain

_BANDS = {'low': 'low', 'high': 'high', 'full': 'none'}
_COMPONENTS = ('lfm', 'hfm', 'boundary')


def variants() -> dict[str, dict]:
  """Every ablation name -> its model-config overrides."""
  table = {}
  for lfm, hfm in (('full', 'high'), ('high', 'high'), ('low', 'full'), ('low', 'low'), ('low', 'high')):
    table[f't3_{lfm}_{hfm}'] = {'lfm_filter': _BANDS[lfm], 'hfm_filter': _BANDS[hfm]}
  for on in itertools.chain.from_iterable(itertools.combinations(_COMPONENTS, n) for n in range(4)):
    name = 't5_' + ('_'.join(on) if 0 < len(on) < 3 else ('all' if on else 'none'))
    table[name] = {
      'lfm_filter': 'low' if 'lfm' in on else 'off',
      'hfm_filter': 'high' if 'hfm' in on else 'off',
      'boundary_branch': 'boundary' in on,
    }
  for sigma in (3, 5, 7, 10, 15):
    table[f'sigma{sigma}'] = {'sigma': float(sigma)}
  for name, stages in (
    ('sfm_ars', ('layer2', 'layer3')),
    ('sfm_ars_layer2', ('layer2',)),
    ('sfm_ars_layer3', ('layer3',)),
  ):
    table[name] = {'ars_stages': stages}
  table['sfm_ars_msau'] = {'ars_stages': ('layer2', 'layer3'), 'msau_refine': True}
  for mu in (0.1, 0.2, 0.3, 0.4):
    cutoff = mu  # μ read as the box's half-width c (gsfm_jax.models.frequency.mu_to_cutoff, 'half_width')
    table[f'ffr_mu{mu}'] = {'lfm_shape': 'ideal', 'hfm_shape': 'ideal', 'lfm_cutoff': cutoff, 'hfm_cutoff': cutoff}
  table['ffr_ideal'] = table['ffr_mu0.4']
  return table


def get_config(arg: str = 't5_all') -> ml_collections.ConfigDict:
  name, _, stage = arg.partition('/')
  table = variants()
  if name not in table or stage not in ('', 'pretrain'):
    raise ValueError(f'ablation {arg!r}: expected NAME or NAME/pretrain with NAME in {", ".join(table)}')
  config = pretrain.get_config() if stage else main.get_config()
  config.model.update(table[name])
  if not stage:
    config.init.checkpoint = f'runs/{name}_pretrain'
  return config
