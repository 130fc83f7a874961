"""PyTorch's gradients at ties, where JAX's defaults differ (the official training step's gradients).

JAX splits the gradient of `maximum`/`minimum` (and so of `jnp.clip`) evenly between tied operands, and
the gradient of a `max` reduction evenly among all maximal elements. PyTorch gives `clamp` the whole
gradient on the closed interval [lo, hi], and a max-pool or `max(dim)` gives it to one element, the first
maximal one. The differences matter: in float32 a whole band of confident logits rounds to exactly the
aggregation clamp's bound 1 − 1e-7, and JAX's default would halve their gradient.

The forward values are those of `jnp.clip` and `jnp.max`. What already agrees with PyTorch is left as it is
(tested in tests/test_ties.py): `nn.relu` (gradient 0 at 0, PyTorch's `threshold_backward`) and Flax's
`max_pool` (XLA's select-and-scatter keeps the first maximal element of each window, as PyTorch does).
"""

from typing import Sequence

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
