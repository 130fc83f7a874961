"""The training input against a reference of the official loaders (tests/reference_loaders.py, on PIL).

1. Each of PIL's 8-bit operations that the pipeline emulates (`augment.blend_8bit`, `luma_8bit`,
   `hue_shift_8bit`, the truncating bicubic warp, the rounding resize) against PIL itself, pixel by pixel.
2. Both stages end to end: clips drawn by the pipeline (`make_dataset`) and by the reference from the same
   files, 24 statistics per clip (`data_pipelines.stats`), two-sample tests on each. The test data are
   dim, evenly textured videos and images: on them a clip's brightness varies little from clip to clip
   (ColorJitter's factors scale it; the fill colour is not counted in it), so a shift of one grey level in
   the pipeline stands out at a few hundred clips. They are written at half of 480p with a 192² crop (the
   reference's 480p and 384² halved): crops downscale as on real data, in a quarter of the time.
3. That the test has that power: the same comparison with the pipeline's frames one level brighter fails.
"""

import os

import cv2
import numpy as np
import pytest
import reference_loaders as reference
import tensorflow as tf
from PIL import Image, ImageEnhance

from data_pipelines import augment, sources, stats
from data_pipelines.palette import write_palette_png

SIZE = 192  # crop side: the reference's 384 at half scale
VIDEO_SHAPE = (240, 427)  # 480×854 halved
STATIC_SHAPES = ((240, 320), (320, 240), (240, 360))
CLIPS = 300  # per side and stage
THRESHOLD = 1e-4  # per statistic; about 45 tests per stage
DIM = 24  # mean grey level of the test data


# ---------------------------------------------------------------- 1. PIL's 8-bit arithmetic, op by op


@pytest.fixture(scope='module')
def photo() -> np.ndarray:
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
  image[:10] = image[:10, :, :1]  # gray pixels: HSV's zero-saturation case
  return image


def test_blends_and_luma_are_pils(photo):
  image, levels = Image.fromarray(photo), tf.constant(photo, tf.float32)
  luma = augment.luma_8bit(levels)
  np.testing.assert_array_equal(luma.numpy()[..., 0], np.asarray(image.convert('L')))
  mean = np.floor(np.asarray(image.convert('L')).mean() + 0.5)
  for factor in (0.9, 0.9731, 1.0, 1.0642, 1.1):
    cases = ((ImageEnhance.Brightness, 0.0), (ImageEnhance.Contrast, mean), (ImageEnhance.Color, luma))
    for enhance, base in cases:
      expected = np.asarray(enhance(image).enhance(factor))
      np.testing.assert_array_equal(augment.blend_8bit(base, levels, tf.constant(factor)).numpy(), expected)


@pytest.mark.parametrize('shift', [-0.05, -0.0031, 0.0, 0.0207, 0.05])
def test_hue_shift_is_pils_hsv_round_trip(photo, shift):
  expected = np.asarray(reference.adjust_hue(Image.fromarray(photo), shift))
  got = augment.hue_shift_8bit(tf.constant(photo, tf.float32), tf.constant(shift)).numpy()
  np.testing.assert_array_equal(got, expected)
  if shift == 0.0:
    assert (expected != photo).any()  # PIL's 8-bit HSV changes pixels even without a shift


def test_bicubic_warp_is_pils_transform(photo):
  m = np.array([[0.97, 0.12, 1.3], [-0.05, 1.04, -2.1], [0, 0, 1]])  # output -> source, as PIL takes it
  expected = np.asarray(
    Image.fromarray(photo).transform(
      (40, 48), Image.AFFINE, tuple(m[:2].ravel()), Image.BICUBIC, fillcolor=reference.IM_MEAN
    )
  )
  got = (
    augment.warp(
      tf.constant(photo / 255, tf.float32),
      tf.constant(np.linalg.inv(m), tf.float32),
      (48, 40),
      'bicubic',
      augment.IM_MEAN,
    ).numpy()
    * 255
  )
  # a warp that rounded (or kept floats) would differ from PIL's truncation in about half of the pixels
  difference = np.abs(np.round(got) - expected)
  assert difference.max() <= 1 and (difference > 0).mean() < 0.005  # float32 here, double in PIL


@pytest.mark.parametrize('shape', [(100, 150), (60, 50)])  # shrinking (antialiased), growing
def test_resized_window_is_pils_resize_and_crop(shape):
  rng = np.random.default_rng(2)
  smooth = cv2.resize(rng.normal(size=(shape[0] // 6, shape[1] // 6, 3)), shape[::-1], interpolation=cv2.INTER_CUBIC)
  image = np.clip(128 + 60 * smooth, 0, 255).astype(np.uint8)
  new_size = augment.short_side(*shape, 64).numpy()
  assert tuple(new_size) == ((64, 96) if shape[0] == 100 else (76, 64))  # torchvision's Resize(64)
  corner = np.array([(new_size[0] - 64) // 2, new_size[1] - 64])
  resized = np.asarray(Image.fromarray(image).resize(tuple(new_size[::-1]), Image.BICUBIC))
  expected = resized[corner[0] : corner[0] + 64, corner[1] : corner[1] + 64].astype(np.float64)
  got = augment.resized_window(tf.constant(image / 255, tf.float32), shape, new_size, corner, 64).numpy() * 255
  assert got.shape == (64, 64, 3) and np.array_equal(got, np.round(got))
  assert np.abs(got - expected).max() <= 1 and (got != expected).mean() < 0.01  # PIL's weights are fixed point
  nearest = np.asarray(Image.fromarray(image[..., 0]).resize(tuple(new_size[::-1]), Image.NEAREST))
  window = augment.nearest_window(tf.constant(image[..., :1]), shape, new_size, corner, 64).numpy()[..., 0]
  np.testing.assert_array_equal(window, nearest[corner[0] : corner[0] + 64, corner[1] : corner[1] + 64])


# ---------------------------------------------------------------- 2. clips of both stages


def _tint(rng) -> np.ndarray:
  """A colour of mean 1 (objects differ in hue and saturation, not in brightness)."""
  return rng.permutation([0.75, 1.0, 1.25])


def _texture(rng, height: int, width: int, tint) -> np.ndarray:
  """A dim, evenly textured colour image (float levels)."""
  coarse = rng.normal(size=(height // 12 + 2, width // 12 + 2, 3))
  smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
  return DIM * np.asarray(tint) + 9 * smooth + 4 * rng.normal(size=(height, width, 3))


def _save_jpeg(levels: np.ndarray, path: str) -> None:
  Image.fromarray(np.clip(np.round(levels), 0, 255).astype(np.uint8)).save(path, quality=92)


def write_videos(root: str, rng, videos: int = 5, frames: int = 12) -> None:
  """A `{JPEGImages,Annotations}` root: objects (ellipses, 1–3) moving over a panning background."""
  height, width = VIDEO_SHAPE
  for v in range(videos):
    image_dir, mask_dir = (os.path.join(root, kind, f'video{v}') for kind in ('JPEGImages', 'Annotations'))
    os.makedirs(image_dir)
    os.makedirs(mask_dir)
    background = _texture(rng, height, width + 3 * frames, (1.0, 0.95, 1.1))
    objects = []
    for k in range(int(rng.integers(1, 4))):
      objects.append(
        dict(
          centre=rng.uniform((40, 30), (width - 40, height - 30)),
          speed=rng.uniform(-4, 4, 2),
          axes=rng.integers(14, 45, 2),
          texture=_texture(rng, height, width, _tint(rng)),
        )
      )
    for t in range(frames):
      image, ids = background[:, 3 * t : 3 * t + width].copy(), np.zeros((height, width), np.uint8)
      for k, o in enumerate(objects):
        shape = np.zeros((height, width), np.uint8)
        centre = o['centre'] + t * o['speed']
        cv2.ellipse(shape, (int(centre[0]), int(centre[1])), tuple(int(a) for a in o['axes']), 15.0 * k, 0, 360, 1, -1)
        image[shape > 0], ids[shape > 0] = o['texture'][shape > 0], k + 1
      _save_jpeg(image, os.path.join(image_dir, f'{t:05d}.jpg'))
      write_palette_png(ids, os.path.join(mask_dir, f'{t:05d}.png'))


def write_static(root: str, rng, images: int = 12) -> None:
  """A DUTS-style flat folder: one object (an anti-aliased ellipse) per image, 8-bit masks."""
  folder = os.path.join(root, 'DUTS-TR')
  os.makedirs(folder)
  for i in range(images):
    height, width = STATIC_SHAPES[i % len(STATIC_SHAPES)]
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(
      mask,
      (int(rng.uniform(0.35, 0.65) * width), int(rng.uniform(0.35, 0.65) * height)),
      (int(rng.uniform(0.12, 0.3) * width), int(rng.uniform(0.12, 0.3) * height)),
      float(rng.uniform(0, 180)),
      0,
      360,
      255,
      -1,
      cv2.LINE_AA,
    )
    image = np.where(
      mask[..., None] > 127, _texture(rng, height, width, _tint(rng)), _texture(rng, height, width, (1.0, 0.95, 1.1))
    )
    _save_jpeg(image, os.path.join(folder, f'image{i}.jpg'))
    Image.fromarray(mask).save(os.path.join(folder, f'image{i}.png'))


@pytest.fixture(scope='module')
def dim_root(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp('dim'))
  rng = np.random.default_rng(11)
  write_videos(os.path.join(root, 'videos'), rng)
  write_static(os.path.join(root, 'static'), rng)
  return root


def reference_clips(stage: str, root: str, count: int, seed: int):
  """`count` clips of the reference loader, items drawn uniformly: yields (frames, gt, sec_gt, selector)."""
  rng = np.random.default_rng(seed)
  if stage == 'vos':
    table = sources.list_videos(None, None, (os.path.join(root, 'videos'),))
    for _ in range(count):
      entry = int(rng.integers(len(table)))
      lo, hi = table.offsets[entry], table.offsets[entry + 1]
      yield reference.vos_clip(rng, table.frames[lo:hi], table.masks[lo:hi], max_skip=5, size=SIZE)
  else:
    table = sources.list_static(os.path.join(root, 'static'))
    for _ in range(count):
      entry = int(rng.integers(len(table.images)))
      yield reference.static_clip(rng, table.images[entry], table.masks[entry], size=SIZE)


def _tables(clips, offset: float = 1 / 255) -> tuple[dict, dict]:
  """Statistics of the clips, and of the same clips `offset` brighter (clamped to 1)."""
  plain, brighter = [], []
  for frames, gt, sec_gt, selector in clips:
    plain.append(stats.clip_statistics(frames, gt, sec_gt, selector))
    brighter.append(stats.clip_statistics(np.minimum(frames + offset, 1.0), gt, sec_gt, selector))
  return stats.table(plain), stats.table(brighter)


@pytest.fixture(scope='module', params=['vos', 'static'])
def drawn(request, dim_root) -> tuple[str, dict, dict, dict]:
  """(stage, reference statistics, the pipeline's, the pipeline's one level brighter)."""
  stage = request.param
  config = stats.data_config(os.path.join(dim_root, 'videos' if stage == 'vos' else 'static'), stage, SIZE)
  config.workers = 2
  ours, brighter = _tables(stats.pipeline_clips(config, CLIPS, seed=3, step=0, total_steps=30000))
  official, _ = _tables(reference_clips(stage, dim_root, CLIPS, seed=4))
  return stage, official, ours, brighter


def _report(result: dict) -> str:
  return '\n'.join(
    f'{name:14s} reference {r["a"]:.4f} pipeline {r["b"]:.4f} p {r["p"]:.1e}' for name, r in result.items()
  )


def test_pipeline_clips_have_the_reference_distribution(drawn):
  stage, official, ours, _ = drawn
  assert np.nanstd(ours['brightness_f0']) < 3 / 255  # the data keep brightness tight (the test's power)
  assert 0 < np.nanmean(ours['fill_f0']) and 0 < np.nanmean(ours['grayscale']) < 0.15
  result = stats.compare(official, ours)
  differ = [name for name, r in result.items() if r['p'] < THRESHOLD]
  assert not differ, f'{stage}: {differ} differ\n{_report(result)}'


def test_a_one_level_brighter_pipeline_fails_the_comparison(drawn):
  stage, official, _, brighter = drawn
  result = stats.compare(official, brighter)
  differ = [name for name, r in result.items() if r['p'] < THRESHOLD]
  assert differ and all(name.startswith('brightness_') for name in differ), f'{stage}\n{_report(result)}'


# ---------------------------------------------------------------- the statistics command


def test_stats_command_prints_statistics_and_draws_clips(dim_root, tmp_path, capsys):
  out = tmp_path / 'look'
  stats.main(
    [
      os.path.join(dim_root, 'videos'),
      '--stage',
      'vos',
      '--clips',
      '12',
      '--size',
      '64',
      '--rows',
      '4',
      '--out',
      str(out),
      '--json',
      str(tmp_path / 'clips.json'),
    ]
  )
  printed = capsys.readouterr().out
  assert '12 vos clips of' in printed and all(name in printed for name in stats.statistic_names())
  picture = np.asarray(Image.open(out / 'clips.png'))
  assert picture.shape == (4 * 68, 3 * 68, 3)
  tinted = (picture[..., 0].astype(int) - picture[..., 1] > 60).mean()  # the target, tinted red
  assert 0 < tinted < 0.5
  import json

  rows = json.load(open(tmp_path / 'clips.json'))
  assert len(rows) == 12 and all(0 <= r['brightness_f0'] <= 1 for r in rows)


@pytest.mark.parametrize(
  'make_args, expected',
  [
    (lambda root, tmp: [str(tmp / 'missing'), '--stage', 'vos'], 'missing: no such folder'),
    (lambda root, tmp: [str(tmp), '--stage', 'vos'], 'no DAVIS (2017/), YouTube-VOS (train_480p/), JPEGImages/'),
    (lambda root, tmp: [str(tmp), '--stage', 'static'], 'no static images under'),
    (
      lambda root, tmp: [os.path.join(root, 'videos'), '--stage', 'vos', '--clips', '0'],
      '--clips 0: must be at least 1',
    ),
  ],
)
def test_stats_command_mistakes(make_args, expected, dim_root, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_:
    stats.main(make_args(dim_root, tmp_path) + ['--out', str(tmp_path / 'out')])
  errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error: ')]
  assert exit_.value.code == 2 and len(errors) == 1 and expected in errors[0], errors
  assert not (tmp_path / 'out').exists()
