"""Input-pipeline throughput: clips/s per CPU core of the static and VOS pipelines, all augmentation on.

  python bench/data_pipeline.py [--size 384] [--seconds 20] [--workers N] [--root DIR]
  python bench/data_pipeline.py --baseline REV [--rounds 3] [--seconds 10]   # before / after, one run

With --baseline, the pipeline of git revision REV (checked out in a temporary worktree) and this tree's
are measured in alternating rounds, each in a fresh process on the same data, and the medians over the
rounds are printed with their ratio.

Generates the built-in dataset at DAVIS size (480×854 frames, 320² static images) unless --root is
given, then for each pipeline times batches of 8 clips after a warm-up (XLA compilation) and prints the
median clips/s over the timed batches, the same per worker (one worker per core by default), and the
single-thread time of each stage of one clip (decode, crop/resize, the XLA-compiled frame level), the
profile of where a clip's time goes.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if '--code' in sys.argv:  # a worker of --baseline: the pipeline of another tree
  sys.path.insert(0, sys.argv[sys.argv.index('--code') + 1])
else:
  sys.path.insert(0, REPO)

import tensorflow as tf  # noqa: E402

from configs import data  # noqa: E402
from data_pipelines import clips, decode, input_pipeline, synthetic  # noqa: E402
from gsfm_jax import cli  # noqa: E402


def throughput(config, seconds: float, batch: int = 8) -> list[float]:
  source = input_pipeline.open_source(config)
  dataset = input_pipeline.make_dataset(config, seed=0, global_batch=batch, total_steps=30000, source=source)
  batches = input_pipeline.Batches(dataset, source, 0, batch)
  for _ in range(3):  # warm-up: XLA compiles once per shape
    next(batches)
  rates, start = [], time.perf_counter()
  while time.perf_counter() - start < seconds:
    t = time.perf_counter()
    next(batches)
    rates.append(batch / (time.perf_counter() - t))
  return rates


def median_ms(fn, repeats: int = 15) -> float:
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return 1000 * statistics.median(times)


def stage_profile(root: str, size: int) -> dict[str, float]:
  """Single-thread median ms of each stage of one clip (TensorFlow limited to one thread)."""
  video = os.path.join(root, 'DAVIS', '2017', 'trainval')
  frame = tf.io.read_file(os.path.join(video, 'JPEGImages', '480p', 'train_000', '00000.jpg'))
  mask = tf.io.read_file(os.path.join(video, 'Annotations', '480p', 'train_000', '00000.png'))
  seed = tf.constant([1, 2], tf.int64)
  box = tf.constant([40, 100, 400, 600])
  crops = tf.stack([decode.rgb_crop(frame, box)] * 3)
  ids = tf.stack([decode.object_ids(mask, tf.constant('m'))] * 3)
  resized, resized_ids = clips._crop_resize(box, crops, ids, size)
  side = size * 5 // 6  # the built-in static images (320² for 384² crops), padded to 384²
  image = tf.round(tf.random.stateless_uniform((side, side, 3), (0, 1)) * 255) / 255
  valid = tf.constant([side, side])
  padded = (side + clips.PAD_TO - 1) // clips.PAD_TO * clips.PAD_TO
  both = tf.image.pad_to_bounding_box(tf.concat([image, image[..., :1]], -1), 0, 0, padded, padded)
  region = tf.image.pad_to_bounding_box(tf.ones([side, side, 1]), 0, 0, padded, padded)
  stages = {
    'VOS: decode 3 JPEG crops (400×600 of 480×854)': lambda: [decode.rgb_crop(frame, box) for _ in range(3)],
    'VOS: decode 3 palette masks': lambda: [decode.object_ids(mask, tf.constant('m')) for _ in range(3)],
    'VOS: crop-resize 3 frames + ids to S²': lambda: clips._crop_resize(box, crops, ids, size),
    'VOS: sequence colour jitter + grayscale (3 frames)': lambda: clips._colour(0.1, 0.03, 0.03, 0.0, 0.05)(
      seed, resized, tf.ones([size, size, 1])
    ),
    'VOS: frame level, one frame (bicubic affine, nearest ids, jitter)': lambda: clips._video_frame(size)(
      seed, resized[0], resized_ids[0], tf.eye(3)
    ),
    f'static: sequence level at {side}² (nearest scale, jitter with hue, grayscale)': lambda: clips._static_sequence()(
      seed, both, valid, region
    ),
    'static: frame level, one frame (affine, resized crop, jitter, TPS p=.33)': lambda: clips._static_frame(size, 0.33)(
      seed, both, valid
    ),
    'static: frame level, one frame with TPS': lambda: clips._static_frame(size, 1.0)(seed, both, valid),
  }
  return {name: median_ms(tf.function(fn)) for name, fn in stages.items()}  # graph mode, as in tf.data


def config_for(kind: str, root: str, size: int, workers: int):
  config = data.get_config(kind)
  config.update(
    static_root=os.path.join(root, 'static'),
    davis_root=os.path.join(root, 'DAVIS'),
    youtube_root='',
    size=size,
    workers=workers,
  )
  return config


def compare_revisions(args, root: str, workers: int) -> None:
  """Alternating rounds of REV's pipeline and this tree's, each kind in a fresh process: medians, ratio."""
  tree = tempfile.mkdtemp(prefix='gsfm_baseline_')
  subprocess.run(
    ['git', '-C', REPO, 'worktree', 'add', '--detach', '--force', tree, args.baseline], check=True, capture_output=True
  )
  rates = {(code, kind): [] for code in ('baseline', 'this tree') for kind in ('static', 'vos')}
  try:
    for r in range(args.rounds):
      for code, path in (('baseline', tree), ('this tree', REPO)):
        for kind in ('static', 'vos'):
          out = subprocess.run(
            [
              sys.executable,
              os.path.abspath(__file__),
              '--code',
              path,
              '--worker',
              kind,
              '--root',
              root,
              '--size',
              str(args.size),
              '--seconds',
              str(args.seconds),
              '--workers',
              str(workers),
            ],
            check=True,
            capture_output=True,
            text=True,
          ).stdout
          rates[code, kind].append(json.loads(out.strip().splitlines()[-1])['median'])
          print(f'round {r + 1}: {code:9s} {kind:6s} {rates[code, kind][-1]:6.1f} clips/s', flush=True)
  finally:
    subprocess.run(['git', '-C', REPO, 'worktree', 'remove', '--force', tree], capture_output=True)
    shutil.rmtree(tree, ignore_errors=True)
  print(f'medians over {args.rounds} rounds, {os.cpu_count()} core(s), {workers} worker(s), crop {args.size}²:')
  for kind in ('static', 'vos'):
    before, after = statistics.median(rates['baseline', kind]), statistics.median(rates['this tree', kind])
    print(f'  {kind:6s} {args.baseline}: {before:6.1f}  this tree: {after:6.1f} clips/s  ({after / before:.3f}×)')


def main() -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--size', type=int, default=384)
  parser.add_argument('--seconds', type=float, default=20.0)
  parser.add_argument('--workers', type=int, default=0, help='parallel clips (default: one per core)')
  parser.add_argument('--root', help='dataset root (default: generate the built-in dataset at DAVIS size)')
  parser.add_argument('--profile', action='store_true', help='only the single-thread stage profile (needs --root)')
  parser.add_argument('--baseline', help='git revision measured against this tree in the same run')
  parser.add_argument('--rounds', type=int, default=3, help='alternating rounds with --baseline')
  parser.add_argument('--worker', choices=('static', 'vos'), help=argparse.SUPPRESS)
  parser.add_argument('--code', help=argparse.SUPPRESS)
  args = parser.parse_args()
  workers = args.workers or os.cpu_count()
  if args.worker:
    rates = throughput(config_for(args.worker, args.root, args.size, workers), args.seconds)
    print(json.dumps({'median': statistics.median(rates), 'batches': len(rates)}))
    return
  if args.profile:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    print('single-thread stage profile (median ms):')
    for name, ms in stage_profile(args.root, args.size).items():
      print(f'  {ms:7.1f}  {name}')
    return
  root = args.root or tempfile.mkdtemp(prefix='gsfm_bench_')
  if not args.root:
    synthetic.generate(root, seed=0, train=12, val=0, frames=25, height=480, width=854)
  if args.baseline:
    compare_revisions(args, root, workers)
    return
  print(f'{os.cpu_count()} CPU core(s), {workers} worker(s), crop {args.size}², TensorFlow {tf.__version__}')
  for kind in ('static', 'vos'):
    rates = throughput(config_for(kind, root, args.size, workers), args.seconds)
    median = statistics.median(rates)
    print(
      f'{kind:6s} median {median:6.1f} clips/s over {len(rates)} batches of 8 = {median / workers:5.1f} '
      f'clips/s per worker'
    )
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  print('single-thread stage profile (median ms):')
  for name, ms in stage_profile(root, args.size).items():
    print(f'  {ms:7.1f}  {name}')


if __name__ == '__main__':
  main()
