"""Key encoder (ResNet-50 + LFM + key projection + key_comp) and value encoder (ResNet-18 + fuser),
docs/reference.md §1.3, §1.5, §1.6. Channels-last.

Channel counts are the paper's divided by `width_divisor` (1 = GSFM; larger values build a narrower network
of the same depth for tests and the CPU demo). The shapes below are for divisor 1.

With ARS on (`ars.stages`), the key encoder resamples the input of `layer2` (f4) and/or `layer3` (f8)
on an adaptive grid (`resampling.AdaptiveResampling`) and returns the grids; the value encoder warps the
same stage inputs with the key encoder's grids of the same frame, so its f16 stays aligned with the key
f16 that the fuser concatenates (docs/sfm_ffr.md, "ARS and its demodulation").
"""

from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsfm_jax.models.layers import CBAM, Conv, Dtype, ResBlock
from gsfm_jax.models.resampling import AdaptiveResampling, bilinear_sample
from gsfm_jax.models.resnet import BasicBlock, Bottleneck, stage, stem

Grids = dict[str, jax.Array]  # ARS stage ('layer2' | 'layer3') -> grid (N, H/4 | H/8, W/4 | W/8, 2) float32


class KeyFeatures(NamedTuple):
  """Key-encoder outputs for N frames (h = H/16). With ARS, f8 and f16 live on the warped grids."""

  k16: jax.Array  # (N, h, w, 64) keys
  f16_thin: jax.Array  # (N, h, w, 512) query values (key_comp)
  f16: jax.Array  # (N, h, w, 1024) post-LFM features
  f8: jax.Array  # (N, 2h, 2w, 512)
  f4: jax.Array  # (N, 4h, 4w, 256)
  grids: Optional[Grids] = None  # ARS grids of the frames (None without ARS)


class ARSConfig(NamedTuple):
  """Where ARS runs and its grid's hyper-parameters (docs/sfm_ffr.md, "ARS and its demodulation")."""

  stages: tuple[str, ...] = ()
  radius: int = 5
  sigma: float = 3.0
  clip: tuple[float, float] = (0.1, 100.0)


def warp(x: jax.Array, grids: Optional[Grids], stage_name: str) -> jax.Array:
  """x resampled on the grid of `stage_name` when there is one, else x unchanged."""
  return bilinear_sample(x, grids[stage_name]) if grids and stage_name in grids else x


class KeyEncoder(nn.Module):
  """ResNet-50 trunk: (N, H, W, 3) -> f16 (N, H/16, W/16, 1024), f8 (…/8, 512), f4 (…/4, 256), grids."""

  dtype: Dtype = jnp.float32
  width_divisor: int = 1
  ars: ARSConfig = ARSConfig()

  def _resample(self, x: jax.Array, stage_name: str, grids: Grids) -> jax.Array:
    if stage_name not in self.ars.stages:
      return x
    x, grids[stage_name] = AdaptiveResampling(
      channels=64 // self.width_divisor,
      radius=self.ars.radius,
      sigma=self.ars.sigma,
      clip=tuple(self.ars.clip),
      dtype=self.dtype,
      name=f'ars_{stage_name}',
    )(x)
    return x

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, Grids]:
    d, grids = self.width_divisor, {}
    x = stem(x, 64 // d, self.dtype)
    f4 = stage(x, Bottleneck, 'res2', 3, 64 // d, 1, self.dtype)
    f8 = stage(self._resample(f4, 'layer2', grids), Bottleneck, 'layer2', 4, 128 // d, 2, self.dtype)
    f16 = stage(self._resample(f8, 'layer3', grids), Bottleneck, 'layer3', 6, 256 // d, 2, self.dtype)
    return f16, f8, f4, grids


class KeyProjection(nn.Module):
  """3×3 conv 1024 -> 64, orthogonal weight, zero bias: (N, h, w, 1024) -> (N, h, w, features), 64 in GSFM."""

  features: int = 64
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return Conv(self.features, init='orthogonal', dtype=self.dtype, name='key_proj')(x)


class FeatureFusionBlock(nn.Module):
  """block2(x + CBAM(x)), x = block1([value 256, key 1024]): -> (N, h, w, features), 512 in GSFM."""

  features: int = 512
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, value_f16: jax.Array, key_f16: jax.Array) -> jax.Array:
    x = jnp.concatenate([value_f16, key_f16.astype(value_f16.dtype)], axis=-1)
    x = ResBlock(self.features, dtype=self.dtype, name='block1')(x)
    x = x + CBAM(dtype=self.dtype, name='attention')(x)
    return ResBlock(self.features, dtype=self.dtype, name='block2')(x)


class ValueEncoder(nn.Module):
  """ResNet-18 trunk on [RGB, mask(, others)] fused with the key f16 of the same frame.

  image (N, H, W, 3), masks (N, H, W, 1 or 2), key_f16 (N, H/16, W/16, 1024), grids: the key encoder's
  ARS grids of the same frames (or None) -> (N, H/16, W/16, 512).
  """

  dtype: Dtype = jnp.float32
  width_divisor: int = 1

  @nn.compact
  def __call__(
    self, image: jax.Array, masks: jax.Array, key_f16: jax.Array, grids: Optional[Grids] = None
  ) -> jax.Array:
    d = self.width_divisor
    x = jnp.concatenate([image, masks.astype(image.dtype)], axis=-1)
    x = stem(x, 64 // d, self.dtype)
    x = stage(x, BasicBlock, 'layer1', 2, 64 // d, 1, self.dtype)
    x = stage(warp(x, grids, 'layer2'), BasicBlock, 'layer2', 2, 128 // d, 2, self.dtype)
    x = stage(warp(x, grids, 'layer3'), BasicBlock, 'layer3', 2, 256 // d, 2, self.dtype)
    return FeatureFusionBlock(features=512 // d, dtype=self.dtype, name='fuser')(x, key_f16)
