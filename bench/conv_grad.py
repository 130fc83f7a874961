"""A convolution's gradients on this machine: XLA's kernel gradient against `layers.conv_stride_1`'s k² matmuls,
a 1×1 convolution (stride 1 or 2) as XLA's convolution against `layers.pointwise` on every stride-th pixel, and
the stem's max-pool as Flax's reduce-window against `ties.max_pool`.

  python bench/conv_grad.py [--repeats 7]

For the 3×3 convolutions of the training step (the decoder at 1/4 and 1/8 scale, two objects of one frame per
call; the key encoder's 3×3 layers at 1/4 scale, three frames), prints the median time of the forward pass,
the input gradient, XLA's kernel gradient and the matmul kernel gradient, each jitted alone, and of the whole
forward + backward both ways ("now": what `conv_stride_1` runs, the matmul form on a CPU for layers wider than
`layers.MATMUL_GRADIENT_MAX_NARROW` channels, XLA's gradient otherwise and on any other backend), and PyTorch's
forward + backward of the same layer when torch is installed.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import machine, median_seconds  # noqa: E402

from gsfm_jax import cli  # noqa: E402
from gsfm_jax.models.layers import conv_stride_1, kernel_gradient_as_matmuls, pointwise, xla_conv  # noqa: E402
from gsfm_jax.models.ties import max_pool, reduce_window_max_pool  # noqa: E402

# (where, batch, side, Cin, Cout) at a 384² crop
SHAPES = [
  ('decoder 1/4 (up_8_4, mask/boundary heads)', 2, 96, 256, 256),
  ('decoder 1/8 (up_16_8 skip_conv)', 2, 48, 512, 512),
  ('key encoder layer1 3×3', 3, 96, 64, 64),
  ('value encoder layer2 3×3', 2, 48, 128, 128),
]

# (batch, side, Cin, Cout, stride): the key encoder's bottleneck 1×1 layers at 1/4 scale (three frames), the
# decoder's fusions (two objects) and the downsampling shortcut of the key encoder's layer2 (stride 2)
POINTWISE = [(3, 96, 64, 256, 1), (3, 96, 256, 64, 1), (2, 96, 256, 256, 1), (3, 96, 256, 512, 2)]


def main(argv=None) -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--repeats', type=int, default=7)
  args = parser.parse_args(argv)
  print(f'machine: {machine()}')
  print(
    '| convolution | forward ms | input grad ms | kernel grad, XLA ms | kernel grad, matmuls ms | '
    'fwd+bwd XLA ms | fwd+bwd now ms | speed-up | fwd+bwd PyTorch ms |'
  )
  print('|---|---|---|---|---|---|---|---|---|')
  for where, n, side, cin, cout in SHAPES:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, side, side, cin)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) * 0.02, jnp.float32)
    g = jnp.asarray(rng.standard_normal((n, side, side, cout)), jnp.float32)
    time = lambda fn, *a: 1e3 * median_seconds(jax.jit(fn), *a, repeats=args.repeats)
    forward = time(lambda a, b: xla_conv(a, b, 1), x, w)
    dx = time(lambda a, b, c: jax.vjp(lambda u: xla_conv(u, b, 1), a)[1](c)[0], x, w, g)
    dk_xla = time(lambda a, b, c: jax.vjp(lambda u: xla_conv(a, u, 1), b)[1](c)[0], x, w, g)
    dk_matmul = time(kernel_gradient_as_matmuls(3), x, g)
    both = [
      time(lambda a, b, c, f=f: jax.vjp(f, a, b)[1](c), x, w, g)
      for f in (lambda a, b: xla_conv(a, b, 1), conv_stride_1)
    ]
    print(
      f'| {where} | {forward:.1f} | {dx:.1f} | {dk_xla:.1f} | {dk_matmul:.1f} | {both[0]:.1f} | {both[1]:.1f} | '
      f'{both[0] / both[1]:.2f}× | {torch_milliseconds(n, side, cin, cout, args.repeats)} |',
      flush=True,
    )

  print(
    '\n| 1×1 convolution | fwd+bwd, XLA convolution ms | fwd+bwd, `pointwise` on every stride-th pixel ms | speed-up |'
  )
  print('|---|---|---|---|')
  for n, side, cin, cout, stride in POINTWISE:
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((n, side, side, cin)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((cin, cout)) * 0.02, jnp.float32)
    out = -(-side // stride)
    g = jnp.asarray(rng.standard_normal((n, out, out, cout)), jnp.float32)
    times = [
      1e3 * median_seconds(jax.jit(lambda a, b, c, f=f: jax.vjp(f, a, b)[1](c)), x, w, g, repeats=args.repeats)
      for f in (lambda a, b: xla_conv(a, b[None, None], stride), lambda a, b: pointwise(a, b, stride))
    ]
    print(
      f'| ({n}, {side}, {side}, {cin}) -> {cout}, stride {stride} | {times[0]:.1f} | {times[1]:.1f} | '
      f'{times[0] / times[1]:.2f}× |'
    )

  pool_rows(args.repeats)


def torch_milliseconds(n: int, side: int, cin: int, cout: int, repeats: int) -> str:
  """PyTorch's forward + backward of the same 3×3 layer (its CPU build, as many threads as JAX uses), median
  ms; '—' without torch (the `test` extra installs it)."""
  try:
    import torch
  except ImportError:
    return '—'
  torch.set_num_threads(os.cpu_count())
  conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
  x = torch.randn(n, cin, side, side, requires_grad=True)
  g = torch.randn(n, cout, side, side)
  step = lambda: torch.autograd.grad(conv(x), (x, conv.weight, conv.bias), g)
  return f'{1e3 * median_seconds(step, repeats=repeats):.1f}'


def pool_rows(repeats: int) -> None:
  """The ResNet stem's 3×3/2 max-pool (three frames at 192², 64 channels): Flax's against `ties.max_pool`."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(np.maximum(rng.standard_normal((3, 192, 192, 64)), 0), jnp.float32)  # after a ReLU: ties at 0
  g = jnp.asarray(rng.standard_normal((3, 96, 96, 64)), jnp.float32)
  times = [
    1e3 * median_seconds(jax.jit(lambda a, c, f=f: jax.vjp(lambda u: f(u, 3, 2, 1), a)[1](c)[0]), x, g, repeats=repeats)
    for f in (reduce_window_max_pool, max_pool)
  ]
  print('\n| max-pool 3×3/2 | fwd+bwd, Flax (reduce-window) ms | fwd+bwd, `ties.max_pool` ms | speed-up |')
  print('|---|---|---|---|')
  print(f'| (3, 192, 192, 64) | {times[0]:.1f} | {times[1]:.1f} | {times[0] / times[1]:.2f}× |')


if __name__ == '__main__':
  main()
