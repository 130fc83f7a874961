"""Training checkpoints (orbax `CheckpointManager`) and the run's initial weights.

A run's checkpoints live in `WORKDIR/checkpoints/<step>/` with two items: `state` (the whole TrainState)
and `meta` (JSON: step, config, device and process counts). Saves are asynchronous and atomic (orbax
writes a temporary directory and renames it when every host has finished), the newest `keep` are kept,
and a restore places the arrays on the current mesh, whatever the device count of the run that wrote them.
"""
import json
import os
import signal
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from gsfm_jax.convert import imagenet_start, read_any
from gsfm_jax.export import ConversionError, Variables
from gsfm_jax.models import GSFM, build_model, init_variables
from gsfm_jax.models.scratch import scratch_params


class Checkpoints:
  """`WORKDIR/checkpoints`: save at multiples of `every` (or when forced), keep the newest `keep`."""

  def __init__(self, workdir: str, every: int, keep: int, asynchronous: bool = True):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous,
                                           cleanup_tmp_directories=True)
    self.every = every
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, meta: dict, force: bool = False) -> bool:
    """Starts saving `state` at `step` if it is due (or forced); returns whether a save started."""
    if not (force or step % self.every == 0) or step == self.manager.latest_step():
      return False
    return self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                           meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, abstract_state: Any, step: Optional[int] = None) -> Any:
    """The state at `step` (default newest), placed as `abstract_state`'s shardings say."""
    step = self.manager.latest_step() if step is None else step
    restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    return restored.state

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def abstract(tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """Shapes and dtypes of `tree` with `sharding` (an orbax restore target)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


class Preemption:
  """Whether to save and stop now. On one process SIGTERM sets a flag; with `jax.distributed`, JAX's
  preemption service catches it and every host agrees on the step to save at."""

  def __init__(self):
    self.requested = False
    self._distributed = jax.process_count() > 1
    if not self._distributed:
      signal.signal(signal.SIGTERM, self._on_signal)

  def _on_signal(self, signum, frame) -> None:
    del signum, frame
    self.requested = True

  def reached(self, step: int) -> bool:
    """Call once per step, with the same step on every host."""
    if self._distributed:
      self.requested = multihost_utils.reached_preemption_sync_point(step)
    return self.requested


def newest_state_dir(path: str) -> str:
  """A training workdir or its checkpoints/ folder -> its newest `<step>/state`; other paths unchanged."""
  for directory in (os.path.join(path, 'checkpoints'), path):
    if os.path.isdir(directory) and not os.path.isdir(os.path.join(directory, 'state')):
      steps = [int(d) for d in os.listdir(directory) if d.isdigit()]
      if steps:
        return os.path.join(directory, str(max(steps)), 'state')
  if os.path.isdir(os.path.join(path, 'state')):
    return os.path.join(path, 'state')
  return path


def inference_model(path: str, dtype: str = 'float32') -> tuple[GSFM, Variables]:
  """The multi-object network and its weights from a training workdir (its config.json gives the network's
  switches), a step or variables folder, an .npz or an official .pth. A single-object checkpoint gets a
  zero 5th input channel, as the reference's evaluation scripts do."""
  from configs import model as model_config
  config = model_config.get_config()
  saved = os.path.join(path, 'config.json')
  if os.path.isfile(saved):
    with open(saved) as f:
      config.update(json.load(f)['model'])
  config.single_object, config.dtype = False, dtype
  model = build_model(config)
  return model, read_any(newest_state_dir(path), model, 'zeros')


def initial_variables(init: ml_collections.ConfigDict, model: GSFM, seed: int) -> Variables:
  """The run's starting weights (host arrays), by `init.kind`:

  'scratch': fresh initialisation for training without ImageNet trunks (`models.scratch`);
  'imagenet': torchvision ResNet-50/18 trunks from `init.resnet50/resnet18`;
  'checkpoint': `init.checkpoint`, a gsfm_jax training workdir (its newest checkpoint) or step folder, a
  variables directory or .npz, or an official .pth/.npz. A single-object checkpoint loaded into the
  two-object network gets its 5th value-encoder input channel (`init.stem_fill`).
  """
  if init.kind == 'scratch':
    variables = jax.device_get(init_variables(model, jax.random.PRNGKey(seed)))
    variables['params'] = scratch_params(variables['params'], np.random.default_rng(seed))
    return variables
  if init.kind == 'imagenet':
    return imagenet_start(init.resnet50, init.resnet18, model, seed)
  if init.kind == 'checkpoint':
    return read_any(newest_state_dir(init.checkpoint), model, init.stem_fill)
  raise ConversionError(f"init.kind {init.kind!r}: expected 'scratch', 'imagenet' or 'checkpoint'")
