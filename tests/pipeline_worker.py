"""One process of the two-process sharding test: joins `jax.distributed`, reads its shard of the first
batches with the pipeline and saves them.

  python tests/pipeline_worker.py COORDINATOR PROCESS_ID NUM_PROCESSES DATASET_ROOT OUT.npz
"""

import sys

import jax
import numpy as np


def main(coordinator: str, process_id: int, num_processes: int, root: str, out: str) -> None:
  jax.config.update('jax_platforms', 'cpu')
  jax.distributed.initialize(coordinator, num_processes, process_id)
  from test_pipeline import data_config, read_batches  # tests/ is on PYTHONPATH

  config = data_config('vos', root)
  batches = read_batches(config, steps=2, process_index=jax.process_index(), process_count=jax.process_count())
  np.savez(out, process_index=jax.process_index(), **{k: np.stack([b[k] for b in batches]) for k in batches[0]})
  jax.distributed.shutdown()


if __name__ == '__main__':
  main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
