"""The memory schedule of a video, on the host (docs/reference.md §5.1, §5.2): it does not depend on the predictions, so
which frames are stored, and with it the exact number of memory slots a video needs, is known before the
video runs. Pure numpy: the exported program's loader uses it without the model code.

Memory rules: 'absolute' (DAVIS engine: t % mem_every == 0), 'since_last' (YouTube engine:
t - last memory frame ≥ mem_every). The last frame is never a regular memory frame.
"""

import dataclasses
import math
from typing import Iterable, NamedTuple, Optional

import numpy as np

RULES = ('absolute', 'since_last')


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How a video is propagated. Defaults: the reference's DAVIS settings."""

  top_k: Optional[int] = 50
  mem_every: int = 3
  memory_rule: str = 'absolute'
  capacity: Optional[int] = None  # memory frames kept (first / labelled frames pinned, oldest dropped); None: all
  chunk: int = 16  # frames per compiled scan call
  slot_bucket: int = 8  # memory slots are allocated as this times a power of two (8, 16, 32, …)
  object_bucket: int = 1  # the object count is padded to a multiple of this (more reuse of programs)

  def __post_init__(self):
    if self.memory_rule not in RULES:
      raise ValueError(f'memory_rule {self.memory_rule!r}: expected one of {RULES}')
    if self.mem_every < 1 or self.chunk < 1 or self.slot_bucket < 1 or self.object_bucket < 1:
      raise ValueError('mem_every, chunk, slot_bucket and object_bucket must be ≥ 1')
    if self.capacity is not None and self.capacity < 1:
      raise ValueError(f'capacity {self.capacity}: at least one memory frame is needed')


class Schedule(NamedTuple):
  """Per-frame flags of one video, computed on the host."""

  memorise: np.ndarray  # (T,) bool: stored in memory
  compute: np.ndarray  # (T,) bool: run the network at all (memory, output or labelled frames)


def regular_memory_frame(t: int, last: int, protocol: Protocol) -> bool:
  """The memory rule for an unlabelled frame t, given the last memory frame (-1: none yet)."""
  if last < 0:
    return False
  if protocol.memory_rule == 'absolute':
    return t % protocol.mem_every == 0
  return t - last >= protocol.mem_every


def schedule(
  num_frames: int, first_seen: np.ndarray, protocol: Protocol, wanted: Optional[np.ndarray] = None
) -> Schedule:
  """The memory schedule: first_seen (K,) the frame each object is first labelled at; wanted (T,) bool the
  frames whose output is needed (default all)."""
  t = np.arange(num_frames)
  labelled = np.isin(t, first_seen)
  memorise = labelled.copy()
  last = -1
  for i in range(num_frames):
    if labelled[i]:
      last = i
      continue
    if i < num_frames - 1 and regular_memory_frame(i, last, protocol):
      memorise[i], last = True, i
  wanted = np.ones(num_frames, bool) if wanted is None else wanted
  return Schedule(memorise, memorise | (wanted & (t >= first_seen.min())))


def bucket(value: int, multiple: int) -> int:
  """value rounded up to a positive multiple of `multiple`."""
  return max(multiple, math.ceil(value / multiple) * multiple)


def slots_for(stored: int, protocol: Protocol) -> int:
  """Memory slots for `stored` memory frames: slot_bucket · 2^n, the smallest that holds them (so a video of
  T frames compiles O(log T) programs as its memory grows, and holds at most twice the slots it uses), at most
  the protocol's capacity."""
  slots = protocol.slot_bucket
  while slots < stored:
    slots *= 2
  return slots if protocol.capacity is None else min(slots, protocol.capacity)


def first_seen(labels: dict[int, np.ndarray], num_objects: Optional[int]) -> tuple[np.ndarray, dict[int, int]]:
  """(first labelled frame of objects 1 … K, {frame: index into the stacked label frames})."""
  if not labels:
    raise ValueError('no labelled frame: the first frame of each object needs its mask')
  ids = sorted({int(i) for m in labels.values() for i in np.unique(m) if i > 0})
  k = num_objects or (max(ids) if ids else 0)
  first = np.full(k, -1, np.int64)
  for t in sorted(labels):
    for i in np.unique(labels[t]):
      if 0 < i <= k and first[i - 1] < 0:
        first[i - 1] = t
  if k == 0 or np.any(first < 0):
    missing = [i + 1 for i in range(k) if first[i] < 0] if k else 'all'
    raise ValueError(f'objects {missing} have no mask in any labelled frame')
  return first, {t: i for i, t in enumerate(sorted(labels))}


class Plan(NamedTuple):
  """What the scan over one video takes from the host."""

  xs: dict  # per frame: t (T,) int32, memorise / compute (T,) bool, slot (T,) int32 (its row of
  # `labels`, -1 if none), new (T, K') bool (objects whose mask is given at t, K' = padded)
  labels: np.ndarray  # (L, H, W) uint8: the L labelled frames' masks, in frame order
  objects: int  # K, the objects of the video
  padded: int  # K', K rounded up to the protocol's object bucket (padding objects are never given)
  shared: bool  # all objects start at one frame: one affinity for all


def plan(
  num_frames: int,
  labels: dict[int, np.ndarray],
  protocol: Protocol,
  num_objects: Optional[int] = None,
  wanted: Optional[np.ndarray] = None,
  corrected: Iterable[int] = (),
) -> Plan:
  """The plan of a video of `num_frames` frames with masks {t: (H, W) ids 0 … K} given at frames t.

  A labelled frame gives the objects first seen in it (the others keep their prediction outside them); a frame
  in `corrected` gives every object seen by then: its mask replaces the frame's prediction (an object absent
  from it is absent at that frame), as a user's correction does.
  """
  first, slots = first_seen(labels, num_objects)
  unlabelled = sorted(set(corrected) - set(labels))
  if unlabelled:
    raise ValueError(f'corrected frames {unlabelled} have no mask')
  if protocol.capacity is not None and protocol.capacity < len(labels):
    raise ValueError(
      f'memory capacity {protocol.capacity} is below the {len(labels)} labelled frames, which are always kept'
    )
  real, k = len(first), bucket(len(first), protocol.object_bucket)
  shared = len(set(first.tolist())) == 1
  first = np.concatenate([first, np.full(k - real, num_frames, np.int64)])  # padding: never seen
  flags = schedule(num_frames, first, protocol, wanted)
  t = np.arange(num_frames)
  given = (t[:, None] == first[None, :]) | (np.isin(t, list(corrected))[:, None] & (first[None, :] <= t[:, None]))
  xs = {
    't': t.astype(np.int32),
    'memorise': flags.memorise,
    'compute': flags.compute,
    'slot': np.array([slots.get(t, -1) for t in range(num_frames)], np.int32),
    'new': given,
  }
  return Plan(xs, np.stack([labels[t] for t in sorted(labels)]).astype(np.uint8), real, k, shared)


def pad_to(x: np.ndarray, length: int) -> np.ndarray:
  """Pads axis 0 with zeros (False) up to `length`."""
  return np.concatenate([x, np.zeros((length - len(x),) + x.shape[1:], x.dtype)]) if len(x) < length else x
