"""Input-pipeline throughput: clips/s per CPU core of the static and VOS pipelines, all augmentation on.

  python bench/data_pipeline.py [--size 384] [--seconds 20] [--workers N] [--root DIR]

Generates the built-in dataset at DAVIS size (480×854 frames, 320² static images) unless --root is
given, then for each pipeline times batches of 8 clips after a warm-up (XLA compilation) and prints the
median clips/s over the timed batches, the same per worker (one worker per core by default), and the
single-thread time of each stage of one clip (decode, crop/resize, the XLA-compiled frame level), the
profile of where a clip's time goes.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from configs import data  # noqa: E402
from data_pipelines import augment, clips, decode, input_pipeline, synthetic  # noqa: E402


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
  image = tf.random.stateless_uniform((size, size * 4 // 3, 3), (0, 1))
  both = tf.concat([image, image[..., :1]], -1)
  valid = tf.constant([size, size * 4 // 3])
  through = tf.linalg.inv(augment.random_affine(seed, size, size * 4 // 3, scale=(0.8, 1.5)))
  stages = {
      'VOS: decode 3 JPEG crops (400×600 of 480×854)': lambda: [decode.rgb_crop(frame, box) for _ in range(3)],
      'VOS: decode 3 palette masks': lambda: [decode.object_ids(mask, tf.constant('m')) for _ in range(3)],
      'VOS: crop-resize 3 frames + ids to S²': lambda: clips._crop_resize(box, crops, ids, size),
      'VOS: sequence colour jitter + grayscale (3 frames)':
          lambda: clips._colour(0.1, 0.03, 0.03, 0.0, 0.05)(seed, resized, tf.ones([size, size, 1])),
      'VOS: frame level, one frame (bicubic affine, nearest ids, jitter)':
          lambda: clips._video_frame(size)(seed, resized[0], resized_ids[0], tf.eye(3)),
      'static: sequence colour jitter with hue (S×4S/3)':
          lambda: clips._colour(0.1, 0.05, 0.05, 0.05, 0.05)(seed, image, tf.ones([size, size * 4 // 3, 1])),
      'static: frame level, one frame (bicubic 2-pass warp, jitter, TPS p=.33)':
          lambda: clips._static_frame(size, 0.33)(seed, both, valid, through),
      'static: frame level, one frame with TPS': lambda: clips._static_frame(size, 1.0)(seed, both, valid, through),
  }
  return {name: median_ms(tf.function(fn)) for name, fn in stages.items()}  # graph mode, as in tf.data


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--size', type=int, default=384)
  parser.add_argument('--seconds', type=float, default=20.0)
  parser.add_argument('--workers', type=int, default=0, help='parallel clips (default: one per core)')
  parser.add_argument('--root', help='dataset root (default: generate the built-in dataset at DAVIS size)')
  parser.add_argument('--profile', action='store_true', help='only the single-thread stage profile (needs --root)')
  args = parser.parse_args()
  if args.profile:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    print('single-thread stage profile (median ms):')
    for name, ms in stage_profile(args.root, args.size).items():
      print(f'  {ms:7.1f}  {name}')
    return
  workers = args.workers or os.cpu_count()
  root = args.root or tempfile.mkdtemp(prefix='gsfm_bench_')
  if not args.root:
    synthetic.generate(root, seed=0, train=12, val=0, frames=25, height=480, width=854)
  print(f'{os.cpu_count()} CPU core(s), {workers} worker(s), crop {args.size}², TensorFlow {tf.__version__}')
  for kind in ('static', 'vos'):
    config = data.get_config(kind)
    config.update(static_root=os.path.join(root, 'static'), davis_root=os.path.join(root, 'DAVIS'), youtube_root='',
                  size=args.size, workers=workers)
    rates = throughput(config, args.seconds)
    median = statistics.median(rates)
    print(f'{kind:6s} median {median:6.1f} clips/s over {len(rates)} batches of 8 = {median / workers:5.1f} '
          f'clips/s per worker')
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  print('single-thread stage profile (median ms):')
  for name, ms in stage_profile(root, args.size).items():
    print(f'  {ms:7.1f}  {name}')


if __name__ == '__main__':
  main()
