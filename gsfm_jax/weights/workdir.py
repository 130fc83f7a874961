"""A training run's folder as a weights input: its newest checkpoint, and the network its config describes."""

import json
import os
from typing import Optional

import ml_collections


def newest_state(path: str) -> str:
  """A training workdir, its checkpoints/ folder or a step folder -> the newest `<step>/state`; other paths
  unchanged."""
  for directory in (os.path.join(path, 'checkpoints'), path):
    if os.path.isdir(directory) and not os.path.isdir(os.path.join(directory, 'state')):
      steps = [int(d) for d in os.listdir(directory) if d.isdigit()]
      if steps:
        return os.path.join(directory, str(max(steps)), 'state')
  if os.path.isdir(os.path.join(path, 'state')):
    return os.path.join(path, 'state')
  return path


def run_model_config(path: str) -> Optional[ml_collections.ConfigDict]:
  """The network's config (configs/model.py) of the training run that `path` belongs to, from the run's
  config.json: `path` is its workdir, its checkpoints/ folder, a step folder or its state/. None for other
  inputs."""
  here = os.path.abspath(path)
  for _ in range(4):  # WORKDIR/checkpoints/<step>/state
    saved = os.path.join(here, 'config.json')
    if os.path.isfile(saved):
      from configs import model as model_config

      config = model_config.get_config()
      with open(saved) as f:
        config.update(json.load(f)['model'])
      return config
    here = os.path.dirname(here)
  return None
