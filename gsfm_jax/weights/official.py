"""The official PyTorch GSFM/STCN naming and layout ⇄ Flax variables (docs/reference.md, "Weights").

Names map one to one: `key_encoder.res2.0.conv1.weight` <-> params/key_encoder/res2_0/conv1/kernel.
Layouts: conv OIHW <-> HWIO, linear (out, in) <-> (in, out), BN weight/bias <-> params scale/bias,
running_mean/var <-> batch_stats mean/var; `num_batches_tracked` is dropped (always 0, BN never updates).
"""

import re
from typing import Any, Mapping, Optional

import flax.traverse_util
import numpy as np

from gsfm_jax import atomic
from gsfm_jax.models import GSFM
from gsfm_jax.weights import stem
from gsfm_jax.weights.files import ConversionError, Variables, read_npz, write_arrays_npz
from gsfm_jax.weights.structure import Path, abstract_variables, check_structure, network_kind

_INDEXED_CONTAINER = re.compile(r'^(res2|layer[1-3]|downsample|mlp)_(\d+)$')


def official_key(path: Path) -> str:
  """(collection, *modules, leaf) -> official key, e.g. (params, key_encoder, res2_0, conv1, kernel) ->
  key_encoder.res2.0.conv1.weight; the only map between the namings, used in both directions."""
  parts: list[str] = []
  for module in path[1:-1]:
    match = _INDEXED_CONTAINER.match(module)
    parts.extend(match.groups() if match else (module,))
  leaf = {'kernel': 'weight', 'scale': 'weight', 'mean': 'running_mean', 'var': 'running_var'}.get(path[-1], path[-1])
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


def state_dict_to_variables(
  state_dict: Mapping[str, np.ndarray], model: GSFM, source: str, stem_fill: str = 'orthogonal', seed: int = 0
) -> Variables:
  """Official state_dict -> Flax variables {'params', 'batch_stats'} for `model`, float32.

  A 4-channel (stage-0, single-object) value-encoder stem is widened to the 5 channels of a multi-object
  model with `stem_fill` (`stem.fit`). Raises ConversionError naming `source` and listing every missing
  key, extra key and shape mismatch, in the official names and layout.
  """
  expected = {official_key(p): (p, spec.shape) for p, spec in abstract_variables(model).items()}
  rng = np.random.default_rng(seed)
  arrays: dict[str, np.ndarray] = {}
  for key, value in state_dict.items():
    if key.endswith('.num_batches_tracked'):
      continue
    value = to_flax_layout(np.asarray(value, np.float32))
    path, shape = expected.get(key, (None, None))
    if path == stem.STEM:
      value = stem.fit(value, shape, stem_fill, rng)
    arrays[key] = value
  check_structure(
    {k: official_shape(v.shape) for k, v in arrays.items()},
    {k: official_shape(shape) for k, (_, shape) in expected.items()},
    source,
    f'a GSFM state_dict for the {network_kind(model)} network',
  )
  return flax.traverse_util.unflatten_dict({expected[k][0]: v for k, v in arrays.items()})


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
  return {k[len('module.') :] if k.startswith('module.') else k: v for k, v in state_dict.items()}


TORCH_MISSING = (
  '{path}: reading PyTorch files needs torch (pip install torch). Without it, convert the file '
  'to .npz on a machine that has torch:\n  python -c "import sys, torch, numpy as np; '
  "sd = torch.load(sys.argv[1], map_location='cpu', weights_only=True); sd = sd.get('network', sd); "
  'np.savez(sys.argv[2], **{{k: v.numpy() for k, v in sd.items()}})" {path} out.npz'
)


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


def write_state_dict(
  state_dict: Mapping[str, np.ndarray], path: str, overwrite: bool = False, network: Optional[Mapping] = None
) -> None:
  """Writes an official state_dict as `.npz` (with the `network` record as its comment, unseen by numpy and
  PyTorch), or as `.pth` (plain state_dict, needs torch; no record)."""
  if path.endswith('.npz'):
    write_arrays_npz(state_dict, path, overwrite, network)
    return
  try:
    import torch
  except ImportError:
    raise ConversionError(
      f'{path}: writing PyTorch files needs torch (pip install torch); write .npz instead'
    ) from None
  tensors = {k: torch.from_numpy(np.array(v, order='C')) for k, v in state_dict.items()}  # 0-d stays 0-d
  atomic.write(path, lambda target: torch.save(tensors, target), overwrite)
