"""FFR's frequency mask as a filter shape of LFM / HFM (docs/sfm_ffr.md, "FFR's mask and μ")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsfm_jax.models.frequency import SpectralFilter, frequency_filter, ideal_lowpass, mu_to_cutoff


def shifted_box(n: int, cutoff: float) -> np.ndarray:
  """FFR's convention along one axis: the box on the fftshift-ed frequencies (DC in the middle)."""
  return (np.abs(np.fft.fftshift(np.fft.fftfreq(n))) <= cutoff).astype(np.float64)


@pytest.mark.parametrize('h', [24, 25, 30, 31])
@pytest.mark.parametrize('w', [24, 25, 30, 31])
def test_the_unshifted_mask_is_the_shifted_box_and_symmetric(h, w):
  for cutoff in (0.1, 0.2, 0.4):
    mask = ideal_lowpass(h, w, cutoff)
    s = shifted_box(h, cutoff)[:, None] * shifted_box(w, cutoff)[None, :]
    np.testing.assert_array_equal(mask, np.fft.ifftshift(s))
    np.testing.assert_array_equal(mask, mask[(-np.arange(h)) % h][:, (-np.arange(w)) % w])  # M[k] == M[-k]
    assert mask[0, 0] == 1 and mask.sum() == (2 * np.floor(cutoff * h) + 1) * (2 * np.floor(cutoff * w) + 1)


def test_bins_kept_per_axis():
  assert [int(ideal_lowpass(n, 1, 0.2)[:, 0].sum()) for n in (24, 25, 30, 31)] == [9, 11, 13, 13]


def test_low_and_high_parts_are_exact_complements():
  x = np.random.default_rng(0).standard_normal((2, 25, 30, 3))
  low = np.real(
    np.fft.ifft2(
      np.fft.fft2(x, axes=(1, 2)) * frequency_filter(25, 30, 'low', 7.0, 'ideal', 0.2)[None, :, :, None], axes=(1, 2)
    )
  )
  high = np.real(
    np.fft.ifft2(
      np.fft.fft2(x, axes=(1, 2)) * frequency_filter(25, 30, 'high', 7.0, 'ideal', 0.2)[None, :, :, None], axes=(1, 2)
    )
  )
  np.testing.assert_allclose(low + high, x, atol=1e-6)
  # the low part has no energy beyond the cutoff
  spectrum = np.abs(np.fft.fft2(low, axes=(1, 2)))
  assert spectrum[:, np.abs(np.fft.fftfreq(25)) > 0.2].max() < 1e-9


@pytest.mark.parametrize('form', ['exact', 'half'])
@pytest.mark.parametrize('cutoff', [0.5, 0.7])
def test_an_all_pass_cutoff_is_the_module_without_a_filter(form, cutoff):
  """c ≥ ½ keeps every bin: the 'ideal' low-pass equals filter 'none' bit for bit (reading (b): μ = 1)."""
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 12, 14, 4)), jnp.float32)
  none = SpectralFilter('none', form=form)
  variables = none.init(jax.random.PRNGKey(0), x)
  ideal = SpectralFilter('low', form=form, shape='ideal', cutoff=cutoff)
  assert np.array_equal(ideal.apply(variables, x), none.apply(variables, x))
  assert mu_to_cutoff(1.0, 'side_fraction') == 0.5


def test_gaussian_shape_is_unchanged_and_mu_readings():
  i = np.arange(24)[:, None] - 12
  j = np.arange(20)[None, :] - 10
  g = np.exp(-(i**2 + j**2) / (2 * 7.0**2))
  np.testing.assert_array_equal(frequency_filter(24, 20, 'high', 7.0), g.astype(np.float32))
  np.testing.assert_array_equal(frequency_filter(24, 20, 'low', 7.0, cutoff=0.1), (1 - g).astype(np.float32))
  assert (mu_to_cutoff(0.4), mu_to_cutoff(0.4, 'side_fraction')) == (0.4, 0.2)
  assert mu_to_cutoff(0.16, 'area') == pytest.approx(0.2)
  with pytest.raises(ValueError, match='convention'):
    mu_to_cutoff(0.4, 'radius')
  with pytest.raises(ValueError, match='shape'):
    frequency_filter(8, 8, 'low', 7.0, 'disc')
