"""Speed of the LFM/HFM spectral filter forms, against the straightforward full-FFT port as baseline.

  python bench/spectral_filter.py [--repeats 20] [--batch 2]

Forms: 'fft2' (baseline: x + Re(ifft2(F(f · fft2(x)))), the literal official function), 'exact' (the same
function from one rfft2/irfft2 pair, gsfm_jax's default), 'nchw' (the exact function with the 1×1 convs
applied to the channels-first spectrum, so the FFTs need two layout transposes instead of four; a layout
experiment, not used by the model) and 'half' (F on the half spectrum only: a different, cheaper
function). Prints the median wall time of a jitted forward and of forward+backward per shape, and the
layout transposes of each compiled forward, with the machine named; then the time of an rfft2/irfft2 pair
at the model's map sizes against the next power-of-two sizes (are the FFT sizes slow?).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import machine, median_seconds  # noqa: E402
from profile_ops import transposing_ops  # noqa: E402

from gsfm_jax import cli  # noqa: E402
from gsfm_jax.models.frequency import SpectralFilter, frequency_filter, half_spectrum_filters  # noqa: E402

# (name, per-sample shape h, w, C, filter): key f16 and decoder f4 of a 384² training crop and of DAVIS 480p
SHAPES = [
  ('LFM train f16', (24, 24, 1024), 'low'),
  ('LFM 480p f16', (30, 54, 1024), 'low'),
  ('HFM train f4', (96, 96, 256), 'high'),
  ('HFM 480p f4', (120, 216, 256), 'high'),
]
# the (h, w) of those maps, each with the next power-of-two size
FFT_SIZES = [((24, 24), (32, 32)), ((30, 54), (32, 64)), ((96, 96), (128, 128)), ((120, 216), (128, 256))]


def fft2_baseline(module: SpectralFilter, params: dict, x: jax.Array) -> jax.Array:
  """The literal official function with full complex FFTs, using the module's own convs."""
  _, h, w, c = x.shape
  spectrum = (
    jnp.fft.fft2(x, axes=(1, 2)) * jnp.asarray(frequency_filter(h, w, module.filter, module.sigma))[None, :, :, None]
  )
  z = jnp.concatenate([spectrum.real, spectrum.imag], axis=-1)
  conv = lambda v, p: jnp.einsum('nhwc,cd->nhwd', v, p['kernel'][0, 0]) + p['bias']
  z = conv(jax.nn.relu(conv(z, params['conv1'])), params['conv2'])
  return x + jnp.real(jnp.fft.ifft2(jax.lax.complex(z[..., :c], z[..., c:]), axes=(1, 2)))


def channels_first(module: SpectralFilter, params: dict, x: jax.Array) -> jax.Array:
  """The 'exact' function with the spectrum kept channels-first (N, C, h, w'): the 1×1 convs as einsums."""
  n, h, w, c = x.shape
  spectrum = jnp.fft.rfft2(jnp.transpose(x, (0, 3, 1, 2)))
  f, f_mirrored = (jnp.asarray(a)[None, None] for a in half_spectrum_filters(h, w, module.filter, module.sigma))
  both = jnp.concatenate([spectrum * f, jnp.conj(spectrum) * f_mirrored], axis=0)
  conv = lambda v, p: jnp.einsum('nchw,cd->ndhw', v, p['kernel'][0, 0]) + p['bias'][:, None, None]
  z = jnp.concatenate([both.real, both.imag], axis=1)
  z = conv(jax.nn.relu(conv(z, params['conv1'])), params['conv2'])
  both = jax.lax.complex(z[:, :c], z[:, c:])
  return x + jnp.transpose(jnp.fft.irfft2(0.5 * (both[:n] + jnp.conj(both[n:])), s=(h, w)), (0, 2, 3, 1))


def forward_of(form: str, kind: str):
  """(params, x) -> the filter's output in `form`."""
  if form == 'fft2':
    return lambda p, v: fft2_baseline(SpectralFilter(kind), p, v)
  if form == 'nchw':
    return lambda p, v: channels_first(SpectralFilter(kind), p, v)
  module = SpectralFilter(kind, form=form)
  return lambda p, v: module.apply({'params': p}, v)


def main() -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--batch', type=int, default=2, help='N; training runs B·T = 24 key frames per GPU')
  args = parser.parse_args()
  print(f'machine: {machine()}; float32, batch {args.batch}, median of {args.repeats}')
  print(
    f'{"shape":16s} {"form":6s} {"forward ms":>11s} {"fwd+bwd ms":>11s} {"vs fft2 (fwd)":>14s} '
    f'{"transposes":>10s} {"max |diff| vs exact":>20s}'
  )
  for name, shape, kind in SHAPES:
    x = jnp.asarray(np.random.default_rng(0).standard_normal((args.batch, *shape)), jnp.float32)
    params = SpectralFilter(kind).init(jax.random.PRNGKey(0), x[:1])['params']
    baseline, exact = None, jax.jit(forward_of('exact', kind))(params, x)
    for form in ('fft2', 'exact', 'nchw', 'half'):
      forward = forward_of(form, kind)
      fwd = median_seconds(jax.jit(forward), params, x, repeats=args.repeats)
      grad = jax.jit(jax.grad(lambda p, v, forward=forward: jnp.sum(forward(p, v) ** 2)))
      bwd = median_seconds(grad, params, x, repeats=args.repeats)
      baseline = baseline or fwd
      diff = float(jnp.max(jnp.abs(jax.jit(forward)(params, x) - exact)))
      print(
        f'{name:16s} {form:6s} {1e3 * fwd:11.2f} {1e3 * bwd:11.2f} {baseline / fwd:13.2f}× '
        f'{transposing_ops(jax.jit(forward).lower(params, x).compile().as_text()):10d} {diff:20.1e}',
        flush=True,
      )
  print(f'rfft2 + irfft2 of ({args.batch}, 256, h, w), float32: model size vs next power of two')
  for size, power in FFT_SIZES:
    pair = lambda hw: jax.jit(lambda v: jnp.fft.irfft2(jnp.fft.rfft2(v), s=hw))
    times = [median_seconds(pair(hw), jnp.ones((args.batch, 256, *hw)), repeats=args.repeats) for hw in (size, power)]
    print(
      f'  {size[0]}×{size[1]}: {1e3 * times[0]:.2f} ms; {power[0]}×{power[1]}: {1e3 * times[1]:.2f} ms '
      f'({np.prod(size) / np.prod(power):.2f}× the points, {times[0] / times[1]:.2f}× the time)',
      flush=True,
    )


if __name__ == '__main__':
  main()
