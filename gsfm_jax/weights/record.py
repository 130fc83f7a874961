"""The network record: the model switches (configs/model.py, all but the compute dtype) that a weights file was
made with, carried by every file the project writes, so that whoever reads the weights builds their network.

Where it lives: in an `.npz` (Flax or official names) as the zip archive's comment, which numpy and PyTorch
loaders never see; in an orbax variables folder as `network.json`; in a training checkpoint as the run's config
(`WORKDIR/config.json`, and each step's `meta`); in an exported program, in its header. A file without one (an
official `.pth`) is read as GSFM, and `--model FIELD=VALUE` sets what it cannot say.
"""

import difflib
import json
import os
import zipfile
from typing import Any, Mapping, Optional, Sequence

import ml_collections

NPZ_PREFIX = b'gsfm_jax network '
FOLDER_FILE = 'network.json'
RUNTIME = ('dtype',)  # chosen by whoever runs the network, not by its weights


def defaults() -> ml_collections.ConfigDict:
  """configs/model.py: the GSFM network."""
  from configs import model

  return model.get_config()


def of(model: Any) -> dict[str, Any]:
  """The record of a network (a GSFM module or a model config): its switches as JSON-ready values."""
  values = {k: getattr(model, k) for k in defaults() if k not in RUNTIME}
  return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def config(record: Mapping[str, Any], source: str) -> ml_collections.ConfigDict:
  """GSFM's config with a record's switches; ValueError naming `source` for a field it does not know."""
  out = defaults()
  unknown = sorted(set(record) - set(out))
  if unknown:
    raise ValueError(f'{source}: its network record names unknown model field(s) {", ".join(unknown)}')
  for k, v in record.items():
    out[k] = tuple(v) if isinstance(v, list) else v
  return out


def npz_comment(record: Mapping[str, Any]) -> bytes:
  return NPZ_PREFIX + json.dumps(dict(record), sort_keys=True).encode()


def write_npz_comment(path: str, record: Mapping[str, Any]) -> None:
  """Sets the record as the comment of the zip archive an .npz is (its arrays unchanged)."""
  with zipfile.ZipFile(path, 'a') as archive:
    archive.comment = npz_comment(record)


def write_folder(folder: str, record: Mapping[str, Any]) -> None:
  with open(os.path.join(folder, FOLDER_FILE), 'w') as f:
    json.dump(dict(record), f, indent=1, sort_keys=True)


def read(path: str) -> Optional[dict[str, Any]]:
  """The record a weights input carries, or None: an .npz's comment, a folder's network.json, a training
  checkpoint's config (its step `meta`, or the run's config.json up to WORKDIR/checkpoints/<step>/state)."""
  if os.path.isfile(path):
    if not zipfile.is_zipfile(path):
      return None
    with zipfile.ZipFile(path) as archive:
      comment = archive.comment
    return json.loads(comment[len(NPZ_PREFIX) :]) if comment.startswith(NPZ_PREFIX) else None
  if os.path.isfile(os.path.join(path, FOLDER_FILE)):
    with open(os.path.join(path, FOLDER_FILE)) as f:
      return json.load(f)
  return run_record(path)


def run_record(path: str) -> Optional[dict[str, Any]]:
  """The model part of a training run's config: from a step's `meta` item, or from `config.json` in the run's
  workdir, when `path` is the workdir, its checkpoints/ folder, a step folder or its state/."""
  here = os.path.abspath(path)
  for _ in range(4):  # WORKDIR/checkpoints/<step>/state
    for saved, part in ((os.path.join(here, 'meta', 'metadata'), 'config'), (os.path.join(here, 'config.json'), None)):
      if os.path.isfile(saved):
        with open(saved) as f:
          content = json.load(f)
        content = json.loads(content[part]) if part else content  # meta holds the config as a JSON string
        return {k: v for k, v in content['model'].items() if k not in RUNTIME}
    here = os.path.dirname(here)
  return None


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
  """`--model FIELD=VALUE` items -> {field: value}, typed as configs/model.py's field; ValueError naming the flag
  (with the nearest field for a typo)."""
  known, out = defaults(), {}
  for item in items:
    field, eq, text = item.partition('=')
    if not eq:
      raise ValueError(f'--model {item}: expected FIELD=VALUE, e.g. --model width_divisor=4')
    if field not in known or field in RUNTIME:
      near = difflib.get_close_matches(field, [k for k in known if k not in RUNTIME], n=1)
      hint = f'; did you mean {near[0]}?' if near else f' (fields: {", ".join(k for k in known if k not in RUNTIME)})'
      raise ValueError(f'--model {item}: configs/model.py has no field {field!r}{hint}')
    out[field] = parse_value(field, text, known[field])
  return out


def parse_value(field: str, text: str, default: Any) -> Any:
  """A `--model` value in the type of the field's default (tuples comma-separated)."""
  try:
    if isinstance(default, bool):
      if text.lower() not in ('true', 'false', '1', '0'):
        raise ValueError
      return text.lower() in ('true', '1')
    if isinstance(default, tuple):
      kind = type(default[0]) if default else str
      return tuple(kind(v) for v in text.split(',') if v)
    return type(default)(text)
  except ValueError:
    raise ValueError(f'--model {field}={text}: expected a {type(default).__name__} like {default!r}') from None
