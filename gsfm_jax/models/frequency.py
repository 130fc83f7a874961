"""The Low- and High-Frequency Modules (LFM, HFM): one spectral filter module (spec §1.4, Appendix B).

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
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsfm_jax.models.layers import Conv, Dtype

FILTERS = ('low', 'high', 'none')
SPECTRAL_FORMS = ('exact', 'half')


@functools.lru_cache(maxsize=64)
def frequency_filter(h: int, w: int, kind: str, sigma: float) -> np.ndarray:
  """The filter f on the full unshifted (h, w) spectrum, float32 (h, w)."""
  if kind not in FILTERS:
    raise ValueError(f'unknown frequency filter {kind!r}; expected one of {FILTERS}')
  i = np.arange(h, dtype=np.float64)[:, None] - h // 2
  j = np.arange(w, dtype=np.float64)[None, :] - w // 2
  g = np.exp(-(i ** 2 + j ** 2) / (2.0 * sigma ** 2))
  return {'low': 1.0 - g, 'high': g, 'none': np.ones_like(g)}[kind].astype(np.float32)


def half_spectrum_filters(h: int, w: int, kind: str, sigma: float) -> tuple[np.ndarray, np.ndarray]:
  """f(k) and f(-k) on the rfft2 half spectrum, each (h, w//2 + 1), index -k = (-i mod h, -j mod w)."""
  f = frequency_filter(h, w, kind, sigma)
  cols = w // 2 + 1
  mirrored = f[(-np.arange(h)) % h][:, (-np.arange(cols)) % w]
  return f[:, :cols], mirrored


class SpectralFilter(nn.Module):
  """LFM / HFM: (N, h, w, C) -> (N, h, w, C) float32, residual spectral filtering.

  Parameters: `conv1`, `conv2`, 1×1 convs 2C -> 2C (input channels [Re C, Im C]).
  The FFTs always run in float32; the 1×1 convs run in `dtype`.
  """
  filter: str = 'low'
  sigma: float = 7.0
  form: str = 'exact'
  dtype: Dtype = jnp.float32

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
    spectrum = jnp.fft.rfft2(x, axes=(1, 2))
    f, f_mirrored = (jnp.asarray(a)[None, :, :, None]
                     for a in half_spectrum_filters(h, w, self.filter, self.sigma))
    if self.form == 'exact':
      both = self._mix(jnp.concatenate([spectrum * f, jnp.conj(spectrum) * f_mirrored], axis=0))
      spectrum = 0.5 * (both[:n] + jnp.conj(both[n:]))
    else:
      spectrum = self._mix(spectrum * f)
    return x + jnp.fft.irfft2(spectrum, s=(h, w), axes=(1, 2))
