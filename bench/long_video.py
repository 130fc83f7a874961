"""Long videos: `gsfm_jax.predict` (the real command line, each length in a fresh process) on the same synthetic
content at several lengths, with a bounded memory (`--capacity N`) or the reference's unbounded one
(`--capacity 0`): peak host RSS, peak device bytes (where the backend reports them), the peak bytes of live
jax.Arrays (sampled every 0.25 s; on a CPU this is the device side of the RSS), frames/s after compilation and
the programs compiled (the memory's growth: one per slot count).

  JAX_PLATFORMS=cpu python bench/long_video.py --frames 50 500 5000 [--width_divisor 8] [--size 480 854]
  JAX_PLATFORMS=cpu python bench/long_video.py --frames 200 2000 --capacity 0 --size 240 432

The video is an .mp4 of textured shapes moving over a background (written once per length, decoded by
predict chunk by chunk); the network is GSFM with random weights, at `--width_divisor` of its width on a CPU
(the full network runs a 480p frame in about 5 s here; memory behaviour does not depend on the width).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from gsfm_jax import cli

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_video(path: str, frames: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
  """An .mp4 of two discs and a square moving over a gradient; returns the first frame's ids (H, W)."""
  import cv2

  h, w = size
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:h, :w]
  background = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 96)], -1).astype(np.uint8)
  noise = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 24, (w, h))
  first = None
  for t in range(frames):
    ids = np.zeros((h, w), np.uint8)
    for k, (cy, cx, r) in enumerate(((0.3, 0.3, 0.12), (0.6, 0.7, 0.1)), start=1):
      py, px = h * (cy + 0.1 * np.sin(t / 17 + k)), w * (cx + 0.1 * np.cos(t / 23 + k))
      ids[(y - py) ** 2 + (x - px) ** 2 < (r * h) ** 2] = k
    frame = background + noise
    frame[ids == 1] = (200, 60, 60)
    frame[ids == 2] = (60, 200, 60)
    writer.write(frame[..., ::-1].copy())
    first = ids if first is None else first
  writer.release()
  return first


class LiveArrays(threading.Thread):
  """Samples the bytes of every live jax.Array (what the program holds on its device) every `period` s."""

  def __init__(self, period: float = 0.25):
    super().__init__(daemon=True)
    self.period, self.peak, self.done = period, 0, threading.Event()

  def run(self) -> None:
    import jax

    while not self.done.wait(self.period):
      self.peak = max(self.peak, sum(a.nbytes for a in jax.live_arrays()))


def child(args: argparse.Namespace) -> None:
  """One predict run in this process; prints a JSON line of its peak RSS, device bytes and speed."""
  import jax

  from gsfm_jax import predict

  argv = [
    '--checkpoint',
    args.checkpoint,
    '--video',
    args.video,
    '--mask',
    args.mask,
    '--out',
    args.out,
  ] + (['--capacity', str(args.capacity)] if args.capacity else [])
  if args.slots == ['linear']:
    from gsfm_jax.inference import engine

    engine.slots_for = linear_slots
  live = LiveArrays()
  live.start()
  start = time.perf_counter()
  assert predict.main(argv) == 0
  seconds = time.perf_counter() - start
  live.done.set()
  stats = jax.devices()[0].memory_stats() or {}
  summary = json.load(open(os.path.join(args.out, 'summary.json')))
  print(
    json.dumps(
      {
        'rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        'device_peak_mib': stats['peak_bytes_in_use'] / 2**20 if 'peak_bytes_in_use' in stats else None,
        'live_arrays_peak_mib': live.peak / 2**20,
        'frames_per_s': summary['frames_per_s'],
        'programs': summary['compiled_programs'],
        'seconds': seconds,
      }
    )
  )


def weights(folder: str, width_divisor: int) -> str:
  """Random GSFM weights at `width_divisor` as an .npz that records its network."""
  import jax

  from gsfm_jax.models import GSFM, init_variables
  from gsfm_jax.weights import record
  from gsfm_jax.weights.files import save_npz

  model = GSFM(width_divisor=width_divisor)
  path = os.path.join(folder, 'weights.npz')
  save_npz(jax.device_get(init_variables(model, jax.random.PRNGKey(0))), path, network=record.of(model))
  return path


def main() -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--frames', type=int, nargs='+', default=[50, 500, 5000])
  parser.add_argument('--size', type=int, nargs=2, default=[480, 854], metavar=('H', 'W'))
  parser.add_argument('--width_divisor', type=int, default=8)
  parser.add_argument('--capacity', type=int, default=8, help='memory frames kept (0: all, the reference)')
  parser.add_argument(
    '--slots',
    nargs='+',
    choices=('geometric', 'linear'),
    default=['geometric'],
    help="the memory's growth: geometric (gsfm_jax) and/or linear (the baseline: multiples of 8)",
  )
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  for name in ('checkpoint', 'video', 'mask', 'out'):
    parser.add_argument(f'--{name}', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child(args)
    return
  from bench.common import machine
  from data_pipelines.palette import write_palette_png

  print(machine())
  print(
    f'{args.size[0]}×{args.size[1]}, GSFM at 1/{args.width_divisor} width, random weights, '
    f'{f"--capacity {args.capacity}" if args.capacity else "unbounded memory (no --capacity)"}, memory every 3rd '
    'frame; each length in a fresh process'
  )
  print(
    f'{"frames":>7s} {"slots":>10s} {"peak RSS MiB":>13s} {"device peak MiB":>16s} {"live arrays MiB":>16s} '
    f'{"frames/s":>9s} {"programs":>9s} {"wall s":>8s}'
  )
  with tempfile.TemporaryDirectory() as work:
    checkpoint = weights(work, args.width_divisor)
    rows = []
    for run, frames in enumerate(args.frames):
      video = os.path.join(work, f'v{frames}.mp4')
      first = write_video(video, frames, tuple(args.size))
      mask = os.path.join(work, 'first.png')
      write_palette_png(first, mask)
      for growth in args.slots:
        out = os.path.join(work, f'out{run}_{frames}_{growth}')  # a length may be given twice
        row = measure(checkpoint, video, mask, out, args.capacity, growth)
        rows.append((frames, row))
        device = f'{row["device_peak_mib"]:.0f}' if row['device_peak_mib'] is not None else 'n/a'
        print(
          f'{frames:7d} {growth:>10s} {row["rss_mib"]:13.0f} {device:>16s} {row["live_arrays_peak_mib"]:16.1f} '
          f'{row["frames_per_s"] or 0:9.2f} {row["programs"]:9d} {row["seconds"]:8.1f}',
          flush=True,
        )
      os.remove(video)
    base = rows[0][1]['rss_mib']
    for frames, row in rows[1:]:
      print(f'peak RSS at {frames} frames: {100 * (row["rss_mib"] / base - 1):+.1f} % of {rows[0][0]} frames')


def measure(checkpoint: str, video: str, mask: str, out: str, capacity: int, growth: str) -> dict:
  """One predict run in a fresh process (`child`); its JSON line."""
  result = subprocess.run(
    [sys.executable, __file__, '--child', '--checkpoint', checkpoint, '--video', video, '--mask', mask]
    + ['--out', out, '--capacity', str(capacity), '--slots', growth],
    capture_output=True,
    text=True,
  )
  if result.returncode:
    sys.exit(f'predict failed on {video}:\n{result.stderr[-3000:]}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def linear_slots(stored: int, protocol) -> int:
  """The baseline: memory slots in multiples of 8 (gsfm_jax before issue 28), one program per 8 slots."""
  from gsfm_jax.inference.schedule import bucket

  slots = bucket(stored, protocol.slot_bucket)
  return slots if protocol.capacity is None else min(slots, protocol.capacity)


if __name__ == '__main__':
  main()
