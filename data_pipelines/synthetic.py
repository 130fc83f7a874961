"""The built-in dataset: procedurally generated videos in the DAVIS layout plus static images in the
reference layout, made from photographs bundled with scikit-image (nothing is downloaded).

  python -m data_pipelines.synthetic --out data/synthetic [--seed 0] [--train 12] [--val 4]

Writes
  OUT/DAVIS/2017/trainval/JPEGImages/480p/<video>/00000.jpg …   frames (H×W, default 240×432)
  OUT/DAVIS/2017/trainval/Annotations/480p/<video>/00000.png …  palette-indexed object ids
  OUT/DAVIS/2017/trainval/ImageSets/2017/{train,val}.txt
  OUT/static/DUTS-TR/<name>.{jpg,png}                           flat salient-object images
  OUT/static/fss/<class>/<name>.{jpg,png}                       FSS-1000 class layout

Each video has 2-4 textured objects of varied shapes over a slowly panning photograph; they move,
rotate, change scale, occlude one another in depth order, and may leave the frame and come back.
All objects are visible in frame 0. The same seed gives the same bytes.
"""

import os
import sys
import time
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from PIL import Image

from data_pipelines.palette import write_palette_png
from gsfm_jax import atomic, cli

BACKGROUNDS = ('astronaut', 'coffee', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'chelsea')
TEXTURES = ('brick', 'grass', 'gravel', 'colorwheel', 'coins', 'moon', 'camera', 'cat', 'coffee', 'astronaut')
SHAPES = ('ellipse', 'star', 'rounded_box', 'blob', 'ring', 'triangle')
CANVAS = 128  # side of the canonical shape / texture patch


def _photo(name: str) -> np.ndarray:
  """A bundled scikit-image photograph as (H, W, 3) uint8 RGB."""
  from skimage import data

  image = getattr(data, name)()
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  return np.ascontiguousarray(image[..., :3])


def shape_mask(kind: str, rng: np.random.Generator) -> np.ndarray:
  """A filled shape centred in a CANVAS×CANVAS uint8 {0, 1} mask."""
  c = CANVAS // 2
  mask = np.zeros((CANVAS, CANVAS), np.uint8)
  if kind == 'ellipse':
    cv2.ellipse(mask, (c, c), (int(rng.integers(35, 60)), int(rng.integers(20, 45))), 0, 0, 360, 1, -1)
  elif kind == 'star':
    points = int(rng.integers(4, 8))
    angles = np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 58, rng.uniform(20, 35))
    cv2.fillPoly(mask, [np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], -1).astype(np.int32)], 1)
  elif kind == 'rounded_box':
    h, w = int(rng.integers(25, 50)), int(rng.integers(25, 55))
    cv2.rectangle(mask, (c - w, c - h), (c + w, c + h), 1, -1)
    mask = (cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 6) > 0.5).astype(np.uint8)
  elif kind == 'blob':
    noise = cv2.GaussianBlur(rng.standard_normal((CANVAS, CANVAS)).astype(np.float32), (0, 0), 9)
    yy, xx = np.mgrid[:CANVAS, :CANVAS] - c
    mask = (noise / noise.std() * 0.6 + 1.0 - np.hypot(yy, xx) / 45 > 0).astype(np.uint8)
  elif kind == 'ring':
    cv2.circle(mask, (c, c), int(rng.integers(45, 60)), 1, -1)
    cv2.circle(mask, (c, c), int(rng.integers(15, 30)), 0, -1)
  elif kind == 'triangle':
    cv2.fillPoly(mask, [np.array([[c, 8], [8, CANVAS - 12], [CANVAS - 8, CANVAS - 20]], np.int32)], 1)
  else:
    raise ValueError(f'unknown shape {kind!r}')
  return mask


def texture_patch(name: str, rng: np.random.Generator) -> np.ndarray:
  """A CANVAS×CANVAS random crop of a photograph, randomly tinted, (CANVAS, CANVAS, 3) uint8."""
  photo = _photo(name)
  y = int(rng.integers(0, photo.shape[0] - CANVAS + 1))
  x = int(rng.integers(0, photo.shape[1] - CANVAS + 1))
  patch = photo[y : y + CANVAS, x : x + CANVAS].astype(np.float32)
  tint = rng.uniform(0.6, 1.4, 3)
  return np.clip(patch * tint, 0, 255).astype(np.uint8)


@dataclass
class MovingObject:
  """One object: shape + texture, and a trajectory of centre, scale and angle over time t ∈ [0, 1]."""

  mask: np.ndarray
  texture: np.ndarray
  start: np.ndarray  # centre at t = 0, (x, y) in pixels
  velocity: np.ndarray  # pixels per unit t; may carry the object out of the frame and back
  wobble: np.ndarray  # amplitude of a sinusoidal detour (x, y)
  scale: tuple[float, float]
  spin: float  # degrees over the video

  def transform(self, t: float) -> np.ndarray:
    """2×3 affine map from the canonical canvas to the frame at time t."""
    centre = self.start + self.velocity * t + self.wobble * np.sin(2 * np.pi * t)
    scale = self.scale[0] + (self.scale[1] - self.scale[0]) * t
    m = cv2.getRotationMatrix2D((CANVAS / 2, CANVAS / 2), self.spin * t, scale)
    m[:, 2] += centre - CANVAS / 2
    return m


def random_object(rng: np.random.Generator, height: int, width: int) -> MovingObject:
  size = min(height, width)
  start = np.array([rng.uniform(0.2, 0.8) * width, rng.uniform(0.25, 0.75) * height])
  leaves = rng.random() < 0.35  # the detour takes it out of the frame and back
  wobble = np.array(
    [rng.uniform(0.6, 0.8) * width if leaves else rng.uniform(0, 0.15) * width, rng.uniform(0, 0.15) * height]
  )
  s0 = rng.uniform(0.25, 0.55) * size / CANVAS
  return MovingObject(
    mask=shape_mask(SHAPES[rng.integers(len(SHAPES))], rng),
    texture=texture_patch(TEXTURES[rng.integers(len(TEXTURES))], rng),
    start=start,
    velocity=rng.uniform(-0.25, 0.25, 2) * np.array([width, height]),
    wobble=wobble * rng.choice([-1, 1], 2),
    scale=(s0, s0 * rng.uniform(0.6, 1.6)),
    spin=float(rng.uniform(-120, 120)),
  )


def render_video(rng: np.random.Generator, frames: int, height: int, width: int) -> tuple[list, list]:
  """frames × (H, W, 3) uint8 images and (H, W) uint8 object ids (later objects occlude earlier)."""
  background = _photo(BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
  zoom = max(1.3 * height / background.shape[0], 1.3 * width / background.shape[1], 1.0)
  background = cv2.resize(background, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
  pan_from = np.array(
    [rng.integers(0, background.shape[1] - width + 1), rng.integers(0, background.shape[0] - height + 1)]
  )
  pan_to = np.array(
    [rng.integers(0, background.shape[1] - width + 1), rng.integers(0, background.shape[0] - height + 1)]
  )
  objects = [random_object(rng, height, width) for _ in range(int(rng.integers(2, 5)))]
  images, labels = [], []
  for i in range(frames):
    t = i / max(frames - 1, 1)
    x, y = np.round(pan_from + (pan_to - pan_from) * t).astype(int)
    image = background[y : y + height, x : x + width].copy()
    label = np.zeros((height, width), np.uint8)
    for obj_id, obj in enumerate(objects, start=1):
      m = obj.transform(t)
      mask = cv2.warpAffine(obj.mask, m, (width, height), flags=cv2.INTER_NEAREST) > 0
      texture = cv2.warpAffine(obj.texture, m, (width, height), flags=cv2.INTER_LINEAR)
      image[mask] = texture[mask]
      label[mask] = obj_id
    images.append(image)
    labels.append(label)
  return images, labels


def _visible_in_first_frame(labels: list, count: int) -> bool:
  """Every object covers at least 0.5 % of frame 0."""
  first = labels[0]
  return all(np.mean(first == obj_id) >= 0.005 for obj_id in range(1, count + 1))


def write_davis(out: str, rng: np.random.Generator, names: dict, frames: int, height: int, width: int) -> None:
  root = os.path.join(out, 'DAVIS', '2017', 'trainval')
  for split, videos in names.items():
    for name in videos:
      while True:  # redraw until every object is clearly visible in the annotated first frame
        images, labels = render_video(rng, frames, height, width)
        if _visible_in_first_frame(labels, int(max(l.max() for l in labels))):
          break
      image_dir = os.path.join(root, 'JPEGImages', '480p', name)
      label_dir = os.path.join(root, 'Annotations', '480p', name)
      os.makedirs(image_dir, exist_ok=True)
      os.makedirs(label_dir, exist_ok=True)
      for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(os.path.join(image_dir, f'{i:05d}.jpg'), quality=92)
        write_palette_png(label, os.path.join(label_dir, f'{i:05d}.png'))
    sets = os.path.join(root, 'ImageSets', '2017')
    os.makedirs(sets, exist_ok=True)
    with open(os.path.join(sets, f'{split}.txt'), 'w') as f:
      f.write(''.join(f'{v}\n' for v in videos))


def write_static(out: str, rng: np.random.Generator, flat: int, classes: int, per_class: int, size: int) -> None:
  """Salient-object images: one textured shape on a photograph, mask 0/255 grayscale PNG."""

  def one(path_stem: str, kind: str) -> None:
    images, labels = render_one(kind)
    Image.fromarray(images).save(path_stem + '.jpg', quality=92)
    Image.fromarray((labels > 0).astype(np.uint8) * 255, mode='L').save(path_stem + '.png')

  def render_one(kind: str) -> tuple[np.ndarray, np.ndarray]:
    background = cv2.resize(
      _photo(BACKGROUNDS[rng.integers(len(BACKGROUNDS))]), (size, size), interpolation=cv2.INTER_AREA
    )
    m = cv2.getRotationMatrix2D(
      (CANVAS / 2, CANVAS / 2), float(rng.uniform(-180, 180)), rng.uniform(0.9, 1.8) * size / 320
    )
    m[:, 2] += np.array([rng.uniform(0.35, 0.65) * size, rng.uniform(0.35, 0.65) * size]) - CANVAS / 2
    mask = cv2.warpAffine(shape_mask(kind, rng), m, (size, size), flags=cv2.INTER_NEAREST) > 0
    texture = cv2.warpAffine(texture_patch(TEXTURES[rng.integers(len(TEXTURES))], rng), m, (size, size))
    background[mask] = texture[mask]
    return background, mask.astype(np.uint8)

  flat_dir = os.path.join(out, 'static', 'DUTS-TR')
  os.makedirs(flat_dir, exist_ok=True)
  for i in range(flat):
    one(os.path.join(flat_dir, f'synthetic_{i:04d}'), SHAPES[rng.integers(len(SHAPES))])
  for c in range(classes):
    kind = SHAPES[c % len(SHAPES)]
    class_dir = os.path.join(out, 'static', 'fss', kind)
    os.makedirs(class_dir, exist_ok=True)
    for i in range(per_class):
      one(os.path.join(class_dir, f'{i}'), kind)


def generate(
  out: str,
  seed: int = 0,
  train: int = 12,
  val: int = 4,
  frames: int = 25,
  height: int = 240,
  width: int = 432,
  static_flat: int = 48,
  static_classes: int = 4,
  static_per_class: int = 10,
  static_size: int = 320,
) -> None:
  """Writes the whole built-in dataset under `out` (see the module docstring), atomically: into a temporary
  folder beside it, which becomes `out` (with the `COMPLETE` marker inside) only when everything is written,
  so an interrupted run leaves no partial dataset under `out`. An `out` without the marker (written by an
  interrupted earlier version) is replaced."""
  out = os.path.abspath(out)
  if is_complete(out):
    raise atomic.OutputExists(f'{out}: the built-in dataset is already there (remove it to write it again)')
  with atomic.replacing(out) as work:
    os.makedirs(work)
    rng = np.random.default_rng(seed)
    names = {'train': [f'train_{i:03d}' for i in range(train)], 'val': [f'val_{i:03d}' for i in range(val)]}
    write_davis(work, rng, names, frames, height, width)
    write_static(work, rng, static_flat, static_classes, static_per_class, static_size)
    with open(os.path.join(work, COMPLETE), 'w') as f:
      f.write(f'seed {seed}\n')


COMPLETE = 'COMPLETE'  # written last: the dataset under this folder is whole


def is_complete(out: str) -> bool:
  """Whether `out` holds a whole built-in dataset (its `COMPLETE` marker)."""
  return os.path.isfile(os.path.join(out, COMPLETE))


@cli.reported
def main(argv: Optional[list[str]] = None) -> int:
  parser = cli.Parser(__doc__)
  parser.add_argument('--out', required=True, help='output folder')
  parser.add_argument('--seed', type=int, default=0, help='seed (default: %(default)s)')
  parser.add_argument('--train', type=int, default=12, help='training videos (default: %(default)s)')
  parser.add_argument('--val', type=int, default=4, help='validation videos (default: %(default)s)')
  parser.add_argument('--frames', type=int, default=25, help='frames per video (default: %(default)s)')
  parser.add_argument('--height', type=int, default=240, help='frame height (default: %(default)s)')
  parser.add_argument('--width', type=int, default=432, help='frame width (default: %(default)s)')
  args = parser.parse_args(argv)
  start = time.perf_counter()
  generate(args.out, args.seed, args.train, args.val, args.frames, args.height, args.width)
  print(f'wrote the built-in dataset to {args.out} in {time.perf_counter() - start:.1f} s')
  return 0


if __name__ == '__main__':
  sys.exit(main())
