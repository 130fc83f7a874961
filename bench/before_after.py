"""A change measured before and after in one run: the CPU train step, inference, and the TPU-compiled step.

  python bench/before_after.py --before 5be8f53                       # step + inference, 2 rounds
  python bench/before_after.py --before 5be8f53 --only tpu --tpu v5p-8:2   # main and pretrain on a v5p chip
  python bench/before_after.py --before 5be8f53 --rounds 4 --step_batch 2  # the issue's side-by-side setting

'before' is the code of a git revision, checked out into a temporary worktree with this tree's `bench/`
copied over it, so that both sides run the same measuring code; 'after' is this working tree. Each round
runs every measurement before, then after, each in its own process (rounds alternate the two, so that drift
of the machine falls on both), and the table gives the median over the rounds:
- step: `bench/train_step.py`, `main` in float32 at 384², --step_batch clips, the median step time of the run;
- inference: `bench/inference.py`, 10 frames of 480×854 with 3 objects in float32, frames/s of the video;
- tpu: `bench/step_cost.py` for `main` and `pretrain` on --tpu SLICE:CLIPS_PER_CHIP (compiled once per side:
  the figures are XLA's, not timings): FLOPs and bytes accessed per clip and the roofline's MFU bound.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Callable

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)

from step_cost import roofline  # noqa: E402

from gsfm_jax import cli, tpu_topologies  # noqa: E402

STEP_ROW = re.compile(r'^\| main \| float32 \| \d+ \| \d+ \| (\d+) \|', re.M)
VIDEO_ROW = re.compile(r'^\| float32 \| 3 \| ([\d.]+) \| ([\d.]+) \|', re.M)


def worktree(revision: str, into: str) -> str:
  """The code of `revision` in `into`/code, with this tree's bench/ over its own."""
  path = os.path.join(into, 'code')
  subprocess.run(['git', 'worktree', 'add', '--detach', path, revision], cwd=REPO, check=True, capture_output=True)
  shutil.rmtree(os.path.join(path, 'bench'), ignore_errors=True)
  shutil.copytree(BENCH, os.path.join(path, 'bench'), ignore=shutil.ignore_patterns('__pycache__'))
  return path


def run(root: str, script: str, args: list[str]) -> str:
  """stdout of bench/`script` run from `root` (a checkout); its errors end the comparison."""
  result = subprocess.run(
    [sys.executable, os.path.join(root, 'bench', script), *args], cwd=root, capture_output=True, text=True
  )
  if result.returncode:
    raise SystemExit(f'{script} in {root} failed:\n{result.stderr[-3000:]}')
  return result.stdout


def measurements(args) -> dict[str, Callable[[str], dict[str, float]]]:
  """name -> a function of a checkout's root giving that measurement's figures."""

  def step(root: str) -> dict[str, float]:
    flags = f'--configs main --dtypes float32 --size 384 --batch_per_device {args.step_batch} --repeats {args.repeats}'
    return {'CPU step s': int(STEP_ROW.search(run(root, 'train_step.py', flags.split())).group(1)) / 1e3}

  def inference(root: str) -> dict[str, float]:
    flags = '--frames 10 --objects 3 --dtypes float32 --height 480 --width 854 --repeats 1'
    return {'inference frames/s': float(VIDEO_ROW.search(run(root, 'inference.py', flags.split())).group(1))}

  def tpu(root: str) -> dict[str, float]:
    topology, per_chip = args.tpu.split(':')
    figures = {}
    for config in ('main', 'pretrain'):
      out = run(root, 'step_cost.py', ['--config', config, '--topology', topology, '--per_chip', per_chip])
      cost = json.loads(out.strip().splitlines()[-1])
      clips = cost['per_chip']
      figures[f'{config}: GFLOP per clip'] = cost['flops'] / clips / 1e9
      figures[f'{config}: GB accessed per clip'] = cost['bytes'] / clips / 1e9
      bound = roofline(cost['flops'], cost['bytes'], tpu_topologies.lookup(topology).chip)  # this tree's figures
      figures[f'{config}: roofline MFU bound %'] = 100 * bound['mfu_bound']
    return figures

  return {'step': step, 'inference': inference, 'tpu': tpu}


def main(argv=None) -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--before', required=True, help='the git revision to compare with (a commit, tag or branch)')
  parser.add_argument('--only', nargs='+', default=['step', 'inference'], choices=['step', 'inference', 'tpu'])
  parser.add_argument('--rounds', type=int, default=2, help='alternating before/after runs of each measurement')
  parser.add_argument('--step_batch', type=int, default=1, help='clips per train step')
  parser.add_argument('--repeats', type=int, default=2, help='timed steps per run (after a warm-up step)')
  parser.add_argument('--tpu', default='v5p-8:2', help='SLICE:CLIPS_PER_CHIP for the tpu measurement')
  args = parser.parse_args(argv)
  chosen = {k: v for k, v in measurements(args).items() if k in args.only}
  with tempfile.TemporaryDirectory() as tmp:
    roots = {'before': worktree(args.before, tmp), 'after': REPO}
    try:
      figures = {side: {} for side in roots}
      for round_ in range(args.rounds if set(args.only) - {'tpu'} else 1):
        for name, measure in chosen.items():
          if name == 'tpu' and round_:
            continue  # compiled figures do not vary
          for side, root in roots.items():
            for key, value in measure(root).items():
              figures[side].setdefault(key, []).append(value)
              print(f'round {round_ + 1}, {side}: {key} {value:.3f}', flush=True)
    finally:
      subprocess.run(['git', 'worktree', 'remove', '--force', roots['before']], cwd=REPO, capture_output=True)
  print(f'\n| figure (median of the runs) | before ({args.before}) | after | after / before |')
  print('|---|---|---|---|')
  for key, values in figures['before'].items():
    before, after = statistics.median(values), statistics.median(figures['after'][key])
    print(f'| {key} | {before:.3f} | {after:.3f} | {after / before:.3f} |')


if __name__ == '__main__':
  main()
