"""One-shot accelerator check: on a GPU or TPU host, the tests of the device paths and the main benchmarks in
under 8 minutes (each part has a time limit), into one report; --tiny runs every part's code path at toy
sizes on the CPU, in this process (CI runs it, so that it cannot rot).

  python bench/accelerator_check.py [--out out/accelerator_check]        # on the GPU/TPU host
  python bench/accelerator_check.py --tiny --out /tmp/check              # seconds-sized, any machine

Parts (a failing part is reported and the others still run):
  tests      the device-path tests: forward and gradient parity, train step, engine, exported program
  train      bench/train_step.py: main and pretrain in bfloat16 (step time, clips/s, MFU)
  inference  bench/inference.py: 1, 2 and 5 objects in float32 and bfloat16 (frames/s, MFU, split)
  videos     bench/multi_video.py: many videos over the host's devices (videos/s, frames/s, scaling)
TensorFlow is made unimportable for every part: the inference and train-step paths must not need it (the
lent GPU machines have none). On an accelerator each part is a process of its own with a time limit (a
stub `tensorflow` package on its PYTHONPATH); --tiny calls the parts here, with `import tensorflow` failing
while they run. Writes OUT/report.md (machine, each part's output and status, seconds) and OUT/<part>.log;
exits 1 if any part failed.
"""

import contextlib
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Iterator, Optional

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path[:0] = [ROOT, BENCH]

from gsfm_jax import cli  # noqa: E402

# (part, what it runs, its arguments at full size, at toy size, its time limit in seconds at full size)
PARTS = (
  (
    'tests',
    'pytest',
    [
      'tests/test_parity.py',
      'tests/test_grad_parity.py',
      'tests/test_train_step.py',
      'tests/test_inference.py',
      'tests/test_program.py',
    ],
    ['tests/test_inference.py', '-k', 'schedule or resize_matrices'],
    150,
  ),
  (
    'train',
    'train_step',
    ['--configs', 'main', 'pretrain', '--dtypes', 'bfloat16', '--repeats', '5'],
    [
      '--configs',
      'main',
      '--dtypes',
      'bfloat16',
      '--size',
      '32',
      '--batch_per_device',
      '1',
      '--width_divisor',
      '4',
      '--repeats',
      '1',
      '--devices',
      '1',
    ],
    120,
  ),
  (
    'inference',
    'inference',
    ['--frames', '30', '--objects', '1', '2', '5', '--dtypes', 'float32', 'bfloat16', '--repeats', '3'],
    [
      '--height',
      '32',
      '--width',
      '48',
      '--frames',
      '4',
      '--chunk',
      '4',
      '--objects',
      '2',
      '--dtypes',
      'bfloat16',
      '--repeats',
      '1',
      '--width_divisor',
      '4',
    ],
    120,
  ),
  (
    'videos',
    'multi_video',
    ['--videos', '16', '--frames', '30', '60', '--devices', '1', '2', '4', '8', '--repeats', '3'],
    ['--tiny', '--devices', '1', '2'],
    60,
  ),
)
STUB = 'raise ImportError("TensorFlow is blocked by bench/accelerator_check.py: this path must not import it")\n'


def command(what: str, args: list[str]) -> list[str]:
  """The part as a command line."""
  if what == 'pytest':
    return [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *args]
  return [sys.executable, os.path.join(BENCH, f'{what}.py'), *args]


def run_child(what: str, args: list[str], limit: int, log: str, stub: str) -> int:
  """The part in a process of its own, TensorFlow stubbed, at most `limit` seconds; -> exit status (124: over)."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [stub, ROOT, os.environ.get('PYTHONPATH')])))
  with open(log, 'w') as out:
    try:
      return subprocess.run(
        command(what, args), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=limit
      ).returncode
    except subprocess.TimeoutExpired:
      return 124


@contextlib.contextmanager
def tensorflow_blocked() -> Iterator[None]:
  """`import tensorflow` raises ImportError inside the block."""
  saved = sys.modules.get('tensorflow')
  sys.modules['tensorflow'] = None
  try:
    yield
  finally:
    if saved is None:
      sys.modules.pop('tensorflow', None)
    else:
      sys.modules['tensorflow'] = saved


def run_here(what: str, args: list[str], log: str) -> int:
  """The part in this process (its main function), TensorFlow blocked, its output into `log`; -> 0 or 1."""
  with open(log, 'w') as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), tensorflow_blocked():
    try:
      if what == 'pytest':
        import pytest

        return int(pytest.main(['-q', '-p', 'no:cacheprovider', '--rootdir', ROOT, *args]) != 0)
      import importlib

      importlib.import_module(what).main(args)
      return 0
    except (Exception, SystemExit) as error:  # noqa: BLE001 - a failing part is reported, the others run
      print(f'{type(error).__name__}: {error}')
      return 1


def header(tiny: bool) -> list[str]:
  """The report's first lines: mode, date, commit, Python, machine, and whether TensorFlow is blocked."""
  from common import machine

  commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True)
  with tensorflow_blocked():
    try:
      import tensorflow  # noqa: F401

      blocked = 'tensorflow: importable (the block did not take effect)'
    except ImportError:
      blocked = 'tensorflow: blocked for every part'
  return [
    f'# Accelerator check ({"tiny CPU mode" if tiny else "full"})',
    '',
    f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, commit {commit.stdout.strip() or "?"}, '
    f'Python {platform.python_version()}',
    f'machine: {machine()}',
    '',
    blocked,
  ]


def section(name: str, seconds: float, status: int, limit: Optional[int], shown: str, log: str) -> list[str]:
  """One part's report: status line, its command and the last 60 lines of its output."""
  verdict = 'ok' if status == 0 else (f'FAILED: over {limit} s' if status == 124 else f'FAILED, exit {status}')
  lines = [l for l in open(log).read().splitlines() if not l.startswith(('I0', 'W0', 'WARNING: All log'))]
  return ['', f'## {name} ({seconds:.0f} s, {verdict})', '', f'`{shown}`', '', *lines[-60:]]


def check(tiny: bool, out: str) -> int:
  """Runs every part into OUT; -> 0 when every part passed, else 1."""
  os.makedirs(out, exist_ok=True)
  report, failed, began = header(tiny), [], time.perf_counter()
  with tempfile.TemporaryDirectory() as stub:
    os.makedirs(os.path.join(stub, 'tensorflow'))
    with open(os.path.join(stub, 'tensorflow', '__init__.py'), 'w') as f:
      f.write(STUB)
    for name, what, full, toy, limit in PARTS:
      log, start = os.path.join(out, f'{name}.log'), time.perf_counter()
      print(f'== {name}', file=sys.stderr, flush=True)
      status = run_here(what, toy, log) if tiny else run_child(what, full, limit, log, stub)
      shown = ' '.join(command(what, toy if tiny else full)[1:])
      report += section(name, time.perf_counter() - start, status, None if tiny else limit, shown, log)
      if status:
        failed.append(name)
  verdict = 'every part ok' if not failed else f'failed: {" ".join(failed)}'
  report += ['', f'## total: {time.perf_counter() - began:.0f} s; {verdict}']
  with open(os.path.join(out, 'report.md'), 'w') as f:
    f.write('\n'.join(report) + '\n')
  print(f'report: {os.path.join(out, "report.md")}')
  return 1 if failed else 0


def main(argv: Optional[list[str]] = None) -> int:
  parser = cli.Parser(__doc__)
  parser.add_argument('--tiny', action='store_true', help='every part at toy sizes on the CPU, in this process')
  parser.add_argument('--out', default='out/accelerator_check', help='report folder (default: %(default)s)')
  args = parser.parse_args(argv)
  if args.tiny and 'jax' not in sys.modules:  # a CPU with two devices, unless JAX is already set up
    os.environ.setdefault('JAX_PLATFORMS', 'cpu')
    os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  return check(args.tiny, args.out)


if __name__ == '__main__':
  sys.exit(main())
