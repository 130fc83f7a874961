"""The boundary-aware decoder (docs/reference.md §1.8): compress -> up_16_8 -> up_8_4 at 1/4 resolution, then a
mask branch and a boundary branch (with HFM) that exchange features through two 1×1 fusions; both
logits are upsampled ×4 (bilinear, half-pixel centres). Channels-last, no BN.

With `boundary_branch=False` it is STCN's decoder, `pred(ReLU(x))`, with HFM (if on) applied to x
first: the configuration of the paper's component ablation (Table 5).

With ARS in the encoder, the ×2 upsampling where a warped map meets its stage's skip demodulates instead
(`demodulation`): up_16_8 undoes the layer3 warp, up_8_4 the layer2 warp, and `msau_refine` adds the
relation refinement there. Everything from the 1/4 features on is on the uniform grid.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsfm_jax.models.demodulation import Inverse, RelationRefinement
from gsfm_jax.models.frequency import SpectralFilter
from gsfm_jax.models.layers import Conv, Dtype, ResBlock, upsample_bilinear
from gsfm_jax.models.resampling import bilinear_sample


class UpsampleBlock(nn.Module):
  """out_conv(skip_conv(skip) + up×2(up)): skip (B, 2h, 2w, Cs), up (B·K, h, w, C) -> (B·K, 2h, 2w, features).

  The skip features are the query frame's, the same for its K objects (up's batch holds each frame's objects
  in a row): skip_conv runs once per frame and its output is repeated per object, which is the per-object
  function with K times fewer FLOPs and bytes (and no sum over the objects in its backward pass).
  up×2 is the half-pixel bilinear, or with `inverse` (a warped `up`) the demodulation, refined by
  `RelationRefinement` when `refine` names its dilations.
  """

  features: int
  dtype: Dtype = jnp.float32
  refine: tuple[int, ...] = ()
  refine_channels: int = 64

  @nn.compact
  def __call__(self, skip: jax.Array, up: jax.Array, inverse: Optional[Inverse] = None) -> jax.Array:
    per_object = lambda a: jnp.repeat(a, up.shape[0] // skip.shape[0], axis=0)
    x = per_object(Conv(up.shape[-1], dtype=self.dtype, name='skip_conv')(skip))
    if inverse is None:
      y = upsample_bilinear(up, 2)
    else:
      y = bilinear_sample(up, inverse.q)
      if self.refine:
        y = RelationRefinement(
          features=up.shape[-1], dilations=self.refine, channels=self.refine_channels, dtype=self.dtype, name='refine'
        )(y, per_object(skip), inverse.rho)
    x = x + y.astype(x.dtype)
    return ResBlock(self.features, dtype=self.dtype, name='out_conv')(x)


class Decoder(nn.Module):
  """f16_cat (B·K, h, w, 1024), f8 (B, 2h, 2w, 512), f4 (B, 4h, 4w, 256) ->
  mask logits (B·K, 16h, 16w) and boundary logits (B·K, 16h, 16w) (None without the boundary branch), float32.

  K objects per frame: f16_cat holds each frame's objects in a row, f8 and f4 are the frames' own features.

  `hfm_filter`: 'high' (GSFM), 'low', 'none' (full band) or 'off' (no HFM), of shape `hfm_shape`
  ('gaussian' or 'ideal' with `hfm_cutoff`). `inverses`: ARS stage -> the query's `Inverse` (demodulation).
  `msau_refine`: the dilations of the relation refinement, () for none. Channel counts (512, 256) are divided
  by `width_divisor`.
  """

  hfm_filter: str = 'high'
  sigma: float = 7.0
  spectral_form: str = 'exact'
  boundary_branch: bool = True
  dtype: Dtype = jnp.float32
  width_divisor: int = 1
  hfm_shape: str = 'gaussian'
  hfm_cutoff: float = 0.4
  msau_refine: tuple[int, ...] = ()

  def _hfm(self, x: jax.Array) -> jax.Array:
    if self.hfm_filter == 'off':
      return x
    y = SpectralFilter(
      filter=self.hfm_filter,
      sigma=self.sigma,
      form=self.spectral_form,
      dtype=self.dtype,
      shape=self.hfm_shape,
      cutoff=self.hfm_cutoff,
      name='hfm',
    )(x)
    return y.astype(x.dtype)

  @nn.compact
  def __call__(
    self, f16_cat: jax.Array, f8: jax.Array, f4: jax.Array, inverses: Optional[dict[str, Inverse]] = None
  ) -> tuple[jax.Array, Optional[jax.Array]]:
    conv = lambda features, name, k=3: Conv(features, kernel_size=k, dtype=self.dtype, name=name)
    c, inverses = 256 // self.width_divisor, inverses or {}
    up = lambda name: UpsampleBlock(
      features=c, dtype=self.dtype, refine=self.msau_refine, refine_channels=64 // self.width_divisor, name=name
    )
    x = ResBlock(2 * c, dtype=self.dtype, name='compress')(f16_cat)
    x = up('up_16_8')(f8, x, inverses.get('layer3'))
    x = up('up_8_4')(f4, x, inverses.get('layer2'))
    to_full = lambda logit: upsample_bilinear(logit.astype(jnp.float32), 4)[..., 0]
    if not self.boundary_branch:
      return to_full(conv(1, 'pred')(nn.relu(self._hfm(x)))), None
    xb = self._hfm(conv(c, 'boundary_1')(x))
    xm = conv(c, 'mask_1')(x)
    xb = xb + nn.relu(conv(c, 'fusion_1', 1)(xm))
    xb = nn.relu(conv(c, 'boundary_3')(conv(c, 'boundary_2')(xb)))
    xm = xm + nn.relu(conv(c, 'fusion_2', 1)(xb))
    mask = conv(1, 'pred')(nn.relu(conv(c, 'predict_mask')(xm)))
    boundary = conv(1, 'predict_boundary_2')(nn.relu(conv(c, 'predict_boundary_1')(xb)))
    return to_full(mask), to_full(boundary)
