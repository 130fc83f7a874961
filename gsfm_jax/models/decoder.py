"""The boundary-aware decoder (spec §1.8): compress -> up_16_8 -> up_8_4 at 1/4 resolution, then a
mask branch and a boundary branch (with HFM) that exchange features through two 1×1 fusions; both
logits are upsampled ×4 (bilinear, half-pixel centres). Channels-last, no BN.

With `boundary_branch=False` it is STCN's decoder, `pred(ReLU(x))`, with HFM (if on) applied to x
first: the configuration of the paper's component ablation (Table 5).
"""
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsfm_jax.models.frequency import SpectralFilter
from gsfm_jax.models.layers import Conv, Dtype, ResBlock, upsample_bilinear


class UpsampleBlock(nn.Module):
  """out_conv(skip_conv(skip) + bilinear×2(up)): skip (N, 2h, 2w, Cs), up (N, h, w, C) -> (N, 2h, 2w, features)."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, skip: jax.Array, up: jax.Array) -> jax.Array:
    x = Conv(up.shape[-1], dtype=self.dtype, name='skip_conv')(skip)
    x = x + upsample_bilinear(up, 2).astype(x.dtype)
    return ResBlock(self.features, dtype=self.dtype, name='out_conv')(x)


class Decoder(nn.Module):
  """f16_cat (N, h, w, 1024), f8 (N, 2h, 2w, 512), f4 (N, 4h, 4w, 256) ->
  mask logits (N, 16h, 16w) and boundary logits (N, 16h, 16w) (None without the boundary branch), float32.

  `hfm_filter`: 'high' (GSFM), 'low', 'none' (full band) or 'off' (no HFM). Channel counts (512, 256)
  are divided by `width_divisor`.
  """
  hfm_filter: str = 'high'
  sigma: float = 7.0
  spectral_form: str = 'exact'
  boundary_branch: bool = True
  dtype: Dtype = jnp.float32
  width_divisor: int = 1

  def _hfm(self, x: jax.Array) -> jax.Array:
    if self.hfm_filter == 'off':
      return x
    y = SpectralFilter(self.hfm_filter, self.sigma, self.spectral_form, self.dtype, name='hfm')(x)
    return y.astype(x.dtype)

  @nn.compact
  def __call__(self, f16_cat: jax.Array, f8: jax.Array, f4: jax.Array) -> tuple[jax.Array, Optional[jax.Array]]:
    conv = lambda features, name, k=3: Conv(features, kernel_size=k, dtype=self.dtype, name=name)
    c = 256 // self.width_divisor
    x = ResBlock(2 * c, dtype=self.dtype, name='compress')(f16_cat)
    x = UpsampleBlock(c, dtype=self.dtype, name='up_16_8')(f8, x)
    x = UpsampleBlock(c, dtype=self.dtype, name='up_8_4')(f4, x)
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
