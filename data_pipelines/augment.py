"""The reference's augmentations (torchvision semantics, docs/reference.md §4) as stateless TensorFlow ops.

Images are float32 in [0, 1], `(H, W, 3)` or `(T, H, W, 3)`; masks are float32 `(H, W, 1)`. Every
random draw takes an explicit stateless seed (a `(2,)` int tensor), so a sample is a pure function of
its seed. Everything here also compiles with XLA (`jit_compile=True`) when its shapes are static.

Geometry is expressed as 3×3 matrices that map source coordinates to output coordinates (continuous
pixel coordinates: pixel k covers [k, k+1)); consecutive transforms are composed into one matrix and
resampled once by `warp`, with the kernels (nearest, bilinear, bicubic with PIL's affine a = -1) and
fill rules of PIL's `Image.transform`.

8-bit results. The reference runs its transforms on PIL images, which store every intermediate result as
8 bits: `Image.blend` (each brightness, contrast and saturation op) and `Image.transform` (the affines)
**truncate** toward zero, resizing rounds, `convert('L')` rounds with PIL's fixed-point weights, the
contrast op blends towards the rounded mean luma, and the hue shift is an integer step on PIL's 8-bit
HSV. A float pipeline that skips these drifts about half a grey level per truncating op, 2.8 levels
brighter over a clip; so each op here computes in float and writes its result as PIL would
(`to_8bit`, `blend_8bit`, `luma_8bit`, `hue_shift_8bit`), an artefact emulated as the training step
emulates PyTorch at ties. Images stay float32 in [0, 1], on the grid k/255 after every op.
"""

import functools
import math
from typing import NamedTuple, Optional, Sequence

import tensorflow as tf

from gsfm_jax.models.normalisation import IMAGENET_MEAN, IMAGENET_STD

IM_MEAN = (124 / 255, 116 / 255, 104 / 255)  # fill colour of affine warps and crops
CUBIC_A = -1.0  # the bicubic kernel of PIL's Image.transform (its resize uses -0.5: TF's resize does too)
LEVELS = 255.0  # 8-bit images: value k/255


def split(seed: tf.Tensor, n: int) -> list[tf.Tensor]:
  """`n` independent seeds from one."""
  return list(tf.unstack(tf.random.experimental.stateless_split(seed, n)))


def uniform(seed: tf.Tensor, low: float, high: float, shape: Sequence[int] = ()) -> tf.Tensor:
  return tf.random.stateless_uniform(shape, seed, low, high, dtype=tf.float32)


def randint(seed: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
  """Uniform on {0 … n-1} (int32; n ≥ 1)."""
  n = tf.cast(n, tf.float32)
  return tf.cast(tf.minimum(tf.floor(uniform(seed, 0.0, 1.0) * n), n - 1), tf.int32)


def bernoulli(seed: tf.Tensor, p: float) -> tf.Tensor:
  return uniform(seed, 0.0, 1.0) < p


# ---------------------------------------------------------------- geometry (3×3, source -> output)


def _matrix(rows) -> tf.Tensor:
  return tf.stack([tf.stack([tf.cast(v, tf.float32) for v in row]) for row in rows])


def translation(tx, ty) -> tf.Tensor:
  return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def about(matrix: tf.Tensor, cx, cy) -> tf.Tensor:
  """`matrix` applied around the point (cx, cy) instead of the origin."""
  return translation(cx, cy) @ matrix @ translation(-cx, -cy)


def hflip(seed: tf.Tensor, width) -> tf.Tensor:
  """RandomHorizontalFlip(0.5) of an image `width` wide."""
  flip = bernoulli(seed, 0.5)
  return tf.where(flip, _matrix([[-1, 0, width], [0, 1, 0], [0, 0, 1]]), tf.eye(3))


def random_affine(
  seed: tf.Tensor, height, width, degrees: float = 0.0, scale=(1.0, 1.0), shear: float = 0.0
) -> tf.Tensor:
  """RandomAffine(degrees, scale, shear) about the image centre, no translation (x-shear only)."""
  s = split(seed, 3)
  angle = uniform(s[0], -degrees, degrees) * (math.pi / 180)
  zoom = uniform(s[1], scale[0], scale[1])
  shear_x = uniform(s[2], -shear, shear) * (math.pi / 180)
  cos, sin, tan = tf.cos(angle), tf.sin(angle), tf.tan(shear_x)
  linear = _matrix([[zoom * cos, zoom * (cos * tan - sin), 0], [zoom * sin, zoom * (sin * tan + cos), 0], [0, 0, 1]])
  return about(linear, tf.cast(width, tf.float32) / 2, tf.cast(height, tf.float32) / 2)


def random_resized_crop(
  seed: tf.Tensor, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10
) -> tf.Tensor:
  """RandomResizedCrop's box (top, left, height, width) int32: torchvision's 10 tries, then its fallback."""
  s = split(seed, 4)
  h_in, w_in = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  area = h_in * w_in * uniform(s[0], scale[0], scale[1], [attempts])
  aspect = tf.exp(uniform(s[1], math.log(ratio[0]), math.log(ratio[1]), [attempts]))
  w = tf.round(tf.sqrt(area * aspect))
  h = tf.round(tf.sqrt(area / aspect))
  fits = (w > 0) & (w <= w_in) & (h > 0) & (h <= h_in)
  first = tf.argmax(tf.cast(fits, tf.int32))
  in_ratio = w_in / h_in
  fallback_w = tf.where(in_ratio > ratio[1], tf.round(h_in * ratio[1]), w_in)
  fallback_h = tf.where(in_ratio < ratio[0], tf.round(w_in / ratio[0]), h_in)
  found = tf.reduce_any(fits)
  w, h = tf.where(found, w[first], fallback_w), tf.where(found, h[first], fallback_h)
  top = tf.where(found, tf.cast(randint(s[2], h_in - h + 1), tf.float32), tf.floor((h_in - h) / 2))
  left = tf.where(found, tf.cast(randint(s[3], w_in - w + 1), tf.float32), tf.floor((w_in - w) / 2))
  return tf.cast(tf.stack([top, left, h, w]), tf.int32)


def random_window(seed: tf.Tensor, size_in: tf.Tensor, size: int) -> tf.Tensor:
  """RandomCrop(size)'s corner (top, left) int32 in an image of `size_in (2,)`, at least `size` each side."""
  s = split(seed, 2)
  size_in = tf.cast(size_in, tf.int32)
  return tf.stack([randint(s[0], size_in[0] - size + 1), randint(s[1], size_in[1] - size + 1)])


# ---------------------------------------------------------------- 8-bit results


def to_8bit(image: tf.Tensor, rounding: str) -> tf.Tensor:
  """A float result in [0, 1] stored as PIL / OpenCV store 8 bits: clamped, then 'truncate'd (PIL's
  `Image.transform`, `Image.blend`) or 'round'ed (PIL's resize, OpenCV's remap), back on the grid k/255.

  Truncation allows 1e-3 of a level for float32 round-off, so a weighted sum that is exactly k in PIL's
  double arithmetic (a flat region, an identity warp) stays k here.
  """
  levels = image * LEVELS
  levels = tf.floor(levels + 1e-3) if rounding == 'truncate' else tf.round(levels)
  return tf.clip_by_value(levels, 0.0, LEVELS) / LEVELS


def levels_of(image: tf.Tensor) -> tf.Tensor:
  """An 8-bit image in [0, 1] -> its integer levels 0 … 255, as float32."""
  return tf.round(image * LEVELS)


# ---------------------------------------------------------------- resampling


def _cubic(t: tf.Tensor) -> tf.Tensor:
  """Keys' cubic convolution kernel with a = -1 (PIL's affine transforms), at distances |t| < 2."""
  t = tf.abs(t)
  near = ((CUBIC_A + 2) * t - (CUBIC_A + 3)) * t * t + 1
  far = ((CUBIC_A * t - 5 * CUBIC_A) * t + 8 * CUBIC_A) * t - 4 * CUBIC_A
  return tf.where(t <= 1, near, tf.where(t < 2, far, 0.0))


def _taps(coord: tf.Tensor, size: tf.Tensor, method: str) -> tuple[tf.Tensor, tf.Tensor]:
  """Neighbour indices (not clamped: see `_clamp`) and weights along one axis: (..., n) each."""
  if method == 'nearest':
    index = tf.floor(coord)[..., None]
    weights = tf.ones_like(index)
  else:
    u = coord - 0.5
    base = tf.floor(u)
    frac = (u - base)[..., None]
    if method == 'bilinear':
      offsets = tf.constant([0.0, 1.0])
      weights = tf.concat([1 - frac, frac], -1)
    elif method == 'bicubic':
      offsets = tf.constant([-1.0, 0.0, 1.0, 2.0])
      weights = _cubic(frac - offsets)
    else:
      raise ValueError(f'unknown interpolation {method!r}')
    index = base[..., None] + offsets
  return index, weights


def _clamp(index: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
  """Neighbour indices past the border repeat the edge."""
  return tf.clip_by_value(index, 0.0, tf.cast(size, tf.float32) - 1)


def _inside(x: tf.Tensor, y: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
  size = tf.cast(size, tf.float32)
  return (x >= 0) & (x < size[1]) & (y >= 0) & (y < size[0])


def _apply(matrix: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  return matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2], matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]


def sample(
  image: tf.Tensor,
  x: tf.Tensor,
  y: tf.Tensor,
  method: str,
  fill: Sequence[float],
  size: Optional[tf.Tensor] = None,
  soft_channels: int = 0,
) -> tf.Tensor:
  """Reads `image (H, W, C)` at continuous points `x, y (h, w)` -> `(h, w, C)`.

  `size` (height, width) is the image's valid region when it is padded (default: all of it). Points
  outside it get `fill`; inside, neighbours past the border repeat the edge (PIL's transform). The first
  `soft_channels` channels instead read `fill` at every neighbour outside the region, with no hard edge,
  as cv2.remap's BORDER_CONSTANT does: the border blends into the fill over the kernel's support.
  """
  size = tf.shape(image)[:2] if size is None else size
  ix, wx = _taps(x, size[1], method)
  iy, wy = _taps(y, size[0], method)
  flat = tf.reshape(image, [-1, image.shape[-1]])
  fill = tf.constant(fill, tf.float32)
  out = 0.0
  for j in range(iy.shape[-1]):  # one gather per tap: XLA fuses it with the sum (2× the speed of one big gather)
    row = tf.cast(_clamp(iy[..., j], size[0]), tf.int32) * tf.shape(image)[1]
    for i in range(ix.shape[-1]):
      tap = tf.gather(flat, row + tf.cast(_clamp(ix[..., i], size[1]), tf.int32))
      if soft_channels:
        outside = tf.logical_not(_inside(ix[..., i] + 0.5, iy[..., j] + 0.5, size))[..., None]
        tap = tf.concat(
          [tf.where(outside, fill[:soft_channels], tap[..., :soft_channels]), tap[..., soft_channels:]], -1
        )
      out += tap * (wy[..., j] * wx[..., i])[..., None]
  hard = tf.where(_inside(x, y, size)[..., None], out, fill)
  return tf.concat([out[..., :soft_channels], hard[..., soft_channels:]], -1) if soft_channels else hard


def warp(
  image: tf.Tensor,
  forward: tf.Tensor,
  size: tuple[int, int],
  method: str,
  fill: Sequence[float],
  source_size: Optional[tf.Tensor] = None,
) -> tf.Tensor:
  """Resamples `image (H, W, C)` through `forward` (source -> output) into the `size (h, w)`.

  `source_size` as in `sample`. Bicubic results are written as PIL's transform writes 8-bit pixels:
  clamped and truncated (`to_8bit`); nearest ones are the source's values.
  """
  ys, xs = tf.meshgrid(
    tf.range(size[0], dtype=tf.float32) + 0.5, tf.range(size[1], dtype=tf.float32) + 0.5, indexing='ij'
  )
  x, y = _apply(tf.linalg.inv(forward), xs, ys)
  out = sample(image, x, y, method, fill, source_size)
  return to_8bit(out, 'truncate') if method == 'bicubic' else out


def short_side(height: tf.Tensor, width: tf.Tensor, size: int) -> tf.Tensor:
  """Resize(size)'s output (height, width) int32: the shorter side `size`, the longer int(size · long / short)."""
  height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
  short = tf.minimum(height, width)
  return tf.where(height <= width, tf.stack([size, size * width // short]), tf.stack([size * height // short, size]))


def _resample(
  image: tf.Tensor, size_in: tf.Tensor, new: tf.Tensor, start: tf.Tensor, count: int, axis: int
) -> tf.Tensor:
  """PIL's resampling along `axis` (0 or 1) of `image (H, W, C)` (Resample.c): output pixels start …
  start+count-1 of a resize of the first `size_in` pixels to `new`, rounded to 8 bits.

  Keys' cubic (a = -0.5), widened by the scale when shrinking (antialiasing), normalised to sum 1. The
  taps are a loop (their number follows the scale), one gather each, which XLA fuses with the sum."""
  size_in = tf.cast(size_in, tf.float32)
  scale = size_in / tf.cast(new, tf.float32)
  widen = tf.maximum(scale, 1.0)
  centre = (tf.cast(start + tf.range(count), tf.float32) + 0.5) * scale
  first = tf.maximum(tf.floor(centre - 2.0 * widen + 0.5), 0.0)
  last = tf.minimum(tf.floor(centre + 2.0 * widen + 0.5), size_in)  # exclusive

  def weight(k):
    t = tf.abs((first + k - centre + 0.5) / widen)
    cubic = tf.where(t < 1, (1.5 * t - 2.5) * t * t + 1, tf.where(t < 2, ((-0.5 * t + 2.5) * t - 4) * t + 2, 0.0))
    return tf.where(first + k < last, cubic, 0.0)

  shape = [-1, 1, 1] if axis == 0 else [1, -1, 1]

  def tap(k):
    index = tf.cast(tf.minimum(first + k, size_in - 1), tf.int32)
    w = weight(k)
    return tf.gather(image, index, axis=axis) * tf.reshape(w, shape), w

  def add(k, out, total):
    value, w = tap(tf.cast(k, tf.float32))
    return k + 1, out + value, total + w

  taps = tf.cast(tf.floor(4.0 * widen), tf.int32) + 2
  _, out, total = tf.while_loop(lambda k, *_: k < taps, add, (tf.constant(1), *tap(0.0)))
  return to_8bit(out / tf.reshape(total, shape), 'round')


def resized_window(
  image: tf.Tensor, size_in: tf.Tensor, new_size: tf.Tensor, corner: tf.Tensor, size: int
) -> tf.Tensor:
  """PIL's bicubic resize of the `size_in (2,)` top-left region of `image (H, W, C)` (padded) to
  `new_size (2,)`, of which only the `size`² window at `corner (2,)` is computed -> (size, size, C):
  a horizontal pass, rounded to 8 bits, then a vertical one, as PIL does (`_resample`)."""
  across = _resample(image, size_in[1], new_size[1], corner[1], size, axis=1)  # (H, size, C)
  return _resample(across, size_in[0], new_size[0], corner[0], size, axis=0)


def nearest_indices(start: tf.Tensor, length: tf.Tensor, scale: tf.Tensor, size: int) -> tf.Tensor:
  """Source indices of `size` pixels of a nearest-neighbour resize by `scale` (input pixels per output
  pixel) from output pixel `start` on, within `length` input pixels: floor((k + ½)·scale) (PIL)."""
  index = tf.cast(tf.floor((tf.cast(start + tf.range(size), tf.float32) + 0.5) * scale), tf.int32)
  return tf.minimum(index, length - 1)


def nearest_window(
  image: tf.Tensor, size_in: tf.Tensor, new_size: tf.Tensor, corner: tf.Tensor, size: int
) -> tf.Tensor:
  """PIL's nearest resize of the `size_in (2,)` top-left region of `image (H, W, C)` to `new_size (2,)`, the
  `size`² window at `corner (2,)`."""
  size_in = tf.cast(size_in, tf.int32)
  scale = tf.cast(size_in, tf.float32) / tf.cast(new_size, tf.float32)
  rows = nearest_indices(corner[0], size_in[0], scale[0], size)
  cols = nearest_indices(corner[1], size_in[1], scale[1], size)
  return tf.gather(tf.gather(image, rows, axis=0), cols, axis=1)


def tps_coords(
  seed: tf.Tensor, height: int, width: int, points: int = 12, sigma: float = 0.02, stride: int = 4
) -> tuple[tf.Tensor, tf.Tensor]:
  """A random thin-plate-spline warp: source points `x, y (height, width)` for each output pixel.

  `points` control points uniform in the unit square are displaced by N(0, sigma) (normalised
  coordinates); the spline maps each displaced point back to its original place. The smooth spline is
  evaluated every `stride` pixels and interpolated bilinearly (images larger than `stride`). Measured at
  384² against every pixel: at most 0.3 px off (next to control points), under 0.01 px on average.
  """
  s = split(seed, 2)
  src = tf.random.stateless_uniform([points, 2], s[0], dtype=tf.float64)
  dst = src + tf.random.stateless_normal([points, 2], s[1], stddev=sigma, dtype=tf.float64)

  def kernel(a, b):  # U(r) = r² log r², (n, 2) × (m, 2) -> (n, m)
    r2 = tf.reduce_sum(tf.square(a[:, None] - b[None]), -1)
    return tf.where(r2 > 0, r2 * tf.math.log(tf.maximum(r2, 1e-300)), tf.zeros_like(r2))

  affine = tf.concat([tf.ones([points, 1], tf.float64), dst], 1)
  system = tf.concat(
    [tf.concat([kernel(dst, dst), affine], 1), tf.concat([tf.transpose(affine), tf.zeros([3, 3], tf.float64)], 1)], 0
  )
  params = tf.linalg.solve(system, tf.concat([src, tf.zeros([3, 2], tf.float64)], 0))
  coarse = (-(-height // stride), -(-width // stride))
  ys, xs = tf.meshgrid(
    (tf.range(coarse[0], dtype=tf.float64) + 0.5) * stride / height,
    (tf.range(coarse[1], dtype=tf.float64) + 0.5) * stride / width,
    indexing='ij',
  )
  grid = tf.reshape(tf.stack([xs, ys], -1), [-1, 2])
  mapped = kernel(grid, dst) @ params[:points] + tf.concat([tf.ones_like(grid[:, :1]), grid], 1) @ params[points:]
  mapped = tf.cast(tf.reshape(mapped, [coarse[0], coarse[1], 2]), tf.float32)
  rows, cols = _linear_upsampling(height, coarse[0], stride), _linear_upsampling(width, coarse[1], stride)
  x = rows @ mapped[..., 0] @ tf.transpose(cols)
  y = rows @ mapped[..., 1] @ tf.transpose(cols)
  return x * width, y * height


def _linear_upsampling(size: int, coarse: int, stride: int) -> tf.Tensor:
  """(size, coarse) matrix interpolating linearly between samples at pixel centres (k + ½)·stride, and
  extrapolating linearly past the first and last ones (coarse ≥ 2)."""
  position = (tf.range(size, dtype=tf.float32) + 0.5) / stride - 0.5
  left = tf.clip_by_value(tf.floor(position), 0.0, coarse - 2.0)
  t = (position - left)[:, None]
  left = tf.cast(left, tf.int32)
  return (1 - t) * tf.one_hot(left, coarse) + t * tf.one_hot(left + 1, coarse)


# ---------------------------------------------------------------- colour (PIL's 8-bit arithmetic)


def luma_8bit(levels: tf.Tensor) -> tf.Tensor:
  """PIL's `convert('L')` of 8-bit RGB levels `(…, 3)`: (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16, the
  ITU-R 601 luma rounded in fixed point -> levels `(…, 1)` float32."""
  rgb = tf.cast(levels, tf.int32)
  luma = (rgb[..., :1] * 19595 + rgb[..., 1:2] * 38470 + rgb[..., 2:] * 7471 + 32768) // 65536
  return tf.cast(luma, tf.float32)


def blend_8bit(base: tf.Tensor, levels: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """PIL's `Image.blend(base, image, factor)` on 8-bit levels: base + factor·(image − base) in float32,
  clamped and truncated toward zero (ImageEnhance's brightness, contrast and colour ops)."""
  return tf.clip_by_value(tf.floor(base + factor * (levels - base)), 0.0, LEVELS)


def _round_half_up(x: tf.Tensor) -> tf.Tensor:
  """C's `round` for x ≥ 0 (halves go up; tf.round goes to even)."""
  return tf.floor(x + 0.5)


def hue_shift_8bit(levels: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
  """torchvision's PIL hue shift: RGB -> PIL's 8-bit HSV, H += uint8(trunc(255·shift)) modulo 256, -> RGB.

  `levels (…, 3)` float32 integer levels -> the same. PIL's conversions truncate H and S to 8 bits and
  round the RGB it rebuilds, so even a zero shift changes an image slightly (as the reference does).
  Computed in float64 where PIL computes in double.
  """
  rgb = tf.cast(levels, tf.float64)
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  v = tf.reduce_max(rgb, -1)
  chroma = v - tf.reduce_min(rgb, -1)
  grey = tf.equal(chroma, 0)
  zero, one = tf.zeros_like(v), tf.ones_like(v)
  safe = tf.where(grey, one, chroma)
  # PIL's C: rc, gc, bc and h are floats, the sums with 2.0 and 4.0 are done in double
  rc, gc, bc = (tf.cast(tf.cast((v - c) / safe, tf.float32), tf.float64) for c in (r, g, b))
  h = tf.where(tf.equal(r, v), bc - gc, tf.where(tf.equal(g, v), 2.0 + rc - bc, 4.0 + gc - rc))
  h = tf.math.floormod(tf.cast(tf.cast(h, tf.float32), tf.float64) / 6.0 + 1.0, 1.0)
  h = tf.cast(tf.cast(h, tf.float32), tf.float64)  # stored in a float again
  h8 = tf.where(grey, zero, tf.clip_by_value(tf.floor(h * 255.0), 0.0, 255.0))
  saturation = tf.cast(tf.cast(chroma, tf.float32) / tf.cast(tf.where(grey, one, v), tf.float32), tf.float64)
  s8 = tf.where(grey, zero, tf.floor(saturation * 255.0))
  step = tf.cast(tf.math.floormod(tf.cast(tf.cast(shift, tf.float64) * 255.0, tf.int32), 256), tf.float64)
  h8 = tf.math.floormod(h8 + step, 256.0)
  sector = tf.floor(h8 * 6.0 / 255.0)
  f = h8 * 6.0 / 255.0 - sector
  fs = s8 / 255.0
  p = _round_half_up(v * (1.0 - fs))
  q = _round_half_up(v * (1.0 - fs * f))
  t = _round_half_up(v * (1.0 - fs * (1.0 - f)))
  sector = tf.cast(tf.math.floormod(sector, 6.0), tf.int32)[..., None]
  choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
  out = tf.zeros_like(rgb)
  for k, channels in enumerate(choices):
    out = tf.where(tf.equal(sector, k), tf.stack(channels, -1), out)
  out = tf.where(tf.equal(s8, 0)[..., None], v[..., None] * tf.ones_like(rgb), out)
  return tf.cast(out, tf.float32)


class JitterPlan(NamedTuple):
  """The random part of one ColorJitter: `factors (3,)` of brightness, contrast, saturation, the `order
  (4,)` of the ops (0 b, 1 c, 2 s, 3 hue) and the hue `shift` (applied when the jitter has a hue range)."""

  factors: tf.Tensor
  order: tf.Tensor
  shift: tf.Tensor


def jitter_plan(seed: tf.Tensor, brightness: float, contrast: float, saturation: float, hue: float) -> JitterPlan:
  """ColorJitter(b, c, s, h)'s draws: factors U[1-x, 1+x], a hue shift U[-h, h], a random order."""
  s = split(seed, 3)
  factors = 1 + tf.constant([brightness, contrast, saturation], tf.float32) * uniform(s[0], -1.0, 1.0, [3])
  return JitterPlan(factors, tf.argsort(uniform(s[1], 0.0, 1.0, [4])), uniform(s[2], -hue, hue))


def _jitter_op(levels: tf.Tensor, plan: JitterPlan, op: tf.Tensor, hue: bool, weight: tf.Tensor) -> tf.Tensor:
  """Op `op` of a ColorJitter on 8-bit `levels (…, H, W, 3)`: brightness blends with black, contrast with
  the rounded mean luma over `weight (…, H, W, 1)`, saturation with the luma, hue shifts (built only
  when the jitter has a `hue` range)."""

  def contrast():
    total = tf.reduce_sum(tf.cast(luma_8bit(levels), tf.int32) * weight, [-3, -2, -1], keepdims=True)
    count = tf.reduce_sum(weight, [-3, -2, -1], keepdims=True)
    mean = _round_half_up(tf.cast(total, tf.float64) / tf.cast(count, tf.float64))
    return blend_8bit(tf.cast(mean, tf.float32), levels, plan.factors[1])

  branches = [
    lambda: blend_8bit(0.0, levels, plan.factors[0]),
    contrast,
    lambda: blend_8bit(luma_8bit(levels), levels, plan.factors[2]),
  ]
  return tf.switch_case(op, branches + ([lambda: hue_shift_8bit(levels, plan.shift)] if hue else []))


def color_jitter(
  image: tf.Tensor,
  seed: tf.Tensor,
  brightness: float,
  contrast: float,
  saturation: float,
  hue: float,
  region: Optional[tf.Tensor] = None,
) -> tf.Tensor:
  """ColorJitter on PIL images: factors U[1-x, 1+x] (hue shift U[-h, h]) applied in a random order, each
  op writing 8 bits as PIL does. A range of 0 is an op torchvision leaves out (hue 0: no HSV round trip).

  `image` (…, H, W, 3) in [0, 1] on the 8-bit grid; all images share the factors and the order (a
  sequence-level jitter); the contrast op's mean luma is taken per image over `region (H, W, 1)` if given.
  """
  plan = jitter_plan(seed, brightness, contrast, saturation, hue)
  weight = (
    tf.ones_like(image[..., :1], tf.int32)
    if region is None
    else tf.broadcast_to(tf.cast(region, tf.int32), tf.shape(image[..., :1]))
  )
  levels = levels_of(image)
  ranges = (brightness, contrast, saturation, hue)
  for slot in range(4):
    op = plan.order[slot]
    active = tf.gather(tf.constant([r > 0 for r in ranges]), op)
    levels = tf.cond(active, functools.partial(_jitter_op, levels, plan, op, hue > 0, weight), lambda: levels)
  return levels / LEVELS


def random_grayscale(image: tf.Tensor, seed: tf.Tensor, p: float) -> tf.Tensor:
  """RandomGrayscale(p): PIL's luma (`luma_8bit`) replicated to three channels."""
  return tf.where(bernoulli(seed, p), tf.repeat(luma_8bit(levels_of(image)), 3, -1) / LEVELS, image)


def normalise(image: tf.Tensor) -> tf.Tensor:
  """[0, 1] RGB -> ImageNet-normalised."""
  return (image - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
