"""What training will see: per-clip statistics of the input pipeline, and a picture of sample clips.

  python -m data_pipelines.stats ROOT --stage vos|static [--clips 200] [--seed 0] [--size 384]
                                 [--step 0] [--total_steps 30000] [--out DIR] [--json FILE]

ROOT is a dataset as training reads it: for `vos` a DAVIS root (`2017/trainval/…`), a YouTube-VOS root
(`train_480p/…`), a `{JPEGImages,Annotations}` root of your own videos, or a folder holding `DAVIS/` (the
built-in data); for `static` a folder of the static layout (`fss/`, `DUTS-TR/`, …) or one holding
`static/`. It draws `--clips` clips exactly as training does (seed, curriculum at `--step`), prints each
statistic's mean, standard deviation and quartiles, and writes `DIR/clips.png`: a grid of the first
clips, one row each, the target in red and the second object in green.

The statistics of one clip (`clip_statistics`), on the frames before normalisation ([0, 1] RGB):
  area_f{t}        share of frame t covered by the target (gt > 0.5)
  iou_01, iou_02   the target's IoU between frames 0 and 1, 0 and 2 (left out when both are empty)
  second, empty, grayscale   whether the clip has a second object, no target, mostly gray pixels (rates)
  brightness_f{t}  mean of R, G, B;  contrast_f{t}: standard deviation of the luma;
  saturation_f{t}  mean HSV saturation (max − min) / max;  these three over the picture's content: the
                   pixels at least 3 pixels away from flat 3×3 patches (fill, black borders of the
                   thin-plate warp) and so from their blends into the picture
  change_01, change_12       mean absolute change between consecutive frames
  centroid_x, centroid_y     the target's centre in frame 0, as a fraction of the side
  fill_f{t}        share of pixels in flat 3×3 patches near the fill colour (affine / crop fill)
`compare` tests two sets of clips statistic by statistic (two-sample Kolmogorov–Smirnov for values,
a two-proportion z-test for rates).
"""

import json
import math
import os
import sys
from typing import Optional

import numpy as np
from scipy import stats as scipy_stats

from gsfm_jax import cli, visualize
from gsfm_jax.models import normalisation

FRAMES = 3
RATES = ('second', 'empty', 'grayscale')
FILL = np.array([124, 116, 104]) / 255  # the reference's fill colour
FILL_TOLERANCE = 24 / 255  # the colour jitters move it by less than this
LUMA = np.array([0.299, 0.587, 0.114])


def statistic_names() -> list[str]:
  """The 24 statistics of a clip, in the order they are printed."""
  per_frame = ('area', 'brightness', 'contrast', 'saturation', 'fill')
  names = [f'{kind}_f{t}' for kind in per_frame for t in range(FRAMES)]
  return names + ['iou_01', 'iou_02', 'change_01', 'change_12', 'centroid_x', 'centroid_y', *RATES]


def _flat_pixels(frame: np.ndarray) -> np.ndarray:
  """The pixels whose 3×3 neighbourhood is one colour: `frame (H, W, 3)` in [0, 1] -> (H, W) bool."""
  levels = np.round(frame * 255).astype(np.int32)
  packed = (levels[..., 0] << 16) | (levels[..., 1] << 8) | levels[..., 2]  # one int per colour
  padded = np.pad(packed, 1, mode='edge')
  height, width = packed.shape
  flat = np.ones((height, width), bool)
  for dy in range(3):
    for dx in range(3):
      if dy != 1 or dx != 1:
        flat &= padded[dy : dy + height, dx : dx + width] == packed
  return flat


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
  """`mask (H, W)` bool grown by `radius` pixels (a square neighbourhood)."""
  padded = np.pad(mask, radius)
  height, width = mask.shape
  grown = np.zeros_like(mask)
  for dy in range(2 * radius + 1):
    for dx in range(2 * radius + 1):
      grown |= padded[dy : dy + height, dx : dx + width]
  return grown


def _iou(a: np.ndarray, b: np.ndarray) -> float:
  union = np.sum(a | b)
  return float(np.sum(a & b) / union) if union else math.nan


def clip_statistics(frames: np.ndarray, gt: np.ndarray, sec_gt: np.ndarray, selector: np.ndarray) -> dict:
  """The statistics of one clip: `frames (T, H, W, 3)` RGB in [0, 1] (before normalisation), `gt` and
  `sec_gt (T, H, W)` in [0, 1], `selector (2,)` -> {name: float} (NaN where a statistic does not apply)."""
  frames = np.asarray(frames, np.float32)
  target = np.asarray(gt) > 0.5
  out = {}
  for t in range(FRAMES):
    frame = frames[t]
    flat = _flat_pixels(frame)
    fill = flat & np.all(np.abs(frame - FILL) < FILL_TOLERANCE, -1)
    away = ~_grow(flat, 2)  # blends of the fill into the picture are neither
    content = frame[away] if away.any() else frame.reshape(-1, 3)
    high, low = content.max(-1), content.min(-1)
    out[f'area_f{t}'] = float(target[t].mean())
    out[f'brightness_f{t}'] = float(content.mean(dtype=np.float64))
    out[f'contrast_f{t}'] = float((content @ LUMA.astype(np.float32)).std(dtype=np.float64))
    out[f'saturation_f{t}'] = float(np.mean(np.where(high > 0, (high - low) / np.maximum(high, 1e-12), 0.0)))
    out[f'fill_f{t}'] = float(fill.mean())
  out['iou_01'], out['iou_02'] = _iou(target[0], target[1]), _iou(target[0], target[2])
  out['change_01'] = float(np.abs(frames[1] - frames[0]).mean())
  out['change_12'] = float(np.abs(frames[2] - frames[1]).mean())
  ys, xs = np.nonzero(target[0])
  out['centroid_x'] = float(xs.mean() + 0.5) / target.shape[2] if xs.size else math.nan
  out['centroid_y'] = float(ys.mean() + 0.5) / target.shape[1] if ys.size else math.nan
  out['second'] = float(selector[1] > 0)
  out['empty'] = float(not target.any())
  gray = (frames[..., 0] == frames[..., 1]) & (frames[..., 1] == frames[..., 2])
  out['grayscale'] = float(gray.mean() > 0.5)  # the frame-level fill is coloured even in a gray clip
  return out


def table(rows: list[dict]) -> dict[str, np.ndarray]:
  """Per-clip dicts -> {name: (N,) values}."""
  return {name: np.array([row[name] for row in rows], np.float64) for name in statistic_names()}


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, dict]:
  """Statistic by statistic: {name: {'a': mean, 'b': mean, 'p': p-value, 'test': …}}; NaNs left out.

  Values: the smaller p of the two-sample Kolmogorov–Smirnov test (any difference of distribution) and
  Welch's t-test (a shift of the mean, which KS detects late), 'ks|t'. Rates: the pooled two-proportion
  z-test, 'z', p = 1 where both sets have the same rate, whatever the rate.
  """
  result = {}
  for name in statistic_names():
    x, y = a[name][~np.isnan(a[name])], b[name][~np.isnan(b[name])]
    if name in RATES:
      pooled = (x.sum() + y.sum()) / (x.size + y.size)
      spread = math.sqrt(pooled * (1 - pooled) * (1 / x.size + 1 / y.size))
      p = 1.0 if spread == 0 else float(2 * scipy_stats.norm.sf(abs(x.mean() - y.mean()) / spread))
      result[name] = {'a': float(x.mean()), 'b': float(y.mean()), 'p': p, 'test': 'z'}
    else:
      p = min(float(scipy_stats.ks_2samp(x, y).pvalue), float(scipy_stats.ttest_ind(x, y, equal_var=False).pvalue))
      result[name] = {'a': float(x.mean()), 'b': float(y.mean()), 'p': p, 'test': 'ks|t'}
  return result


def summary_lines(values: dict[str, np.ndarray]) -> list[str]:
  """One line per statistic: mean ± std and quartiles (rates: the rate)."""
  lines = [f'{"statistic":14s} {"mean":>8s} {"std":>8s} {"q25":>8s} {"median":>8s} {"q75":>8s}   n']
  for name, v in values.items():
    v = v[~np.isnan(v)]
    if name in RATES:
      lines.append(f'{name:14s} {v.mean():8.4f} {"":8s} {"":8s} {"":8s} {"":8s}   {v.size}  (rate)')
    else:
      q25, q50, q75 = np.percentile(v, [25, 50, 75])
      lines.append(f'{name:14s} {v.mean():8.4f} {v.std():8.4f} {q25:8.4f} {q50:8.4f} {q75:8.4f}   {v.size}')
  return lines


def clip_grid(clips: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
  """(frames (T, S, S, 3) [0, 1], gt, sec_gt (T, S, S)) per clip -> one uint8 picture, a clip per row, the
  target and the second object in the DAVIS colours of objects 1 (red) and 2 (green), a 2-pixel gap."""
  rows = []
  for frames, gt, sec_gt in clips:
    ids = visualize.labels(np.stack([gt, sec_gt], -1))
    tiles = [
      np.pad(visualize.overlay(np.round(f * 255).astype(np.uint8), i), ((2, 2), (2, 2), (0, 0)), constant_values=255)
      for f, i in zip(frames, ids)
    ]
    rows.append(np.concatenate(tiles, 1))
  return np.concatenate(rows, 0)


# ---------------------------------------------------------------- the command line


def _error(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  raise SystemExit(2)


def data_config(root: str, stage: str, size: int):
  """The pipeline's settings for a dataset folder `root` of `stage` (see the module docstring)."""
  from configs import data

  config = data.get_config(stage)
  config.size = size
  if stage == 'static':
    config.static_root = os.path.join(root, 'static') if os.path.isdir(os.path.join(root, 'static')) else root
    return config
  config.davis_root, config.youtube_root, config.video_roots = '', '', ()
  if os.path.isdir(os.path.join(root, 'DAVIS')):
    config.davis_root = os.path.join(root, 'DAVIS')
  elif os.path.isdir(os.path.join(root, '2017')):
    config.davis_root = root
  elif os.path.isdir(os.path.join(root, 'train_480p')):
    config.youtube_root = root
  elif os.path.isdir(os.path.join(root, 'JPEGImages')):
    config.video_roots = (root,)
  else:
    _error(
      f'{root}: no DAVIS (2017/), YouTube-VOS (train_480p/), JPEGImages/ or DAVIS/ folder in it; '
      'give the root of a video dataset (or --stage static for images)'
    )
  return config


def pipeline_clips(config, count: int, seed: int, step: int, total_steps: int, batch: int = 8):
  """`count` clips of the training pipeline from `step` on: yields (frames [0, 1], gt, sec_gt, selector)."""
  from data_pipelines import input_pipeline

  source = input_pipeline.open_source(config)
  dataset = input_pipeline.make_dataset(
    config, seed=seed, global_batch=batch, total_steps=total_steps, start_step=step, source=source
  )
  produced = 0
  for batch_arrays in input_pipeline.Batches(dataset, source, step, batch):
    for i in range(batch):
      if produced == count:
        return
      yield (
        normalisation.denormalise(batch_arrays['frames'][i]) / 255.0,
        batch_arrays['gt'][i],
        batch_arrays['sec_gt'][i],
        batch_arrays['selector'][i],
      )
      produced += 1


@cli.reported
def main(argv: Optional[list[str]] = None) -> None:
  parser = cli.Parser(__doc__, prog='python -m data_pipelines.stats')
  parser.add_argument('root', help='dataset folder (see ROOT above)')
  parser.add_argument(
    '--stage', choices=('vos', 'static'), required=True, help='the loader: vos (video clips) or static (image triplets)'
  )
  parser.add_count('clips', 200, 'clips to draw')
  parser.add_argument('--seed', type=int, default=0, help='seed of the draws')
  parser.add_argument('--size', type=int, default=384, help='crop side (as training)')
  parser.add_argument('--step', type=int, default=0, help='training step to draw from (the max-skip curriculum)')
  parser.add_argument('--total_steps', type=int, default=30000, help="the training's length (sets the curriculum)")
  parser.add_argument('--rows', type=int, default=8, help='clips in the picture')
  parser.add_argument('--out', default='out/data_stats', help='folder for clips.png')
  parser.add_argument('--json', help="also write every clip's statistics to this file")
  args = parser.parse_args(argv)
  if not os.path.isdir(args.root):
    _error(f'{args.root}: no such folder; give the root of a dataset')
  try:
    parser.check(args)
  except cli.UsageError as error:
    _error(str(error))
  if args.rows < 0 or args.size < 16:
    _error('--rows must be at least 0 and --size at least 16')
  from data_pipelines import sources

  try:
    config = data_config(args.root, args.stage, args.size)
    rows, shown = [], []
    for i, (frames, gt, sec_gt, selector) in enumerate(
      pipeline_clips(config, args.clips, args.seed, args.step, args.total_steps)
    ):
      rows.append(clip_statistics(frames, gt, sec_gt, selector))
      if i < args.rows:
        shown.append((frames, gt, sec_gt))
      if (i + 1) % 50 == 0:
        print(f'{i + 1}/{args.clips} clips', file=sys.stderr)
  except sources.DataError as e:
    _error(f'{args.root}: {e}')
  print(f'{len(rows)} {args.stage} clips of {args.root}, crop {args.size}², seed {args.seed}, step {args.step}')
  print('\n'.join(summary_lines(table(rows))))
  from PIL import Image

  os.makedirs(args.out, exist_ok=True)
  if shown:
    picture = os.path.join(args.out, 'clips.png')
    Image.fromarray(clip_grid(shown)).save(picture)
    print(f'wrote {picture}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(rows, f)
    print(f'wrote {args.json}')


if __name__ == '__main__':
  main()
