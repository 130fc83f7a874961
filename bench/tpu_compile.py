"""The TPU figures of docs/performance.md: `python -m gsfm_jax.aot` for each (config, slice, clips per chip)
of a list, each in its own process (a full-width compile holds 10–16 GiB of host RAM), results kept as JSON
so that an interrupted run resumes, and one Markdown table of them all.

  python bench/tpu_compile.py                      # the list below (hours on a 2-core host)
  python bench/tpu_compile.py --runs main:v5e-16:8 pretrain:v5p-8:search --out out/tpu_compile
  python bench/tpu_compile.py --table_only         # the table of what has been measured

A run is CONFIG:SLICE:N (N clips per chip), CONFIG:SLICE:search (the largest that fits, by compiling) or
CONFIG:SLICE:infer (the inference chunk step at 480×854, 3 objects, 16 memory frames). Needs libtpu
(`make setup-tpu`); no TPU.
"""

import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from gsfm_jax import aot, cli  # noqa: E402
from gsfm_jax.tpu_topologies import lookup  # noqa: E402

# the reference batch (8 clips per GPU for main, 16 for pretrain) on the four slice types, the inference step,
# then the largest batch that fits
RUNS = (
  'main:v5e-16:8',
  'main:v5p-8:8',
  'pretrain:v5e-16:16',
  'main:v4-8:8',
  'main:v6e-8:8',
  'main:v5e-4:infer',
  'pretrain:v5p-8:16',
  'main:v5e-16:search',
  'pretrain:v4-8:16',
  'pretrain:v6e-8:16',
  'main:v5p-8:search',
  'main:v4-8:search',
  'main:v6e-8:search',
)
SEARCH_START = 16  # clips per chip: twice main's reference, so that the first probes are cheap failures on v5e


def flags_of(run: str) -> list[str]:
  config, slice_name, what = run.split(':')
  flags = [f'--config={config}', f'--topology={slice_name}']
  if what == 'search':
    return flags + ['--search', f'--per_chip={SEARCH_START}']
  if what == 'infer':
    return flags + ['--what=infer']
  return flags + [f'--per_chip={int(what)}']


def measure(run: str, out: str) -> None:
  path = os.path.join(out, run.replace(':', '_') + '.json')
  if os.path.exists(path):
    return
  start = time.time()
  command = [sys.executable, '-m', 'gsfm_jax.aot', *flags_of(run), f'--json={path}']
  print('$ python -m gsfm_jax.aot ' + ' '.join(command[3:-1]), flush=True)
  result = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
  print(result.stdout, f'({time.time() - start:.0f} s, exit {result.returncode})', flush=True)


def table(out: str) -> str:
  """Every measured row (the JSON files in `out`) in one table, `aot.format_rows`' columns."""
  lines = []
  for name in sorted(os.listdir(out)):
    if name.endswith('.json'):
      with open(os.path.join(out, name)) as f:
        result = json.load(f)
      rows = [aot.Row(**{k: r[k] for k in aot.Row._fields}) for r in result['rows']]
      target = aot.Target(result['target'], [], result['hbm_bytes'], result['peak_bf16'], result['hosts'], 'tpu')
      body = aot.format_rows(rows, target, label=name.split('_')[0]).splitlines()
      lines += body if not lines else body[2:]
  return '\n'.join(lines)


def main() -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--runs', nargs='+', default=list(RUNS))
  parser.add_argument('--out', default='out/tpu_compile')
  parser.add_argument('--table_only', action='store_true')
  args = parser.parse_args()
  for run in args.runs:
    lookup(run.split(':')[1])  # a wrong name fails before hours of compiling
  os.makedirs(args.out, exist_ok=True)
  if not args.table_only:
    for run in args.runs:
      measure(run, args.out)
  print(table(args.out))


if __name__ == '__main__':
  main()
