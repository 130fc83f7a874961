"""A training run's starting weights, by `config.init.kind` (configs/main.py)."""

import jax
import ml_collections
import numpy as np

from gsfm_jax.models import GSFM, init_variables
from gsfm_jax.models.scratch import scratch_params
from gsfm_jax.weights.files import ConversionError, Variables
from gsfm_jax.weights.imagenet import imagenet_start
from gsfm_jax.weights.loading import load


def initial_variables(init: ml_collections.ConfigDict, model: GSFM, seed: int) -> Variables:
  """The run's starting weights (host arrays):

  'scratch': fresh initialisation for training without ImageNet trunks (`models.scratch`);
  'imagenet': torchvision ResNet-50/18 trunks from `init.resnet50/resnet18` (`weights.imagenet`);
  'checkpoint': `init.checkpoint`, anything `weights.load` reads; a single-object checkpoint loaded into the
  two-object network gets its 5th value-encoder input channel by `init.stem_fill`.
  """
  if init.kind == 'scratch':
    variables = jax.device_get(init_variables(model, jax.random.PRNGKey(seed)))
    variables['params'] = scratch_params(variables['params'], np.random.default_rng(seed))
    return variables
  if init.kind == 'imagenet':
    return imagenet_start(init.resnet50, init.resnet18, model, seed)
  if init.kind == 'checkpoint':
    return load(init.checkpoint, model, init.stem_fill, flag='--config.model.')
  raise ConversionError(f"init.kind {init.kind!r}: expected 'scratch', 'imagenet' or 'checkpoint'")
