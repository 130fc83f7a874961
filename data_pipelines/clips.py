"""Three-frame training clips from one static image (stage 0) or one video (stage 3), docs/reference.md §4.

Every function is TensorFlow graph code and a pure function of its stateless seed. A clip is

  frames  (T, S, S, 3) float32, ImageNet-normalised        S = crop size (384 in the reference)
  gt      (T, S, S) float32  target object (soft for static images: their masks are warped bicubically)
  sec_gt  (T, S, S) float32  second object, or zeros
  cls_gt  (T, S, S) int32    0 background, 1 target (gt > 0.5), 2 second object
  selector (2,) float32      [1, 1] with a second object, else [1, 0]
"""

import functools
from typing import Callable, Sequence

import tensorflow as tf

from data_pipelines import augment, decode
from data_pipelines.augment import IM_MEAN

CLIP_FRAMES = 3
SKIP_VALUES = (5, 10, 15, 20, 25, 5)
SKIP_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.9)
SELECTION_TRIALS = 5


def max_skip(
  step: tf.Tensor,
  total_steps: int,
  values: Sequence[int] = SKIP_VALUES,
  fractions: Sequence[float] = SKIP_FRACTIONS,
  divisor: tf.Tensor = 1,
) -> tf.Tensor:
  """The max-skip curriculum (docs/reference.md §3.3): `values[0]`, then `values[k+1]` from step fractions[k]·total,
  divided by `divisor` (5 for YouTube-VOS, whose frames are every 5th), at least 1."""
  switches = tf.constant([int(round(f * total_steps)) for f in fractions], tf.int64)
  stage = tf.reduce_sum(tf.cast(tf.cast(step, tf.int64) >= switches, tf.int32))
  return tf.maximum(tf.gather(tf.constant(values, tf.int32), stage) // tf.cast(divisor, tf.int32), 1)


def sample_frames(seed: tf.Tensor, length: tf.Tensor, skip: tf.Tensor) -> tf.Tensor:
  """The reference's ordered three-frame draw with at most `skip` frames between picks, reversed w.p. ½.

  length L, J = min(L, skip): start ~ U{0 … L-J}; f1 = min(start + U{0 … J} + 1, L-J, L-1);
  f2 = min(f1 + U{0 … J} + 1, L - J//2, L-1). Returns (3,) int32.
  """
  s = augment.split(seed, 4)
  length = tf.cast(length, tf.int32)
  jump = tf.minimum(length, tf.cast(skip, tf.int32))
  start = augment.randint(s[0], length - jump + 1)
  f1 = tf.minimum(tf.minimum(start + augment.randint(s[1], jump + 1) + 1, length - jump), length - 1)
  f2 = tf.minimum(tf.minimum(f1 + augment.randint(s[2], jump + 1) + 1, length - jump // 2), length - 1)
  order = tf.stack([start, f1, f2])
  return tf.where(augment.bernoulli(s[3], 0.5), tf.reverse(order, [0]), order)


def select_objects(seed: tf.Tensor, first_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Target uniform over the ids in the first frame, second object uniform over the rest.

  first_ids (S, S) object ids -> (target, second) int32, -1 when absent.
  """
  s = augment.split(seed, 2)
  present = tf.math.bincount(tf.reshape(tf.cast(first_ids, tf.int32), [-1]), minlength=256) > 0
  labels = tf.cast(tf.where(present[1:])[:, 0] + 1, tf.int32)
  count = tf.size(labels)
  none = tf.constant([-1], tf.int32)
  target = tf.gather(tf.concat([labels, none], 0), augment.randint(s[0], tf.maximum(count, 1)))
  rest = tf.boolean_mask(labels, tf.not_equal(labels, target))
  second = tf.gather(tf.concat([rest, none], 0), augment.randint(s[1], tf.maximum(count - 1, 1)))
  return target, second


@tf.function(jit_compile=True)
def _labels(
  frames: tf.Tensor, ids: tf.Tensor, target: tf.Tensor, second: tf.Tensor, soft: bool = False
) -> dict[str, tf.Tensor]:
  """Normalised frames and the target / second-object masks of object ids (T, S, S) float; with `soft`
  (static images) `ids` is the target's mask itself."""
  gt = ids if soft else tf.cast(tf.equal(ids, tf.cast(target, tf.float32)) & (target > 0), tf.float32)
  sec_gt = tf.cast(tf.equal(ids, tf.cast(second, tf.float32)) & (second > 0), tf.float32)
  cls_gt = tf.where(sec_gt > 0.5, 2, tf.where(gt > 0.5, 1, 0))
  selector = tf.stack([tf.constant(1.0), tf.cast(second > 0, tf.float32)])
  return {'frames': augment.normalise(frames), 'gt': gt, 'sec_gt': sec_gt, 'cls_gt': cls_gt, 'selector': selector}


PAD_TO = 128  # static images are padded to multiples of this, bounding the shapes XLA compiles for


@functools.lru_cache(maxsize=None)
def _colour(brightness: float, contrast: float, saturation: float, hue: float, grayscale: float) -> Callable:
  """ColorJitter(b, c, s, h) then RandomGrayscale(p), XLA-compiled, shared by all images given at once:
  (seed, images (…, H, W, 3), region (H, W, 1) for the contrast mean) -> images."""

  @tf.function(jit_compile=True)
  def jitter(seed, images, region):
    s = augment.split(seed, 2)
    images = augment.color_jitter(images, s[0], brightness, contrast, saturation, hue, region)
    return augment.random_grayscale(images, s[1], grayscale)

  return jitter


@functools.lru_cache(maxsize=None)
def _static_sequence() -> Callable:
  """XLA-compiled sequence level of the static pipeline, at the image's resolution (padded): (seed,
  image_and_mask (H, W, 4), valid_size, region (H, W, 1)) -> the same, scaled by RandomAffine(scale (0.8,
  1.5)) with nearest neighbours (fill IM_MEAN / 0), flipped, then colour-jittered (the fill too, as in the
  reference) and grayscaled w.p. 0.05."""

  @tf.function(jit_compile=True)
  def sequence_of(seed, image_and_mask, valid_size, region):
    height, width = tf.cast(valid_size[0], tf.float32), tf.cast(valid_size[1], tf.float32)
    s = augment.split(seed, 3)
    forward = augment.hflip(s[0], width) @ augment.random_affine(s[1], height, width, scale=(0.8, 1.5))
    both = augment.warp(image_and_mask, forward, tf.shape(image_and_mask)[:2], 'nearest', IM_MEAN + (0.0,), valid_size)
    image = _colour(0.1, 0.05, 0.05, 0.05, 0.05)(s[2], both[..., :3], region)
    return tf.concat([image, both[..., 3:]], -1)

  return sequence_of


@functools.lru_cache(maxsize=None)
def _static_frame(size: int, tps_probability: float) -> Callable:
  """The frame level of the static pipeline, in the reference's order: (seed, image_and_mask (H, W, 4)
  padded, valid_size) -> frame (S, S, 3), mask (S, S, 1).

  RandomAffine(20°, scale (0.9, 1.1), shear 10) at the image's resolution (bicubic for image and mask,
  both 8-bit in the reference and truncated by PIL's transform; fill IM_MEAN / 0); then Resize(S)
  (bicubic; nearest for the mask) and RandomCrop(S) as one resize that computes only the crop's window;
  a colour jitter and, w.p. `tps_probability`, the thin-plate-spline warp. Two XLA programs: in one, XLA
  would recompute the affine for every tap of the resize."""

  @tf.function(jit_compile=True)
  def affine(seed, image_and_mask, valid_size):
    height, width = tf.cast(valid_size[0], tf.float32), tf.cast(valid_size[1], tf.float32)
    forward = augment.random_affine(seed, height, width, degrees=20, scale=(0.9, 1.1), shear=10)
    return augment.warp(image_and_mask, forward, tf.shape(image_and_mask)[:2], 'bicubic', IM_MEAN + (0.0,), valid_size)

  @tf.function(jit_compile=True)
  def crop_and_finish(seed, warped, valid_size):
    f = augment.split(seed, 4)
    new_size = augment.short_side(valid_size[0], valid_size[1], size)
    corner = augment.random_window(f[0], new_size, size)
    frame = augment.resized_window(warped[..., :3], valid_size, new_size, corner, size)
    mask = augment.nearest_window(warped[..., 3:], valid_size, new_size, corner, size)
    frame = augment.color_jitter(frame, f[1], 0.1, 0.05, 0.05, 0.0)
    return tf.cond(
      augment.bernoulli(f[2], tps_probability), lambda: _tps(f[3], frame, mask, size), lambda: (frame, mask)
    )

  def frame_of(seed, image_and_mask, valid_size):
    s = augment.split(seed, 2)
    return crop_and_finish(s[1], affine(s[0], image_and_mask, valid_size), valid_size)

  return frame_of


def _tps(seed: tf.Tensor, frame: tf.Tensor, mask: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
  """The thin-plate-spline warp as the reference does it with cv2.remap: image bilinear, its taps outside
  the frame black (BORDER_CONSTANT, a soft border), rounded to 8 bits; mask nearest, 0 outside. The
  reference's remap grid is linspace(0, 1, n) · n, which stretches the frame by n / (n - 1) about its
  first pixel: emulated."""
  x, y = augment.tps_coords(seed, size, size)
  x, y = (v + (v - 0.5) / (size - 1) for v in (x, y))
  frame = augment.to_8bit(augment.sample(frame, x, y, 'bilinear', (0.0, 0.0, 0.0), soft_channels=3), 'round')
  return frame, augment.sample(mask, x, y, 'nearest', (0.0,))


def static_clip(
  seed: tf.Tensor,
  image_data: tf.Tensor,
  mask_data: tf.Tensor,
  mask_name: tf.Tensor,
  size: int,
  tps_probability: float = 0.33,
) -> dict[str, tf.Tensor]:
  """One image and its 8-bit mask -> a three-frame pseudo-video (docs/reference.md §4.1), in the reference's order.

  The reference scales (nearest), flips and jitters the image, then per frame applies an affine
  (bicubic, image and mask), Resize(size), RandomCrop(size), a colour jitter and, with probability
  0.33, a thin-plate-spline warp. The steps before the resize run at the image's own resolution, as
  there: resizing first changes what the content and the fill's edges look like (measured by the
  distribution test). Images are padded to multiples of PAD_TO for the XLA-compiled steps.
  """
  image, mask = decode.rgb(image_data), decode.gray(mask_data)
  with tf.control_dependencies(decode.assert_same_size(image, mask, mask_name)):
    valid_size = tf.shape(image)[:2]
  padded = (valid_size + PAD_TO - 1) // PAD_TO * PAD_TO
  image_and_mask = tf.image.pad_to_bounding_box(tf.concat([image, mask], -1), 0, 0, padded[0], padded[1])
  region = tf.image.pad_to_bounding_box(tf.ones(tf.concat([valid_size, [1]], 0)), 0, 0, padded[0], padded[1])
  s = augment.split(seed, 1 + CLIP_FRAMES)
  image_and_mask = _static_sequence()(s[0], image_and_mask, valid_size, region)
  frames, masks = zip(
    *[_static_frame(size, tps_probability)(s[1 + t], image_and_mask, valid_size) for t in range(CLIP_FRAMES)]
  )
  return _labels(tf.stack(frames), tf.stack(masks)[..., 0], tf.constant(-1), tf.constant(-1), soft=True)


@functools.lru_cache(maxsize=None)
def _video_frame(size: int) -> Callable:
  """XLA-compiled frame level of the video pipeline: (seed, frame (S, S, 3), ids (S, S), flip (3, 3)) ->
  an affine (15°, shear 10; bicubic / nearest) with the sequence's flip folded in, and a small jitter."""

  @tf.function(jit_compile=True)
  def frame_of(seed, frame, ids, flip):
    f = augment.split(seed, 2)
    forward = augment.random_affine(f[0], size, size, degrees=15, shear=10) @ flip
    frame = augment.warp(frame, forward, (size, size), 'bicubic', IM_MEAN)
    ids = augment.warp(ids[..., None], forward, (size, size), 'nearest', (0.0,))[..., 0]
    return augment.color_jitter(frame, f[1], 0.01, 0.01, 0.01, 0.0), ids

  return frame_of


def _augment_video(seed: tf.Tensor, frames: tf.Tensor, ids: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
  """After the crop: (T, S, S, 3) frames and (T, S, S) ids -> a flip, colour jitter and grayscale (sequence
  level), then `_video_frame` for each frame."""
  s = augment.split(seed, 2 + CLIP_FRAMES)
  flip = augment.hflip(s[0], size)
  frames = _colour(0.1, 0.03, 0.03, 0.0, 0.05)(s[1], frames, tf.ones([size, size, 1]))
  out = [_video_frame(size)(s[2 + t], frames[t], ids[t], flip) for t in range(CLIP_FRAMES)]
  return tf.stack([f for f, _ in out]), tf.stack([i for _, i in out])


def _crop_resize(box: tf.Tensor, images: tf.Tensor, ids: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
  """RandomResizedCrop's resize to S×S: images (T, h, w, 3) already cropped to `box` shrink with
  antialiasing as PIL does (plain bicubic when they grow), rounded to 8 bits as PIL's resize rounds; ids
  (T, H, W) full size are resized nearest."""
  grows = tf.reduce_all(box[2:] <= size)
  images = tf.cond(
    grows,
    lambda: tf.image.resize(images, (size, size), 'bicubic'),
    lambda: tf.image.resize(images, (size, size), 'bicubic', antialias=True),
  )
  rows = box[0] + augment.nearest_indices(0, box[2], tf.cast(box[2], tf.float32) / size, size)
  cols = box[1] + augment.nearest_indices(0, box[3], tf.cast(box[3], tf.float32) / size, size)
  ids = tf.gather(tf.gather(ids, rows, axis=1), cols, axis=2)
  return augment.to_8bit(images, 'round'), tf.cast(ids, tf.float32)


def vos_clip(
  seed: tf.Tensor,
  frame_refs: tf.Tensor,
  mask_refs: tf.Tensor,
  mask_names: tf.Tensor,
  skip: tf.Tensor,
  size: int,
  read: Callable[[tf.Tensor], tf.Tensor],
) -> dict[str, tf.Tensor]:
  """One video -> a clip with the reference's augmentation and object selection (docs/reference.md §4.2).

  frame_refs / mask_refs (L,): what `read` turns into encoded bytes (file paths, or the bytes themselves);
  mask_names (L,) name the masks in error messages. The sequence-level RandomResizedCrop(S, scale
  (0.36, 1)) decodes only the crop of each JPEG; the rest is `_augment_video`. Up to five trials draw new
  frames and new augmentation until the first clip frame shows an object; after five failures the
  target is absent (-1) and every mask is empty, as in the reference.
  """

  def trial(k):
    s = augment.split(tf.random.experimental.stateless_fold_in(seed, k), 3)
    picked = sample_frames(s[0], tf.size(frame_refs), skip)
    frame_data, mask_data = read(tf.gather(frame_refs, picked)), read(tf.gather(mask_refs, picked))
    names = tf.gather(mask_names, picked)
    sizes = [decode.jpeg_size(frame_data[t]) for t in range(CLIP_FRAMES)]
    height_width = sizes[0]
    box = augment.random_resized_crop(s[1], height_width[0], height_width[1], scale=(0.36, 1.0))
    images = tf.stack([decode.rgb_crop(frame_data[t], box) for t in range(CLIP_FRAMES)])
    ids = [decode.object_ids(mask_data[t], names[t]) for t in range(CLIP_FRAMES)]
    checks = [
      a
      for t in range(CLIP_FRAMES)
      for a in decode.assert_size(ids[t], height_width, names[t])
      + decode.assert_size(sizes[t], height_width, names[t], "its video's first picked frame")
    ]
    with tf.control_dependencies(checks):
      images, ids = _crop_resize(box, images, tf.stack(ids), size)
    return _augment_video(s[2], images, ids, size)

  def again(k, frames, ids):
    return tf.logical_and(k < SELECTION_TRIALS, tf.logical_not(tf.reduce_any(ids[0] > 0)))

  def body(k, frames, ids):
    return (k + 1, *trial(k))

  _, frames, ids = tf.while_loop(again, body, (tf.constant(1), *trial(0)))
  target, second = select_objects(tf.random.experimental.stateless_fold_in(seed, SELECTION_TRIALS), ids[0])
  return _labels(frames, ids, target, second)
