"""Train-step speed: step time, clips/s, model FLOPs (XLA cost analysis), MFU, memory and where the time goes.

  python bench/train_step.py                       # main and pretrain configs (8 clips per device, 384²,
                                                   # 3 frames), float32 and bfloat16, on every device
  python bench/train_step.py --configs main --dtypes float32 --size 96 --batch_per_device 2 --width_divisor 4
  python bench/train_step.py --devices 1 2 4 8 --profile /tmp/trace    # scaling and the all-reduce share
  python bench/train_step.py --max_batch           # the largest per-device batch whose step fits the device

Each row: the jitted, sharded train step of `gsfm_jax.train_step` (what `gsfm_jax.train` runs) on a
synthetic batch (random frames, two rectangle objects), the median of --repeats steps after a warm-up
step. FLOPs are XLA's cost analysis of the lowered (unpartitioned) step, so they are the model's FLOPs for
the global batch (forward, backward and Adam; no rematerialisation); MFU = FLOPs / step time / (devices ×
peak FLOP/s of one device), the peak from the data sheet (`common.PEAK_FLOPS`), or on a CPU the measured
rate of a large matmul. Memory is XLA's buffer assignment of the compiled step for one device (arguments
+ outputs + temporaries − donated aliases). --profile adds a JAX profiler trace of --profile_steps steps,
the time per network part (largest first) and the collectives' share of the op time.
"""

import argparse
import functools
import os
import sys
import time
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from common import (  # noqa: E402
  device_memory_bytes,
  flops_of,
  footprint,
  largest_within,
  machine,
  median_seconds,
  peak_flops,
  synthetic_clips,
)
from profile_ops import print_parts, profile  # noqa: E402

from configs import main as main_config  # noqa: E402
from configs import pretrain as pretrain_config
from gsfm_jax import (  # noqa: E402
  aot,
  cli,  # noqa: E402
  sharding,
)
from gsfm_jax.models import build_model, init_variables  # noqa: E402
from gsfm_jax.train_step import make_train_step, optimizer, place_state  # noqa: E402

CONFIGS = {'main': main_config.get_config, 'pretrain': pretrain_config.get_config}
FRAMES = aot.TRAIN_FRAMES


def _config(name: str, dtype: str, width_divisor: int, size: int, global_batch: int):
  config = CONFIGS[name]()
  config.model.dtype, config.model.width_divisor, config.global_batch = dtype, width_divisor, global_batch
  config.data.size = size
  return config


def _lowered(
  config_name: str, dtype: str, width_divisor: int, size: int, batch_per_device: int, devices: list
) -> tuple[Any, tuple]:
  """The lowered train step and its arguments (state, batch, p, num_kept), placed on the devices' mesh."""
  config = _config(config_name, dtype, width_divisor, size, batch_per_device * len(devices))
  mesh = sharding.make_mesh(devices)
  model = build_model(config.model)
  variables = jax.device_get(init_variables(model, jax.random.PRNGKey(0)))
  state = place_state(sharding.put_replicated(variables, mesh), optimizer(config), mesh)
  scalars = (np.float32(0.15), np.int32(size * size * 15 // 100))
  args = (
    state,
    sharding.global_batch(synthetic_clips(config.global_batch, FRAMES, size), mesh),
    *sharding.put_replicated(scalars, mesh),
  )
  return make_train_step(model, config, mesh).lower(*args), args


class Step:
  """One compiled train step on `devices` with its state and batch; calling it runs one step."""

  def __init__(self, config_name: str, dtype: str, width_divisor: int, size: int, batch_per_device: int, devices: list):
    lowered, (self.state, self.batch, *self.scalars) = _lowered(
      config_name, dtype, width_divisor, size, batch_per_device, devices
    )
    self.clips = batch_per_device * len(devices)
    self.flops = flops_of(lowered)
    start = time.perf_counter()
    self.compiled = lowered.compile()
    self.compile_seconds = time.perf_counter() - start
    self.memory_bytes = footprint(self.compiled)

  def __call__(self) -> Any:
    self.state, metrics = self.compiled(self.state, self.batch, *self.scalars)
    return metrics


def step_footprint(config_name: str, dtype: str, width_divisor: int, size: int, batch_per_device: int) -> float:
  """Bytes one device needs for the step at this per-device batch (compiled on one device, not run)."""
  config = _config(config_name, dtype, width_divisor, size, batch_per_device)
  return footprint(aot.train_lowered(config, jax.devices()[:1], batch_per_device).compile())


def time_rows(args: argparse.Namespace) -> None:
  print(
    '| config | dtype | devices | clips/device | step ms | clips/s | scaling | GFLOP/step | TFLOP/s | MFU | '
    'memory/device GiB | compile s |'
  )
  print('|---|---|---|---|---|---|---|---|---|---|---|---|')
  per_device = {}  # clips/s per device of the first device count: the scaling baseline
  for name in args.configs:
    for dtype in args.dtypes:
      peak, peak_source = peak_flops(dtype)
      for count in args.devices:
        step = Step(name, dtype, args.width_divisor, args.size, args.batch_per_device, jax.devices()[:count])
        seconds = median_seconds(step, repeats=args.repeats)
        per_device.setdefault((name, dtype), step.clips / seconds / count)
        rate = step.flops / seconds
        scaling = step.clips / seconds / count / per_device[name, dtype]
        print(
          f'| {name} | {dtype} | {count} | {args.batch_per_device} | {1e3 * seconds:.0f} | '
          f'{step.clips / seconds:.2f} | {100 * scaling:.0f} % | {step.flops / 1e9:.0f} | {rate / 1e12:.3f} | '
          f'{100 * rate / (peak * count):.1f} % | {step.memory_bytes / 2**30:.2f} | '
          f'{step.compile_seconds:.0f} |',
          flush=True,
        )
        if args.profile:
          report_profile(step, os.path.join(args.profile, f'{name}_{dtype}_{count}dev'), args.profile_steps, seconds)
      print(f'peak of one device ({dtype}): {peak / 1e12:.2f} TFLOP/s ({peak_source})')


def report_profile(step: Step, logdir: str, calls: int, step_seconds: float) -> None:
  times = profile(step, [step.compiled.as_text()], calls, logdir)
  total, collectives = times.total(), times.by_kind().get('collective', 0.0)
  devices = len(step.state.step.sharding.device_set)
  print(
    f'  profile ({logdir}): op time {total:.3f} s per step summed over devices/threads; collectives '
    f'{collectives:.3f} s = {100 * collectives / total:.1f} % of the op time '
    f'(≈ {1e3 * collectives / devices:.0f} ms per device, {100 * collectives / devices / step_seconds:.1f} % '
    'of the step)'
  )
  print_parts(times)


def max_batch_rows(args: argparse.Namespace) -> None:
  capacity, source = device_memory_bytes(args.memory_gib)
  print(f'device memory: {capacity / 2**30:.1f} GiB ({source}); 90 % of it is the budget')
  print('| config | dtype | largest clips/device | memory at it GiB | GiB per clip |')
  print('|---|---|---|---|---|')
  for name in args.configs:
    for dtype in args.dtypes:
      cost = functools.lru_cache()(
        lambda b, name=name, dtype=dtype: step_footprint(name, dtype, args.width_divisor, args.size, b)
      )
      best = largest_within(cost, 0.9 * capacity, limit=4096)
      print(f'| {name} | {dtype} | {best} | {cost(best) / 2**30:.2f} | {(cost(2) - cost(1)) / 2**30:.2f} |', flush=True)


def main(argv: Optional[list[str]] = None) -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--configs', nargs='+', default=['main', 'pretrain'], choices=sorted(CONFIGS))
  parser.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'], choices=['float32', 'bfloat16'])
  parser.add_argument('--size', type=int, default=384, help='crop side (the reference: 384)')
  parser.add_argument('--batch_per_device', type=int, default=8, help='the reference: 8 clips per GPU')
  parser.add_argument('--width_divisor', type=int, default=1, help='1: GSFM; 4: the demo network')
  parser.add_argument(
    '--devices',
    type=int,
    nargs='+',
    default=[len(jax.devices())],
    help='device counts to run on (the first N devices), fixed clips per device',
  )
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--profile', help='write traces here and print where the time goes')
  parser.add_argument('--profile_steps', type=int, default=3)
  parser.add_argument('--max_batch', action='store_true', help='search the largest batch per device instead')
  parser.add_argument('--memory_gib', type=float, help='device memory on a CPU (default: the host RAM)')
  args = parser.parse_args(argv)
  print(f'machine: {machine()}')
  print(f'{FRAMES} frames of {args.size}², width divisor {args.width_divisor}, median of {args.repeats} steps')
  if args.max_batch:
    max_batch_rows(args)
  else:
    time_rows(args)


if __name__ == '__main__':
  main()
