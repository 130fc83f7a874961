"""The modified ResNet of both encoders (docs/reference.md §1.2): torchvision layout, every conv with a bias,
BatchNorm on stored statistics, only the stem and layer1-layer3 (layer4 is never built).

Submodule names follow the official state_dict (`conv1`, `bn1`, `<stage>_<i>`, `downsample_0/1`),
so the converter maps names one to one. The helpers below are called inside a parent's
`nn.compact` method, so the layers they create belong to that parent.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsfm_jax.models.layers import Conv, Dtype, frozen_batch_norm
from gsfm_jax.models.ties import max_pool


def conv_bn(
  x: jax.Array, features: int, kernel: int, stride: int, conv_name: str, bn_name: str, dtype: Dtype
) -> jax.Array:
  """Conv (ResNet init) -> frozen BN, no activation."""
  x = Conv(features, kernel_size=kernel, stride=stride, init='resnet', dtype=dtype, name=conv_name)(x)
  return frozen_batch_norm(bn_name, dtype)(x)


def shortcut(x: jax.Array, features: int, stride: int, dtype: Dtype) -> jax.Array:
  """Identity, or 1×1 conv at the block stride + BN (`downsample.0`, `downsample.1`) when shapes change."""
  if stride == 1 and x.shape[-1] == features:
    return x
  return conv_bn(x, features, 1, stride, 'downsample_0', 'downsample_1', dtype)


class Bottleneck(nn.Module):
  """ResNet-50 block, stride on the 3×3 conv (v1.5): (N, H, W, Cin) -> (N, H/s, W/s, 4·width)."""

  width: int
  stride: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.relu(conv_bn(x, self.width, 1, 1, 'conv1', 'bn1', self.dtype))
    y = nn.relu(conv_bn(y, self.width, 3, self.stride, 'conv2', 'bn2', self.dtype))
    y = conv_bn(y, 4 * self.width, 1, 1, 'conv3', 'bn3', self.dtype)
    return nn.relu(shortcut(x, 4 * self.width, self.stride, self.dtype) + y)


class BasicBlock(nn.Module):
  """ResNet-18 block: (N, H, W, Cin) -> (N, H/s, W/s, width)."""

  width: int
  stride: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.relu(conv_bn(x, self.width, 3, self.stride, 'conv1', 'bn1', self.dtype))
    y = conv_bn(y, self.width, 3, 1, 'conv2', 'bn2', self.dtype)
    return nn.relu(shortcut(x, self.width, self.stride, self.dtype) + y)


def stem(x: jax.Array, features: int, dtype: Dtype) -> jax.Array:
  """conv1 7×7/2 (pad 3) -> bn1 -> ReLU -> max-pool 3×3/2 (pad 1, -inf):
  (N, H, W, Cin) -> (N, H/4, W/4, features), 64 features in ResNet."""
  x = nn.relu(conv_bn(x, features, 7, 2, 'conv1', 'bn1', dtype))
  return max_pool(x, 3, 2, 1)


def stage(
  x: jax.Array, block: type[nn.Module], name: str, num_blocks: int, width: int, stride: int, dtype: Dtype
) -> jax.Array:
  """One ResNet stage of `num_blocks` blocks named `<name>_<i>`; the first carries the stride."""
  for i in range(num_blocks):
    x = block(width, stride if i == 0 else 1, dtype, name=f'{name}_{i}')(x)
  return x
