"""Training checkpoints (orbax `CheckpointManager`) and preemption.

A run's checkpoints live in `WORKDIR/checkpoints/<step>/` with two items: `state` (the whole TrainState)
and `meta` (JSON: step, config, device and process counts). Saves are asynchronous and atomic (orbax
writes a temporary directory and renames it when every host has finished), the newest `keep` are kept,
and a restore places the arrays on the current mesh, whatever the device count of the run that wrote them.
"""

import os
import shutil
import signal
import sys
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from gsfm_jax.weights.files import ConversionError, short_reason


class Checkpoints:
  """`WORKDIR/checkpoints`: save at multiples of `every` (or when forced), keep the newest `keep`."""

  def __init__(self, workdir: str, every: int, keep: int, asynchronous: bool = True):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous)
    self.every = every
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    if jax.process_index() == 0:
      remove_unfinished(self.directory)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, meta: dict, force: bool = False) -> bool:
    """Starts saving `state` at `step` if it is due (or forced); returns whether a save started."""
    if not (force or step % self.every == 0) or step == self.manager.latest_step():
      return False
    return self.manager.save(
      step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True
    )

  def restore(self, abstract_state: Any, step: Optional[int] = None) -> Any:
    """The state at `step` (default newest), placed as `abstract_state`'s shardings say."""
    step = self.manager.latest_step() if step is None else step
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    except Exception as e:
      raise ConversionError(
        f'{self.directory}/{step}: cannot restore this checkpoint ({short_reason(e)}); move '
        'that step folder away to resume from the one before'
      ) from None
    return restored.state

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    """Ends the manager's background work (saves, the clean-up of temporary folders), then the manager."""
    self.manager.wait_until_finished()
    self.manager.close()


UNFINISHED = '.orbax-checkpoint-tmp'  # orbax's suffix of a step folder whose save has not finished


def remove_unfinished(directory: str) -> None:
  """Deletes the step folders of saves that never finished (a killed run), before anything saves again. Done
  here, synchronously, rather than by orbax's background clean-up, which could outlive a run that stops at once
  (a bad config) and fail at interpreter shutdown."""
  if os.path.isdir(directory):
    for name in os.listdir(directory):
      if UNFINISHED in name:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def abstract(tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """Shapes and dtypes of `tree` with `sharding` (an orbax restore target)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


class Preemption:
  """Whether to save and stop now; a context manager that puts the signal handlers it replaced back on exit.
  On one process SIGTERM (preemption) and SIGINT (Ctrl-C) set a flag; a second Ctrl-C stops at once. With
  `jax.distributed`, JAX's preemption service catches SIGTERM and every host agrees on the step to save at."""

  def __init__(self):
    self.requested, self.reason = False, 'preemption (SIGTERM)'
    self._distributed = jax.process_count() > 1
    self._replaced: dict[int, Any] = {}

  def __enter__(self) -> 'Preemption':
    if not self._distributed:
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._replaced[signum] = signal.signal(signum, self._on_signal)
    return self

  def __exit__(self, *exc_info) -> None:
    for signum, handler in self._replaced.items():
      signal.signal(signum, handler)
    self._replaced.clear()

  def _on_signal(self, signum, frame) -> None:
    del frame
    self.requested = True
    if signum == signal.SIGINT:
      self.reason = 'interrupted (Ctrl-C)'
      signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops without saving
      print(
        'Ctrl-C: saving a checkpoint after this step (press Ctrl-C again to stop at once)', file=sys.stderr, flush=True
      )

  def reached(self, step: int) -> bool:
    """Call once per step, with the same step on every host."""
    if self._distributed:
      self.requested = multihost_utils.reached_preemption_sync_point(step)
    return self.requested
