"""Ahead-of-time compilation (gsfm_jax.aot): slice names, the fit verdict, the out-of-memory parse and the search
on this host's CPU devices with a narrow network, and one real compile for a TPU slice (libtpu, installed by
`make test` with the tpu extra)."""

import json
import math
import subprocess
import sys

import jax
import pytest
from runs import REPO, env

from configs import demo
from gsfm_jax import aot, tpu_topologies

# the narrow network at 32² crops: the machinery under test does not depend on the width
NARROW = {'model.width_divisor': 16, 'data.size': 32}


def _narrow_config():
  config = demo.get_config()
  config.update_from_flattened_dict(NARROW)
  return config


@pytest.mark.parametrize(
  'name, jax_name, chips, hosts, megacore',
  [
    ('v4-8', 'v4:2x2x1', 4, 1, True),
    ('v4-32', 'v4:2x2x4', 16, 4, True),
    ('v5p-8', 'v5:2x2x1', 4, 1, True),
    ('v5e-1', 'v5e:1x1', 1, 1, False),
    ('v5e-8', 'v5e:2x4', 8, 1, False),
    ('v5e-16', 'v5e:4x4', 16, 4, False),
    ('v5litepod-256', 'v5e:16x16', 256, 64, False),
    ('V6E-8', 'v6e:2x4', 8, 1, False),
  ],
)
def test_slice_names(name, jax_name, chips, hosts, megacore):
  piece = tpu_topologies.lookup(name)
  assert (piece.jax_topology, piece.chips, piece.hosts) == (jax_name, chips, hosts)
  assert (piece.chip.cores_per_name_unit == 2) == megacore
  assert piece.accelerator_type.endswith(f'-{chips * piece.chip.cores_per_name_unit}')


@pytest.mark.parametrize('name', ['v4-8', 'v5p-8', 'v5e-16', 'v6e-8'])
def test_compile_only_devices_are_the_slices_chips(name):
  """libtpu's compile-only devices for the slice: one per chip (v4 and v5p as megacore), of the chip whose
  peak and HBM the tables use, over the slice's hosts; two slices hold twice the devices."""
  assert aot.libtpu_installed(), 'libtpu is missing: make test installs the tpu extra (make setup-tpu)'
  target, piece = aot.make_target(name), tpu_topologies.lookup(name)
  assert len(target.devices) == piece.chips and target.hosts == piece.hosts
  assert len({d.process_index for d in target.devices}) == piece.hosts
  assert {tpu_topologies.chip_of_kind(d.device_kind) for d in target.devices} == {piece.chip}
  assert (target.hbm_bytes, target.peak_bf16) == (piece.chip.hbm_bytes, piece.chip.peak_bf16)
  two = aot.make_target(name, slices=2)
  assert len(two.devices) == 2 * piece.chips and two.name == f'2× {name}'


def test_unknown_slice_names_the_known_ones():
  for bad in ('v5e-12', 'v5e:4x4', 'tpu', 'v7-8'):
    with pytest.raises(tpu_topologies.TopologyError, match=r'not a Cloud TPU slice name; known: v4-8, .*v5e-16'):
      tpu_topologies.lookup(bad)
  assert '| v5e-16 | 16 | 4 | v5e:4x4 | 16 | 197 |' in tpu_topologies.table()


def test_imports_next_to_the_training_command_line():
  """aot defines its flags only when its command line runs: gsfm_jax.train's --config does not clash with it."""
  from absl import flags

  from gsfm_jax import train

  assert train.run and 'config' in flags.FLAGS and 'topology' not in flags.FLAGS


def test_dtype_follows_the_target():
  config = demo.get_config()
  config.model.dtype = 'auto'
  tpu = aot.Target('v5e-4', [], 16 * 2**30, 197e12, 1, 'tpu')
  assert aot.target_config(config, tpu).model.dtype == 'bfloat16'
  assert aot.target_config(config, tpu._replace(platform='cpu')).model.dtype == 'float32'
  config.model.dtype = 'float32'
  assert aot.target_config(config, tpu).model.dtype == 'float32'
  assert config.model.dtype == 'float32'  # a copy: the user's config is not changed


@pytest.mark.parametrize(
  'message, required, available',
  [
    # libtpu 0.0.42's two forms (its message templates, filled in)
    (
      'RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space hbm. Used 17.86G of '
      '15.75G hbm. Exceeded hbm capacity by 2.11G. Memory usage report: …',
      17.86 * 2**30,
      15.75 * 2**30,
    ),
    (
      'RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO temporaries (40.50G) exceeds '
      'available HBM (31.25G).',
      40.5 * 2**30,
      31.25 * 2**30,
    ),
    ('RESOURCE_EXHAUSTED: Ran out of memory in memory space hbm. Used 900.5M of 512M hbm.', 900.5 * 2**20, 512 * 2**20),
  ],
)
def test_out_of_memory_parse(message, required, available):
  assert aot.parse_out_of_memory(message) == pytest.approx((required, available))


def test_other_errors_are_not_out_of_memory():
  assert aot.parse_out_of_memory('INVALID_ARGUMENT: shape mismatch') is None
  assert all(math.isnan(x) for x in aot.parse_out_of_memory('RESOURCE_EXHAUSTED: something new'))


def _affine_probe(fixed: float, per_clip: float, budget: float, calls: list):
  def probe(n: int) -> aot.Row:
    calls.append(n)
    total = fixed + per_clip * n + (per_clip / 2) * (n > 10)  # a step in the slope, as rematerialisation makes
    fits = total <= budget
    memory = {'argument': fixed, 'output': 0, 'temp': total - fixed, 'code': 0, 'alias': 0} if fits else {}
    return aot.Row('train', 't', 4, n, fits, memory, None if fits else total, budget, 1.0, 1.0, 0.0, 'step of 4 clips')

  return probe


@pytest.mark.parametrize('budget', [5.0, 10.0, 13.0, 55.5, 100.0, 1e4])
@pytest.mark.parametrize('start', [1, 7, 64])
def test_search_finds_the_largest_that_fits(budget, start):
  calls = []
  probe = _affine_probe(10.0, 1.0 if budget < 1e3 else 0.01, budget, calls)
  best, rows = aot.largest_fitting(probe, start, limit=256)
  searched = list(calls)
  assert best == max([n for n in range(1, 257) if probe(n).fits], default=0)
  assert len(searched) == len(set(searched)) == len(rows)  # no size compiled twice
  assert sorted(r.per_chip for r in rows) == sorted(searched)
  assert len(searched) <= 2 * math.log2(256) + 2


def test_fit_verdict_and_search_on_cpu_devices():
  """The real train step of a narrow network on 2 CPU devices: compiled at 1 and 2 clips per device, then a
  memory limit between the two makes 1 the largest that fits; the search finds it from the compiles."""
  target = aot.make_target('host', hbm_gib=64)._replace(devices=jax.devices()[:2])
  config = aot.target_config(_narrow_config(), target)
  assert config.model.dtype == 'float32'
  lowered = {n: aot.train_lowered(config, target.devices, n) for n in (1, 2)}  # traced once, compiled twice
  rows = {n: aot.compile_row(lowered[n], 'train', target, n, f'step of {2 * n} clips') for n in (1, 2)}
  assert all(r.fits for r in rows.values()) and rows[2].total > rows[1].total > 0
  assert rows[1].memory['argument'] > 0 and rows[1].flops > 0
  assert rows[2].flops == pytest.approx(2 * rows[1].flops, rel=0.1)  # per device: twice the clips
  limited = target._replace(hbm_bytes=(rows[1].total + rows[2].total) / 2)
  calls = []

  def probe(n: int) -> aot.Row:
    calls.append(n)
    return aot.compile_row(lowered[n], 'train', limited, n, f'step of {2 * n} clips')

  best, made = aot.largest_fitting(probe, 1, limit=8)
  assert best == 1 and calls == [1, 2]
  assert made[0].fits and not made[1].fits and made[1].total == rows[2].total
  table = aot.format_rows(made, limited, label='demo')
  assert '| demo train (step of 2 clips) | host | 2 | 1 |' in table and '| no |' in table


def _aot(*flags: str, devices: int = 2) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, '-m', 'gsfm_jax.aot', *flags],
    cwd=REPO,
    env=env(devices),
    capture_output=True,
    text=True,
    timeout=600,
  )


def test_command_line_does_not_fit_and_mistakes():
  """Exit 1 with the table when the step does not fit (what the pod launch's preflight stops on); exit 2 with one
  line for a wrong slice name or flag."""
  narrow = [f'--config.{k}={v}' for k, v in NARROW.items()]
  result = _aot('--config=demo', '--topology=host', '--hbm_gib=0.001', '--per_chip=1', *narrow)
  assert result.returncode == 1, result.stderr[-2000:]
  assert '| demo' not in result.stdout and '| train (step of 2 clips) | host | 2 | 1 |' in result.stdout
  assert '/ 0.00 | no |' in result.stdout and 'does not fit' in result.stderr
  for flags, expected in (
    (['--topology=v5e-12'], '--topology=v5e-12: not a Cloud TPU slice name; known: v4-8'),
    (['--topology=v5e-4', '--what=train,predict'], '--what=train,predict: expected train'),
    (['--topology=v5e-4', '--per_chip=0'], '--per_chip=0: must be at least 1'),
    (['--topology=v5e-4', '--infer_size=480'], '--infer_size=480: expected HxW'),
  ):
    result = _aot('--config=demo', *flags)
    errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    assert result.returncode == 2 and len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
  listing = _aot('--list')
  assert listing.returncode == 0 and '| v5p-8 | 4 | 1 | v5:2x2x1 megacore | 95 | 459 |' in listing.stdout


def test_real_compile_for_a_tpu_slice(tmp_path):
  """With libtpu (the tpu extra): the narrow network's train step for a v5e-4 compiles on this CPU-only host, in
  bfloat16, within a chip's HBM, with the FLOPs of the same step lowered here (4 clips, split over 4 chips)."""
  assert aot.libtpu_installed(), 'libtpu is missing: make test installs the tpu extra (make setup-tpu)'
  out = tmp_path / 'v5e.json'
  result = _aot('--config=demo', '--topology=v5e-4', *[f'--config.{k}={v}' for k, v in NARROW.items()], f'--json={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert (
    'v5e-4: 4 devices on 1 host(s), 16.00 GiB per device; network in bfloat16, training clips of 3 frames at 32²'
    in result.stdout
  )
  assert 'WARNING' not in result.stderr and 'TPU_' not in result.stderr  # libtpu is quiet off a TPU VM
  found = json.loads(out.read_text())
  (row,) = found['rows']
  assert (found['dtype'], row['devices'], row['per_chip'], row['fits']) == ('bfloat16', 4, 1, True)
  assert 0 < row['total'] < 2**30 and row['memory']['code'] > 0
  config = _narrow_config()
  config.model.dtype = 'bfloat16'
  host = aot.cost_of(aot.train_lowered(config, jax.devices()[:1], 4))
  assert row['flops'] * 4 == pytest.approx(host['flops'], rel=0.25)
