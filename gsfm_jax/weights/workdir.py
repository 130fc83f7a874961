"""A training run's folder as a weights input: its newest checkpoint (the network it describes: `record`)."""

import os


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
