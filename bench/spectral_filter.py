"""Speed of the LFM/HFM spectral filter forms, against the straightforward full-FFT port as baseline.

  python bench/spectral_filter.py [--repeats 20] [--batch 2]

Forms: 'fft2' (baseline: x + Re(ifft2(F(f · fft2(x)))), the literal official function), 'exact' (the same
function from one rfft2/irfft2 pair, gsfm_jax's default) and 'half' (F on the half spectrum only: a
different, cheaper function). Prints the median wall time of a jitted forward and of forward+backward
per shape, with the machine named.
"""
import argparse
import platform

import jax
import jax.numpy as jnp
import numpy as np

from common import median_seconds
from gsfm_jax.models.frequency import SpectralFilter, frequency_filter

# (name, per-sample shape h, w, C, filter): training key f16 (384²), DAVIS 480p key f16, training HFM at f4
SHAPES = [('LFM train f16', (24, 24, 1024), 'low'),
          ('LFM 480p f16', (30, 54, 1024), 'low'),
          ('HFM train f4', (96, 96, 256), 'high')]


def fft2_baseline(module: SpectralFilter, params: dict, x: jax.Array) -> jax.Array:
  """The literal official function with full complex FFTs, using the module's own convs."""
  _, h, w, c = x.shape
  spectrum = jnp.fft.fft2(x, axes=(1, 2)) * jnp.asarray(frequency_filter(h, w, module.filter, module.sigma))[None, :, :, None]
  z = jnp.concatenate([spectrum.real, spectrum.imag], axis=-1)
  conv = lambda v, p: jnp.einsum('nhwc,cd->nhwd', v, p['kernel'][0, 0]) + p['bias']
  z = conv(jax.nn.relu(conv(z, params['conv1'])), params['conv2'])
  return x + jnp.real(jnp.fft.ifft2(jax.lax.complex(z[..., :c], z[..., c:]), axes=(1, 2)))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--batch', type=int, default=2, help='N; training runs B·T = 24 key frames per GPU')
  args = parser.parse_args()
  device = jax.devices()[0]
  print(f'machine: {platform.node()} ({platform.processor() or platform.machine()}), jax {jax.__version__} on '
        f'{device.platform} ({device.device_kind}), float32, batch {args.batch}, median of {args.repeats}')
  print(f'{"shape":16s} {"form":6s} {"forward ms":>11s} {"fwd+bwd ms":>11s} {"vs fft2 (fwd)":>14s}')
  for name, shape, kind in SHAPES:
    x = jnp.asarray(np.random.default_rng(0).standard_normal((args.batch, *shape)), jnp.float32)
    params = SpectralFilter(kind).init(jax.random.PRNGKey(0), x[:1])['params']
    baseline = None
    for form in ('fft2', 'exact', 'half'):
      if form == 'fft2':
        forward = lambda p, v: fft2_baseline(SpectralFilter(kind), p, v)
      else:
        module = SpectralFilter(kind, form=form)
        forward = lambda p, v, module=module: module.apply({'params': p}, v)
      fwd = median_seconds(jax.jit(forward), params, x, repeats=args.repeats)
      grad = jax.jit(jax.grad(lambda p, v, forward=forward: jnp.sum(forward(p, v) ** 2)))
      bwd = median_seconds(grad, params, x, repeats=args.repeats)
      baseline = baseline or fwd
      print(f'{name:16s} {form:6s} {1e3 * fwd:11.2f} {1e3 * bwd:11.2f} {baseline / fwd:13.2f}×')


if __name__ == '__main__':
  main()
