"""The built-in demo: main training on the built-in dataset, small crops, from scratch, on a CPU.

  python -m gsfm_jax.train --config=demo --workdir=runs/demo

The dataset (`data_pipelines.synthetic`, nothing downloaded) is written to `builtin_data` if it is not
there. No ImageNet start: every weight is learnt here, so the learning rate is higher than the reference's
and hard mining starts early.
"""
import ml_collections

from configs import main


def get_config() -> ml_collections.ConfigDict:
  config = main.get_config()
  config.seed = 0
  config.builtin_data = 'data/builtin'
  config.data.davis_root = config.builtin_data + '/DAVIS'
  config.data.youtube_root = ''
  config.data.size = 64
  config.data.workers = 2
  config.global_batch = 4
  config.steps = 600
  config.lr = 1e-4
  config.lr_milestones = (500,)
  config.start_warm = 100
  config.end_warm = 400
  config.init.kind = 'scratch'
  config.checkpoint_every = 100
  config.keep_checkpoints = 2
  config.log_every = 10
  config.image_every = 50
  config.progress_every = 5
  return config
