"""Weights for a network from any input: `load(path, model_or_config)`.

Inputs, recognised by content: a training workdir, its checkpoints/ folder or a step folder (the newest
checkpoint's weights); an orbax variables folder or a flat `.npz` in Flax names (written by
`python -m gsfm_jax.convert` or `gsfm_jax.weights.save`); an official GSFM/STCN state_dict as `.pth` (needs
torch) or as an `.npz` of official names. Native inputs are checked in Flax names, official ones in the
official names and layout; either way the error names the file and every missing key, extra key and shape
mismatch.
"""

import os
from typing import Union

import ml_collections
import numpy as np

from gsfm_jax.models import GSFM, build_model
from gsfm_jax.weights import files, official, stem, workdir
from gsfm_jax.weights.files import ConversionError, Variables
from gsfm_jax.weights.structure import abstract_variables, check_structure, network_kind


def is_native(path: str) -> bool:
  """A folder (orbax) or an .npz in Flax names; anything else is read as an official state_dict."""
  return os.path.isdir(path) or (path.endswith('.npz') and files.is_native_npz(path))


def load(path: str, model: Union[GSFM, ml_collections.ConfigDict], stem_fill: str = 'orthogonal') -> Variables:
  """Host (numpy, float32) variables {'params', 'batch_stats'} for `model` (a GSFM, or a model config) from
  any input the module docstring lists. A single-object (stage-0) value-encoder stem loaded into the
  multi-object network gets its 5th input channel with `stem_fill` ('orthogonal' as the reference's training,
  'zeros' as its evaluation scripts)."""
  if not isinstance(model, GSFM):
    model = build_model(model)
  if not os.path.exists(path):
    raise ConversionError(f'{path}: no such file or directory')
  path = workdir.newest_state(path)
  if not is_native(path):
    return official.state_dict_to_variables(official.read_state_dict(path), model, path, stem_fill)
  expected = {'/'.join(p): spec.shape for p, spec in abstract_variables(model).items()}
  found = {k: np.asarray(v, np.float32) for k, v in files.flatten(files.load_native(path)).items()}
  name = '/'.join(stem.STEM)
  if name in found:
    found[name] = stem.fit(found[name], expected[name], stem_fill, np.random.default_rng(0))
  check_structure(
    {k: v.shape for k, v in found.items()}, expected, path, f'gsfm_jax weights for the {network_kind(model)} network'
  )
  return files.unflatten(found)


def load_for_inference(path: str, dtype: str = 'float32') -> tuple[GSFM, Variables]:
  """The multi-object network and its weights from `path`: a training run's config.json gives the network's
  switches and width (the default GSFM otherwise). A single-object checkpoint gets a zero 5th input channel,
  as the reference's evaluation scripts do."""
  from configs import model as model_config

  config = workdir.run_model_config(path) or model_config.get_config()
  config.single_object, config.dtype = False, dtype
  model = build_model(config)
  return model, load(path, model, 'zeros')


def save(variables: Variables, path: str, naming: str = 'gsfm', overwrite: bool = False) -> None:
  """Writes variables: naming 'gsfm' (an orbax folder, or a flat .npz of Flax names) or 'official' (an .npz
  of official names, or a .pth with torch). Nothing is left behind when it fails; an existing output is kept
  unless `overwrite`."""
  if naming == 'official':
    official.write_state_dict(official.variables_to_state_dict(variables), path, overwrite)
  elif naming == 'gsfm':
    files.save_native(variables, path, overwrite)
  else:
    raise ValueError(f"naming {naming!r}: expected 'gsfm' or 'official'")
