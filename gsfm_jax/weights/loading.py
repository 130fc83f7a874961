"""Weights for a network from any input: `load(path, model_or_config)`.

Inputs, recognised by content: a training workdir, its checkpoints/ folder or a step folder (the newest
checkpoint's weights); an orbax variables folder or a flat `.npz` in Flax names (written by
`python -m gsfm_jax.convert` or `gsfm_jax.weights.save`); an official GSFM/STCN state_dict as `.pth` (needs
torch) or as an `.npz` of official names. Native inputs are checked in Flax names, official ones in the
official names and layout; either way the error names the file and every missing key, extra key and shape
mismatch, or, when the file was made for another width, the `--model` option that reads it.

Every writer records the network (`record`), and `network(path)` gives it back: the network a command builds.
"""

import os
from typing import Any, Optional, Sequence, Union

import ml_collections
import numpy as np

from gsfm_jax.models import GSFM, build_model
from gsfm_jax.weights import files, official, record, stem, workdir
from gsfm_jax.weights.files import ConversionError, Variables
from gsfm_jax.weights.structure import abstract_variables, check_structure, network_kind


def is_native(path: str) -> bool:
  """A folder (orbax) or an .npz in Flax names; anything else is read as an official state_dict."""
  return os.path.isdir(path) or (path.endswith('.npz') and files.is_native_npz(path))


def load(
  path: str, model: Union[GSFM, ml_collections.ConfigDict], stem_fill: str = 'orthogonal', flag: str = '--model '
) -> Variables:
  """Host (numpy, float32) variables {'params', 'batch_stats'} for `model` (a GSFM, or a model config) from
  any input the module docstring lists. A single-object (stage-0) value-encoder stem loaded into the
  multi-object network gets its 5th input channel with `stem_fill` ('orthogonal' as the reference's training,
  'zeros' as its evaluation scripts). A mismatch names the setting that reads the file, spelled `flag`FIELD=VALUE
  ('--model ' on the command lines that read weights, '--config.model.' for a training's start)."""
  if not isinstance(model, GSFM):
    model = build_model(model)
  if not os.path.exists(path):
    raise ConversionError(f'{path}: no such file or directory')
  path = workdir.newest_state(path)
  try:
    return read_variables(path, model, stem_fill, flag)
  except ConversionError as error:
    structural = any(kind in str(error) for kind in ('missing key', 'unexpected key', 'shape mismatch'))
    if not structural or record.read(path) is not None:
      raise
    raise ConversionError(
      f'{error}. The file carries no network record and was read as {network_kind(model)} GSFM: name its '
      f'switches with {flag}FIELD=VALUE (configs/model.py)'
    ) from None


def read_variables(path: str, model: GSFM, stem_fill: str, flag: str) -> Variables:
  """`load` of one file or folder."""
  if not is_native(path):
    state_dict = official.read_state_dict(path)
    check_width(path, model, state_dict.get(official.official_key(FIRST_CONV)), flag, official.to_flax_layout)
    return official.state_dict_to_variables(state_dict, model, path, stem_fill)
  expected = {'/'.join(p): spec.shape for p, spec in abstract_variables(model).items()}
  found = {k: np.asarray(v, np.float32) for k, v in files.flatten(files.load_native(path)).items()}
  check_width(path, model, found.get('/'.join(FIRST_CONV)), flag)
  name = '/'.join(stem.STEM)
  if name in found:
    found[name] = stem.fit(found[name], expected[name], stem_fill, np.random.default_rng(0))
  check_structure(
    {k: v.shape for k, v in found.items()}, expected, path, f'gsfm_jax weights for the {network_kind(model)} network'
  )
  return files.unflatten(found)


FIRST_CONV = ('params', 'key_encoder', 'conv1', 'kernel')  # (7, 7, 3, 64 / width_divisor)


def check_width(path: str, model: GSFM, first_conv: Optional[np.ndarray], flag: str, to_flax=lambda a: a) -> None:
  """ConversionError naming `flag`width_divisor=D when the file's key-encoder stem is another width's."""
  if first_conv is None or np.ndim(first_conv) != 4:
    return
  channels = to_flax(np.asarray(first_conv)).shape[-1]
  divisor = 64 // channels if channels and 64 % channels == 0 else None
  if divisor is not None and divisor != model.width_divisor:
    why = '' if record.read(path) is not None else ' (the file carries no network record, so it was read as GSFM)'
    raise ConversionError(
      f'{path}: weights of the network at width_divisor {divisor} ({channels} key-encoder stem channels), not '
      f'{model.width_divisor}{why}: add {flag}width_divisor={divisor}'
    )


def network(path: str, model_flags: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The model config of the weights at `path` (any input `load` reads): the network its record names (GSFM
  for a file without one, such as an official .pth), then the `--model FIELD=VALUE` items `model_flags`."""
  overrides = record.parse_overrides(model_flags)
  if not os.path.exists(path):
    raise ConversionError(f'{path}: no such file or directory')
  config = record.config(record.read(workdir.newest_state(path)) or {}, path)
  config.update(overrides)
  return config


def load_for_inference(path: str, dtype: str = 'float32', model_flags: Sequence[str] = ()) -> tuple[GSFM, Variables]:
  """The multi-object network the weights at `path` record (`network`, with `--model` items `model_flags`) and
  its weights. A single-object checkpoint gets a zero 5th input channel, as the reference's evaluation scripts
  do."""
  config = network(path, model_flags)
  config.single_object, config.dtype = False, dtype
  model = build_model(config)
  return model, load(path, model, 'zeros')


def save(variables: Variables, path: str, network: Any, naming: str = 'gsfm', overwrite: bool = False) -> None:
  """Writes variables with the record of their `network` (a GSFM or a model config): naming 'gsfm' (an orbax
  folder, or a flat .npz of Flax names) or 'official' (an .npz of official names, or a .pth with torch, which
  has no place for the record). Nothing is left behind when it fails; an existing output is kept unless
  `overwrite`."""
  if naming == 'official':
    official.write_state_dict(official.variables_to_state_dict(variables), path, overwrite, record.of(network))
  elif naming == 'gsfm':
    files.save_native(variables, path, overwrite, record.of(network))
  else:
    raise ValueError(f"naming {naming!r}: expected 'gsfm' or 'official'")
