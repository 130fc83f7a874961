"""Many videos over many devices and processes: videos/s and frames/s of `inference.parallel` (what
`evaluate` and `predict --videos` run) against the number of devices, and against two processes joined by
`jax.distributed`.

  python bench/multi_video.py                              # GPU/TPU host: 1, 2, 4, 8 devices (those it has)
  XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu python bench/multi_video.py \
      --height 96 --width 160 --width_divisor 4 --videos 8 --frames 8 16 --processes 2   # this VM's table
  python bench/multi_video.py --tiny                       # seconds: the accelerator check's CI mode

--videos synthetic videos (random texture, --objects moving boxes, memory every 3rd frame, top-k 50, random
weights) with lengths spread evenly over --frames MIN MAX, so that they share one memory-slot bucket and
each device compiles one program. For each device count D: every device first runs the longest video (its
compilation, excluded), then all videos run --repeats times, longest first on the next free device: the
median wall seconds give videos/s, frames/s, the speed-up over one device in the same run and the
efficiency (speed-up / D). --processes P: P local processes of (largest D) / P devices each, joined by
`jax.distributed`, each timing its length-balanced share between two barriers; the wall time is the
slowest process's.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from gsfm_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def videos(count: int, shortest: int, longest: int, height: int, width: int, objects: int) -> list[tuple]:
  """`count` (frames (T, H, W, 3) uint8, first labels (H, W)) with T spread over shortest … longest."""
  rng, made = np.random.default_rng(0), []
  for t in np.linspace(shortest, longest, count).round().astype(int):
    texture = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    frames, labels = np.repeat(texture[None], t, 0), np.zeros((height, width), np.uint8)
    for k in range(objects):
      top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
      labels[top : top + height // 4, left : left + width // 6] = k + 1
      for i in range(t):
        frames[i, top : top + height // 4, left + i : left + i + width // 6] = 60 * k + 40
    made.append((frames, labels))
  return made


def build(args):
  import jax
  import jax.numpy as jnp

  from gsfm_jax.inference import Protocol
  from gsfm_jax.models import GSFM, init_variables

  model = GSFM(dtype=jnp.dtype(args.dtype), width_divisor=args.width_divisor)
  return model, init_variables(model, jax.random.PRNGKey(0)), Protocol(top_k=50, mem_every=3)


def timed_runs(workers, clips, indices, repeats: int, barrier=lambda name: None) -> list[float]:
  """Wall seconds of `repeats` runs of the clips at `indices` over `workers`, after a compiling warm-up."""
  from gsfm_jax.inference import parallel

  lengths = [len(clips[i][0]) for i in indices]
  run = lambda: parallel.run_all(workers, indices, lengths, lambda e, i: e.segment(clips[i][0], {0: clips[i][1]}))
  if indices:
    parallel.run_all(
      workers, [indices[0]] * len(workers), [1] * len(workers), lambda e, i: e.segment(clips[i][0], {0: clips[i][1]})
    )  # every device compiles once
  times = []
  for r in range(repeats):
    barrier(f'start{r}')
    start = time.perf_counter()
    _, failures = run() if indices else ({}, {})
    assert not failures, failures
    times.append(time.perf_counter() - start)
    barrier(f'end{r}')
  return times


def worker(args) -> None:
  """One of --processes processes: its share, timed between barriers; prints its times as JSON."""
  import jax

  jax.distributed.initialize(args.coordinator, args.processes, args.process_id)
  from gsfm_jax import sharding
  from gsfm_jax.inference import parallel

  model, variables, protocol = build(args)
  clips = videos(args.videos, *args.frames, args.height, args.width, args.objects)
  mine = parallel.process_share([len(c[0]) for c in clips])
  workers = parallel.engines(model, variables, protocol)
  times = timed_runs(workers, clips, mine, args.repeats, sharding.sync)
  print(
    'RESULT '
    + json.dumps({'process': jax.process_index(), 'devices': len(workers), 'videos': len(mine), 'times': times}),
    flush=True,
  )
  jax.distributed.shutdown()


def processes(args, argv: list[str], devices: int) -> tuple[list[float], int]:
  """Starts --processes copies of this script (with the command line `argv`) as workers; -> (per repeat, the
  slowest process's seconds; devices per process)."""
  with socket.socket() as s:
    s.bind(('localhost', 0))
    coordinator = f'localhost:{s.getsockname()[1]}'
  per = max(1, devices // args.processes)
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={per}', PYTHONPATH=ROOT)
  command = [sys.executable, os.path.abspath(__file__), *argv, '--worker', '--coordinator', coordinator]
  procs = [
    subprocess.Popen(command + ['--process_id', str(p)], env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    for p in range(args.processes)
  ]
  results = []
  for proc in procs:
    out, _ = proc.communicate(timeout=3600)
    if proc.returncode:
      raise SystemExit(f'worker exited with {proc.returncode}:\n{out[-3000:]}')
    results.append(json.loads(next(l for l in out.splitlines() if l.startswith('RESULT '))[len('RESULT ') :]))
  return [max(r['times'][i] for r in results) for i in range(args.repeats)], per


def main(argv: Optional[list[str]] = None) -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--height', type=int, default=480)
  parser.add_argument('--width', type=int, default=864)
  parser.add_argument('--videos', type=int, default=16)
  parser.add_argument('--frames', type=int, nargs=2, default=[30, 60], metavar=('MIN', 'MAX'))
  parser.add_argument('--objects', type=int, default=2)
  parser.add_argument('--dtype', default='bfloat16')
  parser.add_argument('--width_divisor', type=int, default=1, help='1: GSFM; 4: the demo network')
  parser.add_argument('--devices', type=int, nargs='+', default=[1, 2, 4, 8])
  parser.add_argument('--processes', type=int, default=0, help='also P jax.distributed processes (0: not)')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--tiny', action='store_true', help='32×48 frames, 4 videos of 2–4 frames, the demo network')
  parser.add_argument('--out', help='also write the table as JSON here')
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--coordinator', help=argparse.SUPPRESS)
  parser.add_argument('--process_id', type=int, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.tiny:
    args.height, args.width, args.videos, args.frames, args.width_divisor, args.repeats = 32, 48, 4, [2, 4], 4, 1
    args.dtype = 'float32'
  if args.worker:
    return worker(args)
  import jax
  from common import machine

  from gsfm_jax.inference import parallel

  print(f'machine: {machine()}')
  print(
    f'{args.videos} videos of {args.frames[0]}–{args.frames[1]} frames, {args.height}×{args.width}, {args.objects} '
    f'objects, {args.dtype}, width divisor {args.width_divisor}; medians of {args.repeats}'
  )
  model, variables, protocol = build(args)
  clips = videos(args.videos, *args.frames, args.height, args.width, args.objects)
  frames = sum(len(c[0]) for c in clips)
  counts = sorted({1} | {d for d in args.devices if d <= len(jax.local_devices())})  # 1: the baseline
  rows = []
  print('| processes × devices | videos/s | frames/s | speed-up | efficiency |\n|---|---|---|---|---|')

  def row(label: str, devices: int, seconds: float) -> None:
    speedup = rows[0]['seconds'] / seconds if rows else 1.0
    rows.append(
      {
        'setting': label,
        'devices': devices,
        'seconds': seconds,
        'videos_per_s': len(clips) / seconds,
        'frames_per_s': frames / seconds,
        'speedup': speedup,
      }
    )
    print(
      f'| {label} | {len(clips) / seconds:.2f} | {frames / seconds:.1f} | {speedup:.2f}× | '
      f'{100 * speedup / devices:.0f} % |',
      flush=True,
    )

  for d in counts:
    workers = parallel.engines(model, variables, protocol, jax.local_devices()[:d])
    row(f'1 × {d}', d, statistics.median(timed_runs(workers, clips, list(range(len(clips))), args.repeats)))
  if args.processes:
    times, per = processes(args, sys.argv[1:] if argv is None else argv, max(counts))
    row(f'{args.processes} × {per}', args.processes * per, statistics.median(times))
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
      json.dump({'machine': machine(), 'args': vars(args), 'rows': rows}, f, indent=2)


if __name__ == '__main__':
  main()
