"""Stage 3, the main training (docs/reference.md §3.1): DAVIS 2017 + YouTube-VOS, two objects, from a pretrain
checkpoint.

  python -m gsfm_jax.train --config=main --workdir=runs/main [--config.x=y …]

Batch sizes are global (all devices of all hosts): the reference ran 8 GPUs × 8. Step counts, milestones
and warm-up are iteration counts, as in the reference.
"""

import ml_collections

from configs import data, model


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 14159265
  config.model = model.get_config()
  config.model.dtype = 'auto'  # bfloat16 on GPU/TPU, float32 on CPU
  config.data = data.get_config('vos')

  config.global_batch = 64
  config.steps = 30_000
  config.grad_accum = 1  # micro-batches per step (the global batch is split, gradients averaged)
  config.lr = 4e-5
  config.lr_milestones = (25_000,)  # MultiStepLR, ×lr_gamma at each
  config.lr_gamma = 0.1
  config.weight_decay = 1e-7  # L2 coupled to the gradient, like PyTorch Adam
  config.start_warm = 3_000  # bootstrapped CE: all pixels before, top 15 % after end_warm
  config.end_warm = 15_000
  config.top_p = 0.15
  config.boundary_weight = 0.05

  # initial weights: 'scratch' | 'imagenet' (torchvision ResNet-50/18 files) | 'checkpoint' (a gsfm_jax
  # training workdir or checkpoint, a converted official .pth/.npz; a stage-0 network gets its 5th
  # value-encoder input channel added with `stem_fill`)
  config.init = ml_collections.ConfigDict()
  config.init.kind = 'checkpoint'
  config.init.checkpoint = 'runs/pretrain'
  config.init.resnet50 = 'weights/resnet50-19c8e357.pth'
  config.init.resnet18 = 'weights/resnet18-5c106cde.pth'
  config.init.stem_fill = 'orthogonal'

  config.checkpoint_every = 1_000  # the reference saved every 10k; preemptible machines want more often
  config.keep_checkpoints = 3
  config.async_checkpoints = True
  config.max_refused_steps = 20  # non-finite steps in a row before the run stops
  config.log_every = 100
  config.image_every = 800
  config.progress_every = 10
  return config
