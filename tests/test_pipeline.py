"""The tf.data clip pipelines on the built-in dataset: augmentation ops, clip contents, curriculum, object
selection, determinism across a restart, per-host sharding (in one process and with two processes),
the TFDS form, and broken samples."""

import logging
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from configs import data
from data_pipelines import augment, clips, decode, input_pipeline, sources, synthetic, tfds_builders
from data_pipelines.palette import write_palette_png

SIZE = 64  # crop side in these tests (384 in training)
DATASET = dict(
  train=3, val=1, frames=8, height=96, width=160, static_flat=6, static_classes=2, static_per_class=3, static_size=96
)
NORMALISED_RANGE = (
  (0 - np.array(augment.IMAGENET_MEAN)) / augment.IMAGENET_STD,
  (1 - np.array(augment.IMAGENET_MEAN)) / augment.IMAGENET_STD,
)


def data_config(kind: str, root: str, **overrides):
  config = data.get_config(kind)
  config.static_root = os.path.join(root, 'static')
  config.davis_root = os.path.join(root, 'DAVIS')
  config.youtube_root = ''
  config.size = SIZE
  config.workers = 2
  config.update(overrides)
  return config


def read_batches(
  config,
  steps: int,
  start_step: int = 0,
  process_index: int = 0,
  process_count: int = 1,
  seed: int = 0,
  global_batch: int = 4,
  total_steps: int = 100,
) -> list[dict]:
  source = input_pipeline.open_source(config)
  dataset = input_pipeline.make_dataset(
    config,
    seed=seed,
    global_batch=global_batch,
    total_steps=total_steps,
    start_step=start_step,
    process_index=process_index,
    process_count=process_count,
    source=source,
  )
  batches = input_pipeline.Batches(dataset, source, start_step, global_batch, process_index, process_count)
  return [next(batches) for _ in range(steps)]


@pytest.fixture(scope='module')
def root(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp('builtin'))
  synthetic.generate(path, seed=5, **DATASET)
  return path


# ---------------------------------------------------------------- decoding and augmentation ops


def _ids(path: str) -> np.ndarray:
  return decode.object_ids(tf.io.read_file(path), tf.constant(path)).numpy()


def test_palette_masks_decode_to_their_indices(tmp_path):
  labels = np.random.default_rng(0).integers(0, 9, (20, 30)).astype(np.uint8)
  write_palette_png(labels, str(tmp_path / 'davis.png'))
  assert np.array_equal(_ids(str(tmp_path / 'davis.png')), labels)
  for bits in (1, 2, 4):  # low bit depths, and a palette that repeats one colour, with transparency
    image = Image.fromarray(labels % 2**bits, mode='P')
    image.putpalette([7, 7, 7] * 256)
    image.save(tmp_path / f'{bits}.png', bits=bits, transparency=0)
    assert np.array_equal(_ids(str(tmp_path / f'{bits}.png')), labels % 2**bits)
  Image.fromarray(labels).save(tmp_path / 'gray.png')
  assert np.array_equal(_ids(str(tmp_path / 'gray.png')), labels)
  Image.fromarray(np.repeat(labels[..., None], 3, -1)).save(tmp_path / 'rgb.png')
  with pytest.raises(tf.errors.InvalidArgumentError, match='rgb.png: mask is not palette-indexed'):
    _ids(str(tmp_path / 'rgb.png'))


def test_warp_kernels_and_fill():
  image = tf.round(tf.random.stateless_uniform((12, 16, 3), (1, 2)) * 255) / 255  # 8-bit, as decoded
  for method in ('nearest', 'bilinear', 'bicubic'):
    same = augment.warp(image, tf.eye(3), (12, 16), method, augment.IM_MEAN)
    np.testing.assert_array_equal(same, image)  # bicubic's truncation to 8 bits keeps 8-bit values
  flipped = augment.warp(image, augment._matrix([[-1, 0, 16], [0, 1, 0], [0, 0, 1]]), (12, 16), 'bicubic', (0, 0, 0))
  np.testing.assert_array_equal(flipped, image[:, ::-1])
  shifted = augment.warp(image, augment.translation(3, 0), (12, 16), 'bilinear', augment.IM_MEAN).numpy()
  np.testing.assert_allclose(shifted[:, 3:], image[:, :-3], atol=1e-6)
  np.testing.assert_allclose(shifted[:, :3], np.broadcast_to(augment.IM_MEAN, (12, 3, 3)), atol=1e-6)
  # half a pixel to the right: bilinear averages neighbours; bicubic uses the a = -1 kernel of PIL's
  # transform (weights -1/8, 5/8, 5/8, -1/8) and truncates to 8 bits
  half = augment.warp(image, augment.translation(0.5, 0), (12, 16), 'bilinear', (0, 0, 0)).numpy()
  np.testing.assert_allclose(half[:, 5], (image[:, 4] + image[:, 5]) / 2, atol=1e-6)
  cubic = augment.warp(image, augment.translation(0.5, 0), (12, 16), 'bicubic', (0, 0, 0)).numpy()
  exact = np.clip(-0.125 * image[:, 3] + 0.625 * image[:, 4] + 0.625 * image[:, 5] - 0.125 * image[:, 6], 0, 1)
  np.testing.assert_allclose(cubic[:, 5], np.floor(exact * 255 + 1e-3) / 255, atol=1e-6)


def test_random_affine_and_resized_crop_follow_torchvision_ranges():
  for i in range(50):
    m = augment.random_affine(tf.constant([i, 7]), 100, 200, degrees=15, scale=(0.8, 1.5), shear=10).numpy()
    scale = np.sqrt(abs(np.linalg.det(m[:2, :2])))
    assert 0.8 <= scale <= 1.5 and np.allclose(m @ [100, 50, 1], [100, 50, 1], atol=1e-3)  # about the centre
    top, left, h, w = augment.random_resized_crop(tf.constant([i, 8]), 100, 200, scale=(0.36, 1.0)).numpy()
    assert 0 <= top <= 100 - h and 0 <= left <= 200 - w
    assert 0.36 * 20000 - 300 <= h * w <= 20000 and 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05


def test_thin_plate_spline():
  x, y = augment.tps_coords(tf.constant([3, 4]), 40, 48, sigma=0.0)
  grid_y, grid_x = np.mgrid[:40, :48] + 0.5
  np.testing.assert_allclose(x, grid_x, atol=1e-3)
  np.testing.assert_allclose(y, grid_y, atol=1e-3)
  exact = augment.tps_coords(tf.constant([3, 5]), 384, 384, stride=1)  # the spline at every pixel
  fast = augment.tps_coords(tf.constant([3, 5]), 384, 384)  # every 4th pixel, interpolated
  moved = np.abs(exact[0].numpy() - (np.mgrid[:384, :384][1] + 0.5)).max()
  assert moved > 5  # it does warp
  for e, f in zip(exact, fast):
    error = np.abs(e.numpy() - f.numpy())
    assert error.max() < 0.4 and error.mean() < 0.01


def test_color_jitter_ranges_and_grayscale():
  image = tf.random.stateless_uniform((2, 8, 8, 3), (1, 1))
  out = augment.color_jitter(image, tf.constant([4, 2]), 0.1, 0.05, 0.05, 0.05).numpy()
  assert out.min() >= 0 and out.max() <= 1 and 0 < np.abs(out - image).mean() < 0.1
  bright = augment.color_jitter(image, tf.constant([4, 2]), 0.5, 0, 0, 0).numpy()
  ratio = bright.sum() / image.numpy().sum()
  assert 0.5 <= ratio <= 1.5 and ratio != 1
  gray = augment.random_grayscale(image, tf.constant([0, 0]), 1.0).numpy()
  assert np.allclose(gray[..., 0], gray[..., 1]) and np.allclose(gray[..., 0], gray[..., 2])


# ---------------------------------------------------------------- sampling rules


def test_max_skip_curriculum_switch_points():
  steps = [0, 99, 100, 199, 200, 300, 399, 400, 899, 900, 999]
  davis = [int(clips.max_skip(s, 1000)) for s in steps]
  assert davis == [5, 5, 10, 10, 15, 20, 20, 25, 25, 5, 5]
  youtube = [int(clips.max_skip(s, 1000, divisor=5)) for s in (0, 100, 200, 300, 400, 900)]
  assert youtube == [1, 2, 3, 4, 5, 1]


@pytest.mark.parametrize('length,skip', [(3, 5), (8, 5), (40, 10), (40, 25)])
def test_frame_sampling_follows_the_reference_rule(length, skip):
  jump = min(length, skip)
  reachable = set()
  for start in range(length - jump + 1):
    for r1 in range(jump + 1):
      f1 = min(start + r1 + 1, length - jump, length - 1)
      for r2 in range(jump + 1):
        reachable.add((start, f1, min(f1 + r2 + 1, length - jump // 2, length - 1)))
  drawn = [tuple(clips.sample_frames(tf.constant([i, 1]), length, skip).numpy()) for i in range(300)]
  reversed_ = [d[0] > d[-1] for d in drawn]
  forward = [d[::-1] if r else d for d, r in zip(drawn, reversed_)]
  assert set(forward) <= reachable
  if length > 3:
    assert 0.35 < np.mean(reversed_) < 0.65
    assert len(set(forward)) > min(len(reachable), 300) * 0.3


def test_object_selection():
  first = np.zeros((8, 8), np.int32)
  first[0, :3], first[5, 5] = 3, 7
  picks = [tuple(int(v) for v in clips.select_objects(tf.constant([i, 0]), first)) for i in range(60)]
  assert {p[0] for p in picks} == {3, 7} and all(set(p) == {3, 7} for p in picks)
  only = np.where(first == 7, 0, first)
  assert tuple(int(v) for v in clips.select_objects(tf.constant([1, 0]), only)) == (3, -1)
  assert tuple(int(v) for v in clips.select_objects(tf.constant([1, 0]), np.zeros_like(first))) == (-1, -1)


# ---------------------------------------------------------------- clips through the pipeline


def _check_common(batch: dict) -> None:
  assert batch['frames'].shape == (4, 3, SIZE, SIZE, 3) and batch['frames'].dtype == np.float32
  low, high = NORMALISED_RANGE
  assert (batch['frames'] >= low - 1e-5).all() and (batch['frames'] <= high + 1e-5).all()
  for key in ('gt', 'sec_gt', 'cls_gt'):
    assert batch[key].shape == (4, 3, SIZE, SIZE)
  assert batch['cls_gt'].dtype == np.int32 and batch['selector'].shape == (4, 2)
  assert np.array_equal(batch['cls_gt'] == 2, batch['sec_gt'] > 0.5)
  assert np.array_equal(batch['cls_gt'] == 1, (batch['gt'] > 0.5) & (batch['sec_gt'] <= 0.5))


def test_static_clips(root):
  batch = read_batches(data_config('static', root), steps=1)[0]
  _check_common(batch)
  assert (batch['gt'] >= 0).all() and (batch['gt'] <= 1).all()
  assert ((batch['gt'] > 0.05) & (batch['gt'] < 0.95)).any()  # soft: bicubic-warped masks
  assert (batch['gt'].reshape(4, -1).max(1) > 0.5).all()
  assert not batch['sec_gt'].any() and (batch['selector'] == [1, 0]).all()
  frames = batch['frames']
  assert np.abs(frames[:, 0] - frames[:, 1]).mean() > 0.05  # frames differ (per-frame transforms)


def test_vos_clips(root):
  batch = read_batches(data_config('vos', root), steps=1)[0]
  _check_common(batch)
  assert set(np.unique(batch['gt'])) <= {0.0, 1.0} and set(np.unique(batch['sec_gt'])) <= {0.0, 1.0}
  assert (batch['gt'][:, 0].reshape(4, -1).any(1)).all()  # the target shows in the first clip frame
  assert np.array_equal(batch['selector'][:, 1], batch['sec_gt'][:, 0].reshape(4, -1).any(1).astype(np.float32))
  assert (batch['selector'][:, 1] == 1).any()  # the built-in videos have 2-4 objects


def test_vos_clip_without_objects_has_empty_masks(tmp_path):
  frames, masks = [], []
  for i in range(4):
    frames.append(str(tmp_path / f'{i}.jpg'))
    masks.append(str(tmp_path / f'{i}.png'))
    Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(frames[-1])
    write_palette_png(np.zeros((40, 50), np.uint8), masks[-1])
  read = input_pipeline._read_files
  clip = clips.vos_clip(
    tf.constant([0, 1], tf.int64), tf.constant(frames), tf.constant(masks), tf.constant(masks), tf.constant(5), 32, read
  )
  assert not clip['gt'].numpy().any() and not clip['cls_gt'].numpy().any()
  assert clip['selector'].numpy().tolist() == [1.0, 0.0]


# ---------------------------------------------------------------- determinism and sharding


def test_same_seed_same_batches_and_resume_reads_the_same_steps(root):
  config = data_config('vos', root)
  straight = read_batches(config, steps=3)
  resumed = read_batches(config, steps=1, start_step=2)
  again = read_batches(config, steps=1)
  other_seed = read_batches(config, steps=1, seed=1)
  for key in ('frames', 'gt', 'cls_gt', 'index', 'entry'):
    assert np.array_equal(resumed[0][key], straight[2][key])
    assert np.array_equal(again[0][key], straight[0][key])
  assert not np.array_equal(other_seed[0]['frames'], straight[0]['frames'])
  assert not np.array_equal(straight[0]['frames'], straight[1]['frames'])


def test_hosts_split_the_global_batch(root):
  config = data_config('static', root)
  whole = read_batches(config, steps=2)
  halves = [read_batches(config, steps=2, process_index=p, process_count=2) for p in range(2)]
  for step in range(2):
    for key in ('frames', 'gt', 'index'):
      joined = np.concatenate([halves[0][step][key], halves[1][step][key]])
      assert np.array_equal(joined, whole[step][key])
  with pytest.raises(ValueError, match='does not split over 3 processes'):
    read_batches(config, steps=1, process_count=3)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_read_disjoint_shards_of_the_global_batch(root, tmp_path):
  coordinator = f'localhost:{_free_port()}'
  from runs import REPO as repo
  from runs import env as child_env

  env = child_env(2)
  workers = [
    subprocess.Popen(
      [
        sys.executable,
        os.path.join(repo, 'tests', 'pipeline_worker.py'),
        coordinator,
        str(p),
        '2',
        root,
        str(tmp_path / f'{p}.npz'),
      ],
      env=env,
      cwd=repo,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for p in range(2)
  ]
  for worker in workers:
    output, _ = worker.communicate(timeout=300)
    assert worker.returncode == 0, output[-3000:]
  shards = [np.load(tmp_path / f'{p}.npz') for p in range(2)]
  assert [int(s['process_index']) for s in shards] == [0, 1]
  whole = read_batches(data_config('vos', root), steps=2)
  for step in range(2):
    assert not set(shards[0]['index'][step]) & set(shards[1]['index'][step])
    for key in ('frames', 'gt', 'index'):
      assert np.array_equal(np.concatenate([shards[0][key][step], shards[1][key][step]]), whole[step][key])


# ---------------------------------------------------------------- sources, TFDS, broken data


def test_sources_mix_and_missing_folders(root, caplog, tmp_path):
  with caplog.at_level(logging.WARNING):
    table = sources.list_static(os.path.join(root, 'static'))
  assert 'BIG_small' in caplog.text and set(table.source) == {'fss', 'DUTS-TR'}
  assert sources.repeats(['a', 'BIG_small', 'b'], {'BIG_small': 5}) == [0, 1, 1, 1, 1, 1, 2]
  videos = sources.list_videos(os.path.join(root, 'DAVIS'))
  assert videos.names == ['train_000', 'train_001', 'train_002']  # the train list, not val
  source = input_pipeline.open_source(data_config('vos', root))
  assert sorted(source.items.tolist()) == [v for v in range(3) for _ in range(5)]  # DAVIS × 5
  with pytest.raises(sources.DataError, match='no static images under'):
    sources.list_static(str(tmp_path))
  # YouTube-VOS layout (every 5th frame: skip ÷ 5) and a folder of your own videos (every video, val too)
  trainval = os.path.join(root, 'DAVIS', '2017', 'trainval')
  youtube = tmp_path / 'YouTube' / 'train_480p'
  youtube.mkdir(parents=True)
  for kind in ('JPEGImages', 'Annotations'):
    os.symlink(os.path.join(trainval, kind, '480p'), youtube / kind)
  mixed = sources.list_videos(os.path.join(root, 'DAVIS'), str(tmp_path / 'YouTube'), [trainval])
  assert mixed.source == ['davis'] * 3 + ['youtube'] * 4 + ['videos'] * 4
  assert mixed.skip_divisor == [1] * 3 + [5] * 4 + [1] * 4
  assert mixed.offsets[-1] == 11 * DATASET['frames']


def test_tfds_form_gives_the_same_clips_as_the_folders(root, tmp_path):
  for kind, builder_kind, roots in (
    ('static', 'static', dict(static_root=os.path.join(root, 'static'))),
    ('vos', 'videos', dict(davis_root=os.path.join(root, 'DAVIS'))),
  ):
    builder = tfds_builders.build(builder_kind, str(tmp_path / 'tfds'), **roots)
    files = input_pipeline.open_source(data_config(kind, root))
    records = input_pipeline.open_source(data_config(kind, root, tfds_dir=str(tmp_path / 'tfds')))
    assert len(records.items) == len(files.items)
    names = [n.decode() for s in records_splits(builder) for n in s]
    file_names = (
      sources.list_static(os.path.join(root, 'static')).images
      if kind == 'static'
      else sources.list_videos(os.path.join(root, 'DAVIS')).names
    )
    config = data_config(kind, root)
    seed = tf.constant([11, 0], tf.int64)
    for tfds_entry in (0, len(names) - 1):
      file_entry = next(i for i, f in enumerate(file_names) if f.endswith(names[tfds_entry]))
      a = input_pipeline.make_clip(files, config, tf.constant(file_entry, tf.int64), seed, 0, 100)
      b = input_pipeline.make_clip(records, config, tf.constant(tfds_entry, tf.int64), seed, 0, 100)
      for key in ('frames', 'gt', 'sec_gt', 'cls_gt', 'selector'):
        np.testing.assert_array_equal(a[key], b[key], err_msg=f'{kind} {names[tfds_entry]} {key}')
    batch = read_batches(data_config(kind, root, tfds_dir=str(tmp_path / 'tfds')), steps=1)[0]
    _check_common(batch)


def records_splits(builder) -> list[list[bytes]]:
  """The `name` of every record, split by split in the pipeline's order."""
  order = [tfds_builders.split_name(s) for s in sources.STATIC_FOLDERS + sources.VIDEO_SOURCES]
  splits = sorted(builder.info.splits, key=order.index)
  return [
    [builder.as_data_source(split=s)[i]['name'] for i in range(builder.info.splits[s].num_examples)] for s in splits
  ]


def test_broken_samples_are_replaced_counted_and_logged(root, tmp_path, caplog):
  broken = str(tmp_path / 'broken')
  shutil.copytree(root, broken)
  video = os.path.join(broken, 'DAVIS', '2017', 'trainval', 'Annotations', '480p', 'train_001')
  for name in os.listdir(video):
    Image.open(os.path.join(video, name)).convert('RGB').save(os.path.join(video, name))
  frame = os.path.join(broken, 'DAVIS', '2017', 'trainval', 'JPEGImages', '480p', 'train_002', '00003.jpg')
  data_ = open(frame, 'rb').read()
  open(frame, 'wb').write(data_[: len(data_) // 3])
  config = data_config('vos', broken)
  source = input_pipeline.open_source(config)
  dataset = input_pipeline.make_dataset(config, seed=0, global_batch=4, total_steps=100, source=source)
  batches = input_pipeline.Batches(dataset, source, 0, 4)
  with caplog.at_level(logging.WARNING):
    for _ in range(4):
      batch = next(batches)
      _check_common(batch)
      assert (batch['gt'][:, 0].reshape(4, -1).any(1)).all()
  assert batches.skipped >= 2
  assert 'train_001' in caplog.text and 'mask is not palette-indexed (mode RGB)' in caplog.text
  assert batches.skipped == caplog.text.count('skipped broken sample')
