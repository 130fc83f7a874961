"""PyTorch's gradients at ties, where JAX's defaults differ (the official training step's gradients).

JAX splits the gradient of `maximum`/`minimum` (and so of `jnp.clip`) evenly between tied operands, and
the gradient of a `max` reduction evenly among all maximal elements. PyTorch gives `clamp` the whole
gradient on the closed interval [lo, hi], and a max-pool or `max(dim)` gives it to one element, the first
maximal one. The differences matter: in float32 a whole band of confident logits rounds to exactly the
aggregation clamp's bound 1 − 1e-7, and JAX's default would halve their gradient.

The forward values are those of `jnp.clip` and `jnp.max`. What already agrees with PyTorch is left as it is
(tested in tests/test_ties.py): `nn.relu` (gradient 0 at 0, PyTorch's `threshold_backward`) and Flax's
`max_pool` (XLA's select-and-scatter keeps the first maximal element of each window, as PyTorch does), which
`max_pool` here computes with elementwise operations on a CPU.
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def clamp(x: jax.Array, lo: float, hi: float) -> jax.Array:
  """`torch.clamp(x, lo, hi)`: values of `jnp.clip`, gradient 1 where lo ≤ x ≤ hi (bounds included), else 0.

  NaN passes through, as in PyTorch.
  """
  return jnp.where(x < lo, jnp.asarray(lo, x.dtype), jnp.where(x > hi, jnp.asarray(hi, x.dtype), x))


def max_first(x: jax.Array, axis: Sequence[int]) -> jax.Array:
  """Max over `axis` with the whole gradient on the first maximal element in row-major order of the reduced
  axes (PyTorch's `max_pool2d` over the full map, and `torch.max(x, dim)`): x (..., reduced ...) -> x without
  the reduced axes."""
  axis = tuple(a % x.ndim for a in axis)
  kept = [a for a in range(x.ndim) if a not in axis]
  moved = jnp.transpose(x, kept + list(axis))
  flat = moved.reshape(moved.shape[: len(kept)] + (-1,))
  first = jnp.argmax(flat, axis=-1)
  return jnp.take_along_axis(flat, first[..., None], axis=-1)[..., 0]


def max_pool(x: jax.Array, window: int, stride: int, pad: int) -> jax.Array:
  """PyTorch's `max_pool2d(x, window, stride, pad)` (padding -inf, floor mode; the gradient to the first maximal
  element of each window in row-major order): x (N, H, W, C) -> (N, (H + 2·pad − window) // stride + 1, …, C).

  Flax's `max_pool` is this function. On a CPU it runs as the max of window² strided views, with a backward pass
  that routes each output's gradient to the first view holding the maximum: elementwise work that XLA fuses,
  where XLA:CPU's reduce-window gradient took 5–7x longer (bench/conv_grad.py).
  """
  flax_pool = functools.partial(reduce_window_max_pool, window=window, stride=stride, pad=pad)
  return jax.lax.platform_dependent(x, cpu=_max_pool_of_views(window, stride, pad), default=flax_pool)


def reduce_window_max_pool(x: jax.Array, window: int, stride: int, pad: int) -> jax.Array:
  """`max_pool` as Flax's reduce-window (what other backends run)."""
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=((pad, pad), (pad, pad)))


@functools.cache
def _max_pool_of_views(window: int, stride: int, pad: int):
  """`max_pool` as a function of x with its own VJP (one per window, stride and padding)."""

  def views(x: jax.Array) -> list[jax.Array]:
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-jnp.inf)
    ho, wo = (xp.shape[1] - window) // stride + 1, (xp.shape[2] - window) // stride + 1
    span = lambda start, count: slice(start, start + stride * (count - 1) + 1, stride)
    return [xp[:, span(i, ho), span(j, wo)] for i in range(window) for j in range(window)]

  @jax.custom_vjp
  def pool(x: jax.Array) -> jax.Array:
    return functools.reduce(jnp.maximum, views(x))

  def forward(x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    y = pool(x)
    return y, (x, y)

  def backward(residuals: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array]:
    x, y = residuals
    hp, wp = x.shape[1] + 2 * pad, x.shape[2] + 2 * pad
    taken, firsts = jnp.zeros(y.shape, bool), []
    for view in views(x):
      firsts.append((view == y) & ~taken)
      taken = taken | firsts[-1]
    # an input pixel gets the gradients of its windows summed in the order of their outputs (PyTorch's), which
    # is the taps' order reversed: a later output reaches the pixel through an earlier tap
    high = lambda size, start, count: size - start - stride * (count - 1) - 1
    dxp = jnp.zeros((x.shape[0], hp, wp, x.shape[3]), g.dtype)
    for tap in reversed(range(window * window)):
      i, j = divmod(tap, window)
      placement = ((0, 0, 0), (i, high(hp, i, y.shape[1]), stride - 1), (j, high(wp, j, y.shape[2]), stride - 1))
      dxp = dxp + jax.lax.pad(jnp.where(firsts[tap], g, 0), jnp.zeros((), g.dtype), (*placement, (0, 0, 0)))
    return (dxp[:, pad : hp - pad, pad : wp - pad],)

  pool.defvjp(forward, backward)
  return pool
