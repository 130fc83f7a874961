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
# compiled train step the HFM moved 31 % of all bytes for 4 % of the FLOPs (docs/performance.md). As two dense
# matmuls per axis at float32 precision the transform is the same function (the DFT is exactly linear) with a
# few % more FLOPs and a fraction of the bytes; the CPU and GPU keep their FFT libraries.


@functools.lru_cache(maxsize=64)
def _dft(n: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
  """cos and sin of 2π·j·k/n for j < n, k < bins: two (n, bins) float64 arrays (angles reduced mod n exactly)."""
  angle = 2.0 * np.pi * (np.outer(np.arange(n), np.arange(bins)) % n) / n
  return np.cos(angle), np.sin(angle)


def _complex_pass(re: jax.Array, im: jax.Array, n: int, inverse: bool) -> tuple[jax.Array, jax.Array]:
  """The complex DFT (or its inverse, with 1/n) along axis 1 of (N, n, k, C) parts -> (Re, Im)."""
  cos, sin = _dft(n, n)
  sign = 1.0 if inverse else -1.0
  scale = 1.0 / n if inverse else 1.0
  # [Re', Im'] = Σ_j [Re, Im]_j · [[cos, sign·sin], [-sign·sin, cos]]_jm: one matmul over (part, j)
  matrix = scale * np.stack([np.stack([cos, sign * sin], 1), np.stack([-sign * sin, cos], 1)], 0)  # (2, n, 2, n)
  out = jnp.einsum(
    'bnjkc,bjdm->dnmkc', jnp.stack([re, im]), jnp.asarray(matrix, jnp.float32), precision=jax.lax.Precision.HIGHEST
  )
  return out[0], out[1]


def rfft2_as_matmuls(x: jax.Array) -> jax.Array:
  """`jnp.fft.rfft2(x, axes=(1, 2))` of real (N, h, w, C) float32 as dense DFTs -> complex (N, h, w//2 + 1, C)."""
  h, w = x.shape[1:3]
  cos, sin = _dft(w, w // 2 + 1)
  parts = jnp.einsum(
    'nhwc,wbk->bnhkc', x, jnp.asarray(np.stack([cos, -sin], 1), jnp.float32), precision=jax.lax.Precision.HIGHEST
  )
  return jax.lax.complex(*_complex_pass(parts[0], parts[1], h, inverse=False))


def irfft2_as_matmuls(spectrum: jax.Array, w: int) -> jax.Array:
  """`jnp.fft.irfft2(spectrum, s=(h, w), axes=(1, 2))` of complex (N, h, w//2 + 1, C) as dense DFTs -> real
  (N, h, w, C) float32. Like the FFT, it reads the half spectrum as Hermitian: the imaginary parts of the
  DC and Nyquist columns drop out."""
  h, bins = spectrum.shape[1:3]
  re, im = _complex_pass(jnp.real(spectrum), jnp.imag(spectrum), h, inverse=True)
  cos, sin = _dft(w, bins)
  weight = np.where((np.arange(bins) == 0) | (2 * np.arange(bins) == w), 1.0, 2.0) / w  # the mirrored half
  matrix = np.stack([(weight * cos).T, (-weight * sin).T], 0)  # (2, bins, w)
  return jnp.einsum(
    'bnhkc,bkw->nhwc', jnp.stack([re, im]), jnp.asarray(matrix, jnp.float32), precision=jax.lax.Precision.HIGHEST
  )


def rfft2(x: jax.Array) -> jax.Array:
  """The 2-D real FFT over axes (1, 2) of (N, h, w, C) float32: dense DFTs on a TPU, XLA's FFT elsewhere."""
  return jax.lax.platform_dependent(x, tpu=rfft2_as_matmuls, default=lambda a: jnp.fft.rfft2(a, axes=(1, 2)))


def irfft2(spectrum: jax.Array, w: int) -> jax.Array:
  """The inverse of `rfft2` for an (N, h, w//2 + 1, C) half spectrum -> (N, h, w, C) float32."""
  h = spectrum.shape[1]
  return jax.lax.platform_dependent(
    spectrum,
    tpu=lambda a: irfft2_as_matmuls(a, w),
    default=lambda a: jnp.fft.irfft2(a, s=(h, w), axes=(1, 2)),
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

  def _mix(self, spectrum: jax.Array) -> jax.Array:
    """F: complex (..., h, w', C) -> complex (..., h, w', C) through conv1 -> ReLU -> conv2 on [Re, Im]."""
    c = spectrum.shape[-1]
    z = jnp.concatenate([spectrum.real, spectrum.imag], axis=-1)
    z = Conv(2 * c, kernel_size=1, dtype=self.dtype, name='conv1')(z)
    z = Conv(2 * c, kernel_size=1, dtype=self.dtype, name='conv2')(nn.relu(z))
    z = z.astype(jnp.float32)
    return jax.lax.complex(z[..., :c], z[..., c:])

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.form not in SPECTRAL_FORMS:
      raise ValueError(f'unknown spectral form {self.form!r}; expected one of {SPECTRAL_FORMS}')
    x = x.astype(jnp.float32)
    n, h, w, _ = x.shape
    spectrum = rfft2(x)
    f, f_mirrored = (
      jnp.asarray(a)[None, :, :, None]
      for a in half_spectrum_filters(h, w, self.filter, self.sigma, self.shape, self.cutoff)
    )
    if self.form == 'exact':
      both = self._mix(jnp.concatenate([spectrum * f, jnp.conj(spectrum) * f_mirrored], axis=0))
      spectrum = 0.5 * (both[:n] + jnp.conj(both[n:]))
    else:
      spectrum = self._mix(spectrum * f)
    return x + irfft2(spectrum, w)
