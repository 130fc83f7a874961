"""A reference of the official training loaders (docs/reference.md §4), on PIL, numpy and OpenCV.

What it is: the official static-image and VOS datasets run torchvision transforms on PIL images. Each
torchvision transform on a PIL image is a thin wrapper around one PIL call; this file makes those same
PIL calls with the parameters torchvision draws (same ranges, same formulas: RandomAffine's inverse
matrix about the image centre, RandomResizedCrop's ten tries and fallback, ColorJitter's random order and
ImageEnhance blends, the hue shift on PIL's HSV with a uint8 step, RandomGrayscale's `convert('L')`,
Resize's int(short · long / short) side), and the thin-plate spline of the `thinplate` package with
cv2.remap. It is written here from the specification, not copied.

Why it is trusted: it shares no code with `data_pipelines/`: the pixels come out of PIL's and OpenCV's own
8-bit kernels, the way they do in the official loaders, so whatever PIL does (truncating blends, the a = -1
bicubic of `Image.transform`, rounding resizes) is there without being modelled. Random numbers come from
numpy instead of torch's generator: the same distributions, other draws, which is all a distribution test
compares.

Outputs are what the datasets return before normalisation: frames (T, S, S, 3) in [0, 1], gt / sec_gt
(T, S, S) in [0, 1], selector (2,).
"""

import math

import cv2
import numpy as np
from PIL import Image, ImageEnhance

IM_MEAN = (124, 116, 104)
FRAMES = 3


# ---------------------------------------------------------------- torchvision's transforms on PIL images


def affine_params(rng, degrees=0.0, scale=(1.0, 1.0), shear=0.0) -> tuple[float, float, float]:
  """RandomAffine.get_params: angle U(-d, d), scale U(scale), x-shear U(-s, s), no translation."""
  return rng.uniform(-degrees, degrees), rng.uniform(*scale), rng.uniform(-shear, shear)


def affine(image: Image.Image, params, resample, fill) -> Image.Image:
  """F.affine on a PIL image: the inverse matrix about (w/2, h/2), then `Image.transform`."""
  angle, scale, shear = params
  width, height = image.size
  cx, cy = width * 0.5, height * 0.5
  rot, sx = math.radians(angle), math.radians(shear)
  a = math.cos(rot)
  b = -math.cos(rot) * math.tan(sx) - math.sin(rot)
  c = math.sin(rot)
  d = -math.sin(rot) * math.tan(sx) + math.cos(rot)
  m = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0]
  m[2] += m[0] * -cx + m[1] * -cy + cx
  m[5] += m[3] * -cx + m[4] * -cy + cy
  return image.transform(image.size, Image.AFFINE, m, resample, fillcolor=fill)


def resized_crop_params(rng, height: int, width: int, scale, ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
  """RandomResizedCrop.get_params: (top, left, h, w)."""
  area = height * width
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    h, w = height, int(round(height * ratio[1]))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def jitter_params(rng, brightness, contrast, saturation, hue) -> tuple:
  """ColorJitter.get_params: a random order of the four ops and their factors (None: op left out)."""

  def factor(x):
    return rng.uniform(max(0.0, 1 - x), 1 + x) if x else None

  return (
    rng.permutation(4),
    factor(brightness),
    factor(contrast),
    factor(saturation),
    (rng.uniform(-hue, hue) if hue else None),
  )


def adjust_hue(image: Image.Image, shift: float) -> Image.Image:
  """F.adjust_hue on a PIL image: H of PIL's HSV plus a uint8 step (wrapping)."""
  h, s, v = image.convert('HSV').split()
  hues = np.array(h, dtype=np.uint8)
  hues += np.array(int(shift * 255)).astype(np.uint8)  # numpy's cast: truncate toward zero, wrap
  return Image.merge('HSV', (Image.fromarray(hues, 'L'), s, v)).convert('RGB')


def color_jitter(image: Image.Image, params) -> Image.Image:
  order, brightness, contrast, saturation, hue = params
  for op in order:
    if op == 0 and brightness is not None:
      image = ImageEnhance.Brightness(image).enhance(brightness)
    elif op == 1 and contrast is not None:
      image = ImageEnhance.Contrast(image).enhance(contrast)
    elif op == 2 and saturation is not None:
      image = ImageEnhance.Color(image).enhance(saturation)
    elif op == 3 and hue is not None:
      image = adjust_hue(image, hue)
  return image


def grayscale(image: Image.Image) -> Image.Image:
  """F.rgb_to_grayscale(img, 3) on a PIL image."""
  return Image.fromarray(np.repeat(np.asarray(image.convert('L'))[..., None], 3, -1))


def resize_short(image: Image.Image, size: int, resample) -> Image.Image:
  """Resize(size): the shorter side becomes `size`, the longer int(size · long / short)."""
  width, height = image.size
  if width <= height:
    return image.resize((size, int(size * height / width)), resample)
  return image.resize((int(size * width / height), size), resample)


def tps_warp(rng, image: np.ndarray, mask: np.ndarray, sigma=0.02, points=12) -> tuple[np.ndarray, np.ndarray]:
  """The thin-plate-spline warp of the official static loader (the `thinplate` package's numpy TPS with
  cv2.remap): control points on distinct rows / columns, displaced by N(0, sigma); the spline maps the
  displaced points back; the remap grid is linspace(0, 1, n) scaled by n (as that package does)."""
  height, width = image.shape[:2]
  src = np.stack(
    [rng.choice(height, points, replace=False) / height, rng.choice(width, points, replace=False) / width], 1
  )
  dst = src + rng.normal(scale=sigma, size=src.shape)

  def u(r):
    return r**2 * np.log(r + 1e-6)

  def distance(a, b):
    return np.sqrt(np.square(a[:, None, :] - b[None, :, :]).sum(-1))

  system = np.zeros((points + 3, points + 3))
  system[:points, :points] = u(distance(dst, dst))
  system[:points, points:] = np.concatenate([np.ones((points, 1)), dst], 1)
  system[points:, :points] = system[:points, points:].T
  grid_x, grid_y = np.meshgrid(np.linspace(0, 1, width, dtype=np.float32), np.linspace(0, 1, height, dtype=np.float32))
  grid = np.stack([grid_x.ravel(), grid_y.ravel()], 1).astype(np.float64)
  maps = []
  for axis in range(2):
    theta = np.linalg.solve(system, np.concatenate([src[:, axis] - dst[:, axis], np.zeros(3)]))
    delta = u(distance(grid, dst)) @ theta[:points] + theta[points] + grid @ theta[points + 1 :]
    maps.append(((grid[:, axis] + delta) * (width, height)[axis]).reshape(height, width).astype(np.float32))
  return (cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR), cv2.remap(mask, maps[0], maps[1], cv2.INTER_NEAREST))


# ---------------------------------------------------------------- the two datasets


def static_clip(rng, image_path: str, mask_path: str, size: int = 384) -> tuple:
  """The official static-image dataset's sample (docs/reference.md §4.1) -> (frames, gt, sec_gt, selector)."""
  image = Image.open(image_path).convert('RGB')
  mask = Image.open(mask_path).convert('L')
  sequence = affine_params(rng, scale=(0.8, 1.5))
  flip = rng.uniform() < 0.5
  jitter = jitter_params(rng, 0.1, 0.05, 0.05, 0.05)
  gray = rng.uniform() < 0.05
  image = affine(image, sequence, Image.NEAREST, IM_MEAN)
  mask = affine(mask, sequence, Image.NEAREST, 0)
  if flip:
    image, mask = image.transpose(Image.FLIP_LEFT_RIGHT), mask.transpose(Image.FLIP_LEFT_RIGHT)
  image = color_jitter(image, jitter)
  if gray:
    image = grayscale(image)
  frames, masks = [], []
  for _ in range(FRAMES):
    params = affine_params(rng, degrees=20, scale=(0.9, 1.1), shear=10)
    im = resize_short(affine(image, params, Image.BICUBIC, IM_MEAN), size, Image.BICUBIC)
    gt = resize_short(affine(mask, params, Image.BICUBIC, 0), size, Image.NEAREST)
    top, left = int(rng.integers(0, im.size[1] - size + 1)), int(rng.integers(0, im.size[0] - size + 1))
    im, gt = im.crop((left, top, left + size, top + size)), gt.crop((left, top, left + size, top + size))
    im = np.asarray(color_jitter(im, jitter_params(rng, 0.1, 0.05, 0.05, 0.0)))
    gt = np.asarray(gt)
    if rng.uniform() < 0.33:
      im, gt = tps_warp(rng, im, gt)
    frames.append(im / 255)
    masks.append(gt / 255)
  gt = np.stack(masks)
  return np.stack(frames), gt, np.zeros_like(gt), np.array([1.0, 0.0])


def sample_frames(rng, length: int, max_skip: int) -> list[int]:
  """The official three-frame draw (docs/reference.md §4.2), reversed with probability ½."""
  jump = min(length, max_skip)
  start = int(rng.integers(0, length - jump + 1))
  f1 = min(start + int(rng.integers(0, jump + 1)) + 1, length - jump, length - 1)
  f2 = min(f1 + int(rng.integers(0, jump + 1)) + 1, length - jump // 2, length - 1)
  order = [start, f1, f2]
  return order[::-1] if rng.uniform() < 0.5 else order


def vos_clip(rng, frame_paths: list[str], mask_paths: list[str], max_skip: int, size: int = 384) -> tuple:
  """The official VOS dataset's sample (docs/reference.md §4.2) -> (frames, gt, sec_gt, selector)."""
  for _ in range(5):
    picked = sample_frames(rng, len(frame_paths), max_skip)
    flip = rng.uniform() < 0.5
    width, height = Image.open(frame_paths[picked[0]]).size
    top, left, h, w = resized_crop_params(rng, height, width, (0.36, 1.0))
    jitter = jitter_params(rng, 0.1, 0.03, 0.03, 0.0)
    gray = rng.uniform() < 0.05
    frames, masks = [], []
    for index in picked:
      image = Image.open(frame_paths[index]).convert('RGB')
      mask = Image.open(mask_paths[index]).convert('P')
      if flip:
        image, mask = image.transpose(Image.FLIP_LEFT_RIGHT), mask.transpose(Image.FLIP_LEFT_RIGHT)
      box = (left, top, left + w, top + h)
      image = image.crop(box).resize((size, size), Image.BICUBIC)
      mask = mask.crop(box).resize((size, size), Image.NEAREST)
      image = color_jitter(image, jitter)
      if gray:
        image = grayscale(image)
      params = affine_params(rng, degrees=15, shear=10)
      image = affine(image, params, Image.BICUBIC, IM_MEAN)
      mask = affine(mask, params, Image.NEAREST, 0)
      frames.append(np.asarray(color_jitter(image, jitter_params(rng, 0.01, 0.01, 0.01, 0.0))) / 255)
      masks.append(np.asarray(mask))
    labels = [k for k in np.unique(masks[0]) if k != 0]
    if labels:
      break
  masks = np.stack(masks)
  if not labels:
    target, second = -1, -1
  else:
    target = int(rng.choice(labels))
    rest = [k for k in labels if k != target]
    second = int(rng.choice(rest)) if rest else -1
  gt = (masks == target).astype(np.float64) if target > 0 else np.zeros(masks.shape)
  sec_gt = (masks == second).astype(np.float64) if second > 0 else np.zeros(masks.shape)
  return np.stack(frames), gt, sec_gt, np.array([1.0, float(second > 0)])
