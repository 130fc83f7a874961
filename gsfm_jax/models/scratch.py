"""Initial weights for training without ImageNet backbones (`init.kind = 'scratch'`).

The reference always starts from ImageNet trunks, and its other layers use PyTorch's default init,
U(±1/√fan_in), which shrinks the signal's variance by 3 in every layer. From scratch, with BatchNorm on fixed
statistics, that leaves the network's output independent of its input (measured on a 64² clip: the
probabilities vary by 7e-4 across the frame), and training does not get off the ground. So every
convolution starts He-normal on its fan-in (variance-preserving through ReLU), with zero biases, except:

- the last BatchNorm scale of every residual block in the trunks is zero (torchvision's
  `zero_init_residual`): each block starts as the identity, as nothing else bounds 16 blocks' growth;
- `key_proj` keeps its orthogonal init (the reference's), and ARS's `att_out` its zeros (the resampling
  starts as the identity; MSAU's gate `gamma` is not a convolution and stays 0 as well);
- the mask and boundary heads (`decoder/pred`, `decoder/predict_boundary_2`) start at zero: every
  probability starts at 0.5 instead of saturating.
"""

import flax.traverse_util
import numpy as np

TRUNKS = ('key_encoder', 'value_encoder')
HEADS = (('decoder', 'pred'), ('decoder', 'predict_boundary_2'))
KEPT = ('key_proj', 'att_out')


def _last_bn_scales(flat: dict) -> set[tuple[str, ...]]:
  """Paths of the last BatchNorm scale of every residual block of the trunks (bn3 in bottlenecks, else bn2)."""
  blocks = {p[:2] for p in flat if p[0] in TRUNKS and p[1].startswith(('res2_', 'layer'))}
  out = set()
  for block in blocks:
    last = 'bn3' if (*block, 'bn3', 'scale') in flat else 'bn2'
    out.add((*block, last, 'scale'))
  return out


def scratch_params(params: dict, rng: np.random.Generator) -> dict:
  """GSFM params (host arrays, as built by `init_variables`) -> the same tree with the init above."""
  flat = flax.traverse_util.flatten_dict(params)
  zero_scales = _last_bn_scales(flat)

  def init(path: tuple[str, ...], x: np.ndarray) -> np.ndarray:
    layer, leaf = path[:-1], path[-1]
    if path in zero_scales or any(layer[-len(h) :] == h for h in HEADS):
      return np.zeros_like(x)
    is_conv = (*layer, 'kernel') in flat and flat[(*layer, 'kernel')].ndim == 4
    if not is_conv or any(name in layer for name in KEPT):
      return x
    if leaf == 'bias':
      return np.zeros_like(x)
    fan_in = x.shape[0] * x.shape[1] * x.shape[2]
    return (rng.standard_normal(x.shape) * np.sqrt(2.0 / fan_in)).astype(x.dtype)

  return flax.traverse_util.unflatten_dict({p: init(p, np.asarray(x)) for p, x in flat.items()})
