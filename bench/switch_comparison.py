"""Does SFM or FFR help a memory network? The demo schedule on the built-in dataset with and without each
switch (same seed, same steps), held-out J&F by the DAVIS protocol, and GSFM itself on a second seed for the
run-to-run spread, so that a difference can be told from noise:

  python bench/switch_comparison.py [--variants gsfm gsfm_seed1 ffr_ideal sfm_ars sfm_ars_msau]
      [--runs runs/compare] [--out out/switch_comparison]

Each variant trains `--config=demo` with its model overrides in RUNS/NAME (an interrupted run resumes, a
finished one is reused; `gsfm` reuses `runs/demo` when that run is finished), then `gsfm_jax.evaluate
--benchmark davis17` segments the held-out `val` videos and the DAVIS toolkit's rules score them. Writes
OUT/comparison.json and prints a markdown table with the spread of the two GSFM seeds.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.demo_figures import ROOT, evaluate, run  # noqa: E402
from gsfm_jax import cli  # noqa: E402

# name -> (seed, train flags beyond --config=demo)
VARIANTS = {
  'gsfm': (0, []),
  'gsfm_seed1': (1, []),
  'ffr_ideal': (
    0,
    [
      '--config.model.lfm_shape=ideal',
      '--config.model.hfm_shape=ideal',
      '--config.model.lfm_cutoff=0.4',
      '--config.model.hfm_cutoff=0.4',
    ],
  ),
  'sfm_ars': (0, ["--config.model.ars_stages=('layer2','layer3')"]),
  'sfm_ars_msau': (0, ["--config.model.ars_stages=('layer2','layer3')", '--config.model.msau_refine=True']),
}


def finished(workdir: str) -> bool:
  """A workdir whose metrics reached its config's last step."""
  from gsfm_jax.metrics import read_jsonl

  try:
    steps = json.load(open(os.path.join(workdir, 'config.json')))['steps']
    return read_jsonl(os.path.join(workdir, 'metrics.jsonl'))[-1]['step'] >= steps
  except (OSError, KeyError, IndexError, ValueError):
    return False


def train(name: str, runs: str) -> tuple[str, float]:
  """Trains (or reuses) one variant; -> (workdir relative to the repository, median steps/s)."""
  import numpy as np

  from gsfm_jax.metrics import read_jsonl

  workdir = os.path.join(runs, name)
  if name == 'gsfm' and finished(os.path.join(ROOT, 'runs', 'demo')):
    workdir = os.path.join('runs', 'demo')
  else:
    seed, flags = VARIANTS[name]
    run(['-m', 'gsfm_jax.train', '--config=demo', f'--workdir={workdir}', f'--config.seed={seed}', *flags])
  rows = read_jsonl(os.path.join(ROOT, workdir, 'metrics.jsonl'))
  return workdir, float(np.median([r['steps_per_s'] for r in rows if r['step'] > 100]))


def main() -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
  parser.add_argument('--runs', default=os.path.join('runs', 'compare'))
  parser.add_argument('--out', default=os.path.join('out', 'switch_comparison'))
  args = parser.parse_args()
  out = os.path.join(ROOT, args.out)
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, 'comparison.json')
  table = json.load(open(path)) if os.path.exists(path) else {}
  for name in args.variants:
    workdir, rate = train(name, args.runs)
    table[name] = {
      'workdir': workdir,
      'seed': VARIANTS[name][0],
      'flags': VARIANTS[name][1],
      'steps_per_s_median': rate,
      **evaluate(workdir, os.path.join(out, 'masks', name)),
    }
    with open(path, 'w') as f:  # after every variant: a later failure keeps the finished ones
      json.dump(table, f, indent=2)
  print('| variant | seed | J&F | J | F | steps/s |\n|---|---|---|---|---|---|')
  for name, row in table.items():
    print(
      f'| {name} | {row["seed"]} | {row["J&F-Mean"]:.3f} | {row["J-Mean"]:.3f} | {row["F-Mean"]:.3f} | '
      f'{row["steps_per_s_median"]:.2f} |'
    )
  if 'gsfm' in table and 'gsfm_seed1' in table:
    spread = abs(table['gsfm']['J&F-Mean'] - table['gsfm_seed1']['J&F-Mean'])
    print(f'GSFM seed-to-seed spread of J&F: {spread:.3f} (a switch within it is not told from noise)')


if __name__ == '__main__':
  main()
