"""Video propagation on the accelerator: one jitted `lax.scan` over chunks of frames, the memory bank
carried on the device between frames and chunks (docs/reference.md §5.1, §5.2).

Per frame t: key-encode; if objects are enabled, read the memory (top-k) and decode every object with one
shared affinity; soft-aggregate. Where objects are given at t (a labelled frame), the reference's
`interact`: inside the union of the new masks every channel is cleared, the new masks are written and the
frame is re-aggregated. A memory frame (the rule below, or a labelled frame) is value-encoded from the
aggregated probabilities and stored. Outputs are cropped, resized to the output size and argmaxed on the
device.

The memory schedule (which frames are stored, computed on the host) is `inference.schedule`; memory slots
grow geometrically (8 · 2^n, `schedule.slots_for`), so a video compiles O(log T) programs and videos of similar
lengths share them.
"""

import functools
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gsfm_jax.inference import memory_bank, resize
from gsfm_jax.inference.schedule import Protocol, pad_to, plan, slots_for
from gsfm_jax.models import GSFM
from gsfm_jax.models.aggregate import aggregate
from gsfm_jax.models.normalisation import IMAGENET_MEAN, IMAGENET_STD


class VideoResult(NamedTuple):
  labels: np.ndarray  # (T, H, W) uint8: 0 background, k for object k (1 … K)
  prob: Optional[np.ndarray]  # (T, H, W, K+1) float32, background first (when asked for)


class Chunk(NamedTuple):
  """Consecutive frames start … start + n - 1 of a video and their outputs."""

  start: int
  frames: np.ndarray  # (n, H, W, 3) uint8, the input frames
  labels: np.ndarray  # (n, Ho, Wo) uint8
  prob: Optional[np.ndarray]  # (n, Ho, Wo, K+1) float32 (when asked for)


# frames of a video: an array (T, H, W, 3) or a sequence whose [a:b] gives (b - a, H, W, 3) uint8
Frames = Sequence[np.ndarray]


class Geometry(NamedTuple):
  """Static sizes of one video: input (H, W), after the optional resize (Hr, Wr), padded (Hp, Wp),
  output (Ho, Wo)."""

  size: tuple[int, int]
  resized: tuple[int, int]
  padded: tuple[int, int]
  out: tuple[int, int]


def geometry(
  size: tuple[int, int], resized: Optional[tuple[int, int]] = None, out: Optional[tuple[int, int]] = None
) -> Geometry:
  resized = tuple(resized or size)
  padded = tuple(s + sum(resize.pad_split(s)) for s in resized)
  return Geometry(tuple(size), resized, padded, tuple(out or size))


def _frame(
  model: GSFM, top_k: Optional[int], variables, consts: dict, carry: tuple, x: dict, shared: bool, keep_prob: bool
):
  """One frame: carry (bank, enabled (K,)), x (frame (H, W, 3) uint8, t, label slot, flags) -> outputs."""
  bank, enabled = carry
  k = bank.values.shape[0]
  frame = (x['frame'].astype(jnp.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
  frame = resize.apply(frame, consts['rows_in'], consts['cols_in'])[None]  # (1, Hp, Wp, 3)
  keys = model.apply(variables, frame, method=GSFM.encode_key)
  selector = enabled.astype(jnp.float32)[None]

  def propagate():
    memory = memory_bank.read(bank, keys.k16[0], top_k, shared, model.dtype)
    return model.apply(variables, keys, memory[None], selector, method=GSFM.decode).logits[0]

  # no object yet: every pixel is background (one (K+1,) vector broadcast: XLA folded the full-frame form
  # at compile time, 1.6 s per 480p program)
  nothing = lambda: jnp.broadcast_to(aggregate(jnp.zeros((k,))), frame.shape[1:3] + (k + 1,))
  logits = jax.lax.cond(jnp.any(enabled), propagate, nothing)
  objects = jax.nn.softmax(logits, axis=-1)[..., 1:] * selector[0]
  # interact: the objects labelled at this frame
  new = x['new'] & (x['slot'] >= 0)
  given = jax.nn.one_hot(consts['labels'][jnp.maximum(x['slot'], 0)], k + 1, dtype=jnp.float32)[..., 1:]
  given = resize.apply(given, consts['rows_mask'], consts['cols_mask']) * new
  union = jnp.any(given > 0.5, axis=-1, keepdims=True)
  objects = jnp.where(new, given, jnp.where(union, 0.0, objects))
  enabled = enabled | new
  logits = jnp.where(jnp.any(new), aggregate(objects * enabled), logits)
  prob = jax.nn.softmax(logits, axis=-1) * jnp.concatenate([jnp.ones((1,), bool), enabled]).astype(jnp.float32)

  def store():
    values = model.apply(variables, frame, keys.f16, prob[None, ..., 1:], keys.grids, method=GSFM.encode_value)[0]
    return memory_bank.insert(bank, keys.k16[0], values, enabled, x['t'], jnp.any(new))

  bank = jax.lax.cond(x['memorise'], store, lambda: bank)
  out = resize.apply(prob, consts['rows_out'], consts['cols_out'])  # (Ho, Wo, K+1)
  result = {'labels': jnp.argmax(out, axis=-1).astype(jnp.uint8)}
  if keep_prob:
    result['prob'] = out
  return (bank, enabled), result


def scan_chunk(
  model: GSFM, top_k: Optional[int], variables, consts: dict, carry: tuple, xs: dict, shared: bool, keep_prob: bool
):
  """lax.scan of `_frame` over a chunk; frames with compute False are skipped (zeros out)."""
  frame = functools.partial(_frame, model, top_k, variables, consts, shared=shared, keep_prob=keep_prob)
  out_shape = jax.eval_shape(lambda: frame(carry, jax.tree.map(lambda a: a[0], xs))[1])

  def body(carry, x):
    skip = lambda: (carry, jax.tree.map(jnp.zeros_like, out_shape))
    return jax.lax.cond(x['compute'], lambda: frame(carry, x), skip)

  return jax.lax.scan(body, carry, xs)


@functools.lru_cache(maxsize=None)
def programs(model: GSFM, top_k: Optional[int]) -> tuple[Callable, Callable]:
  """(chunk, frame), jitted for one network and top-k and shared by every Propagator and Stream; they
  compile once per shape (frame size, object count, memory slots)."""
  jit = lambda f: jax.jit(
    functools.partial(f, model, top_k), static_argnames=('shared', 'keep_prob'), donate_argnames=('carry',)
  )
  return jit(scan_chunk), jit(_frame)


class Propagator:
  """Segments whole videos with one network: `segment(frames, labels)`; see the module docstring.

  model, variables: the network (built for two or more objects) and its {'params', 'batch_stats'}.
  frame_resize / mask_resize / out_resize: interpolation of frames into the network's size, of given
  masks, and of probabilities back out (the reference: bicubic, nearest, bilinear). device: where its
  weights, memory bank and programs live (default: JAX's default device); one Propagator per device runs
  videos side by side (`inference.parallel`).
  """

  def __init__(
    self,
    model: GSFM,
    variables: Any,
    protocol: Protocol = Protocol(),
    frame_resize: str = 'bicubic',
    mask_resize: str = 'nearest',
    out_resize: str = 'bilinear',
    device: Optional[jax.Device] = None,
  ):
    if model.single_object:
      raise ValueError(
        'inference uses the multi-object network (a single-object checkpoint is widened '
        'to 5 input channels when it is loaded)'
      )
    # on the device once: host weights (as loaded from a file) would otherwise be sent with every call
    self.model, self.variables, self.protocol = model, jax.device_put(variables, device), protocol
    self.device = device
    self.methods = (frame_resize, mask_resize, out_resize)
    self.chunk_program, self.frame_program = programs(model, protocol.top_k)
    self.compiled: set = set()

  def segment(
    self,
    frames: np.ndarray,
    labels: dict[int, np.ndarray],
    num_objects: Optional[int] = None,
    resized: Optional[tuple[int, int]] = None,
    out_size: Optional[tuple[int, int]] = None,
    wanted: Optional[np.ndarray] = None,
    keep_prob: bool = False,
    progress: Optional[Callable[[int], None]] = None,
  ) -> VideoResult:
    """Segments a video held in memory: `chunks` with every chunk's outputs concatenated.

    Returns labels (T, Ho, Wo) and, with keep_prob, prob (T, Ho, Wo, K+1).
    """
    parts = list(self.chunks(frames, labels, num_objects, resized, out_size, wanted, keep_prob, progress))
    prob = np.concatenate([c.prob for c in parts]) if keep_prob else None
    return VideoResult(np.concatenate([c.labels for c in parts]), prob)

  def chunks(
    self,
    frames: Frames,
    labels: dict[int, np.ndarray],
    num_objects: Optional[int] = None,
    resized: Optional[tuple[int, int]] = None,
    out_size: Optional[tuple[int, int]] = None,
    wanted: Optional[np.ndarray] = None,
    keep_prob: bool = False,
    progress: Optional[Callable[[int], None]] = None,
    corrected: Sequence[int] = (),
  ) -> Iterator[Chunk]:
    """Segments a video chunk by chunk, in constant host and device memory (with a bounded `capacity`).

    frames: (T, H, W, 3) uint8 RGB, an array or any sequence whose `frames[a:b]` reads those frames
    (`media.VideoReader` decodes them from disk only then); labels {t: (H, W) object ids 0 … K}: the masks
    given at frame t (objects 1 … K, each given once, at its first labelled frame). resized: the network's
    input size (default: as is); out_size: the output size (default (H, W)); wanted (T,) bool: frames whose
    output is needed (others may be skipped; their output is zeros); progress(frames done) is called after
    each chunk; corrected: labelled frames whose mask replaces the prediction of every object seen by then
    (`schedule.plan`). Yields each chunk's frames and outputs in order; a chunk's outputs come back while the next
    chunk runs, so at most two chunks of frames are held.
    """
    num_frames = len(frames)
    video = plan(num_frames, labels, self.protocol, num_objects, wanted, corrected)
    geo = geometry(next(iter(labels.values())).shape, resized, out_size)
    consts = jax.device_put({**self.resize_matrices(geo), 'labels': video.labels}, self.device)  # once, not per chunk
    shared, real, k = video.shared, video.objects, video.padded
    carry = self.empty_carry(geo, k)
    pending, stored = None, 0
    chunk = self.protocol.chunk
    for start in range(0, num_frames, chunk):
      stop = min(start + chunk, num_frames)
      stored += int(video.xs['memorise'][start:stop].sum())
      carry = (memory_bank.grow(carry[0], slots_for(stored, self.protocol)), carry[1])
      piece = {name: pad_to(v[start:stop], chunk) for name, v in video.xs.items()}
      pixels = np.asarray(frames[start:stop])
      piece = jax.device_put({**piece, 'frame': pad_to(pixels, chunk)}, self.device)  # the only upload per chunk
      self._note_compile(geo, k, carry[0].capacity, shared, keep_prob)
      carry, out = self.chunk_program(self.variables, consts, carry, piece, shared=shared, keep_prob=keep_prob)
      if pending is not None:  # the previous chunk's outputs come back while this chunk runs
        yield _fetch(*pending, real, progress)
      pending = (out, start, pixels)
    yield _fetch(*pending, real, progress)

  def empty_carry(self, geo: Geometry, num_objects: int) -> tuple:
    """The per-frame function's starting carry: an empty bank sized for this model and geometry, and no
    object enabled yet."""
    h, w = geo.padded[0] // 16, geo.padded[1] // 16
    bank = memory_bank.empty(0, num_objects, h, w, self.model.key_dim, self.model.value_dim, self.model.dtype)
    return jax.device_put((bank, np.zeros((num_objects,), bool)), self.device)

  def resize_matrices(self, geo: Geometry) -> dict:
    """The interpolation matrices of frames in, given masks in and probabilities out."""
    frame_m, mask_m, out_m = self.methods
    (h, w), (hr, wr), (ho, wo) = geo.size, geo.resized, geo.out
    return {
      'rows_in': resize.into_padded(h, hr, frame_m),
      'cols_in': resize.into_padded(w, wr, frame_m),
      'rows_mask': resize.into_padded(h, hr, mask_m),
      'cols_mask': resize.into_padded(w, wr, mask_m),
      'rows_out': resize.out_of_padded(hr, ho, out_m),
      'cols_out': resize.out_of_padded(wr, wo, out_m),
    }

  def _note_compile(self, geo: Geometry, k: int, capacity: int, shared: bool, keep_prob: bool) -> None:
    key = (geo, k, capacity, shared, keep_prob)
    if key not in self.compiled:
      self.compiled.add(key)
      logging.info(
        'inference program %d%s: frames %s -> %s padded %s, out %s, %d objects, %d memory slots',
        len(self.compiled),
        f' on {self.device}' if self.device else '',
        geo.size,
        geo.resized,
        geo.padded,
        geo.out,
        k,
        capacity,
      )


def _fetch(out: dict, start: int, frames: np.ndarray, real: int, progress: Optional[Callable[[int], None]]) -> Chunk:
  """A chunk's outputs on the host, without the padding frames and padding objects; reports the frames done."""
  out = jax.tree.map(lambda a: np.asarray(a[: len(frames)]), jax.device_get(out))
  if progress is not None:
    progress(start + len(frames))
  prob = out['prob'][..., : real + 1] if 'prob' in out else None
  return Chunk(start, frames, out['labels'], prob)
