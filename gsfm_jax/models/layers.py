"""Building blocks shared by the encoders and the decoder (docs/reference.md §1.6, §1.8), channels-last.

Every convolution carries a bias and pads symmetrically like PyTorch (never Flax 'SAME', which pads
stride-2 layers asymmetrically). Parameters are float32; `dtype` is the compute dtype.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsfm_jax.models.ties import max_first

Dtype = Any


def torch_default_kernel_init() -> nn.initializers.Initializer:
  """PyTorch's default Conv/Linear weight init, kaiming_uniform(a=√5) = U(±1/√fan_in)."""
  return nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def torch_default_bias_init(fan_in: int) -> nn.initializers.Initializer:
  """PyTorch's default Conv/Linear bias init, U(±1/√fan_in)."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class Conv(nn.Module):
  """k×k convolution with bias and symmetric padding k//2 (PyTorch `Conv2d(..., padding=k//2)`).

  Parameters `kernel (k, k, Cin, features)` and `bias (features,)`, float32. `init` picks the
  initialiser: 'torch' (PyTorch default), 'resnet' (normal, std √(2/(k²·features)), zero bias) or
  'orthogonal' (zero bias) or 'zeros' (kernel and bias: a layer that starts switched off).
  """

  features: int
  kernel_size: int = 3
  stride: int = 1
  init: str = 'torch'
  dtype: Dtype = jnp.float32

  def _initialisers(self, fan_in: int) -> tuple[nn.initializers.Initializer, nn.initializers.Initializer]:
    if self.init == 'torch':
      return torch_default_kernel_init(), torch_default_bias_init(fan_in)
    if self.init == 'resnet':
      return nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'), nn.initializers.zeros
    if self.init == 'orthogonal':
      return nn.initializers.orthogonal(), nn.initializers.zeros
    if self.init == 'zeros':
      return nn.initializers.zeros, nn.initializers.zeros
    raise ValueError(f'unknown conv init {self.init!r}')

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, Cin) -> (N, ceil(H/stride), ceil(W/stride), features)."""
    k = self.kernel_size
    kernel_init, bias_init = self._initialisers(x.shape[-1] * k * k)
    kernel = self.param('kernel', kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', bias_init, (self.features,), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    out_pixels = -(-x.shape[1] // self.stride) * -(-x.shape[2] // self.stride)
    if k == 1:  # a matmul (on a CPU): XLA:CPU differentiates 1×1 convolutions several times slower
      y = pointwise(x, kernel[0, 0], self.stride)
    elif out_pixels <= MATMUL_MAX_PIXELS and x.shape[-1] >= MATMUL_MIN_CHANNELS:
      y = conv_as_matmul(x, kernel, self.stride)
    elif self.stride == 1:
      y = conv_stride_1(x, kernel)
    else:
      y = xla_conv(x, kernel, self.stride)
    # the bias is added in float32: its gradient sums the cotangents of every output pixel, and a bfloat16
    # sum over a 1/4-scale map loses most of it (bias gradients 2-6x too small, bench/bf16_gradients.py)
    return (y.astype(jnp.float32) + bias).astype(self.dtype)


# Wide convolutions (≥ MATMUL_MIN_CHANNELS inputs: key_proj, key_comp, the value fuser, the decoder's
# compress block) on output maps of ≤ MATMUL_MAX_PIXELS pixels (1/16 scale of crops up to 128²) run as one
# matmul over k² shifted views: XLA:CPU's convolution is 1.2–50× slower there (bench/conv_small.py). Narrower
# layers keep the convolution, which compiles faster.
MATMUL_MAX_PIXELS = 64
MATMUL_MIN_CHANNELS = 512


def pointwise(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
  """A 1×1 convolution (padding 0): x (N, H, W, Cin), kernel (Cin, Cout) -> (N, ceil(H/stride), ceil(W/stride), Cout).

  On a CPU one flat (P, Cin) @ (Cin, Cout) matmul over every stride-th pixel: for a contraction over many
  dimensions XLA:CPU transposes the operands of the kernel gradient, which makes forward + backward 2x slower,
  and a strided 1×1 convolution's kernel gradient transposed the whole input (5x slower, bench/conv_grad.py).
  Elsewhere an einsum over the pixel dimensions (no reshape of a tiled layout), or XLA's strided convolution.
  """

  def flat(a: jax.Array, w: jax.Array) -> jax.Array:
    a = a[:, ::stride, ::stride]
    return (a.reshape(-1, a.shape[-1]) @ w).reshape(*a.shape[:-1], w.shape[-1])

  default = lambda a, w: jnp.einsum('...c,cd->...d', a, w) if stride == 1 else xla_conv(a, w[None, None], stride)
  return jax.lax.platform_dependent(x, kernel, cpu=flat, default=default)


def xla_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """XLA's convolution with `Conv`'s symmetric padding: x (N, H, W, Cin), kernel (k, k, Cin, Cout) ->
  (N, ceil(H/stride), ceil(W/stride), Cout)."""
  pad = kernel.shape[0] // 2
  return jax.lax.conv_general_dilated(
    x, kernel, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )


# Narrow layers (both channel counts ≤ this: ResNet's 64-channel stage) keep XLA:CPU's kernel gradient, which is
# 2x faster than k² matmuls of 64 columns there (bench/conv_grad.py).
MATMUL_GRADIENT_MAX_NARROW = 64


@jax.custom_vjp
def conv_stride_1(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`xla_conv` at stride 1, (N, H, W, Cin) -> (N, H, W, Cout), whose kernel gradient on a CPU is k² matmuls.

  XLA:CPU computes a convolution's kernel gradient 2-3x slower than the convolution itself (and transposes
  both operands for it); as k² products of the input with shifted views of the output gradient, contracted
  over every pixel (`kernel_gradient_as_matmuls`), it takes about half the time (bench/conv_grad.py). Narrow
  layers and other backends keep XLA's own gradient; the function and the input gradient are XLA's everywhere.
  """
  return xla_conv(x, kernel, 1)


def _conv_forward(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  return xla_conv(x, kernel, 1), (x, kernel)


def _conv_backward(residuals: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
  x, kernel = residuals
  dx = jax.vjp(lambda a: xla_conv(a, kernel, 1), x)[1](g)[0]
  xla_kernel_gradient = lambda a, b: jax.vjp(lambda w: xla_conv(a, w, 1), kernel)[1](b)[0]
  if max(kernel.shape[2:]) <= MATMUL_GRADIENT_MAX_NARROW:
    dk = xla_kernel_gradient(x, g)
  else:
    dk = jax.lax.platform_dependent(x, g, cpu=kernel_gradient_as_matmuls(kernel.shape[0]), default=xla_kernel_gradient)
  return dx, dk.astype(kernel.dtype)


conv_stride_1.defvjp(_conv_forward, _conv_backward)


def kernel_gradient_as_matmuls(k: int):
  """The kernel gradient of a stride-1 k×k `Conv` as k² matmuls: (x (N, H, W, Cin), output gradient
  (N, H, W, Cout)) -> (k, k, Cin, Cout), Σ over (n, h, w) of x_pad[n, h+i, w+j, :]ᵀ g[n, h, w, :].

  Each tap is x (N·H·W, Cin)ᵀ @ the output gradient shifted by (p − i, p − j) (zeros shifted in, p = k//2):
  the shifted views are of the gradient, which exists only in the backward pass; views of x would be
  computed by XLA as soon as x exists and held through the forward pass (k² copies of every input).
  """

  def gradient(x: jax.Array, g: jax.Array) -> jax.Array:
    _, h, w, cin = x.shape
    pad, span = k // 2, 2 * (k // 2)
    gp = jnp.pad(g, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    x2 = x.reshape(-1, cin)
    taps = [
      jnp.matmul(
        x2.T,
        gp[:, span - i : span - i + h, span - j : span - j + w].reshape(-1, g.shape[-1]),
        preferred_element_type=jnp.float32,
      )
      for i in range(k)
      for j in range(k)
    ]
    return jnp.stack(taps).reshape(k, k, cin, g.shape[-1]).astype(x.dtype)

  return gradient


def conv_as_matmul(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """The symmetric-padding convolution of `Conv` as patches @ kernel.

  x (N, H, W, Cin), kernel (k, k, Cin, Cout) -> (N, ceil(H/stride), ceil(W/stride), Cout).
  """
  k = kernel.shape[0]
  pad = k // 2
  _, h, w, _ = x.shape
  ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
  x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  views = [
    x[:, i : i + (ho - 1) * stride + 1 : stride, j : j + (wo - 1) * stride + 1 : stride]
    for i in range(k)
    for j in range(k)
  ]
  return jnp.einsum('nhwc,cd->nhwd', jnp.concatenate(views, axis=-1), kernel.reshape(-1, kernel.shape[-1]))


def frozen_batch_norm(name: str, dtype: Dtype) -> nn.BatchNorm:
  """BatchNorm on stored statistics (never updated), trainable scale/bias, eps 1e-5 (docs/reference.md §1.12)."""
  return nn.BatchNorm(use_running_average=True, epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, name=name)


def upsample_bilinear(x: jax.Array, factor: int) -> jax.Array:
  """Bilinear ×factor with half-pixel centres (PyTorch `align_corners=False`): (N, H, W, C) -> (N, fH, fW, C)."""
  n, h, w, c = x.shape
  return jax.image.resize(x, (n, h * factor, w * factor, c), 'bilinear')


class ResBlock(nn.Module):
  """Pre-activation residual block without BN: shortcut(x) + conv2(relu(conv1(relu(x)))).

  The shortcut is a 3×3 conv named `downsample` when the channel count changes.
  """

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, Cin) -> (N, H, W, features)."""
    r = Conv(self.features, dtype=self.dtype, name='conv1')(nn.relu(x))
    r = Conv(self.features, dtype=self.dtype, name='conv2')(nn.relu(r))
    if x.shape[-1] != self.features:
      x = Conv(self.features, dtype=self.dtype, name='downsample')(x)
    return x + r


class ChannelGate(nn.Module):
  """CBAM channel gate: shared MLP (C -> C/16 -> C) on avg- and max-pooled descriptors, sigmoid."""

  reduction: int = 16
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, H, W, C)."""
    c = x.shape[-1]
    hidden = c // self.reduction
    fc1 = nn.Dense(
      hidden,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      kernel_init=torch_default_kernel_init(),
      bias_init=torch_default_bias_init(c),
      name='mlp_1',
    )
    fc2 = nn.Dense(
      c,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      kernel_init=torch_default_kernel_init(),
      bias_init=torch_default_bias_init(hidden),
      name='mlp_3',
    )
    mlp = lambda v: fc2(nn.relu(fc1(v)))
    att = mlp(jnp.mean(x, axis=(1, 2))) + mlp(max_first(x, (1, 2)))
    return x * nn.sigmoid(att)[:, None, None, :].astype(x.dtype)


class BasicConv(nn.Module):
  """The 7×7, 2 -> 1 conv of the spatial gate (official `BasicConv` without BN or ReLU)."""

  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, 2) -> (N, H, W, 1)."""
    return Conv(1, kernel_size=7, dtype=self.dtype, name='conv')(x)


class SpatialGate(nn.Module):
  """CBAM spatial gate: 7×7 conv on [max, mean] over channels, sigmoid."""

  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, H, W, C)."""
    pooled = jnp.stack([max_first(x, (-1,)), jnp.mean(x, axis=-1)], axis=-1)
    att = BasicConv(dtype=self.dtype, name='spatial')(pooled)
    return x * nn.sigmoid(att)


class CBAM(nn.Module):
  """Convolutional block attention: SpatialGate(ChannelGate(x))."""

  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, H, W, C)."""
    x = ChannelGate(dtype=self.dtype, name='ChannelGate')(x)
    return SpatialGate(dtype=self.dtype, name='SpatialGate')(x)
