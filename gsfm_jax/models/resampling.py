"""SFM's Adaptive Resampling (ARS): before a stride-2 stage, the map is resampled on a content-adaptive,
order-preserving grid, dense where the attention is high, so that the stage's stride aliases less of it
(docs/sfm_ffr.md, "ARS and its demodulation"; the attention generator and the grid are SFM's
recommendation, since the SFM paper's equations could not be read).

  A = clip(exp(att_out(relu(att_reduce(x)))), A_min, A_max)                 (N, H, W, 1), A ≡ 1 at init
  u(p) = p + Σ_d A(p+d) k(d) d / Σ_d A(p+d) k(d),  k(d) = exp(-|d|²/2σ²), d ∈ {-R…R}²   (N, H, W, 2)
  ARS(x)[p] = bilinear(x, u(p))                                             (N, H, W, C)

A is edge-padded by R and the coordinates run linearly past the border, so a uniform A gives u = p; u is
clamped to the map. Grids, attention and sampling weights are float32 whatever the compute dtype.
Coordinates are (row, column) in pixel-index units of the map.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsfm_jax.models.layers import Conv, Dtype

STAGES = ('layer2', 'layer3')


@functools.lru_cache(maxsize=8)
def centroid_kernels(radius: int, sigma: float) -> np.ndarray:
  """The Gaussian k and its first moments k·d_y, k·d_x as one HWIO kernel, float32 (2R+1, 2R+1, 1, 3)."""
  d = np.arange(-radius, radius + 1, dtype=np.float64)
  dy, dx = np.meshgrid(d, d, indexing='ij')
  k = np.exp(-(dy**2 + dx**2) / (2.0 * sigma**2))
  return np.stack([k, k * dy, k * dx], axis=-1)[:, :, None, :].astype(np.float32)


def pixel_grid(h: int, w: int) -> jax.Array:
  """The identity grid: (h, w, 2) float32, [..., 0] the row and [..., 1] the column of each pixel."""
  return jnp.stack(
    jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing='ij'), axis=-1
  )


def clamp_grid(u: jax.Array, h: int, w: int) -> jax.Array:
  """Coordinates (..., 2) clamped to [0, h-1] × [0, w-1]."""
  return jnp.clip(u, 0.0, jnp.array([h - 1, w - 1], jnp.float32))


def saliency_grid(attention: jax.Array, radius: int = 5, sigma: float = 3.0) -> jax.Array:
  """The attention-weighted centroid of every pixel's window: attention (N, H, W, 1) > 0 -> u (N, H, W, 2).

  Monotone along each axis (the grid never folds) and within R of p.
  """
  _, h, w, _ = attention.shape
  a = jnp.pad(attention.astype(jnp.float32), ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode='edge')
  moments = jax.lax.conv_general_dilated(
    a,
    jnp.asarray(centroid_kernels(radius, float(sigma))),
    (1, 1),
    'VALID',
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    precision=jax.lax.Precision.HIGHEST,
  )
  offset = moments[..., 1:] / moments[..., :1]
  return clamp_grid(pixel_grid(h, w) + offset, h, w)


def bilinear_sample(x: jax.Array, u: jax.Array) -> jax.Array:
  """x (N, H, W, C) at coordinates u (N, Ho, Wo, 2) (clamped to the map) -> (N, Ho, Wo, C), in x's dtype.

  The four neighbours are gathered at once on the flattened H·W axis; the weights are float32.
  """
  n, h, w, c = x.shape
  u = clamp_grid(u.astype(jnp.float32), h, w)
  lo = jnp.minimum(jnp.floor(u), jnp.array([max(h - 2, 0), max(w - 2, 0)], jnp.float32))
  fy, fx = (u - lo)[..., :1], (u - lo)[..., 1:]
  lo = lo.astype(jnp.int32)
  hi = jnp.minimum(lo + 1, jnp.array([h - 1, w - 1]))
  corners = jnp.stack(
    [
      lo[..., 0] * w + lo[..., 1],
      lo[..., 0] * w + hi[..., 1],
      hi[..., 0] * w + lo[..., 1],
      hi[..., 0] * w + hi[..., 1],
    ],
    axis=-1,
  )  # (N, Ho, Wo, 4)
  values = jnp.take_along_axis(x.reshape(n, h * w, c), corners.reshape(n, -1, 1), axis=1)
  values = values.reshape(*corners.shape, c).astype(jnp.float32)  # (N, Ho, Wo, 4, C)
  weights = jnp.concatenate([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], axis=-1)
  return jnp.einsum('...kc,...k->...c', values, weights).astype(x.dtype)


class AdaptiveResampling(nn.Module):
  """ARS: x (N, H, W, C) -> (resampled x (N, H, W, C) in x's dtype, grid u (N, H, W, 2) float32).

  Parameters `att_reduce` (1×1 conv C -> channels) and `att_out` (3×3 conv channels -> 1, zero-initialised,
  so the module starts as the identity and is trained from there).
  """

  channels: int = 64
  radius: int = 5
  sigma: float = 3.0
  clip: tuple[float, float] = (0.1, 100.0)
  dtype: Dtype = jnp.float32

  def attention(self, x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> A (N, H, W, 1) float32 in [A_min, A_max]."""
    a = Conv(self.channels, kernel_size=1, dtype=self.dtype, name='att_reduce')(x)
    a = Conv(1, kernel_size=3, init='zeros', dtype=self.dtype, name='att_out')(nn.relu(a))
    return jnp.clip(jnp.exp(a.astype(jnp.float32)), *self.clip)

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    u = saliency_grid(self.attention(x), self.radius, self.sigma)
    return bilinear_sample(x, u), u
