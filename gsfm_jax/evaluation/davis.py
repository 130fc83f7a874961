"""J&F of a folder of predicted masks against DAVIS ground truth, written as the toolkit's two CSVs.

  python -m gsfm_jax.evaluation.davis --results out/davis17_val --davis_root data/DAVIS/2017/trainval
      [--set val] [--binary]      # --binary: DAVIS 2016, 0/255 masks of one object

Per sequence: the object ids are those of the first ground-truth frame (255 is void); the first and last
frames are excluded; each object's J and F series give mean, recall and decay (`measures`). Global
figures are means over all objects, J&F = (J-Mean + F-Mean) / 2.
"""

import csv
import os
import sys
from typing import NamedTuple, Optional

import numpy as np
from PIL import Image

from gsfm_jax import cli
from gsfm_jax.evaluation.measures import contour_accuracy, region_similarity, statistics

GLOBAL_COLUMNS = ('J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall', 'F-Decay')
VOID = 255


class ObjectScores(NamedTuple):
  name: str  # <sequence>_<object id>
  j: np.ndarray  # (T-2,) per frame
  f: np.ndarray  # (T-2,)


def read_labels(path: str) -> np.ndarray:
  """A palette or grayscale PNG -> (H, W) uint8 ids (the palette index, not the colour)."""
  try:
    with Image.open(path) as image:
      if image.mode not in ('P', 'L', '1'):
        raise ValueError(f'{path}: a {image.mode} image; masks are palette (P) or grayscale PNGs')
      return np.array(image, np.uint8)
  except (OSError, SyntaxError) as error:
    raise ValueError(f'{path}: cannot read the mask ({error})') from error


def sequence_scores(name: str, pred: np.ndarray, gt: np.ndarray, binary: bool = False) -> list[ObjectScores]:
  """pred, gt (T, H, W) ids -> per-object J and F over frames 1 … T-2."""
  if pred.shape != gt.shape:
    raise ValueError(f'{name}: predictions {pred.shape} and ground truth {gt.shape} differ in size or frames')
  if binary:
    pred, gt, void = pred > 0, gt > 0, np.zeros(gt.shape, bool)
    ids = [1]
    pred, gt = pred.astype(np.uint8), gt.astype(np.uint8)
  else:
    void = gt == VOID
    gt = np.where(void, 0, gt)
    ids = list(range(1, int(gt[0].max()) + 1))
    if pred.max() > len(ids):
      raise ValueError(
        f'{name}: the predictions hold object id {int(pred.max())} but the first ground-truth '
        f'frame has {len(ids)} objects'
      )
  inner = slice(1, -1)
  scores = []
  for i in ids:
    p, g, v = pred[inner] == i, gt[inner] == i, void[inner]
    j = region_similarity(p, g, v)
    f = np.array([contour_accuracy(p[t], g[t], v[t]) for t in range(len(p))])
    scores.append(ObjectScores(f'{name}_{i}', j, f))
  return scores


def summarise(scores: list[ObjectScores]) -> dict[str, float]:
  """The toolkit's global figures over all objects."""
  j = np.array([statistics(s.j) for s in scores])
  f = np.array([statistics(s.f) for s in scores])
  jm, fm = j.mean(0), f.mean(0)
  return dict(zip(GLOBAL_COLUMNS, [(jm[0] + fm[0]) / 2, *jm, *fm]))


def _toolkit_number(value: float) -> str:
  """pandas' `to_csv(float_format='%.3f')`: 3 decimals, NaN as an empty field."""
  return '' if np.isnan(value) else f'{value:.3f}'


def write_csvs(scores: list[ObjectScores], out_dir: str, subset: str) -> tuple[str, str]:
  """global_results-<subset>.csv and per-sequence_results-<subset>.csv, byte for byte as the toolkit's pandas
  writes them (3 decimals, LF line ends, NaN empty)."""
  os.makedirs(out_dir, exist_ok=True)
  paths = (
    os.path.join(out_dir, f'global_results-{subset}.csv'),
    os.path.join(out_dir, f'per-sequence_results-{subset}.csv'),
  )
  rows = (
    [GLOBAL_COLUMNS, [_toolkit_number(v) for v in summarise(scores).values()]],
    [('Sequence', 'J-Mean', 'F-Mean')]
    + [(s.name, _toolkit_number(np.nanmean(s.j)), _toolkit_number(np.nanmean(s.f))) for s in scores],
  )
  for path, table in zip(paths, rows):
    with open(path, 'w', newline='') as f:
      csv.writer(f, lineterminator='\n').writerows(table)
  return paths


def evaluate_folders(
  results: str, annotations: str, sequences: Optional[list[str]] = None, binary: bool = False
) -> list[ObjectScores]:
  """results/<seq>/<frame>.png against annotations/<seq>/<frame>.png for every ground-truth frame."""
  sequences = sequences or sorted(d for d in os.listdir(annotations) if os.path.isdir(os.path.join(annotations, d)))
  scores = []
  for seq in sequences:
    names = sorted(n for n in os.listdir(os.path.join(annotations, seq)) if n.endswith('.png'))
    missing = [n for n in names if not os.path.exists(os.path.join(results, seq, n))]
    if missing:
      raise ValueError(
        f'{os.path.join(results, seq)}: no prediction for {len(missing)} ground-truth frames, e.g. {missing[0]}'
      )
    gt = np.stack([read_labels(os.path.join(annotations, seq, n)) for n in names])
    pred = np.stack([read_labels(os.path.join(results, seq, n)) for n in names])
    scores += sequence_scores(seq, pred, gt, binary)
  return scores


def davis_sequences(
  davis_root: str, subset: str, binary: bool, image_set: Optional[str] = None
) -> tuple[str, list[str]]:
  """(annotation folder, sequence names) of a DAVIS root (2017 trainval / test-dev layout, or 2016);
  image_set: the list file (default ROOT/ImageSets/<2016|2017>/<subset>.txt)."""
  image_set = image_set or os.path.join(davis_root, 'ImageSets', '2016' if binary else '2017', f'{subset}.txt')
  annotations = os.path.join(davis_root, 'Annotations', '480p')
  if not os.path.isfile(image_set):
    raise ValueError(f'{image_set}: no such image set (is --davis_root the folder holding ImageSets/?)')
  with open(image_set) as f:
    return annotations, [line.strip() for line in f if line.strip()]


@cli.reported
def main(argv: Optional[list[str]] = None) -> int:
  parser = cli.Parser(__doc__)
  parser.add_argument('--results', required=True, help='folder of <sequence>/<frame>.png predictions')
  parser.add_argument('--davis_root', required=True, help='DAVIS folder with ImageSets/ and Annotations/480p/')
  parser.add_argument('--set', default='val', help='image set name (val, test-dev, …)')
  parser.add_argument('--binary', action='store_true', help='DAVIS 2016: one object, 0/255 masks')
  parser.add_argument('--out', default=None, help='where the CSVs go (default: --results)')
  args = parser.parse_args(argv)
  try:
    if not os.path.isdir(args.results):
      raise ValueError(f'--results {args.results}: no such folder (it holds <sequence>/<frame>.png predictions)')
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
      raise ValueError(f'--out {args.out}: is a file; give a folder')
    annotations, sequences = davis_sequences(args.davis_root, args.set, args.binary)
    scores = evaluate_folders(args.results, annotations, sequences, args.binary)
  except ValueError as error:  # every problem with the inputs, naming the file
    print(f'error: {error}', file=sys.stderr)
    return 2
  paths = write_csvs(scores, args.out or args.results, args.set)
  for name, value in summarise(scores).items():
    print(f'{name:9s} {value:.3f}')
  print('written:', *paths)
  return 0


if __name__ == '__main__':
  sys.exit(main())
