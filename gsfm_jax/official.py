"""Official PyTorch GSFM/STCN state_dicts and torchvision ResNets ⇄ Flax variables (spec §1.2, §1.10, §1.13).

Names map one to one: `key_encoder.res2.0.conv1.weight` <-> params/key_encoder/res2_0/conv1/kernel.
Layouts: conv OIHW <-> HWIO, linear (out, in) <-> (in, out), BN weight/bias <-> params scale/bias,
running_mean/var <-> batch_stats mean/var; `num_batches_tracked` is dropped (always 0, BN never updates).
"""
import re
from typing import Any, Iterable, Mapping, Optional

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from gsfm_jax.models import GSFM

Variables = dict[str, Any]
Path = tuple[str, ...]

_INDEXED_CONTAINER = re.compile(r'^(res2|layer[1-3]|downsample|mlp)_(\d+)$')
_BN_BUFFERS = {'running_mean': 'mean', 'running_var': 'var'}
_MAX_LISTED = 20


class ConversionError(ValueError):
  """A weight file cannot be converted; the message names the file and every problem found."""


def flax_path(key: str, ndim: int) -> Optional[Path]:
  """Official key -> (collection, *modules, leaf) in the Flax tree; None for `num_batches_tracked`."""
  parts = key.split('.')
  modules: list[str] = []
  for part in parts[:-1]:
    if part.isdigit() and modules:
      modules[-1] = f'{modules[-1]}_{part}'
    else:
      modules.append(part)
  leaf = parts[-1]
  if leaf == 'num_batches_tracked':
    return None
  if leaf in _BN_BUFFERS:
    return ('batch_stats', *modules, _BN_BUFFERS[leaf])
  if leaf == 'weight':
    return ('params', *modules, 'scale' if ndim == 1 else 'kernel')
  return ('params', *modules, leaf)


def official_key(path: Path) -> str:
  """(collection, *modules, leaf) -> official key (inverse of `flax_path`)."""
  parts: list[str] = []
  for module in path[1:-1]:
    match = _INDEXED_CONTAINER.match(module)
    parts.extend(match.groups() if match else (module,))
  leaf = {'kernel': 'weight', 'scale': 'weight', 'mean': 'running_mean', 'var': 'running_var'}.get(
      path[-1], path[-1])
  return '.'.join(parts + [leaf])


def to_flax_layout(array: np.ndarray) -> np.ndarray:
  """OIHW conv -> HWIO, (out, in) linear -> (in, out); vectors unchanged."""
  if array.ndim == 4:
    return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
  if array.ndim == 2:
    return np.ascontiguousarray(array.T)
  return array


def to_official_layout(array: np.ndarray) -> np.ndarray:
  """Inverse of `to_flax_layout`."""
  if array.ndim == 4:
    return np.ascontiguousarray(array.transpose(3, 2, 0, 1))
  if array.ndim == 2:
    return np.ascontiguousarray(array.T)
  return array


def abstract_variables(model: GSFM) -> Mapping[Path, jax.ShapeDtypeStruct]:
  """Flat {path: ShapeDtypeStruct} of the model's variables, without computing anything."""
  k = 1 if model.single_object else 2
  tree = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 32, 32, 3)),
                                           jnp.zeros((1, 32, 32, k)), jnp.ones((1, k))))
  return flax.traverse_util.flatten_dict(tree)


def orthogonal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
  """PyTorch `orthogonal_` semantics: rows = shape[0], columns = the rest flattened; float32."""
  rows, cols = shape[0], int(np.prod(shape[1:]))
  flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
  q, r = np.linalg.qr(flat)
  q *= np.sign(np.diag(r))
  if rows < cols:
    q = q.T
  return q.reshape(shape).astype(np.float32)


def widen_stem(weight: np.ndarray, in_channels: int, fill: str, rng: np.random.Generator) -> np.ndarray:
  """Appends input channels after the existing ones to an OIHW stem conv (spec §1.2, §1.10).

  fill: 'orthogonal' (training: `load_network`, ImageNet init) or 'zeros' (the official eval scripts).
  """
  extra = in_channels - weight.shape[1]
  shape = (weight.shape[0], extra, *weight.shape[2:])
  if fill == 'orthogonal':
    new = orthogonal(shape, rng)
  elif fill == 'zeros':
    new = np.zeros(shape, np.float32)
  else:
    raise ValueError(f'unknown fill {fill!r}; expected orthogonal or zeros')
  return np.concatenate([weight, new], axis=1)


def _listing(items: Iterable[str]) -> str:
  items = sorted(items)
  shown = ', '.join(items[:_MAX_LISTED])
  return shown + (f' … (+{len(items) - _MAX_LISTED} more)' if len(items) > _MAX_LISTED else '')


def _official_shape(spec: jax.ShapeDtypeStruct) -> tuple[int, ...]:
  shape = tuple(spec.shape)
  return tuple(reversed(shape)) if len(shape) == 2 else (
      (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape)


def state_dict_to_variables(state_dict: Mapping[str, np.ndarray], model: GSFM, source: str,
                            stem_fill: str = 'orthogonal', seed: int = 0) -> Variables:
  """Official state_dict -> Flax variables {'params', 'batch_stats'} for `model`.

  A 4-channel (stage-0, single-object) value-encoder stem is widened to the 5 channels of a
  multi-object model with `stem_fill`. Raises ConversionError naming `source` and listing every
  missing key, extra key and shape mismatch (shapes in the official layout).
  """
  expected = abstract_variables(model)
  flat: dict[Path, np.ndarray] = {}
  extra, mismatched = [], []
  rng = np.random.default_rng(seed)
  for key, value in state_dict.items():
    value = np.asarray(value)
    path = flax_path(key, value.ndim)
    if path is None:
      continue
    if path not in expected:
      extra.append(key)
      continue
    want = _official_shape(expected[path])
    if key == 'value_encoder.conv1.weight' and value.ndim == 4 and value.shape[1] < want[1] \
        and value.shape[:1] + value.shape[2:] == want[:1] + want[2:]:
      value = widen_stem(value, want[1], stem_fill, rng)
    if tuple(value.shape) != want:
      mismatched.append(f'{key}: expected shape {list(want)}, found {list(value.shape)}')
      continue
    flat[path] = to_flax_layout(value.astype(np.float32))
  missing = [official_key(p) for p in expected if p not in flat]
  problems = []
  if missing:
    problems.append(f'{len(missing)} missing key(s): {_listing(missing)}')
  if extra:
    problems.append(f'{len(extra)} unexpected key(s): {_listing(extra)}')
  if mismatched:
    problems.append(f'{len(mismatched)} shape mismatch(es): ' + '; '.join(mismatched[:_MAX_LISTED]))
  if problems:
    raise ConversionError(f'{source}: not a GSFM state_dict for this model '
                          f'({"single" if model.single_object else "multi"}-object): ' + '. '.join(problems))
  return flax.traverse_util.unflatten_dict(flat)


def variables_to_state_dict(variables: Variables) -> dict[str, np.ndarray]:
  """Flax variables -> official state_dict (numpy), `num_batches_tracked` = 0 for every BatchNorm."""
  out: dict[str, np.ndarray] = {}
  for path, value in flax.traverse_util.flatten_dict(variables).items():
    key = official_key(path)
    out[key] = to_official_layout(np.asarray(value))
    if path[0] == 'batch_stats' and path[-1] == 'var':
      out[key.rsplit('.', 1)[0] + '.num_batches_tracked'] = np.array(0, np.int64)
  return out


def strip_wrappers(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """Unwraps the full training checkpoint ({'network': …}) and DDP's `module.` prefix."""
  if 'network' in state_dict and isinstance(state_dict['network'], Mapping):
    state_dict = state_dict['network']
  return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state_dict.items()}


_TORCHVISION_STAGES = {'key_encoder': ('res2', 'layer2', 'layer3'), 'value_encoder': ('layer1', 'layer2', 'layer3')}


def torchvision_backbone(resnet: Mapping[str, np.ndarray], encoder: str, in_channels: int,
                         source: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """torchvision ResNet-50/18 ImageNet state_dict -> the official keys of one encoder trunk.

  layer1 is renamed `res2` in the key encoder; layer4 and fc are dropped; conv biases (absent in the
  source) become 0; extra stem input channels are orthogonal-initialised after RGB (spec §1.2).
  """
  stages = _TORCHVISION_STAGES[encoder]
  out: dict[str, np.ndarray] = {}
  for key, value in resnet.items():
    parts = key.split('.')
    if parts[0] in ('layer4', 'fc') or parts[-1] == 'num_batches_tracked':
      continue
    if parts[0].startswith('layer'):
      parts[0] = stages[int(parts[0][-1]) - 1]
    value = np.asarray(value, np.float32)
    if key == 'conv1.weight' and value.shape[1] < in_channels:
      value = widen_stem(value, in_channels, 'orthogonal', rng)
    name = f'{encoder}.' + '.'.join(parts)
    out[name] = value
    if value.ndim == 4:
      out[name[:-len('weight')] + 'bias'] = np.zeros(value.shape[0], np.float32)
  if f'{encoder}.conv1.weight' not in out:
    raise ConversionError(f'{source}: not a torchvision ResNet state_dict (no conv1.weight)')
  return out
