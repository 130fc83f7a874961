"""One process of the two-process training test: joins `jax.distributed`, trains with the CLI's code path
and saves its own copy of the final parameters.

  python tests/train_worker.py COORDINATOR PROCESS_ID NUM_PROCESSES WORKDIR OUT.npz DATA_ROOT
"""

import sys

import jax
import numpy as np


def main(coordinator: str, process_id: int, num_processes: int, workdir: str, out: str, data_root: str) -> None:
  jax.config.update('jax_platforms', 'cpu')
  jax.distributed.initialize(coordinator, num_processes, process_id, heartbeat_timeout_seconds=600)
  from runs import demo_config  # tests/ is on PYTHONPATH

  from gsfm_jax import sharding
  from gsfm_jax.train import train_and_evaluate
  from gsfm_jax.weights.files import flatten

  config = demo_config(data_root)
  config.checkpoint_every = 4  # one (multi-process) checkpoint, at the end
  state = train_and_evaluate(config, workdir)
  params = flatten({'params': sharding.local_copy(state.params)})
  np.savez(
    out,
    process_index=jax.process_index(),
    devices=len(jax.local_devices()),
    step=sharding.local_copy(state.step),
    **params,
  )
  jax.distributed.shutdown()


if __name__ == '__main__':
  main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
