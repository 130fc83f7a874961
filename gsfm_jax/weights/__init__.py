"""GSFM weights in and out of files: `load` reads every kind of input for a network, `save` writes the
project's files or the official ones (each with its network's record), `network` and `load_for_inference`
build the network a file records.

  loading.py    load, network, load_for_inference, save: the entrance
  record.py     the network record every written file carries (model switches), and `--model` overrides
  workdir.py    a training run's folder: its newest checkpoint
  files.py      Flax variables ⇄ flat .npz and orbax folders; atomic writes; ConversionError
  official.py   the official PyTorch names and layout ⇄ Flax variables; .pth and official .npz files
  imagenet.py   the ImageNet start: torchvision ResNet trunks in both encoders
  stem.py       extra input channels of a stem convolution (stage-0 checkpoints, RGB trunks)
  structure.py  the variables a network expects, and the check that names every difference
  start.py      a training run's starting weights by config.init.kind
"""

from gsfm_jax.weights.files import ConversionError, Variables, flatten, unflatten
from gsfm_jax.weights.loading import load, load_for_inference, network, save

__all__ = ['ConversionError', 'Variables', 'flatten', 'load', 'load_for_inference', 'network', 'save', 'unflatten']
