"""The built-in demo: main training on the built-in dataset, small crops, from scratch, on a CPU.

  python -m gsfm_jax.train --config=demo --workdir=runs/demo

The dataset (`data_pipelines.synthetic`, nothing downloaded) is written to `builtin_data` if it is not
there. No ImageNet start: every weight is learnt here. The network is GSFM at a quarter of its width
(`model.width_divisor = 4`: same layers, depth and data flow, 4.2 M parameters instead of 67 M), which runs
about 7× faster on a CPU, so the demo sees enough clips in about 16 minutes on 2 cores to learn to
propagate masks (README, "What the demo reaches"). `--config.model.width_divisor=1` trains the full network.
"""

import ml_collections

from configs import main


def get_config() -> ml_collections.ConfigDict:
  config = main.get_config()
  config.seed = 0
  config.builtin_data = 'data/builtin'
  config.model.width_divisor = 4
  config.data.davis_root = config.builtin_data + '/DAVIS'
  config.data.youtube_root = ''
  config.data.size = 64
  config.data.workers = 2
  config.global_batch = 4
  config.steps = 3000
  config.lr = 1e-4
  config.lr_milestones = (2500,)
  config.start_warm = 500
  config.end_warm = 2000
  config.init.kind = 'scratch'
  config.checkpoint_every = 500
  config.keep_checkpoints = 2
  config.log_every = 25
  config.image_every = 250
  config.progress_every = 25
  return config
