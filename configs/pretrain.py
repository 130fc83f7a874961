"""Stage 0 (docs/reference.md §3.1): static images as three-frame pseudo-videos, single-object network, from ImageNet.

  python -m gsfm_jax.train --config=pretrain --workdir=runs/pretrain

The ImageNet start reads torchvision's ResNet-50/18 state_dicts (`config.init.resnet50/resnet18`, .pth with
torch installed, or the same keys in an .npz).
"""

import ml_collections

from configs import data, main


def get_config() -> ml_collections.ConfigDict:
  config = main.get_config()
  config.model.single_object = True
  config.data = data.get_config('static')
  config.global_batch = 128
  config.steps = 40_000
  config.lr_milestones = (20_000,)
  config.start_warm = 3_000
  config.end_warm = 10_000
  config.init.kind = 'imagenet'
  return config
