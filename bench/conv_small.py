"""Convolutions on small maps: XLA's convolution against `conv_as_matmul` (k² shifted views @ kernel).

  python bench/conv_small.py [--repeats 10] [--step]

For the widest 3×3 convolutions of the 1/16-scale layers (key_comp, the value fuser, the decoder's
compress block) at output maps of 2² … 16² pixels, prints the median forward+backward time of both forms,
the baseline being XLA's convolution; `layers.MATMUL_MAX_PIXELS` is the crossover chosen from it.
--step also times the whole jitted train step (batch 4, 32² crops, one device) with the matmul form
switched off (the baseline) and on, with compile times.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import machine, median_seconds  # noqa: E402  (bench/ is on the path when run as a script)

from gsfm_jax import cli  # noqa: E402
from gsfm_jax.models import layers  # noqa: E402

# (name, Cin, Cout, batch): per-GPU training batch 8 clips; key_comp sees all 3 frames, the others 2 objects
SHAPES = [
  ('key_comp 1024->512', 1024, 512, 24),
  ('fuser 1536->512', 1536, 512, 16),
  ('compress 1536->512', 1536, 512, 16),
]


def xla_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def time_layers(repeats: int) -> None:
  print(f'{"layer":20s} {"map":>6s} {"conv ms":>9s} {"matmul ms":>10s} {"speed-up":>9s}   (forward+backward)')
  for name, cin, cout, batch in SHAPES:
    for side in (2, 4, 6, 8, 12, 16):
      rng = np.random.default_rng(0)
      x = jnp.asarray(rng.standard_normal((batch, side, side, cin)), jnp.float32)
      kernel = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) * 0.01, jnp.float32)
      times = [
        median_seconds(
          jax.jit(jax.grad(lambda a, b, f=f: jnp.sum(f(a, b) ** 2), argnums=(0, 1))), x, kernel, repeats=repeats
        )
        for f in (xla_conv, lambda a, b: layers.conv_as_matmul(a, b, 1))
      ]
      print(f'{name:20s} {side:>3d}² {1e3 * times[0]:9.1f} {1e3 * times[1]:10.1f} {times[0] / times[1]:8.2f}×')


def time_step(repeats: int) -> None:
  """The full network's train step (batch 4, 32² crops, one device), matmul form off (baseline) and on."""
  from train_step import Step

  baseline = None
  for limit in (0, layers.MATMUL_MAX_PIXELS):
    layers.MATMUL_MAX_PIXELS = limit
    step = Step('main', 'float32', 1, 32, 4, jax.devices()[:1])
    median = median_seconds(step, repeats=repeats)
    baseline = baseline or median
    print(
      f'train step, matmul form for maps ≤ {limit:2d} px (≥ {layers.MATMUL_MIN_CHANNELS} channels): '
      f'{1e3 * median:8.0f} ms  ({baseline / median:.2f}×), compiled in {step.compile_seconds:.0f} s'
    )


def main() -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--step', action='store_true', help='also time the whole train step')
  args = parser.parse_args()
  print(f'machine: {machine()}; float32, median of {args.repeats}')
  time_layers(args.repeats)
  if args.step:
    time_step(args.repeats)


if __name__ == '__main__':
  main()
