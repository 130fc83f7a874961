"""Flax variables ⇄ files in Flax names: flat numpy `.npz` ('/'-joined names, bit-exact) and orbax folders.

Every writer records the network the variables belong to (`record`), refuses to replace an existing output
unless told to, and writes through a temporary name, so a failed conversion leaves nothing behind and never
damages an earlier file.
"""

import os
import zipfile
from typing import Any, Iterable, Mapping, Optional

import flax.traverse_util
import numpy as np

from gsfm_jax import atomic
from gsfm_jax.weights import record

Variables = dict[str, Any]
MAX_LISTED = 20


class ConversionError(ValueError):
  """A weight file cannot be read or converted; the message names the file and every problem."""


def listing(items: Iterable[str]) -> str:
  items = sorted(items)
  shown = ', '.join(items[:MAX_LISTED])
  return shown + (f' … (+{len(items) - MAX_LISTED} more)' if len(items) > MAX_LISTED else '')


def flatten(variables: Variables) -> dict[str, np.ndarray]:
  """{'params': {...}, 'batch_stats': {...}} -> {'params/key_encoder/conv1/kernel': array, ...}."""
  return {'/'.join(path): np.asarray(v) for path, v in flax.traverse_util.flatten_dict(variables).items()}


def unflatten(flat: Mapping[str, np.ndarray]) -> Variables:
  """Inverse of `flatten`."""
  return flax.traverse_util.unflatten_dict({tuple(k.split('/')): v for k, v in flat.items()})


def read_npz(path: str, names_only: bool = False) -> dict[str, Optional[np.ndarray]]:
  """All arrays of an .npz file (no pickles), or only their names (values None); ConversionError
  naming the file if it cannot be read."""
  if not os.path.isfile(path):
    raise ConversionError(f'{path}: no such file')
  if not zipfile.is_zipfile(path):  # np.load would try it as a pickle
    raise ConversionError(f'{path}: cannot read as a numpy .npz file (not a zip archive)')
  try:
    with np.load(path, allow_pickle=False) as data:
      return {k: None if names_only else data[k] for k in data.files}
  except ValueError as e:
    if 'allow_pickle' in str(e):  # object arrays: pickles, never weights
      raise ConversionError(f'{path}: holds Python objects, not only arrays; not a weights file') from None
    raise ConversionError(f'{path}: cannot read as a numpy .npz file ({short_reason(e)})') from None
  except Exception as e:  # zipfile and format errors all mean the same to the user
    raise ConversionError(f'{path}: cannot read as a numpy .npz file ({short_reason(e)})') from None


def short_reason(error: Exception, limit: int = 160) -> str:
  """The first line of an exception's message, at most `limit` characters (TensorStore's run to pages)."""
  line = (str(error).strip().splitlines() or [''])[0]
  return f'{type(error).__name__}: {line[:limit]}{"…" if len(line) > limit else ""}'


def write_arrays_npz(
  arrays: Mapping[str, np.ndarray], path: str, overwrite: bool = False, network: Optional[Mapping] = None
) -> None:
  """Writes named arrays to an uncompressed .npz, atomically, with the `network` record as its comment."""

  def write(target: str) -> None:
    with open(target, 'wb') as f:
      np.savez(f, **arrays)
    if network is not None:
      record.write_npz_comment(target, network)

  atomic.write(path, write, overwrite)


def save_npz(variables: Variables, path: str, overwrite: bool = False, network: Optional[Mapping] = None) -> None:
  """Flax variables -> flat .npz ('/'-joined names), with the `network` record."""
  write_arrays_npz(flatten(variables), path, overwrite, network)


def load_npz(path: str) -> Variables:
  """Flat .npz written by `save_npz` -> Flax variables (numpy arrays, bit-exact)."""
  flat = read_npz(path)
  bad = [k for k in flat if k.split('/', 1)[0] not in ('params', 'batch_stats')]
  if bad:
    raise ConversionError(
      f'{path}: not a gsfm_jax variables .npz (names must start with params/ or batch_stats/): {listing(bad)}'
    )
  return unflatten(flat)


def save_orbax(
  variables: Variables, directory: str, overwrite: bool = False, network: Optional[Mapping] = None
) -> None:
  """Flax variables -> orbax checkpoint directory, with the `network` record as its network.json."""
  import orbax.checkpoint as ocp

  def write(target: str) -> None:
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(target, variables)
    checkpointer.wait_until_finished()
    if network is not None:
      record.write_folder(target, network)

  atomic.write(directory, write, overwrite)


def load_orbax(directory: str) -> Variables:
  """Orbax checkpoint directory (`save_orbax`, or a training checkpoint's `state`) -> Flax variables.

  Restored onto this process's first device, whatever the device layout of the run that wrote it.
  """
  import jax
  import orbax.checkpoint as ocp

  try:
    checkpointer = ocp.StandardCheckpointer()
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
      checkpointer.metadata(os.path.abspath(directory)).item_metadata.tree,
    )
    restored = checkpointer.restore(os.path.abspath(directory), target)
  except Exception as e:
    raise ConversionError(
      f'{directory}: cannot restore as an orbax checkpoint ({short_reason(e)}); an incomplete '
      'copy or another kind of folder?'
    ) from None
  return {k: v for k, v in restored.items() if k in ('params', 'batch_stats')}


def is_native_npz(path: str) -> bool:
  """Whether an .npz holds Flax names (params/…, batch_stats/…) rather than official ones."""
  names = read_npz(path, names_only=True)
  return bool(names) and all(k.startswith(('params/', 'batch_stats/')) for k in names)


def save_native(variables: Variables, path: str, overwrite: bool = False, network: Optional[Mapping] = None) -> None:
  """`.npz` -> flat numpy file; anything else -> orbax checkpoint folder; either with the `network` record."""
  (save_npz if path.endswith('.npz') else save_orbax)(variables, path, overwrite, network)


def load_native(path: str) -> Variables:
  """Reads what `save_native` wrote (or a training checkpoint's `state` folder)."""
  return load_npz(path) if path.endswith('.npz') else load_orbax(path)
