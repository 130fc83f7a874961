"""Device mesh and data placement: the batch is split over a 'data' axis, parameters are replicated.

Works the same on one CPU, several GPUs and many hosts: every host passes its own part of the global
batch, and `global_batch` assembles the global arrays without moving data between hosts.
"""

from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = 'data'


def make_mesh(devices: Any = None) -> Mesh:
  """A 1-D mesh ('data',) over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch(global_batch: int, mesh: Mesh, process_count: int) -> None:
  """Raises a clear error unless the global batch splits evenly over devices and processes."""
  if global_batch % mesh.size or global_batch % process_count:
    raise ValueError(
      f'global_batch {global_batch} must be a multiple of the device count {mesh.size} '
      f'(and of the process count {process_count})'
    )


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's rows (B/P, …) of each array -> global arrays (B, …) sharded over the data axis."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  """Host arrays (identical on every process) -> arrays replicated over the mesh."""
  sharding = replicated(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda idx: np.asarray(x)[idx]), tree
  )


def local_copy(tree: Any) -> Any:
  """Replicated arrays -> numpy, from this process's first device (no cross-host transfer)."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def sync(name: str) -> None:
  """Waits until every process gets here (no-op on one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)
