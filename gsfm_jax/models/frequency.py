"""The Low- and High-Frequency Modules (LFM, HFM): one spectral filter module (docs/reference.md §1.4).

Official function, for x of shape (N, h, w, C):

    out = x + Re(ifft2(F(f · fft2(x))))

with F = conv2 ∘ ReLU ∘ conv1 acting per frequency on [Re, Im] (2C channels) and f a Gaussian map in
*unshifted* spectrum coordinates, g[i, j] = exp(-((i - h//2)² + (j - w//2)²) / 2σ²), peaked at the
Nyquist corner: f = 1 - g for LFM (low-pass), f = g for HFM (high-pass), f = 1 for no filter.

Spectral forms:
  'exact'  the official function computed from one rfft2/irfft2 pair: with Y = rfft2(x),
           A = F(f(k)·Y(k)), B = F(f(-k)·conj(Y(k))), out = x + irfft2((A + conj(B)) / 2).
           Official weights transfer exactly.
  'half'   out = x + irfft2(F(f · rfft2(x))): half the conv work, a different function (for training
           from scratch; the ablation switch of spec Appendix B).

Filter shapes (`shape`):
  'gaussian'  GSFM's g above (width `sigma` in bins).
  'ideal'     FFR's box (docs/sfm_ffr.md, "FFR's mask and μ"), built on the same unshifted grid:
              M_c[i, j] = 1[|fftfreq(h)[i]| ≤ c] · 1[|fftfreq(w)[j]| ≤ c], c = `cutoff` in cycles per pixel;
              'low' = M_c (a box around DC), 'high' = 1 - M_c, 'none' = 1. c ≥ ½ keeps every bin.
              FFR's ratio μ becomes a cutoff by `mu_to_cutoff` (default reading: c = μ).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsfm_jax.models.layers import Conv, Dtype

FILTERS = ('low', 'high', 'none')
SHAPES = ('gaussian', 'ideal')
SPECTRAL_FORMS = ('exact', 'half')
MU_CONVENTIONS = ('half_width', 'side_fraction', 'area')


def mu_to_cutoff(mu: float, convention: str = 'half_width') -> float:
  """FFR's low-frequency ratio μ -> the half-width c of the kept square, in cycles per pixel (docs/sfm_ffr.md,
  "FFR's mask and μ"):
  'half_width' c = μ (the default), 'side_fraction' c = μ/2, 'area' c = √μ/2."""
  readings = {'half_width': mu, 'side_fraction': mu / 2.0, 'area': float(np.sqrt(mu)) / 2.0}
  if convention not in readings:
    raise ValueError(f'unknown μ convention {convention!r}; expected one of {MU_CONVENTIONS}')
  return readings[convention]


def ideal_lowpass(h: int, w: int, cutoff: float) -> np.ndarray:
  """M_c on the unshifted (h, w) grid: 1 where |ν_row| ≤ c and |ν_col| ≤ c, float64 (h, w)."""
  keep = lambda n: (np.abs(np.fft.fftfreq(n)) <= cutoff).astype(np.float64)
  return keep(h)[:, None] * keep(w)[None, :]


def gaussian_peak(h: int, w: int, sigma: float) -> np.ndarray:
  """GSFM's g, peaked at bin (h//2, w//2) of the unshifted grid, float64 (h, w)."""
  i = np.arange(h, dtype=np.float64)[:, None] - h // 2
  j = np.arange(w, dtype=np.float64)[None, :] - w // 2
  return np.exp(-(i**2 + j**2) / (2.0 * sigma**2))


@functools.lru_cache(maxsize=64)
def frequency_filter(
  h: int, w: int, kind: str, sigma: float, shape: str = 'gaussian', cutoff: float = 0.4
) -> np.ndarray:
  """The filter f on the full unshifted (h, w) spectrum, float32 (h, w)."""
  if kind not in FILTERS:
    raise ValueError(f'unknown frequency filter {kind!r}; expected one of {FILTERS}')
  if shape not in SHAPES:
    raise ValueError(f'unknown filter shape {shape!r}; expected one of {SHAPES}')
  if kind == 'none':
    return np.ones((h, w), np.float32)
  if shape == 'gaussian':
    high = gaussian_peak(h, w, sigma)
    f = {'low': 1.0 - high, 'high': high}[kind]
  else:
    low = ideal_lowpass(h, w, cutoff)
    f = {'low': low, 'high': 1.0 - low}[kind]
  return f.astype(np.float32)


def half_spectrum_filters(
  h: int, w: int, kind: str, sigma: float, shape: str = 'gaussian', cutoff: float = 0.4
) -> tuple[np.ndarray, np.ndarray]:
  """f(k) and f(-k) on the rfft2 half spectrum, each (h, w//2 + 1), index -k = (-i mod h, -j mod w)."""
  f = frequency_filter(h, w, kind, sigma, shape, cutoff)
  cols = w // 2 + 1
  mirrored = f[(-np.arange(h)) % h][:, (-np.arange(cols)) % w]
  return f[:, :cols], mirrored


# ---- the 2-D real FFT pair: XLA's FFT, or on a TPU dense DFT matrices ---------------------------------------------
# XLA:TPU decomposes a length-96 FFT into radix stages with float32 layout copies between them: in the TPU-
# compiled train step the HFM moved 57 % of all bytes for 5 % of the FLOPs (docs/performance.md). As two dense
# matmuls per axis at float32 precision the transform is the same function (the DFT is exactly linear) with a
# few % more FLOPs and a fraction of the bytes; the CPU and GPU keep their FFT libraries.


@functools.lru_cache(maxsize=64)
def _dft(n: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
  """cos and sin of 2π·j·k/n for j < n, k < bins: two (n, bins) float64 arrays (angles reduced mod n exactly)."""
  angle = 2.0 * np.pi * (np.outer(np.arange(n), np.arange(bins)) % n) / n
  return np.cos(angle), np.sin(angle)


def _matmul(spec: str, x: jax.Array, matrix: np.ndarray) -> jax.Array:
  return jnp.einsum(spec, x, jnp.asarray(matrix, jnp.float32), precision=jax.lax.Precision.HIGHEST)


def _complex_pass(re: jax.Array, im: jax.Array, inverse: bool) -> tuple[jax.Array, jax.Array]:
  """The complex DFT (or its inverse, with 1/n) along axis 1 of the (N, n, k, C) parts -> (Re, Im)."""
  n = re.shape[1]
  cos, sin = _dft(n, n)
  sign, scale = (1.0, 1.0 / n) if inverse else (-1.0, 1.0)
  # [Re', Im'] = Σ_j Re_j · [cos, sign·sin] + Im_j · [-sign·sin, cos]: each part one matmul, stacked outputs
  out = _matmul('njkc,jdm->dnmkc', re, scale * np.stack([cos, sign * sin], 1)) + _matmul(
    'njkc,jdm->dnmkc', im, scale * np.stack([-sign * sin, cos], 1)
  )
  return out[0], out[1]


def rfft2_as_matmuls(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`jnp.fft.rfft2(x, axes=(1, 2))` of real (N, h, w, C) float32 as dense DFTs -> its real and imaginary
  parts, each (N, h, w//2 + 1, C)."""
  cos, sin = _dft(x.shape[2], x.shape[2] // 2 + 1)
  parts = _matmul('nhwc,wbk->bnhkc', x, np.stack([cos, -sin], 1))
  return _complex_pass(parts[0], parts[1], inverse=False)


def irfft2_as_matmuls(re: jax.Array, im: jax.Array, w: int) -> jax.Array:
  """`jnp.fft.irfft2(re + i·im, s=(h, w), axes=(1, 2))` of an (N, h, w//2 + 1, C) half spectrum as dense DFTs
  -> real (N, h, w, C) float32. Like the FFT, it reads the half spectrum as Hermitian: the imaginary parts of
  the DC and Nyquist columns drop out."""
  re, im = _complex_pass(re, im, inverse=True)
  bins = re.shape[2]
  cos, sin = _dft(w, bins)
  weight = np.where((np.arange(bins) == 0) | (2 * np.arange(bins) == w), 1.0, 2.0) / w  # the mirrored half
  return _matmul('nhkc,kw->nhwc', re, (weight * cos).T) + _matmul('nhkc,kw->nhwc', im, (-weight * sin).T)


def rfft2(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The 2-D real FFT over axes (1, 2) of (N, h, w, C) float32 -> (Re, Im), each (N, h, w//2 + 1, C): dense
  DFTs on a TPU, XLA's FFT elsewhere."""

  def fft(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    spectrum = jnp.fft.rfft2(a, axes=(1, 2))
    return spectrum.real, spectrum.imag

  return jax.lax.platform_dependent(x, tpu=rfft2_as_matmuls, default=fft)


def irfft2(re: jax.Array, im: jax.Array, w: int) -> jax.Array:
  """The inverse of `rfft2`: the (N, h, w//2 + 1, C) parts of a half spectrum -> (N, h, w, C) float32."""
  h = re.shape[1]
  return jax.lax.platform_dependent(
    re,
    im,
    tpu=lambda a, b: irfft2_as_matmuls(a, b, w),
    default=lambda a, b: jnp.fft.irfft2(jax.lax.complex(a, b), s=(h, w), axes=(1, 2)),
  )


class SpectralFilter(nn.Module):
  """LFM / HFM: (N, h, w, C) -> (N, h, w, C) float32, residual spectral filtering.

  Parameters: `conv1`, `conv2`, 1×1 convs 2C -> 2C (input channels [Re C, Im C]).
  The FFTs always run in float32; the 1×1 convs run in `dtype`. `shape` 'gaussian' uses `sigma`,
  'ideal' uses `cutoff` (cycles per pixel).
  """

  filter: str = 'low'
  sigma: float = 7.0
  form: str = 'exact'
  dtype: Dtype = jnp.float32
  shape: str = 'gaussian'
  cutoff: float = 0.4

  def _mix(self, z: jax.Array) -> jax.Array:
    """F per frequency: (..., 2C) [Re, Im] -> conv1 -> ReLU -> conv2 -> (..., 2C) float32."""
    z = Conv(z.shape[-1], kernel_size=1, dtype=self.dtype, name='conv1')(z)
    return Conv(z.shape[-1], kernel_size=1, dtype=self.dtype, name='conv2')(nn.relu(z)).astype(jnp.float32)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.form not in SPECTRAL_FORMS:
      raise ValueError(f'unknown spectral form {self.form!r}; expected one of {SPECTRAL_FORMS}')
    x = x.astype(jnp.float32)
    _, h, w, c = x.shape
    re, im = rfft2(x)
    f, f_mirrored = (
      jnp.asarray(a)[None, :, :, None]
      for a in half_spectrum_filters(h, w, self.filter, self.sigma, self.shape, self.cutoff)
    )
    if self.form == 'exact':
      # A = F(f(k)·Y) and B = F(f(-k)·conj(Y)), stacked on a new leading axis (not the batch axis, which a
      # data-parallel program shards across chips): spectrum = (A + conj(B)) / 2
      a, b = self._mix(
        jnp.stack([jnp.concatenate([re * f, im * f], -1), jnp.concatenate([re * f_mirrored, -im * f_mirrored], -1)])
      )
      re, im = 0.5 * (a[..., :c] + b[..., :c]), 0.5 * (a[..., c:] - b[..., c:])
    else:
      z = self._mix(jnp.concatenate([re * f, im * f], -1))
      re, im = z[..., :c], z[..., c:]
    return x + irfft2(re, im, w)
