"""Key encoder (ResNet-50 + LFM + key projection + key_comp) and value encoder (ResNet-18 + fuser),
spec §1.3, §1.5, §1.6. Channels-last.

Channel counts are the paper's divided by `width_divisor` (1 = GSFM; larger values build a narrower network
of the same depth for tests and the CPU demo). The shapes below are for divisor 1.
"""
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsfm_jax.models.layers import CBAM, Conv, Dtype, ResBlock
from gsfm_jax.models.resnet import BasicBlock, Bottleneck, stage, stem


class KeyFeatures(NamedTuple):
  """Key-encoder outputs for N frames (h = H/16)."""
  k16: jax.Array       # (N, h, w, 64) keys
  f16_thin: jax.Array  # (N, h, w, 512) query values (key_comp)
  f16: jax.Array       # (N, h, w, 1024) post-LFM features
  f8: jax.Array        # (N, 2h, 2w, 512)
  f4: jax.Array        # (N, 4h, 4w, 256)


class KeyEncoder(nn.Module):
  """ResNet-50 trunk: (N, H, W, 3) -> f16 (N, H/16, W/16, 1024), f8 (…/8, 512), f4 (…/4, 256)."""
  dtype: Dtype = jnp.float32
  width_divisor: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    d = self.width_divisor
    x = stem(x, 64 // d, self.dtype)
    f4 = stage(x, Bottleneck, 'res2', 3, 64 // d, 1, self.dtype)
    f8 = stage(f4, Bottleneck, 'layer2', 4, 128 // d, 2, self.dtype)
    f16 = stage(f8, Bottleneck, 'layer3', 6, 256 // d, 2, self.dtype)
    return f16, f8, f4


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

  image (N, H, W, 3), masks (N, H, W, 1 or 2), key_f16 (N, H/16, W/16, 1024) -> (N, H/16, W/16, 512).
  """
  dtype: Dtype = jnp.float32
  width_divisor: int = 1

  @nn.compact
  def __call__(self, image: jax.Array, masks: jax.Array, key_f16: jax.Array) -> jax.Array:
    d = self.width_divisor
    x = jnp.concatenate([image, masks.astype(image.dtype)], axis=-1)
    x = stem(x, 64 // d, self.dtype)
    x = stage(x, BasicBlock, 'layer1', 2, 64 // d, 1, self.dtype)
    x = stage(x, BasicBlock, 'layer2', 2, 128 // d, 2, self.dtype)
    x = stage(x, BasicBlock, 'layer3', 2, 256 // d, 2, self.dtype)
    return FeatureFusionBlock(512 // d, self.dtype, name='fuser')(x, key_f16)
