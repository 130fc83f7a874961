"""What every benchmark shares: median timing, the machine line, synthetic clips and device peak FLOP/s."""

import os
import platform
import statistics
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gsfm_jax import aot, tpu_topologies

# Dense peak FLOP/s per device from the vendors' data sheets: (device_kind substring, {dtype: FLOP/s}).
# float32 is the plain (non-tensor-core) rate; XLA's default precision may use TF32 on GPUs, which is faster.
PEAK_FLOPS = (
  ('H200', {'bfloat16': 989e12, 'float32': 67e12}),
  ('H100', {'bfloat16': 989e12, 'float32': 67e12}),  # SXM
  ('A100', {'bfloat16': 312e12, 'float32': 19.5e12}),
  ('V100', {'bfloat16': 125e12, 'float32': 15.7e12}),  # fp16 tensor cores (V100 has no bf16)
)  # TPUs: gsfm_jax.tpu_topologies.CHIPS


def median_seconds(fn: Callable, *args, repeats: int) -> float:
  """Median wall seconds of `fn(*args)` (blocked until ready) over `repeats` calls after one warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def machine() -> str:
  """One line naming the host, the accelerator and the software."""
  device = jax.devices()[0]
  return (
    f'{platform.node()} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), '
    f'{len(jax.devices())} × {device.platform} ({device.device_kind}), jax {jax.__version__}, '
    f'Python {platform.python_version()}'
  )


def synthetic_clips(batch: int, frames: int, size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A training batch of the pipeline's layout (`train_step.BATCH_KEYS`): random frames (B, T, S, S, 3), two
  objects (`gt`, `sec_gt` (B, T, S, S)) as random rectangles, `cls_gt` and `selector` (B, 2)."""
  rng = np.random.default_rng(seed)
  frames_ = rng.standard_normal((batch, frames, size, size, 3)).astype(np.float32)
  ids = np.zeros((batch, frames, size, size), np.int32)
  for k in (1, 2):
    top, left = rng.integers(0, size // 2, (2, batch))
    for b in range(batch):
      ids[b, :, top[b] : top[b] + size // 3, left[b] : left[b] + size // 3] = k
  return {
    'frames': frames_,
    'gt': (ids == 1).astype(np.float32),
    'sec_gt': (ids == 2).astype(np.float32),
    'cls_gt': ids,
    'selector': np.ones((batch, 2), np.float32),
  }


def flops_of(program: Any) -> float:
  """XLA's FLOP count of a `Lowered` or `Compiled` program."""
  return float(aot.cost_of(program)['flops'])


def footprint(compiled: Any) -> float:
  """Device bytes of a compiled program (XLA's buffer assignment): arguments + outputs + temporaries −
  donated aliases."""
  m = compiled.memory_analysis()
  return float(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def peak_flops(dtype: str, repeats: int = 5) -> tuple[float, str]:
  """Peak FLOP/s of one device for `dtype` and where the figure comes from.

  Accelerators: the data-sheet figure of `PEAK_FLOPS`. CPUs (no such figure): the best rate of a 2048³
  matmul measured here, so that the MFU of a CPU run says how far the step is from the matmul rate.
  """
  kind = jax.devices()[0].device_kind
  chip = tpu_topologies.chip_of_kind(kind)
  if chip:
    return chip.peak_bf16 / (1 if dtype == 'bfloat16' else 4), f'{chip.generation} data sheet'
  for name, rates in PEAK_FLOPS:
    if name in kind:
      return rates[dtype], f'{name} data sheet'
  if jax.default_backend() != 'cpu':
    raise ValueError(f'no peak FLOP/s known for {kind!r}: add it to bench/common.py PEAK_FLOPS')
  n = 2048
  a = jnp.ones((n, n), dtype)
  seconds = median_seconds(jax.jit(lambda x: x @ x), a, repeats=repeats)
  return 2 * n**3 / seconds, f'measured {n}³ {dtype} matmul on one CPU device'


def device_memory_bytes(default_gib: Optional[float] = None) -> tuple[float, str]:
  """Bytes one device can hold: the allocator's limit on accelerators, else `default_gib` or the host RAM."""
  stats = jax.devices()[0].memory_stats() or {}
  if 'bytes_limit' in stats:
    return float(stats['bytes_limit']), 'allocator bytes_limit'
  if default_gib:
    return default_gib * 2**30, f'--memory_gib {default_gib}'
  return float(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')), 'host RAM'


def largest_within(cost: Callable[[int], float], budget: float, limit: int) -> int:
  """The largest n in [1, limit] with cost(n) ≤ budget, for a cost that grows with n; 0 if none.

  The costs here (bytes of a compiled program against batch or memory slots) are close to affine, so the
  first guess comes from cost(1) and cost(2); it is then checked and corrected by galloping and bisection,
  which costs two more evaluations when the guess is right.
  """
  known: dict[int, float] = {}
  fits = lambda n: known.setdefault(n, cost(n)) <= budget
  if not fits(1):
    return 0
  slope = max(cost(2) - known[1], 1.0) if limit > 1 else 1.0
  guess = int(min(max(1 + (budget - known[1]) // slope, 1), limit))
  if fits(guess):
    low, step = guess, 1
    while low + step <= limit and fits(low + step):
      low, step = low + step, step * 2
    high = min(low + step, limit + 1)
  else:
    low, high = 1, guess
  while high - low > 1:  # fits(low), not fits(high) (or high beyond limit)
    middle = (low + high) // 2
    low, high = (middle, high) if fits(middle) else (low, middle)
  return low
