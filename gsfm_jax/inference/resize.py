"""Resizing, padding and cropping as PyTorch's `F.interpolate(align_corners=False)` and `F.pad` do them,
written as one interpolation matrix per axis so that every step runs on the device as two small matmuls.

PyTorch resizes without antialiasing, bicubic uses a = -0.75, and nearest takes floor(dst · in / out);
`jax.image.resize` differs on all three (it antialiases when shrinking and uses a = -0.5), hence this file.
"""

import jax
import jax.numpy as jnp
import numpy as np

METHODS = ('bilinear', 'bicubic', 'nearest')


def _cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
  """Keys' cubic convolution kernel at distances t (PyTorch's A = -0.75)."""
  t = np.abs(t)
  return np.where(
    t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1, np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0)
  )


def interp_matrix(size_in: int, size_out: int, method: str) -> np.ndarray:
  """(size_out, size_in) float32 matrix W with out = W @ in along one axis."""
  if method not in METHODS:
    raise ValueError(f'resize method {method!r}: expected one of {METHODS}')
  scale = size_in / size_out
  dst = np.arange(size_out)
  matrix = np.zeros((size_out, size_in), np.float64)
  if method == 'nearest':
    matrix[dst, np.minimum(np.floor(dst * scale).astype(int), size_in - 1)] = 1
    return matrix.astype(np.float32)
  src = (dst + 0.5) * scale - 0.5
  if method == 'bilinear':
    src = np.maximum(src, 0)
    low = np.floor(src).astype(int)
    frac = src - low
    np.add.at(matrix, (dst, np.minimum(low, size_in - 1)), 1 - frac)
    np.add.at(matrix, (dst, np.minimum(low + 1, size_in - 1)), frac)
  else:
    low = np.floor(src).astype(int)
    frac = src - low
    for offset in (-1, 0, 1, 2):
      np.add.at(matrix, (dst, np.clip(low + offset, 0, size_in - 1)), _cubic(frac - offset))
  return matrix.astype(np.float32)


def pad_split(size: int, multiple: int = 16) -> tuple[int, int]:
  """The reference's padding of one axis to a multiple: (before, after) = (floor(d/2), d - floor(d/2))."""
  extra = -size % multiple
  return extra // 2, extra - extra // 2


def _resize(size_in: int, size_out: int, method: str) -> np.ndarray:
  """`interp_matrix`, or the identity when the size does not change."""
  return np.eye(size_in, dtype=np.float32) if size_in == size_out else interp_matrix(size_in, size_out, method)


def into_padded(size_in: int, size_mid: int, method: str, multiple: int = 16) -> np.ndarray:
  """Resize size_in -> size_mid, then zero-pad to a multiple: (padded, size_in) matrix."""
  return np.pad(_resize(size_in, size_mid, method), (pad_split(size_mid, multiple), (0, 0)))


def out_of_padded(size_mid: int, size_out: int, method: str = 'bilinear', multiple: int = 16) -> np.ndarray:
  """Crop `into_padded`'s padding off (back to size_mid), then resize to size_out: (size_out, padded)."""
  return np.pad(_resize(size_mid, size_out, method), ((0, 0), pad_split(size_mid, multiple)))


def apply(x: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """x (…, H, W, C) with rows (H', H) and cols (W', W) -> (…, H', W', C), in float32."""
  x = jnp.einsum('ph,...hwc->...pwc', rows, x.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
  return jnp.einsum('qw,...pwc->...pqc', cols, x, precision=jax.lax.Precision.HIGHEST)
