"""Ahead-of-time compilation for a TPU slice before it is booked: does a config's training step compile there,
fit each chip's HBM, how many clips per chip fit, and what does a step cost.

  python -m gsfm_jax.aot --config=main --topology=v5e-16                # the config's global batch over the chips
  python -m gsfm_jax.aot --config=main --topology=v5p-8 --per_chip=16
  python -m gsfm_jax.aot --config=pretrain --topology=v4-8 --search     # the largest clips per chip that fits
  python -m gsfm_jax.aot --config=main --topology=v5e-4 --what=train,infer   # + the inference chunk step
  python -m gsfm_jax.aot --list                                         # the slice names, chips, hosts, HBM
  python -m gsfm_jax.aot --config=demo --topology=host --hbm_gib=4      # this machine's own devices

A TPU target needs libtpu (`pip install -e '.[tpu]'`, or `make setup-tpu`), not a TPU: JAX compiles for the
slice's compile-only devices on any host (CPU, GPU). The program is the one `gsfm_jax.train` runs: the jitted
train step over a 1-D data mesh of every chip (parameters replicated), with abstract state and batch (no
weights are made, no data is read). The model dtype follows the target: 'auto' is bfloat16 on a TPU.

Multi-host slices (v5e-16 and up, v4-16 and up) and --slices N (multi-slice, over DCN) compile as the one
global program every host runs; the figures are per chip. The verdict: a step fits when XLA compiles it and
its whole footprint (arguments + outputs + temporaries + code − donated aliases) is within the chip's HBM.
A successful compile alone is not enough: XLA:TPU checks its temporaries against the memory it keeps for
them, so `main` at 16 clips per v5e chip compiles and still needs 16.44 GiB of a 16 GiB chip. A step whose
temporaries do not fit fails with RESOURCE_EXHAUSTED, and the row gives the figure XLA names. Full-width
compiles take 6–11 min and 8–12 GiB of host RAM on a 2-core host, and a step near the limit is not faster
(XLA rematerialises to fit its temporaries first); `--search` doubles or halves from --per_chip, then
narrows the bracket by interpolating the bytes: about three compiles when the start is near the answer.
"""

import json
import math
import os
import re
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from gsfm_jax import cli, sharding, tpu_topologies
from gsfm_jax.tpu_topologies import GIB

TRAIN_FRAMES = 3  # frames per training clip (data_pipelines.clips.CLIP_FRAMES)
MFU_ESTIMATE = 0.4  # the utilisation the step-time estimate assumes
FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags (defined when it runs, so that importing this module next to gsfm_jax.train,
  which has its own --config, does not clash)."""
  config_flags.DEFINE_config_file('config', None, 'configs/NAME.py[:ARG], or NAME[:ARG]', lock_config=False)
  flags.DEFINE_string(
    'topology', None, "a Cloud TPU slice (v4-8, v5p-8, v5e-16, v6e-8, …; --list), or host: this machine's devices"
  )
  flags.DEFINE_integer('slices', 1, 'slices joined over DCN (multi-slice); the data mesh spans all of them')
  flags.DEFINE_integer('per_chip', None, "training clips per chip (default: the config's global_batch over the chips)")
  flags.DEFINE_bool('search', False, 'find the largest clips per chip that fits, by compiling')
  flags.DEFINE_integer('search_limit', 256, 'the most clips per chip --search tries')
  flags.DEFINE_list('what', ['train'], 'programs to compile: train, infer')
  flags.DEFINE_string('infer_size', '480x854', 'inference: frame size HxW (DAVIS 480p)')
  flags.DEFINE_integer('objects', 3, 'inference: objects per video')
  flags.DEFINE_integer('capacity', 16, 'inference: memory frames (bounded memory)')
  flags.DEFINE_float(
    'hbm_gib', None, "device memory to fit in, GiB (default: the chip's data sheet; for host, the allocator's limit)"
  )
  flags.DEFINE_string('json', None, 'also write the rows to this JSON file')
  flags.DEFINE_bool('list', False, 'print the known slices and exit')


class Target(NamedTuple):
  """Where the programs are compiled for: devices (compile-only for a TPU slice), memory and peak per device."""

  name: str
  devices: list
  hbm_bytes: float
  peak_bf16: Optional[float]  # data sheet (TPU); None elsewhere
  hosts: int
  platform: str  # 'tpu', or the host's backend


class Row(NamedTuple):
  """One compiled program: per-device figures (bytes, FLOPs) and the verdict."""

  program: str  # 'train' or 'infer'
  topology: str
  devices: int
  per_chip: int  # clips per chip (train) or videos per chip (infer: 1)
  fits: bool
  memory: dict  # argument / output / temp / code / alias bytes (empty when it did not fit)
  required: Optional[float]  # bytes XLA asked for when it did not fit
  available: Optional[float]  # bytes XLA had (from its message), else the target's HBM
  flops: Optional[float]  # per device per step (train) or per chunk (infer)
  bytes_accessed: Optional[float]
  compile_seconds: float
  unit: str  # what one step is: 'step of N clips' or 'chunk of N frames'

  @property
  def total(self) -> Optional[float]:
    """Bytes per device: arguments + outputs + temporaries + code − donated aliases (or what XLA asked for)."""
    if not self.memory:
      return self.required
    m = self.memory
    return m['argument'] + m['output'] + m['temp'] + m['code'] - m['alias']


class CompileError(RuntimeError):
  """A compile failed for a reason other than memory; the message is XLA's first line."""


# ---- the target ------------------------------------------------------------------------------------------------


def quiet_libtpu(accelerator_type: str) -> None:
  """Environment for loading libtpu on a host that is not a TPU VM, set before it loads (what is set is kept):
  the compile-only target needs no TPU, and without these libtpu prints warnings about the missing TPU VM
  metadata. A second process may load it too (two compiles side by side)."""
  for key, value in (
    ('TPU_ACCELERATOR_TYPE', accelerator_type),
    ('TPU_WORKER_HOSTNAMES', 'localhost'),
    ('ALLOW_MULTIPLE_LIBTPU_LOAD', '1'),
    ('TPU_SKIP_MDS_QUERY', '1'),
  ):
    os.environ.setdefault(key, value)


def libtpu_installed() -> bool:
  import importlib.util

  return importlib.util.find_spec('libtpu') is not None


def make_target(name: str, slices: int = 1, hbm_gib: Optional[float] = None) -> Target:
  """A named Cloud TPU slice (compile-only devices; needs libtpu) or 'host' (this machine's devices)."""
  if name == 'host':
    stats = jax.devices()[0].memory_stats() or {}
    limit = hbm_gib * GIB if hbm_gib else stats.get('bytes_limit')
    if not limit:
      raise tpu_topologies.TopologyError('--topology=host: this backend reports no memory limit; give --hbm_gib')
    return Target('host', jax.devices(), float(limit), None, jax.process_count(), jax.default_backend())
  piece = tpu_topologies.lookup(name)
  if not libtpu_installed():
    raise tpu_topologies.TopologyError(
      f'--topology={name} needs libtpu to compile for a TPU: pip install -e ".[tpu]" (or make setup-tpu)'
    )
  quiet_libtpu(piece.accelerator_type)
  hbm = hbm_gib * GIB if hbm_gib else piece.chip.hbm_bytes
  label = piece.name if slices == 1 else f'{slices}× {piece.name}'
  return Target(label, piece.devices(slices), hbm, piece.chip.peak_bf16, piece.hosts * slices, 'tpu')


def target_config(config: ml_collections.ConfigDict, target: Target) -> ml_collections.ConfigDict:
  """A copy whose model dtype is resolved for the target ('auto': bfloat16 on accelerators, float32 on CPU)."""
  config = ml_collections.ConfigDict(config.to_dict())
  if config.model.dtype == 'auto':
    config.model.dtype = 'float32' if target.platform == 'cpu' else 'bfloat16'
  return config


# ---- the programs --------------------------------------------------------------------------------------------


def abstract_batch(clips: int, size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """The training batch's shapes and dtypes (`train_step.BATCH_KEYS`): frames (B, T, S, S, 3), gt / sec_gt /
  cls_gt (B, T, S, S), selector (B, 2)."""
  video = (clips, TRAIN_FRAMES, size, size)
  f32 = np.dtype(np.float32)
  return {
    'frames': jax.ShapeDtypeStruct(video + (3,), f32),
    'gt': jax.ShapeDtypeStruct(video, f32),
    'sec_gt': jax.ShapeDtypeStruct(video, f32),
    'cls_gt': jax.ShapeDtypeStruct(video, np.dtype(np.int32)),
    'selector': jax.ShapeDtypeStruct((clips, 2), f32),
  }


def train_lowered(config: ml_collections.ConfigDict, devices: list, per_chip: int) -> Any:
  """The train step of `gsfm_jax.train` lowered for `per_chip` clips on each of `devices` (abstract state and
  batch: nothing is allocated)."""
  from gsfm_jax.models import build_model, init_variables
  from gsfm_jax.train_step import make_train_step, optimizer, place_state

  config = ml_collections.ConfigDict(config.to_dict())
  config.global_batch = per_chip * len(devices)
  mesh = sharding.make_mesh(devices)
  model = build_model(config.model)
  state = jax.eval_shape(lambda: place_state(init_variables(model, jax.random.PRNGKey(0)), optimizer(config), mesh))
  scalars = (jax.ShapeDtypeStruct((), np.dtype(np.float32)), jax.ShapeDtypeStruct((), np.dtype(np.int32)))
  return make_train_step(model, config, mesh).lower(
    state, abstract_batch(config.global_batch, config.data.size), *scalars
  )


def infer_lowered(
  config: ml_collections.ConfigDict, device: Any, size: tuple[int, int], objects: int, capacity: int
) -> tuple[Any, int]:
  """The inference chunk step (`gsfm_jax.inference.program.chunk_step`: a scan over a chunk of frames with a bounded
  memory of `capacity` frames) lowered for one device, and the chunk's frame count."""
  from gsfm_jax.inference import Propagator, Protocol, program
  from gsfm_jax.inference.engine import geometry
  from gsfm_jax.models import build_model, init_variables

  model_config = ml_collections.ConfigDict(config.model.to_dict())
  model_config.single_object = False  # inference runs the multi-object network
  model = build_model(model_config)
  variables = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0)))
  protocol = Protocol(capacity=capacity)
  # the step's example arguments need no weights
  consts, carry, xs = program.step_arguments(Propagator(model, {}, protocol), geometry(size), objects)
  weights, treedef = jax.tree.flatten(variables)
  placed = jax.sharding.SingleDeviceSharding(device)
  spec = lambda tree: jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=placed), tree)
  step = jax.jit(program.chunk_step(model, protocol.top_k, treedef))
  return step.lower(spec(weights), spec(consts), spec(carry), spec(xs)), protocol.chunk


# ---- compiling and the verdict ----------------------------------------------------------------------------------

_SIZE = r'([0-9.]+)\s*([KMGT]?)(?:i?B)?'
_OOM_PATTERNS = (
  re.compile(rf'Used {_SIZE} of {_SIZE} hbm'),
  re.compile(rf'required for HLO temporaries \({_SIZE}\) exceeds available HBM \({_SIZE}\)'),
  re.compile(rf'\({_SIZE}\) exceeds available HBM \({_SIZE}\)'),
)
_UNITS = {'': 1, 'K': 2**10, 'M': 2**20, 'G': 2**30, 'T': 2**40}


def parse_out_of_memory(message: str) -> Optional[tuple[float, float]]:
  """(bytes required, bytes available) from XLA's RESOURCE_EXHAUSTED message, or None if it is not one."""
  if 'RESOURCE_EXHAUSTED' not in message and 'Ran out of memory' not in message:
    return None
  for pattern in _OOM_PATTERNS:
    found = pattern.search(message)
    if found:
      a, ua, b, ub = found.groups()
      return float(a) * _UNITS[ua], float(b) * _UNITS[ub]
  return (math.nan, math.nan)


def cost_of(program: Any) -> dict:
  """XLA's cost analysis of a `Lowered` or `Compiled` program as a dict (older jax gave a one-element list)."""
  cost = program.cost_analysis()
  return (cost[0] if isinstance(cost, list) else cost) or {}


def compile_row(lowered: Any, program: str, target: Target, per_chip: int, unit: str) -> Row:
  """Compiles `lowered` and judges it: fits when XLA compiled it and it is within the target's memory."""
  start = time.perf_counter()
  common = dict(program=program, topology=target.name, devices=len(target.devices), per_chip=per_chip, unit=unit)
  try:
    compiled = lowered.compile()
  except Exception as error:  # XLA raises JaxRuntimeError (or XlaRuntimeError on older jaxlibs)
    figures = parse_out_of_memory(str(error))
    if figures is None:
      raise CompileError(str(error).strip().splitlines()[0][:300]) from error
    return Row(
      fits=False,
      memory={},
      required=figures[0],
      available=figures[1],
      flops=None,
      bytes_accessed=None,
      compile_seconds=time.perf_counter() - start,
      **common,
    )
  seconds = time.perf_counter() - start
  m = compiled.memory_analysis()
  memory = {
    'argument': m.argument_size_in_bytes,
    'output': m.output_size_in_bytes,
    'temp': m.temp_size_in_bytes,
    'code': m.generated_code_size_in_bytes,
    'alias': m.alias_size_in_bytes,
  }
  cost = cost_of(compiled)
  row = Row(
    fits=True,
    memory=memory,
    required=None,
    available=target.hbm_bytes,
    flops=cost.get('flops'),
    bytes_accessed=cost.get('bytes accessed'),
    compile_seconds=seconds,
    **common,
  )
  return row._replace(fits=row.total <= target.hbm_bytes)


def largest_fitting(probe: Callable[[int], Row], start: int, limit: int) -> tuple[int, list[Row]]:
  """The largest n in [1, limit] whose probe fits (0 if none) and every probe made, for a footprint that grows
  with n.

  It doubles from `start` while n fits, halves while it does not, then narrows [fits, fails] by interpolating
  the bytes (a compiled step's total, or a failure's required figure) against the limit, alternating with
  plain bisection, so that a footprint close to affine in n needs few compiles.
  """
  rows: dict[int, Row] = {}

  def run(n: int) -> Row:
    if n not in rows:
      rows[n] = probe(n)
    return rows[n]

  n = max(1, min(start, limit))
  if run(n).fits:
    low, high = n, None
    while high is None and low < limit:
      n = min(2 * low, limit)
      low, high = (n, None) if run(n).fits else (low, n)
    if high is None:
      return low, list(rows.values())
  else:
    high, low = n, None
    while low is None and high > 1:
      n = max(high // 2, 1)
      low, high = (n, high) if run(n).fits else (None, n)
    if low is None:
      return 0, list(rows.values())
  interpolate = True
  while high - low > 1:
    n = (low + high) // 2
    a, b = rows[low], rows[high]
    if interpolate and b.total and a.total and b.total > a.total and not math.isnan(b.total):
      slope = (b.total - a.total) / (high - low)
      n = min(max(low + int((b.available - a.total) // slope), low + 1), high - 1)
    interpolate = not interpolate
    low, high = (n, high) if run(n).fits else (low, n)
  return low, list(rows.values())


# ---- the table ---------------------------------------------------------------------------------------------------


def _gib(x: Optional[float]) -> str:
  return '' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x / GIB:.2f}'


def format_rows(rows: list[Row], target: Target, label: str = '') -> str:
  """A Markdown table; per-device figures, FLOPs also per step (all devices) and per clip or frame, and the
  step time at `MFU_ESTIMATE` of the data-sheet peak (an estimate: nothing ran). `label` (a config name) leads
  the program column."""
  lines = [
    '| program | topology | devices | per chip | argument GiB | output GiB | temp GiB | code GiB | '
    'total GiB / HBM | fits | TFLOP per step (all chips) | GFLOP per clip or frame | bytes accessed GiB/chip | '
    f'step at {MFU_ESTIMATE:.0%} MFU (estimate) | compile s |',
    '|' + '---|' * 15,
  ]
  for r in rows:
    m = r.memory
    available = r.available or target.hbm_bytes
    fits = 'yes' if r.fits else ('no: needs ' + _gib(r.required) + ' GiB' if r.required else 'no')
    total_flops = r.flops * r.devices if r.flops else None
    items = int(r.unit.split()[2]) if r.program == 'infer' else r.per_chip  # frames of a chunk, clips per chip
    per_item = f'{r.flops / items / 1e9:.4g}' if r.flops else ''
    estimate = f'{1e3 * r.flops / (MFU_ESTIMATE * target.peak_bf16):.3g} ms' if r.flops and target.peak_bf16 else ''
    name = f'{label} {r.program}' if label else r.program
    lines.append(
      f'| {name} ({r.unit}) | {r.topology} | {r.devices} | {r.per_chip} | {_gib(m.get("argument"))} | '
      f'{_gib(m.get("output"))} | {_gib(m.get("temp"))} | {_gib(m.get("code"))} | '
      f'{_gib(r.total)} / {_gib(available)} | {fits} | '
      f'{"" if total_flops is None else f"{total_flops / 1e12:.4g}"} | {per_item} | '
      f'{_gib(r.bytes_accessed)} | {estimate} | {r.compile_seconds:.0f} |'
    )
  return '\n'.join(lines)


def row_dict(row: Row) -> dict:
  return {**row._asdict(), 'total': row.total}


# ---- the command line ---------------------------------------------------------------------------------------------


def default_per_chip(config: ml_collections.ConfigDict, devices: int) -> int:
  """The config's global batch split over the devices (at least 1)."""
  return max(1, config.global_batch // devices)


def _say(text: str) -> None:
  print(text, file=sys.stderr, flush=True)


def train_rows(config: ml_collections.ConfigDict, target: Target, per_chip: int, search: bool, limit: int) -> list[Row]:
  def probe(n: int) -> Row:
    _say(
      f'compiling the train step for {target.name} at {n} clips per chip ({n * len(target.devices)} clips, '
      f'{config.data.size}², {config.model.dtype}) …'
    )
    lowered = train_lowered(config, target.devices, n)
    row = compile_row(lowered, 'train', target, n, f'step of {n * len(target.devices)} clips')
    _say(f'  {"fits" if row.fits else "does not fit"}: {_gib(row.total)} GiB per chip, {row.compile_seconds:.0f} s')
    return row

  if not search:
    return [probe(per_chip)]
  best, rows = largest_fitting(probe, per_chip, limit)
  _say(f'largest clips per chip that fits: {best}' + (f' (the search stops at {limit})' if best == limit else ''))
  return sorted(rows, key=lambda r: r.per_chip)


def infer_row(
  config: ml_collections.ConfigDict, target: Target, size: tuple[int, int], objects: int, capacity: int
) -> Row:
  _say(
    f'compiling the inference chunk step for one {target.name} chip ({size[0]}×{size[1]}, {objects} objects, '
    f'{capacity} memory frames, {config.model.dtype}) …'
  )
  lowered, chunk = infer_lowered(config, target.devices[0], size, objects, capacity)
  single = target._replace(devices=target.devices[:1])
  row = compile_row(lowered, 'infer', single, 1, f'chunk of {chunk} frames')
  _say(f'  {"fits" if row.fits else "does not fit"}: {_gib(row.total)} GiB, {row.compile_seconds:.0f} s')
  return row


def parse_size(text: str) -> tuple[int, int]:
  match = re.fullmatch(r'(\d+)x(\d+)', text)
  if not match or 0 in (int(match.group(1)), int(match.group(2))):
    raise ValueError(f'--infer_size={text}: expected HxW, e.g. 480x854')
  return int(match.group(1)), int(match.group(2))


def check_flags() -> None:
  unknown = set(FLAGS.what) - {'train', 'infer'}
  if unknown or not FLAGS.what:
    raise ValueError(f'--what={",".join(FLAGS.what)}: expected train, infer or train,infer')
  for name in ('per_chip', 'slices', 'objects', 'capacity', 'search_limit'):
    cli.check_count(name, getattr(FLAGS, name), '=')
  if FLAGS.config is None or not FLAGS.topology:
    raise ValueError('--config and --topology are required (python -m gsfm_jax.aot --list names the slices)')


@cli.reported
def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.list:
    print(tpu_topologies.table())
    return 0
  try:
    check_flags()
    size = parse_size(FLAGS.infer_size)
    if FLAGS.topology != 'host':
      jax.config.update('jax_platforms', 'cpu')  # compile-only: never open this host's accelerators
    target = make_target(FLAGS.topology, FLAGS.slices, FLAGS.hbm_gib)
    config = target_config(FLAGS.config, target)
    rows = []
    if 'train' in FLAGS.what:
      per_chip = FLAGS.per_chip or default_per_chip(config, len(target.devices))
      rows += train_rows(config, target, per_chip, FLAGS.search, FLAGS.search_limit)
    if 'infer' in FLAGS.what:
      rows.append(infer_row(config, target, size, FLAGS.objects, FLAGS.capacity))
  except (ValueError, CompileError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(
        {
          'target': target.name,
          'devices': len(target.devices),
          'hosts': target.hosts,
          'hbm_bytes': target.hbm_bytes,
          'peak_bf16': target.peak_bf16,
          'dtype': config.model.dtype,
          'size': config.data.size,
          'rows': [row_dict(r) for r in rows],
        },
        f,
        indent=1,
      )
  clips = f', training clips of {TRAIN_FRAMES} frames at {config.data.size}²' if 'train' in FLAGS.what else ''
  print(
    f'{target.name}: {len(target.devices)} devices on {target.hosts} host(s), {_gib(target.hbm_bytes)} GiB '
    f'per device; network in {config.model.dtype}{clips}'
  )
  print(format_rows(rows, target))
  train = [r.fits for r in rows if r.program == 'train']
  fits = all(r.fits for r in rows if r.program == 'infer') and (any(train) if FLAGS.search else all(train))
  return 0 if fits else 1  # 1: does not fit (a preflight stops on it); 2: bad input


def run() -> None:
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)), argv=cli.absl_argv(sys.argv))


if __name__ == '__main__':
  run()
