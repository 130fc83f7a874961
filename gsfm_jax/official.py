"""Official PyTorch GSFM/STCN state_dicts and torchvision ResNets ⇄ Flax variables (spec §1.2, §1.10, §1.13).

Names map one to one: `key_encoder.res2.0.conv1.weight` <-> params/key_encoder/res2_0/conv1/kernel.
Layouts: conv OIHW <-> HWIO, linear (out, in) <-> (in, out), BN weight/bias <-> params scale/bias,
running_mean/var <-> batch_stats mean/var; `num_batches_tracked` is dropped (always 0, BN never updates).
"""
import re
from typing import Any, Mapping

import flax.traverse_util
import jax
import numpy as np

from gsfm_jax.export import ConversionError, atomic_write, check_structure, read_npz, write_arrays_npz
from gsfm_jax.models import GSFM, init_variables

Variables = dict[str, Any]
Path = tuple[str, ...]

_INDEXED_CONTAINER = re.compile(r'^(res2|layer[1-3]|downsample|mlp)_(\d+)$')


def official_key(path: Path) -> str:
  """(collection, *modules, leaf) -> official key, e.g. (params, key_encoder, res2_0, conv1, kernel) ->
  key_encoder.res2.0.conv1.weight; the only map between the namings, used in both directions."""
  parts: list[str] = []
  for module in path[1:-1]:
    match = _INDEXED_CONTAINER.match(module)
    parts.extend(match.groups() if match else (module,))
  leaf = {'kernel': 'weight', 'scale': 'weight', 'mean': 'running_mean', 'var': 'running_var'}.get(
      path[-1], path[-1])
  return '.'.join(parts + [leaf])


_OFFICIAL_AXES = {4: (3, 2, 0, 1), 2: (1, 0)}  # HWIO -> OIHW, (in, out) -> (out, in)


def to_official_layout(array: np.ndarray) -> np.ndarray:
  """Flax HWIO conv -> OIHW, (in, out) linear -> (out, in); vectors unchanged."""
  axes = _OFFICIAL_AXES.get(array.ndim)
  return array if axes is None else np.ascontiguousarray(array.transpose(axes))


def to_flax_layout(array: np.ndarray) -> np.ndarray:
  """Inverse of `to_official_layout`."""
  axes = _OFFICIAL_AXES.get(array.ndim)
  return array if axes is None else np.ascontiguousarray(array.transpose(np.argsort(axes)))


def official_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
  """The official layout's shape of a Flax array shape."""
  axes = _OFFICIAL_AXES.get(len(shape))
  return tuple(shape) if axes is None else tuple(shape[a] for a in axes)


def abstract_variables(model: GSFM) -> Mapping[Path, jax.ShapeDtypeStruct]:
  """Flat {path: ShapeDtypeStruct} of the model's variables, without computing anything."""
  return flax.traverse_util.flatten_dict(jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0))))


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


def state_dict_to_variables(state_dict: Mapping[str, np.ndarray], model: GSFM, source: str,
                            stem_fill: str = 'orthogonal', seed: int = 0) -> Variables:
  """Official state_dict -> Flax variables {'params', 'batch_stats'} for `model`.

  A 4-channel (stage-0, single-object) value-encoder stem is widened to the 5 channels of a
  multi-object model with `stem_fill`. Raises ConversionError naming `source` and listing every
  missing key, extra key and shape mismatch (shapes in the official layout).
  """
  expected = {official_key(p): (p, official_shape(spec.shape)) for p, spec in abstract_variables(model).items()}
  rng = np.random.default_rng(seed)
  arrays: dict[str, np.ndarray] = {}
  for key, value in state_dict.items():
    if key.endswith('.num_batches_tracked'):
      continue
    value = np.asarray(value)
    if key == 'value_encoder.conv1.weight' and key in expected and value.ndim == 4:
      want = expected[key][1]
      if value.shape[1] < want[1] and value.shape[:1] + value.shape[2:] == want[:1] + want[2:]:
        value = widen_stem(value, want[1], stem_fill, rng)
    arrays[key] = value
  kind = 'single' if model.single_object else 'multi'
  check_structure({k: v.shape for k, v in arrays.items()}, {k: shape for k, (_, shape) in expected.items()},
                  source, f'a GSFM state_dict for the {kind}-object network')
  flat = {expected[k][0]: to_flax_layout(v.astype(np.float32)) for k, v in arrays.items()}
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


TORCHVISION_STAGES = {'key_encoder': ('res2', 'layer2', 'layer3'), 'value_encoder': ('layer1', 'layer2', 'layer3')}


def torchvision_backbone(resnet: Mapping[str, np.ndarray], encoder: str, in_channels: int,
                         source: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """torchvision ResNet-50/18 ImageNet state_dict -> the official keys of one encoder trunk.

  layer1 is renamed `res2` in the key encoder; layer4 and fc are dropped; conv biases (absent in the
  source) become 0; extra stem input channels are orthogonal-initialised after RGB (spec §1.2).
  """
  stages = TORCHVISION_STAGES[encoder]
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


TORCH_MISSING = ('{path}: reading PyTorch files needs torch (pip install torch). Without it, convert the file '
                 'to .npz on a machine that has torch:\n  python -c "import sys, torch, numpy as np; '
                 'sd = torch.load(sys.argv[1], map_location=\'cpu\', weights_only=True); sd = sd.get(\'network\', sd); '
                 'np.savez(sys.argv[2], **{{k: v.numpy() for k, v in sd.items()}})" {path} out.npz')


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """An official state_dict from `.npz` (official key names) or `.pth` (needs torch), plain or as the
  full training checkpoint {'network': …}, with DDP's `module.` prefix removed."""
  if path.endswith('.npz'):
    return strip_wrappers(read_npz(path))
  try:
    import torch
  except ImportError:
    raise ConversionError(TORCH_MISSING.format(path=path)) from None
  try:
    loaded = torch.load(path, map_location='cpu', weights_only=True)
  except FileNotFoundError:
    raise ConversionError(f'{path}: no such file') from None
  except Exception as e:
    raise ConversionError(f'{path}: cannot read as a PyTorch checkpoint ({type(e).__name__}: {e})') from None
  if not isinstance(loaded, Mapping):
    raise ConversionError(f'{path}: holds a {type(loaded).__name__}, not a state_dict')
  state_dict = strip_wrappers(loaded)
  return {k: v.detach().cpu().numpy() if hasattr(v, 'detach') else np.asarray(v) for k, v in state_dict.items()}


def write_state_dict(state_dict: Mapping[str, np.ndarray], path: str, overwrite: bool = False) -> None:
  """Writes an official state_dict as `.npz`, or as `.pth` (plain state_dict, needs torch)."""
  if path.endswith('.npz'):
    write_arrays_npz(state_dict, path, overwrite)
    return
  try:
    import torch
  except ImportError:
    raise ConversionError(f'{path}: writing PyTorch files needs torch (pip install torch); write .npz instead') from None
  tensors = {k: torch.from_numpy(np.array(v, order='C')) for k, v in state_dict.items()}  # 0-d stays 0-d
  atomic_write(path, overwrite, lambda target: torch.save(tensors, target))
