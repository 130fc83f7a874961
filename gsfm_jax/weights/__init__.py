"""GSFM weights in and out of files: `load` reads every kind of input for a network, `save` writes the
project's files or the official ones, `load_for_inference` also builds the network a training run describes.

  loading.py    load, load_for_inference, save: the entrance
  workdir.py    a training run's folder: its newest checkpoint and its network's config
  files.py      Flax variables ⇄ flat .npz and orbax folders; atomic writes; ConversionError
  official.py   the official PyTorch names and layout ⇄ Flax variables; .pth and official .npz files
  imagenet.py   the ImageNet start: torchvision ResNet trunks in both encoders
  stem.py       extra input channels of a stem convolution (stage-0 checkpoints, RGB trunks)
  structure.py  the variables a network expects, and the check that names every difference
  start.py      a training run's starting weights by config.init.kind
"""

from gsfm_jax.weights.files import ConversionError, Variables, flatten, unflatten
from gsfm_jax.weights.loading import load, load_for_inference, save

__all__ = ['ConversionError', 'Variables', 'flatten', 'load', 'load_for_inference', 'save', 'unflatten']
