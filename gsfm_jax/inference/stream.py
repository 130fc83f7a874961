"""Frame-by-frame segmentation for live use, with the engine's jitted per-frame function.

  stream = Stream(propagator, (H, W), num_objects=2)
  out = stream.step(first_frame, first_labels)      # ids 1 … K; later objects: step(frame, their labels)
  out = stream.step(next_frame)                     # out.labels (H, W), out.prob (H, W, K+1)

The stream cannot know which frame is the last, so every frame the memory rule selects is stored. Objects
may be added at any frame, so each object reads its own memory slots (identical results when all objects
start together).
"""

from typing import Optional

import jax
import numpy as np

from gsfm_jax.inference import memory_bank
from gsfm_jax.inference.engine import Propagator, VideoResult, geometry
from gsfm_jax.inference.schedule import bucket, regular_memory_frame, slots_for


class Stream:
  """One live video; see the module docstring. resized / out_size as in `Propagator.segment`."""

  def __init__(
    self,
    propagator: Propagator,
    size: tuple[int, int],
    num_objects: int,
    resized: Optional[tuple[int, int]] = None,
    out_size: Optional[tuple[int, int]] = None,
  ):
    self.engine, self.protocol = propagator, propagator.protocol
    self.num_objects = bucket(num_objects, self.protocol.object_bucket)
    self._real = num_objects
    self._geo = geometry(size, resized, out_size)
    self._matrices = jax.device_put(propagator.resize_matrices(self._geo), propagator.device)  # once, not per frame
    self._no_labels = np.zeros((1,) + self._geo.size, np.uint8)
    self._carry = propagator.empty_carry(self._geo, self.num_objects)
    self._enabled = np.zeros(self.num_objects, bool)
    self.t, self._last, self._stored = 0, -1, 0

  def step(self, frame: np.ndarray, labels: Optional[np.ndarray] = None) -> VideoResult:
    """frame (H, W, 3) uint8; labels (H, W) ids of objects given at this frame (new ids only count)."""
    new = np.zeros(self.num_objects, bool)
    if labels is not None:
      ids = np.unique(labels)
      ids = ids[(ids > 0) & (ids <= self._real)]
      new[ids - 1] = True
      new &= ~self._enabled
    labelled = bool(new.any())
    memorise = labelled or regular_memory_frame(self.t, self._last, self.protocol)
    if memorise:
      self._stored, self._last = self._stored + 1, self.t
      self._carry = (memory_bank.grow(self._carry[0], slots_for(self._stored, self.protocol)), self._carry[1])
    self._enabled |= new
    consts = {**self._matrices, 'labels': self._no_labels if labels is None else labels[None].astype(np.uint8)}
    x = {
      'frame': frame,
      't': np.int32(self.t),
      'slot': np.int32(0 if labelled else -1),
      'new': new,
      'memorise': np.bool_(memorise),
      'compute': np.bool_(True),
    }
    consts, x = jax.device_put((consts, x), self.engine.device)  # the frame and its flags: the only upload per frame
    self._carry, out = self.engine.frame_program(
      self.engine.variables, consts, self._carry, x, shared=False, keep_prob=True
    )
    self.t += 1
    out = jax.device_get(out)
    return VideoResult(out['labels'], out['prob'][..., : self._real + 1])
