"""Every figure the README states about the demo, from one command (`make demo-figures`):

  python bench/demo_figures.py [--workdir runs/demo] [--out out/demo_figures]

1. trains the `demo` config in WORKDIR (resumes an interrupted run; a finished one is reused), timing it;
2. segments the built-in dataset's held-out `val` videos from frame 0's masks by the DAVIS protocol
   (`gsfm_jax.evaluate --benchmark davis17`: full 240×432 frames, top-k 50, memory every 3rd frame) and scores
   J&F with the DAVIS toolkit's rules; the same for the untrained network and for copying frame 0's mask to
   every frame, the baselines;
3. copies the training curves and a held-out video's last-frame overlay to docs/, and writes OUT/figures.json.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from gsfm_jax import cli

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAVIS = os.path.join('data', 'builtin', 'DAVIS', '2017', 'trainval')


def run(args: list[str]) -> float:
  """Runs a command of this repository; returns its wall seconds (exits if it fails)."""
  start = time.perf_counter()
  result = subprocess.run([sys.executable] + args, cwd=ROOT)
  if result.returncode:
    sys.exit(f'failed ({result.returncode}): {" ".join(args)}')
  return time.perf_counter() - start


def scores(results: str) -> dict[str, float]:
  from gsfm_jax.evaluation import davis

  annotations, sequences = davis.davis_sequences(os.path.join(ROOT, DAVIS), 'val', False, None)
  return davis.summarise(davis.evaluate_folders(results, annotations, sequences))


def copy_first_mask(out: str) -> None:
  """The baseline that does nothing: frame 0's ground truth repeated on every frame."""
  from data_pipelines.palette import write_palette_png
  from gsfm_jax.evaluation import davis

  annotations, sequences = davis.davis_sequences(os.path.join(ROOT, DAVIS), 'val', False, None)
  for seq in sequences:
    names = sorted(os.listdir(os.path.join(annotations, seq)))
    first = davis.read_labels(os.path.join(annotations, seq, names[0]))
    os.makedirs(os.path.join(out, seq), exist_ok=True)
    for name in names:
      write_palette_png(np.where(first == davis.VOID, 0, first), os.path.join(out, seq, name))


def evaluate(checkpoint: str, out: str) -> dict[str, float]:
  run(
    [
      '-m',
      'gsfm_jax.evaluate',
      '--checkpoint',
      checkpoint,
      '--benchmark',
      'davis17',
      '--root',
      DAVIS,
      '--split',
      'val',
      '--out',
      out,
    ]
  )
  return scores(out)


def untrained(out: str) -> str:
  """The network before training: the demo's step-0 weights (its scratch init), recording their network."""
  import jax

  from configs import demo
  from gsfm_jax.models import build_model
  from gsfm_jax.weights import record
  from gsfm_jax.weights.files import save_npz
  from gsfm_jax.weights.start import initial_variables

  config = demo.get_config()
  folder = os.path.join(out, 'untrained')
  os.makedirs(folder, exist_ok=True)
  variables = initial_variables(config.init, build_model(config.model), config.seed)
  save_npz(jax.device_get(variables), os.path.join(folder, 'weights.npz'), True, record.of(config.model))
  return os.path.join(folder, 'weights.npz')


def main() -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--workdir', default='runs/demo')
  parser.add_argument('--out', default='out/demo_figures')
  args = parser.parse_args()
  workdir, out = os.path.join(ROOT, args.workdir), os.path.join(ROOT, args.out)
  if os.path.exists(out):
    shutil.rmtree(out)  # this script's own folder: every figure comes from this run
  os.makedirs(out)
  train_seconds = run(['-m', 'gsfm_jax.train', '--config=demo', f'--workdir={args.workdir}'])
  from gsfm_jax.metrics import read_jsonl

  rows = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  last = [r for r in rows if r['step'] > rows[-1]['step'] - 500]
  figures = {
    'train_seconds_this_call': train_seconds,
    'steps': rows[-1]['step'],
    'steps_per_s_median': float(np.median([r['steps_per_s'] for r in rows if r['step'] > 100])),
    'train_iou_last_500_steps': [min(r['iou'] for r in last), max(r['iou'] for r in last)],
    'val_trained': evaluate(args.workdir, os.path.join(out, 'trained')),
    'val_untrained': evaluate(untrained(out), os.path.join(out, 'untrained_masks')),
  }
  copy_first_mask(os.path.join(out, 'copy_first'))
  figures['val_copy_first_mask'] = scores(os.path.join(out, 'copy_first'))
  shutil.copy(os.path.join(workdir, 'curves.png'), os.path.join(ROOT, 'docs', 'demo_curves.png'))
  from PIL import Image

  from gsfm_jax.evaluation import davis
  from gsfm_jax.visualize import overlay

  _, sequences = davis.davis_sequences(os.path.join(ROOT, DAVIS), 'val', False, None)
  frames = sorted(os.listdir(os.path.join(ROOT, DAVIS, 'JPEGImages', '480p', sequences[0])))
  image = np.asarray(Image.open(os.path.join(ROOT, DAVIS, 'JPEGImages', '480p', sequences[0], frames[-1])))
  labels = davis.read_labels(os.path.join(out, 'trained', sequences[0], frames[-1].replace('.jpg', '.png')))
  Image.fromarray(overlay(image, labels)).save(os.path.join(ROOT, 'docs', 'demo_val_overlay.jpg'), quality=90)
  with open(os.path.join(out, 'figures.json'), 'w') as f:
    json.dump(figures, f, indent=2)
  print(json.dumps(figures, indent=2))
  print(f'wrote docs/demo_curves.png, docs/demo_val_overlay.jpg ({sequences[0]}, last frame), {out}/figures.json')


if __name__ == '__main__':
  main()
