"""The ImageNet start of training (docs/reference.md, "Weights"): torchvision's ResNet-50 and ResNet-18
trunks in the key and value encoders, everything else freshly initialised."""

import flax.traverse_util
import jax
import numpy as np

from gsfm_jax.models import GSFM, init_variables
from gsfm_jax.weights import official, stem
from gsfm_jax.weights.files import ConversionError, Variables
from gsfm_jax.weights.structure import check_structure

# torchvision's layer1 … layer3 in each encoder (layer4 and fc are not used)
STAGES = {'key_encoder': ('res2', 'layer2', 'layer3'), 'value_encoder': ('layer1', 'layer2', 'layer3')}
DEPTH = {'key_encoder': 50, 'value_encoder': 18}


def trunk_state_dict(resnet: dict[str, np.ndarray], encoder: str, source: str) -> dict[str, np.ndarray]:
  """torchvision ResNet state_dict -> the official GSFM keys of one encoder's trunk, float32.

  layer1 is renamed `res2` in the key encoder; layer4 and fc are dropped; conv biases (absent in the source)
  become 0.
  """
  out: dict[str, np.ndarray] = {}
  for key, value in resnet.items():
    parts = key.split('.')
    if parts[0] in ('layer4', 'fc') or parts[-1] == 'num_batches_tracked':
      continue
    if parts[0].startswith('layer'):
      parts[0] = STAGES[encoder][int(parts[0][-1]) - 1]
    name = f'{encoder}.' + '.'.join(parts)
    out[name] = np.asarray(value, np.float32)
    if out[name].ndim == 4:
      out[name[: -len('weight')] + 'bias'] = np.zeros(out[name].shape[0], np.float32)
  if f'{encoder}.conv1.weight' not in out:
    raise ConversionError(f'{source}: not a torchvision ResNet state_dict (no conv1.weight)')
  return out


def imagenet_start(resnet50: str, resnet18: str, model: GSFM, seed: int) -> Variables:
  """Fresh variables (seed) with both encoder trunks replaced by torchvision's ImageNet weights; extra stem
  input channels (the masks) are orthogonal-initialised after RGB, as the reference does."""
  flat = flax.traverse_util.flatten_dict(jax.device_get(init_variables(model, jax.random.PRNGKey(seed))))
  paths = {official.official_key(p): p for p in flat}
  rng = np.random.default_rng(seed)
  for source, encoder in ((resnet50, 'key_encoder'), (resnet18, 'value_encoder')):
    trunk = trunk_state_dict(official.read_state_dict(source), encoder, source)
    expected = {
      k: official.official_shape(flat[p].shape)
      for k, p in paths.items()
      if p[1] == encoder and k.split('.')[1] in ('conv1', 'bn1') + STAGES[encoder]
    }
    found = {}
    for key, value in trunk.items():
      if key in paths:
        value = official.to_flax_layout(value)
        target = flat[paths[key]].shape
        if paths[key][2:] == ('conv1', 'kernel'):
          value = stem.fit(value, target, 'orthogonal', rng)
        trunk[key] = value
      found[key] = official.official_shape(value.shape)
    check_structure(found, expected, source, f'a torchvision ResNet-{DEPTH[encoder]} state_dict')
    flat.update({paths[k]: v for k, v in trunk.items()})
  return flax.traverse_util.unflatten_dict(flat)
