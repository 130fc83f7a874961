"""The inference engine against a plain Python loop over the reference's rules (docs/reference.md §5): the scan with
its fixed-size memory bank, the bounded-memory policy, objects that appear mid-video, compilation reuse
across videos, the streaming API, explicit host↔device transfers, and the resize matrices."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import NARROW, narrow_variables

from gsfm_jax.inference import Propagator, Protocol, resize
from gsfm_jax.inference.schedule import schedule, slots_for
from gsfm_jax.inference.stream import Stream
from gsfm_jax.models import GSFM
from gsfm_jax.models.aggregate import aggregate
from gsfm_jax.models.normalisation import IMAGENET_MEAN, IMAGENET_STD

HEIGHT, WIDTH, TOP_K = 64, 90, 20  # padded to 64 × 96: a 4 × 6 memory map, so top-k keeps 20 of ≥ 24
MODEL = GSFM(width_divisor=NARROW)  # the engine's machinery does not depend on the width


def video(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Two squares moving over a smooth background: frames (T, H, W, 3) uint8 and labels (T, H, W)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:HEIGHT, :WIDTH]
  base = np.stack([128 + 60 * np.sin(x / 9 + c) * np.cos(y / 7 - c) for c in range(3)], -1)
  images, labels = [], []
  for t in range(frames):
    image, label = base + rng.normal(0, 4, base.shape), np.zeros((HEIGHT, WIDTH), np.uint8)
    for k, (top, left, colour) in enumerate([(10, 10 + 3 * t, (230, 40, 40)), (34, 60 - 2 * t, (30, 200, 60))]):
      image[top : top + 18, left : left + 20] = colour
      label[top : top + 18, left : left + 20] = k + 1
    images.append(np.clip(image, 0, 255).astype(np.uint8))
    labels.append(label)
  return np.stack(images), np.stack(labels)


@functools.lru_cache(maxsize=None)
def engine(capacity=None) -> Propagator:
  return Propagator(MODEL, narrow_variables(0), Protocol(top_k=TOP_K, mem_every=1, capacity=capacity, chunk=4))


@functools.lru_cache(maxsize=None)
def _method(method):
  """MODEL.apply(variables, *args, method=method), jitted (the reference loop calls each many times)."""
  return jax.jit(functools.partial(MODEL.apply, method=method))


def _segment(variables, keys, mem_keys, mem_values):
  return _method(_read_top_k)(variables, keys, mem_keys, mem_values)


def _read_top_k(module, keys, mem_keys, mem_values):
  return module.segment(keys, mem_keys, mem_values, None, TOP_K)


def loop_reference(
  frames: np.ndarray,
  labels: dict[int, np.ndarray],
  num_objects: int,
  mem_every: int,
  rule: str = 'absolute',
  capacity=None,
) -> np.ndarray:
  """The reference's propagation written as a plain loop over `GSFM.segment`: per-object memory
  lists (an object reads the frames stored since its first labelled frame), interact on labelled frames,
  the memory rule, and the bounded-memory policy (labelled frames kept, oldest other frame dropped).
  Returns the aggregated probabilities (T, H, W, K+1) at the input size."""
  variables = narrow_variables(0)
  pad_h, pad_w = resize.pad_split(HEIGHT), resize.pad_split(WIDTH)
  norm = (frames / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
  norm = np.pad(norm, ((0, 0), pad_h, pad_w, (0, 0))).astype(np.float32)
  enabled = np.zeros(num_objects, bool)
  memory: list[tuple[int, bool, np.ndarray, np.ndarray, np.ndarray]] = []  # (t, pinned, key, values, objects)
  out, last = [], -1
  for t in range(len(frames)):
    keys = _method(GSFM.encode_key)(variables, norm[t : t + 1])
    objects = np.zeros(norm.shape[1:3] + (num_objects,), np.float32)
    logits = aggregate(jnp.asarray(objects))
    if enabled.any():
      own = []
      for k in range(num_objects):  # object k's probability from its own memory frames
        rows = [m for m in memory if m[4][k]] or memory
        mk = jnp.stack([m[2] for m in rows])[None]
        mv = jnp.stack([m[3] for m in rows], axis=1)[None]
        seg = _segment(variables, keys, mk, mv)
        own.append(np.asarray(jax.nn.sigmoid(seg.logits[0, ..., k + 1])))
      logits = aggregate(jnp.asarray(np.stack(own, -1) * enabled))
      objects = np.asarray(jax.nn.softmax(logits, -1))[..., 1:] * enabled
    labelled = t in labels
    if labelled:
      given = np.pad(np.stack([labels[t] == k + 1 for k in range(num_objects)], -1), (pad_h, pad_w, (0, 0)))
      new = given.reshape(-1, num_objects).any(0) & ~enabled
      objects = np.where(new, given, np.where(given[..., new].any(-1, keepdims=True), 0, objects))
      enabled |= new
      logits = aggregate(jnp.asarray(objects * enabled))
    prob = np.asarray(jax.nn.softmax(logits, -1)) * np.concatenate([[True], enabled])
    regular = (t % mem_every == 0) if rule == 'absolute' else (t - last >= mem_every)
    if labelled or (regular and enabled.any() and t < len(frames) - 1):
      values = _method(GSFM.encode_value)(variables, norm[t : t + 1], keys.f16, jnp.asarray(prob[None, ..., 1:]))[0]
      if capacity is not None and len(memory) == capacity:
        memory.pop(next(i for i, m in enumerate(memory) if not m[1]))
      memory.append((t, labelled, keys.k16[0], values, enabled.copy()))
      last = t
    out.append(prob[pad_h[0] : pad_h[0] + HEIGHT, pad_w[0] : pad_w[0] + WIDTH])
  return np.stack(out)


def assert_close(found: np.ndarray, expected: np.ndarray) -> None:
  diff = np.abs(found - expected)
  assert found.shape == expected.shape
  assert np.mean(diff <= 1e-4) >= 0.999 and diff.max() < 2e-2, (diff.max(), np.mean(diff <= 1e-4))


def test_scan_equals_the_reference_loop():
  frames, labels = video(6)
  result = engine().segment(frames, {0: labels[0]}, keep_prob=True)
  expected = loop_reference(frames, {0: labels[0]}, 2, mem_every=1)
  assert_close(result.prob, expected)
  assert np.mean(result.labels == expected.argmax(-1)) >= 0.999  # argmax may flip on exact near-ties
  assert result.labels.shape == (6, HEIGHT, WIDTH) and set(np.unique(result.labels)) <= {0, 1, 2}


def test_bounded_memory_keeps_the_first_frame_and_drops_the_oldest():
  frames, labels = video(12, seed=1)
  bounded = engine(capacity=8).segment(frames, {0: labels[0]}, keep_prob=True)
  assert_close(bounded.prob, loop_reference(frames, {0: labels[0]}, 2, mem_every=1, capacity=8))
  # the same compiled program as the unbounded 6-frame video: one 8-slot bank, same sizes
  engine().segment(*_first(video(6)), keep_prob=True)
  assert engine(capacity=8).compiled <= engine().compiled


def test_bounded_memory_keeps_device_memory_constant_on_a_long_video():
  """40 frames, a memory frame each: with capacity 4 the bytes held on the device are the same after every
  chunk (the bank never grows and each chunk's outputs leave the device while the next one runs)."""
  frames, labels = video(40, seed=4)
  held = []
  engine(capacity=4).segment(
    frames, {0: labels[0]}, progress=lambda done: held.append(sum(a.nbytes for a in jax.live_arrays()))
  )
  assert len(held) == 10 and len(set(held[:-1])) == 1, held  # the last report: nothing left in flight


class _Recorder:
  """A lazily read video: records every slice asked for."""

  def __init__(self, frames: np.ndarray):
    self.frames, self.reads = frames, []

  def __len__(self) -> int:
    return len(self.frames)

  def __getitem__(self, index: slice) -> np.ndarray:
    self.reads.append((index.start, index.stop))
    return self.frames[index]


def test_frames_are_read_and_results_returned_chunk_by_chunk():
  """Host memory does not grow with the video: each chunk of frames is read when its turn comes (at most
  one chunk ahead of the results handed back), and each chunk's results are handed back before the video
  ends; together they are the whole-video call's results."""
  frames, labels = video(40, seed=4)
  source = _Recorder(frames)
  starts, parts = [], []
  for chunk in engine(capacity=4).chunks(source, {0: labels[0]}):
    assert max(stop for _, stop in source.reads) <= chunk.start + 2 * 4
    starts.append(chunk.start)
    parts.append(chunk.labels)
    assert np.array_equal(chunk.frames, frames[chunk.start : chunk.start + 4])
  assert starts == list(range(0, 40, 4)) and source.reads == [(s, s + 4) for s in range(0, 40, 4)]
  assert np.array_equal(np.concatenate(parts), engine(capacity=4).segment(frames, {0: labels[0]}).labels)


def test_an_object_that_enters_later_starts_its_memory_there():
  frames, labels = video(7, seed=2)
  given = {0: np.where(labels[0] == 1, 1, 0).astype(np.uint8), 3: np.where(labels[3] == 2, 2, 0).astype(np.uint8)}
  protocol = Protocol(top_k=TOP_K, mem_every=2, memory_rule='since_last', chunk=4)
  result = Propagator(MODEL, narrow_variables(0), protocol).segment(frames, given, keep_prob=True)
  assert not result.prob[:3, ..., 2].any() and (result.labels[:3] != 2).all()
  assert (result.labels[3] == 2).sum() == (labels[3] == 2).sum()
  assert_close(result.prob, loop_reference(frames, given, 2, mem_every=2, rule='since_last'))


def test_videos_of_other_lengths_reuse_the_compiled_program():
  fn = engine().chunk_program
  engine().segment(*_first(video(6)))
  before = fn._cache_size()
  engine().segment(*_first(video(5, seed=3)))  # 2 chunks of 4, 5 memory frames: same bucket
  assert fn._cache_size() == before


def test_memory_slots_grow_geometrically():
  """A video of T frames compiles O(log T) programs as its memory grows (one per slot count; the engine grows
  its bank by `slots_for` between chunks), holding at most twice the slots used."""
  stored = range(1, 2001)
  slots = [slots_for(s, Protocol()) for s in stored]
  assert sorted(set(slots)) == [8 * 2**n for n in range(9)]  # 8 … 2048: 9 programs for 2000 memory frames
  assert all(s <= n < max(2 * s, 9) for s, n in zip(stored, slots))
  assert max(slots_for(s, Protocol(capacity=100)) for s in stored) == 100


def _first(clip):
  frames, labels = clip
  return frames, {0: labels[0]}


def test_streaming_gives_the_same_masks_as_the_video_call_and_neither_resends_the_weights():
  frames, labels = video(6)
  # the weights were host arrays (as read from a file): the engine put them on the device once; in the loops
  # only frames and flags go up and results come back, all as explicit transfers (implicit ones would raise)
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(engine().variables))
  with jax.transfer_guard('disallow'):
    whole = engine().segment(frames, {0: labels[0]}, keep_prob=True)
    stream = Stream(engine(), frames.shape[1:3], num_objects=2)
    probs = [stream.step(frames[0], labels[0]).prob]
    probs += [stream.step(frame).prob for frame in frames[1:]]
  # the stream cannot know the last frame, so it may store it; that only changes later frames (none here)
  assert_close(np.stack(probs), whole.prob)


def test_schedule_follows_the_two_engines_rules():
  first = np.array([0, 0])
  davis = schedule(10, first, Protocol(mem_every=3))
  assert np.flatnonzero(davis.memorise).tolist() == [0, 3, 6]  # t % 3 == 0, never the last frame
  youtube = schedule(
    10, np.array([0, 4]), Protocol(mem_every=3, memory_rule='since_last'), wanted=np.arange(10) % 5 == 0
  )
  assert np.flatnonzero(youtube.memorise).tolist() == [0, 3, 4, 7]  # reset at the labelled frame 4
  assert np.flatnonzero(youtube.compute).tolist() == [0, 3, 4, 5, 7]  # memory, labelled, wanted frames
  with pytest.raises(ValueError, match='capacity 1 is below the 2 labelled frames'):
    Propagator(MODEL, narrow_variables(0), Protocol(capacity=1)).segment(
      np.zeros((3, 32, 32, 3), np.uint8), {0: np.ones((32, 32), np.uint8), 1: np.full((32, 32), 2, np.uint8)}
    )


def test_resize_matrices_follow_pytorch_rules():
  # bilinear, align_corners=False: upsampling 2 -> 4 samples at source -0.25 (clamped to 0), 0.25, 0.75, 1.25
  np.testing.assert_allclose(resize.interp_matrix(2, 4, 'bilinear'), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
  # nearest: floor(dst · in / out)
  assert resize.interp_matrix(5, 3, 'nearest').argmax(1).tolist() == [0, 1, 3]
  # bicubic (A = -0.75, PyTorch's): rows sum to 1; a quarter of the way (4 -> 8, output 3 at source 1.25)
  np.testing.assert_allclose(resize.interp_matrix(10, 17, 'bicubic').sum(1), 1, atol=1e-6)
  np.testing.assert_allclose(
    resize.interp_matrix(4, 8, 'bicubic')[3], [-0.10546875, 0.87890625, 0.26171875, -0.03515625]
  )
  # half-way between two samples (8 -> 4) the A = -0.75 kernel gives -0.09375, 0.59375, 0.59375, -0.09375
  np.testing.assert_allclose(
    resize.interp_matrix(8, 4, 'bicubic')[1], [0, -0.09375, 0.59375, 0.59375, -0.09375, 0, 0, 0]
  )
  pad = resize.into_padded(90, 90, 'bicubic')
  assert pad.shape == (96, 90) and resize.pad_split(90) == (3, 3) and np.array_equal(pad[3:93], np.eye(90))
  assert np.array_equal(resize.out_of_padded(90, 90) @ pad, np.eye(90))
