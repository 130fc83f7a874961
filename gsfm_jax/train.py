"""Trains GSFM (docs/reference.md §2, §3) on one CPU, one or several GPUs, or a TPU pod.

  python -m gsfm_jax.train --config=main --workdir=runs/main [--config.x=y …]
  python -m gsfm_jax.train --config=pretrain --workdir=runs/pretrain
  python -m gsfm_jax.train --config=demo --workdir=runs/demo          # the built-in dataset, on a CPU
  python -m gsfm_jax.train --config=ablation:t5_lfm --workdir=runs/t5_lfm

`--config=NAME[:ARG]` is `configs/NAME.py` (a path works too). The run resumes from the newest checkpoint in
its workdir. Several processes (hosts, or one per GPU) join through `jax.distributed` with --distributed
(TPU pods and SLURM are detected), or with --coordinator_address, --num_processes and --process_id
elsewhere; launch/ has the scripts.
SIGTERM (preemption) and Ctrl-C save a checkpoint and exit cleanly (a second Ctrl-C stops at once).

Writes into the workdir: checkpoints/, TensorBoard events, metrics.jsonl, images/ (clip previews),
curves.png (loss and IoU) and run.lock (one training per workdir: a second is refused while this one runs).
"""

import os
import sys
from typing import Iterator, Optional

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags
from PIL import Image

from gsfm_jax import checkpoint, cli, console, run_lock, sharding
from gsfm_jax import metrics as metrics_lib
from gsfm_jax.losses import hard_mining
from gsfm_jax.models import build_model, init_variables
from gsfm_jax.train_step import BATCH_KEYS, TrainState, create_state, make_train_step, optimizer, place_state, targets
from gsfm_jax.visualize import clip_preview
from gsfm_jax.weights import ConversionError
from gsfm_jax.weights.start import initial_variables

_CONFIG = config_flags.DEFINE_config_file('config', None, 'configs/NAME.py[:ARG], or NAME[:ARG]', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'run folder: checkpoints, logs, images (resumed if present)')
_DISTRIBUTED = flags.DEFINE_bool('distributed', False, cli.DISTRIBUTED_HELP)
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, cli.COORDINATOR_HELP)
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, cli.NUM_PROCESSES_HELP)
_PROCESS_ID = flags.DEFINE_integer('process_id', None, cli.PROCESS_ID_HELP)


class ConfigError(ValueError):
  """A config value that cannot work here; the message names the field."""


class TrainingStopped(RuntimeError):
  """The run cannot go on (non-finite steps); the message says why and where its last checkpoint is."""


def prepare_data(config: ml_collections.ConfigDict) -> None:
  """Writes the built-in dataset when the config asks for it and it is not there yet."""
  root = config.get('builtin_data')
  if not root:
    return
  from data_pipelines import synthetic

  if not synthetic.is_complete(root):
    if jax.process_index() == 0:
      logging.info(
        'writing the built-in dataset to %s%s', root, ' (replacing an incomplete one)' if os.path.exists(root) else ''
      )
      synthetic.generate(root)
    sharding.sync('builtin_data')


def open_batches(config: ml_collections.ConfigDict, start_step: int) -> Iterator[dict]:
  """This process's numpy batches from `start_step` on (tf.data; broken samples are replaced and logged)."""
  from data_pipelines.input_pipeline import Batches, make_dataset, open_source

  source = open_source(config.data)
  dataset = make_dataset(
    config.data,
    seed=config.seed,
    global_batch=config.global_batch,
    total_steps=config.steps,
    start_step=start_step,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    source=source,
  )
  return Batches(dataset, source, start_step, config.global_batch, jax.process_index(), jax.process_count())


def initial_state(config: ml_collections.ConfigDict, model, mesh, ckpt: checkpoint.Checkpoints) -> TrainState:
  """The newest checkpoint of the workdir, placed on this mesh; else a fresh state from `config.init`."""
  tx = optimizer(config)
  replicated = sharding.replicated(mesh)
  if ckpt.latest_step() is not None:
    shapes = jax.eval_shape(lambda: create_state(init_variables(model, jax.random.PRNGKey(0)), tx))
    logging.info('resuming from %s/%d', ckpt.directory, ckpt.latest_step())
    return ckpt.restore(checkpoint.abstract(shapes, replicated))
  try:
    variables = initial_variables(config.init, model, config.seed)
  except ConversionError as e:
    raise ConversionError(f'{e} [{_init_fields(config.init)}]') from None
  return place_state(sharding.put_replicated(variables, mesh), tx, mesh)


def _init_fields(init: ml_collections.ConfigDict) -> str:
  """Which config fields chose the starting weights, and what else would do."""
  if init.kind == 'checkpoint':
    return (
      f'config.init.checkpoint={init.checkpoint}: train the stage it comes from first (the main config starts '
      'from --config=pretrain --workdir=runs/pretrain), or set --config.init.checkpoint=PATH, or '
      '--config.init.kind=imagenet / scratch'
    )
  if init.kind == 'imagenet':
    return (
      f"config.init.resnet50={init.resnet50}, config.init.resnet18={init.resnet18}: torchvision's ImageNet "
      'files, or --config.init.kind=scratch'
    )
  return f'config.init.kind={init.kind}'


def write_preview(workdir: str, step: int, local: dict, pred: np.ndarray, single_object: bool, writer) -> None:
  """Process 0's first clip with true and predicted masks: TensorBoard and images/step_N.png.

  local: this process's numpy batch; pred (T-1, H, W, K) probabilities of its first clip.
  """
  true = np.asarray(targets({k: v[:1] for k, v in local.items()}, single_object)[0][0])
  grid = clip_preview(local['frames'][0], true, pred)
  grid = np.repeat(np.repeat(grid, max(1, 128 // pred.shape[1]), 0), max(1, 128 // pred.shape[1]), 1)
  writer.write_images(step, {'clip': grid[None]})
  os.makedirs(os.path.join(workdir, 'images'), exist_ok=True)
  Image.fromarray(grid).save(os.path.join(workdir, 'images', f'step_{step:07d}.png'))


def make_preview(model, mesh):
  """Jitted (params, batch_stats, batch) -> probabilities (1, T-1, H, W, K) of the batch's first clip."""

  def preview(params, batch_stats, batch):
    masks, selector = targets({k: v[:1] for k, v in batch.items()}, model.single_object)
    out = model.apply({'params': params, 'batch_stats': batch_stats}, batch['frames'][:1], masks[:, 0], selector)
    return out['prob']

  return jax.jit(preview, out_shardings=sharding.replicated(mesh))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Runs (or resumes) the training described by `config` in `workdir`; returns the final state."""
  mesh = sharding.make_mesh()
  try:
    sharding.check_batch(config.global_batch, mesh, jax.process_count())
  except ValueError as e:
    raise ConfigError(f'config.{e}: set --config.global_batch to a multiple of it') from None
  if config.global_batch % (config.grad_accum * mesh.size):
    raise ConfigError(
      f'config.global_batch {config.global_batch} must split into config.grad_accum '
      f'{config.grad_accum} micro-batches of whole per-device batches ({mesh.size} devices)'
    )
  try:
    model = build_model(config.model)
  except ValueError as e:
    raise ConfigError(f'config.{e}') from None
  os.makedirs(workdir, exist_ok=True)
  with run_lock.RunLock(workdir):  # before anything in the workdir is touched: one training per workdir
    ckpt = checkpoint.Checkpoints(workdir, config.checkpoint_every, config.keep_checkpoints, config.async_checkpoints)
    try:
      return _train(config, workdir, mesh, model, ckpt)
    finally:
      ckpt.close()  # its background threads end here, not at interpreter shutdown


def _train(config: ml_collections.ConfigDict, workdir: str, mesh, model, ckpt: checkpoint.Checkpoints) -> TrainState:
  """The training loop of `train_and_evaluate`."""
  state = initial_state(config, model, mesh, ckpt)
  start = int(jax.device_get(state.step))
  logging.info(
    '%s on %d %s device(s), %d process(es); global batch %d; step %d of %d',
    model.__class__.__name__,
    mesh.size,
    jax.devices()[0].platform,
    jax.process_count(),
    config.global_batch,
    start,
    config.steps,
  )
  if start >= config.steps:
    return state
  prepare_data(config)
  batches = open_batches(config, start)
  train_step = make_train_step(model, config, mesh)
  preview_fn = make_preview(model, mesh)
  writer = metrics_lib.create_writer(workdir)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
  meta = {'config': config.to_json(), 'devices': mesh.size, 'processes': jax.process_count()}
  window, progress = metrics_lib.Window(), metrics_lib.Progress(start, config.steps, config.global_batch)
  pixels = config.data.size**2
  previous: Optional[dict] = None
  with checkpoint.Preemption() as preemption:
    for step in range(start, config.steps):
      local = next(batches)
      batch = sharding.global_batch({k: local[k] for k in BATCH_KEYS}, mesh)
      p, num_kept = hard_mining(step, pixels, config.start_warm, config.end_warm, config.top_p)
      scalars = sharding.put_replicated((np.float32(p), np.int32(num_kept)), mesh)
      state, step_metrics = train_step(state, batch, *scalars)
      window.add(step_metrics)
      done = step + 1
      if step == start:  # the first step compiles: the steps/s and ETA count from its end
        jax.block_until_ready(step_metrics)
        progress.begin(done)
      if previous is not None and int(previous['refused_in_a_row']) >= config.max_refused_steps:
        raise TrainingStopped(_stop_message(config, ckpt, done - 1))
      previous = step_metrics
      if done % config.progress_every == 0 or done == config.steps:
        logging.info(progress.line(done, float(step_metrics['total_loss'])))
      if done % config.log_every == 0 or done == config.steps:
        report = window.report()
        report['steps_per_s'] = progress.rate or 0.0
        report['clips_per_s'] = report['steps_per_s'] * config.global_batch
        report['skipped_samples'] = float(batches.skipped)
        writer.write_scalars(done, report)
      if done % config.image_every == 0:
        pred = jax.device_get(preview_fn(state.params, state.batch_stats, batch))[0]  # every process runs it
        if jax.process_index() == 0:
          write_preview(workdir, done, local, pred, config.model.single_object, writer)
      preempted = preemption.reached(done)
      if ckpt.save(done, state, {**meta, 'step': done}, force=preempted or done == config.steps):
        logging.info('checkpoint %d started', done)
      if preempted:
        logging.warning(
          '%s: saved step %d in %s, stopping; the same command resumes', preemption.reason, done, ckpt.directory
        )
        break
  if int(jax.device_get(state.refused_in_a_row)) >= config.max_refused_steps:
    raise TrainingStopped(_stop_message(config, ckpt, int(jax.device_get(state.step))))
  ckpt.wait()
  writer.flush()
  curves = os.path.join(workdir, 'curves.png')
  if jax.process_index() == 0 and os.path.exists(os.path.join(workdir, 'metrics.jsonl')):
    metrics_lib.plot_curves(os.path.join(workdir, 'metrics.jsonl'), curves)
    print(
      f'{"stopped" if preemption.requested else "finished"} at step {done} of {config.steps}: checkpoint '
      f'{ckpt.directory}/{ckpt.latest_step()}, curves {curves}',
      flush=True,
    )
    if preemption.requested:
      print(
        'an unfinished training: its network may not segment yet (README, "What the demo reaches"); the same '
        f'command resumes to step {config.steps}',
        flush=True,
      )
  return state


def _stop_message(config, ckpt: checkpoint.Checkpoints, step: int) -> str:
  ckpt.wait()
  last = ckpt.latest_step()
  where = f'{ckpt.directory}/{last}' if last is not None else 'none saved yet'
  return (
    f'stopped at step {step}: {config.max_refused_steps} steps in a row had a non-finite loss or gradient '
    f'and were refused (the parameters were not changed by them). Last good checkpoint: {where}. Lower '
    f'config.lr, check the data with `python -m data_pipelines.check`, or use float32 (config.model.dtype).'
  )


@cli.reported
def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _CONFIG.value is None or not _WORKDIR.value:
    raise app.UsageError('--config and --workdir are required')
  cli.initialize_distributed(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  console.show_info()
  from data_pipelines.sources import DataError

  try:
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except TrainingStopped as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  except (ConfigError, ConversionError, run_lock.WorkdirInUse) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except DataError as e:
    print(
      f'error: {e}: point the config at the data (--config.data.davis_root, youtube_root, video_roots or '
      'static_root; configs/data.py) and check it with python -m data_pipelines.check ROOT',
      file=sys.stderr,
    )
    return 2
  return 0


def usage(argv: list[str]) -> str:
  """`train --help`: the docstring, the flags, and every field of the config (`--config=NAME`, default main)
  with its value, each settable as --config.FIELD=VALUE."""
  spec = cli.config_spec(argv)
  lines = [__doc__.strip(), '', 'flags:']
  for name in ('config', 'workdir', 'distributed', 'coordinator_address', 'num_processes', 'process_id'):
    lines.append(f'  --{name}: {flags.FLAGS[name].help} (default: {flags.FLAGS[name].default})')
  lines += ['', f'config fields of --config={cli.config_name(spec)} (set any with --config.FIELD=VALUE):']
  lines += [f'  --config.{name}={value!r}' for name, value in cli.config_fields(cli.load_config(spec)).items()]
  return '\n'.join(lines + ['', cli.EXIT_STATUS])


def run() -> None:
  argv = cli.absl_argv(sys.argv)
  if {'-h', '--help', '--helpshort', '--helpfull'} & set(argv[1:]):
    print(usage(argv))
    sys.exit(0)
  app.run(lambda argv: sys.exit(main(argv)), argv=argv)


if __name__ == '__main__':
  run()
