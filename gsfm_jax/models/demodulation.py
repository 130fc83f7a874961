"""SFM's Multi-Scale Adaptive Upsampling (MSAU), as the decoder's ×2 upsampling of a map that an ARS warped
(docs/sfm_ffr.md, "ARS and its demodulation").

Stage A, demodulation. A stride-2 stage after ARS (grid U, (N, H, W, 2)) leaves z (N, H/2, W/2, C) whose
pixel a samples the uniform map at G(a) = U(2a + ½) (half-pixel centres). Upsampling puts z back on the
uniform grid: for every p, q(p) solves G(q) = p (Newton with the 2×2 Jacobian of G, 6 steps) and
y(p) = bilinear(z, q(p)). For U the identity, q = p/2 - ¼: GSFM's bilinear ×2 (`upsample_bilinear`).
The sampling density ρ(p) = 1/|det J(q(p))| comes with it.

Stage B, relation refinement (optional, `RelationRefinement`): y' = y + γ ⊙ (Σ_k w_k(p) y(p + δ_k) - y)
with softmax weights w from the cosine similarities of a guidance map to its neighbours at several
dilations and log ρ; γ starts at 0, so y' = y exactly until it is trained.

The inverse map depends on the frame only: `invert_grid` runs once per frame, `bilinear_sample` per object.
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsfm_jax.models.layers import Conv, Dtype
from gsfm_jax.models.resampling import bilinear_sample, clamp_grid, pixel_grid

NEWTON_STEPS = 6
MIN_DET = 1e-3
NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


class Inverse(NamedTuple):
  """Where every uniform high-resolution pixel lies on a warped low-resolution map; float32."""

  q: jax.Array  # (N, H, W, 2) low-resolution coordinates (row, column)
  rho: jax.Array  # (N, H, W, 1) sampling density 1/|det J|


def sampling_map(grid: jax.Array) -> jax.Array:
  """G: ARS grid U (N, H, W, 2) -> the uniform coordinate that each low-resolution pixel samples,
  (N, H/2, W/2, 2), G(a) = U(2a + ½) taken bilinearly."""
  _, h, w, _ = grid.shape
  centres = 2.0 * pixel_grid(h // 2, w // 2) + 0.5
  return bilinear_sample(grid.astype(jnp.float32), jnp.broadcast_to(centres, (grid.shape[0], *centres.shape)))


def jacobian(g: jax.Array) -> jax.Array:
  """Central differences of G (N, h, w, 2) on its own grid (one-sided at borders) -> (N, h, w, 4):
  [∂G_row/∂a_row, ∂G_row/∂a_col, ∂G_col/∂a_row, ∂G_col/∂a_col]."""
  d_row, d_col = jnp.gradient(g, axis=1), jnp.gradient(g, axis=2)
  return jnp.stack([d_row[..., 0], d_col[..., 0], d_row[..., 1], d_col[..., 1]], axis=-1)


def _determinant(j: jax.Array) -> jax.Array:
  """det J for J (..., 4), its magnitude floored at MIN_DET (sign kept): (..., 1)."""
  det = j[..., 0:1] * j[..., 3:4] - j[..., 1:2] * j[..., 2:3]
  return jnp.where(jnp.abs(det) < MIN_DET, jnp.where(det < 0, -MIN_DET, MIN_DET), det)


def _solve(j: jax.Array, r: jax.Array) -> jax.Array:
  """J⁻¹ r for J (..., 4) and r (..., 2)."""
  a, b, c, d = (j[..., i : i + 1] for i in range(4))
  return jnp.concatenate([d * r[..., :1] - b * r[..., 1:], a * r[..., 1:] - c * r[..., :1]], axis=-1) / _determinant(j)


def invert_grid(grid: jax.Array) -> Inverse:
  """The inverse of the sampling map of ARS grid U (N, H, W, 2): q (N, H, W, 2) with G(q(p)) ≈ p."""
  n, h, w, _ = grid.shape
  g = sampling_map(grid)
  table = jnp.concatenate([g, jacobian(g)], axis=-1)  # (N, h, w, 6): G and J together
  p = jnp.broadcast_to(pixel_grid(h, w), (n, h, w, 2))
  low = g.shape[1:3]

  def newton(_, q: jax.Array) -> jax.Array:
    at_q = bilinear_sample(table, q)
    return clamp_grid(q + _solve(at_q[..., 2:], p - at_q[..., :2]), *low)

  q = jax.lax.fori_loop(0, NEWTON_STEPS, newton, clamp_grid(p / 2.0 - 0.25, *low))  # one body to compile
  return Inverse(q, 1.0 / jnp.abs(_determinant(bilinear_sample(table, q)[..., 2:])))


def _padded(x: jax.Array, offsets: jax.Array) -> tuple[jax.Array, int]:
  r = int(np.abs(np.asarray(offsets)).max())
  return jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode='edge'), r


def _neighbour(padded: jax.Array, r: int, shape: tuple[int, ...], offset: jax.Array) -> jax.Array:
  """x(p + offset) from x padded by r (edge), for a traced offset (2,)."""
  return jax.lax.dynamic_slice(padded, (0, r + offset[0], r + offset[1], 0), shape)


def similarities(g: jax.Array, offsets: np.ndarray) -> jax.Array:
  """Σ_c g(p)·g(p + δ) for each δ of offsets (K, 2), clamped at the borders: g (N, H, W, C) -> (N, H, W, K).

  A `lax.scan` over the offsets: one slice to compile (and differentiate) instead of K."""
  padded, r = _padded(g, offsets)
  each = lambda _, offset: (None, jnp.sum(g * _neighbour(padded, r, g.shape, offset), axis=-1))
  return jnp.moveaxis(jax.lax.scan(each, None, jnp.asarray(offsets))[1], 0, -1)


def weighted_neighbours(y: jax.Array, weights: jax.Array, offsets: np.ndarray) -> jax.Array:
  """Σ_k weights[..., k] · y(p + δ_k): y (N, H, W, C), weights (N, H, W, K) float32 -> (N, H, W, C) float32."""
  padded, r = _padded(y, offsets)

  def add(total, inputs):
    offset, w = inputs
    return total + w[..., None] * _neighbour(padded, r, y.shape, offset).astype(jnp.float32), None

  zero = jnp.zeros(y.shape, jnp.float32)
  return jax.lax.scan(add, zero, (jnp.asarray(offsets), jnp.moveaxis(weights, -1, 0)))[0]


class RelationRefinement(nn.Module):
  """MSAU stage B: y (N, H, W, C), guidance (N, H, W, Cg), rho (N, H, W, 1) -> y' (N, H, W, C) in y's dtype.

  Parameters `guide` (1×1 conv Cg -> channels), `guide_norm` (GroupNorm), `logits` (3×3 conv to
  8·len(dilations) + 1) and `gamma` (C,) with C = `features`, zero-initialised.
  """

  features: int
  dilations: tuple[int, ...] = (1, 2, 4, 8)
  channels: int = 64
  dtype: Dtype = jnp.float32

  def setup(self):
    self.guide = Conv(self.channels, kernel_size=1, dtype=self.dtype)
    self.guide_norm = nn.GroupNorm(num_groups=min(8, self.channels), dtype=jnp.float32)
    self.logits = Conv(len(self.offsets()), dtype=self.dtype)
    self.gamma = self.param('gamma', nn.initializers.zeros, (self.features,), jnp.float32)

  def offsets(self) -> np.ndarray:
    """δ_0 = 0, then the 8 neighbours at each dilation: (8·len(dilations) + 1, 2) int32."""
    return np.array([(0, 0)] + [(d * dy, d * dx) for d in self.dilations for dy, dx in NEIGHBOURS], np.int32)

  def weights(self, guidance: jax.Array, rho: jax.Array) -> jax.Array:
    """Softmax weights over `offsets()`: (N, H, W, 8·len(dilations) + 1) float32."""
    g = self.guide_norm(self.guide(guidance).astype(jnp.float32))
    g = g / jnp.maximum(jnp.linalg.norm(g, axis=-1, keepdims=True), 1e-6)
    features = jnp.concatenate([similarities(g, self.offsets()[1:]), jnp.log(rho)], axis=-1)
    return jax.nn.softmax(self.logits(features).astype(jnp.float32), axis=-1)

  def __call__(self, y: jax.Array, guidance: jax.Array, rho: jax.Array) -> jax.Array:
    w, gamma = self.weights(guidance, rho), self.gamma
    mixed = weighted_neighbours(y, w, self.offsets())
    return (y.astype(jnp.float32) + gamma * (mixed - y.astype(jnp.float32))).astype(y.dtype)
