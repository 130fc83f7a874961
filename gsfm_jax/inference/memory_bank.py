"""The memory bank of inference, as fixed-size device buffers (docs/reference.md §5.1, §5.2).

Keys are stored once per memory frame and shared by all objects; values are per object. Each object has
its own view of the bank (`valid`), which is how objects that first appear mid-video (YouTube-VOS) start
their memory at their first labelled frame while sharing the keys. A frame where objects were given
(a labelled frame) is pinned: when the bank is full, the oldest unpinned frame makes room (the first frame
is always kept). With enough slots nothing is ever dropped, which is the reference's unbounded memory.
"""

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from gsfm_jax.models.memory import affinity_logits, memory_softmax, readout, top_k_read


class MemoryBank(NamedTuple):
  """keys (C, h, w, 64); values (K, C, h, w, 512); valid (K, C) bool: object k reads slot c;
  frame (C,) int32: frame index held in the slot, -1 when free; pinned (C,) bool: never dropped."""

  keys: jax.Array
  values: jax.Array
  valid: jax.Array
  frame: jax.Array
  pinned: jax.Array

  @property
  def capacity(self) -> int:
    return self.keys.shape[0]


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6))
def empty(
  capacity: int, num_objects: int, h: int, w: int, key_dim: int, value_dim: int, dtype=jnp.float32
) -> MemoryBank:
  """A bank with `capacity` free slots for K = num_objects objects on an (h, w) feature map (made on the
  device: nothing is sent from the host)."""
  return MemoryBank(
    jnp.zeros((capacity, h, w, key_dim), dtype),
    jnp.zeros((num_objects, capacity, h, w, value_dim), dtype),
    jnp.zeros((num_objects, capacity), bool),
    jnp.full((capacity,), -1, jnp.int32),
    jnp.zeros((capacity,), bool),
  )


def grow(bank: MemoryBank, capacity: int) -> MemoryBank:
  """The same bank with at least `capacity` slots (new ones free); unchanged when it has them already."""
  extra = capacity - bank.capacity
  return _with_free_slots(bank, extra) if extra > 0 else bank


@functools.partial(jax.jit, static_argnums=1)
def _with_free_slots(bank: MemoryBank, extra: int) -> MemoryBank:
  pad = lambda x, axis, value=0: jnp.pad(
    x, [(0, extra if a == axis else 0) for a in range(x.ndim)], constant_values=value
  )
  return MemoryBank(
    pad(bank.keys, 0), pad(bank.values, 1), pad(bank.valid, 1), pad(bank.frame, 0, -1), pad(bank.pinned, 0)
  )


def free_slot(bank: MemoryBank) -> jax.Array:
  """The slot the next frame goes to: the first free one, else the oldest unpinned one."""
  free = bank.frame < 0
  oldest = jnp.argmin(jnp.where(bank.pinned, jnp.iinfo(jnp.int32).max, bank.frame))
  return jnp.where(jnp.any(free), jnp.argmax(free), oldest)


def insert(
  bank: MemoryBank, key: jax.Array, values: jax.Array, objects: jax.Array, frame: jax.Array, pinned: jax.Array
) -> MemoryBank:
  """Stores one frame: key (h, w, 64), values (K, h, w, 512), objects (K,) bool (who reads it),
  frame index, pinned (bool)."""
  slot = free_slot(bank)
  return MemoryBank(
    bank.keys.at[slot].set(key.astype(bank.keys.dtype)),
    bank.values.at[:, slot].set(values.astype(bank.values.dtype)),
    bank.valid.at[:, slot].set(objects),
    bank.frame.at[slot].set(frame),
    bank.pinned.at[slot].set(pinned),
  )


def read(bank: MemoryBank, query_key: jax.Array, top_k: Optional[int], shared: bool, dtype=jnp.float32) -> jax.Array:
  """The memory readout for one query: query_key (h, w, 64) -> (K, h, w, 512).

  One affinity with top-k per query position (docs/reference.md §1.7); with `shared` every object reads the slots of
  object 0 (all objects started together, as in DAVIS), else each object its own slots.
  """
  num_objects, capacity, h, w, cv = bank.values.shape
  # (1, h·w, C·h·w) for the top-k read, (1, C·h·w, h·w) for the dense softmax
  logits = affinity_logits(
    bank.keys.reshape(1, capacity * h * w, -1), query_key.reshape(1, h * w, -1), dtype, query_major=top_k is not None
  )
  valid = bank.valid[:1] if shared else bank.valid
  valid = valid | ~jnp.any(valid, axis=1, keepdims=True)  # an object not seen yet reads anything (zeroed later)
  valid = jnp.repeat(valid, h * w, axis=1)  # (G, C·h·w)
  logits = jnp.broadcast_to(logits, (valid.shape[0],) + logits.shape[1:])
  values = bank.values.reshape(num_objects, capacity * h * w, cv)
  values = values[None] if shared else values[:, None]  # (G, K or 1, C·h·w, 512)
  if top_k is None:
    memory = readout(memory_softmax(logits, None, valid), values, dtype)
  else:
    memory = top_k_read(logits, valid, values, top_k, dtype)
  memory = memory[0] if shared else memory[:, 0]  # (K, h·w, 512)
  return memory.reshape(num_objects, h, w, cv)
