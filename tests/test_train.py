"""Training end to end on the built-in dataset (tiny crops, real tf.data, real orbax, real processes):
the command line, logs and checkpoints, resume after SIGTERM and kill -9 bit for bit, two processes
against one, restore on another device count, refusal of non-finite steps, configs."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import configs
from configs import ablation, demo, main, pretrain
from data_pipelines import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 32² crops, 8 clips per step, 4 steps; the schedule and data depend on `steps`, so every run compared here
# uses the same values (previews and checkpoint intervals do not change the parameters)
TINY = {'data.size': 32, 'data.workers': 2, 'global_batch': 8, 'steps': 4, 'checkpoint_every': 2,
        'keep_checkpoints': 2, 'log_every': 1, 'progress_every': 1, 'image_every': 1000, 'builtin_data': ''}
DATASET = dict(train=3, val=1, frames=8, height=96, width=160, static_flat=2, static_classes=1,
               static_per_class=2, static_size=64)


def demo_config(data_root: str):
  """The demo config with TINY applied (what `cli_args` gives the command line)."""
  config = demo.get_config()
  config.update_from_flattened_dict(TINY)
  config.data.davis_root = os.path.join(data_root, 'DAVIS')
  return config


def cli_args(workdir: str, data_root: str, **overrides) -> list[str]:
  flat = {**TINY, 'data.davis_root': os.path.join(data_root, 'DAVIS'), **overrides}
  return ([sys.executable, '-m', 'gsfm_jax.train', '--config=demo', f'--workdir={workdir}']
          + [f'--config.{k}={v}' for k, v in flat.items()])


def env(devices: int) -> dict:
  """A CPU-only child with `devices` virtual devices, sharing the session's compilation cache."""
  return dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, 'tests')]), JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', TF_CPP_MIN_LOG_LEVEL='2')


def start(args: list[str], devices: int = 2) -> subprocess.Popen:
  return subprocess.Popen(args, cwd=REPO, env=env(devices), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def run(args: list[str], devices: int = 2, timeout: int = 600) -> subprocess.CompletedProcess:
  return subprocess.run(args, cwd=REPO, env=env(devices), capture_output=True, text=True, timeout=timeout)


def read_until(proc: subprocess.Popen, text: str, log: list[str]) -> None:
  """Reads the child's output into `log` until a line contains `text` (fails if it exits first)."""
  for line in proc.stdout:
    log.append(line)
    if text in line:
      return
  proc.wait()
  pytest.fail(f'exited ({proc.returncode}) before printing {text!r}:\n' + ''.join(log[-40:]))


def metrics_rows(workdir: str) -> list[dict]:
  from gsfm_jax.metrics import read_jsonl
  return read_jsonl(os.path.join(workdir, 'metrics.jsonl'))


def committed_steps(workdir: str) -> list[int]:
  directory = os.path.join(workdir, 'checkpoints')
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit()) if os.path.isdir(directory) else []


def final_params(workdir: str) -> dict[str, np.ndarray]:
  from gsfm_jax.checkpoint import newest_state_dir
  from gsfm_jax.export import flatten, load_orbax
  return flatten({'params': load_orbax(newest_state_dir(workdir))['params']})


def assert_same_params(found: dict, expected: dict, exact: bool = True) -> None:
  assert found.keys() == expected.keys()
  differ = [k for k in expected if not (np.array_equal(found[k], expected[k]) if exact else
                                        np.allclose(found[k], expected[k], rtol=1e-5, atol=1e-5))]
  assert not differ, f'{len(differ)} of {len(expected)} parameters differ, e.g. {differ[:3]}'


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp('builtin'))
  synthetic.generate(path, seed=3, **DATASET)
  return path


@pytest.fixture(scope='module')
def reference(tmp_path_factory, data_root) -> tuple[str, str]:
  """An uninterrupted 4-step run on one process with 2 devices, a preview at step 4: (workdir, its output)."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  result = run(cli_args(workdir, data_root, image_every=4))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  return workdir, result.stdout + result.stderr


# ---------------------------------------------------------------- the command line and what a run writes

def test_run_writes_metrics_checkpoints_images_and_progress(reference):
  workdir, output = reference
  rows = metrics_rows(workdir)
  assert [r['step'] for r in rows] == list(range(1, 5))
  for row in rows:
    assert np.isfinite(row['total_loss']) and row['total_loss'] > 0
    assert row['total_loss'] == pytest.approx(row['loss_1'] + row['loss_2'], rel=1e-5)
    assert 0 < row['iou'] <= 1 and 0 < row['sec_iou'] <= 1
    assert row['lr'] == pytest.approx(demo.get_config().lr) and row['p'] == 1.0 and row['refused'] == 0
    assert row['clips_per_s'] == pytest.approx(8 * row['steps_per_s'])
  assert 'step 4/4 (100.0 %)' in output and 'ETA' in output and 'clips/s' in output
  assert committed_steps(workdir) == [2, 4]
  meta = json.load(open(os.path.join(workdir, 'checkpoints', '4', 'meta', 'metadata')))
  assert meta['step'] == 4 and meta['devices'] == 2 and meta['processes'] == 1
  assert json.loads(meta['config'])['data']['size'] == 32
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))
  from PIL import Image
  preview = np.asarray(Image.open(os.path.join(workdir, 'images', 'step_0000004.png')))
  assert preview.shape == (2 * 128, 3 * 128, 3) and preview.std() > 10  # 2 rows × 3 frames, ×4 enlarged
  assert Image.open(os.path.join(workdir, 'curves.png')).size[0] > 500


def test_resume_after_sigterm_and_kill_9_is_bit_exact(reference, data_root, tmp_path):
  workdir, log = str(tmp_path / 'run'), []
  # 1. SIGTERM (preemption) after the first step: a checkpoint of the current step, exit status 0
  first = start(cli_args(workdir, data_root))
  read_until(first, 'step 1/4', log)
  first.send_signal(signal.SIGTERM)
  log += first.stdout.readlines()
  assert first.wait(timeout=300) == 0, ''.join(log[-40:])
  assert 'preemption: saved step' in ''.join(log)
  saved = committed_steps(workdir)
  assert len(saved) == 1 and 1 <= saved[0] < 3, saved
  # 2. resumed, then killed with SIGKILL during step 4 (an asynchronous save of step 2 may be in flight)
  second = start(cli_args(workdir, data_root))
  read_until(second, 'step 3/4', log)
  assert f'resuming from {os.path.join(workdir, "checkpoints")}/{saved[0]}' in ''.join(log)
  second.kill()
  assert second.wait(timeout=60) == -signal.SIGKILL
  assert saved[0] <= committed_steps(workdir)[-1] < 4
  # 3. resumed to the end: the parameters are those of the uninterrupted run, bit for bit
  third = run(cli_args(workdir, data_root))
  assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
  assert committed_steps(workdir)[-1] == 4
  assert_same_params(final_params(workdir), final_params(reference[0]))


def test_two_processes_train_like_one(reference, data_root, tmp_path):
  """Two processes with four CPU devices each (global batch 8, one clip per device) train the same steps:
  identical parameters on both processes, and the trajectory of the one-process, two-device run.

  The two runs add the per-clip gradients in different orders (8 devices across gloo vs 2 devices of 4 clips),
  so they agree to float rounding, which Adam amplifies on parameters whose gradient is itself at rounding
  level: there m/√v is ±1 either way, so such a parameter can move by up to ±lr per step in opposite
  directions. Hence: losses equal to 1e-5 relative at every step, every parameter within 2·lr·steps, and
  all but a sliver of the parameter elements (those near-zero gradients) within 1e-6.
  """
  with socket.socket() as s:
    s.bind(('localhost', 0))
    coordinator = f'localhost:{s.getsockname()[1]}'
  workdir = tmp_path / 'run'
  workers = [start([sys.executable, os.path.join(REPO, 'tests', 'train_worker.py'), coordinator, str(p), '2',
                    str(workdir), str(tmp_path / f'params{p}.npz'), data_root], devices=4) for p in range(2)]
  outputs = [w.communicate(timeout=900)[0] for w in workers]
  for w, out in zip(workers, outputs):
    assert w.returncode == 0, out[-5000:]
  found = [dict(np.load(tmp_path / f'params{p}.npz')) for p in range(2)]
  assert [int(f.pop('process_index')) for f in found] == [0, 1]
  assert [int(f.pop('devices')) for f in found] == [4, 4]
  assert [int(f.pop('step')) for f in found] == [4, 4]
  assert_same_params(found[0], found[1])

  losses = lambda w: [r['total_loss'] for r in metrics_rows(w)]
  assert losses(workdir) == pytest.approx(losses(reference[0]), rel=1e-5)
  one = final_params(reference[0])
  assert found[0].keys() == one.keys()
  diff = {k: np.abs(found[0][k] - one[k]) for k in one}
  largest = max(d.max() for d in diff.values())
  close = sum(int(np.sum(d <= 1e-6)) for d in diff.values()) / sum(d.size for d in diff.values())
  print(f'two processes vs one: max |Δ| {largest:.2e}, {100 * close:.4f} % of elements within 1e-6')
  assert largest <= 2 * demo.get_config().lr * TINY['steps']
  assert close >= 0.999


def test_checkpoint_restores_on_another_device_count(reference):
  """The 2-device checkpoint restored onto meshes of 1 and 3 devices: same values, placed on those devices."""
  from gsfm_jax import checkpoint, sharding
  from gsfm_jax.export import flatten
  store = checkpoint.Checkpoints(reference[0], every=4, keep=2)
  raw = store.restore(None)
  for count in (1, 3):
    mesh = sharding.make_mesh(jax.devices()[:count])
    state = store.restore(checkpoint.abstract(jax.tree.map(np.asarray, raw), sharding.replicated(mesh)))
    leaf = jax.tree.leaves(state['params'])[0]
    assert len(leaf.sharding.device_set) == count and int(state['step']) == 4
    assert_same_params(flatten({'params': jax.device_get(state['params'])}),
                       flatten({'params': jax.device_get(raw['params'])}))


def test_non_finite_steps_are_refused_and_the_run_stops(data_root, tmp_path):
  """Starting weights with a NaN make every loss non-finite: nothing reaches the parameters, the refusals
  are counted, and after 2 in a row the run stops with exit status 1, naming its last good checkpoint.
  (Same compiled step as the other runs: only the weights differ.)"""
  from gsfm_jax.checkpoint import initial_variables
  from gsfm_jax.export import flatten, save_npz
  from gsfm_jax.models import build_model
  config = demo_config(data_root)
  variables = initial_variables(config.init, build_model(config.model), config.seed)
  bias = np.array(variables['params']['key_comp']['bias'])
  bias[7] = np.nan
  variables['params']['key_comp']['bias'] = bias
  save_npz(variables, str(tmp_path / 'nan.npz'))
  workdir = str(tmp_path / 'run')
  result = run(cli_args(workdir, data_root, max_refused_steps=2, **{'init.kind': 'checkpoint',
                                                                    'init.checkpoint': tmp_path / 'nan.npz'}))
  output = result.stdout + result.stderr
  assert result.returncode == 1, output[-3000:]
  assert '2 steps in a row had a non-finite loss or gradient' in output
  assert f'Last good checkpoint: {os.path.join(workdir, "checkpoints")}/2.' in output
  rows = metrics_rows(workdir)
  assert all(r['refused'] == 1 for r in rows) and len(rows) >= 2
  start_params = flatten({'params': variables['params']})
  found = final_params(workdir)
  assert found.keys() == start_params.keys()
  assert all(np.array_equal(found[k], v, equal_nan=True) for k, v in start_params.items())


# ---------------------------------------------------------------- configs

def test_config_names_resolve_to_files_and_overrides_apply():
  argv = configs.resolve(['train', '--config=main', '--workdir=w', '--config', 'ablation:t5_lfm/pretrain'])
  assert argv[1] == '--config=' + os.path.join(configs.CONFIG_DIR, 'main.py')
  assert argv[4] == os.path.join(configs.CONFIG_DIR, 'ablation.py') + ':t5_lfm/pretrain'
  assert configs.resolve(['--config=my/own.py'])[0] == '--config=my/own.py'
  with pytest.raises(SystemExit, match='no configs/mian.py .*known: ablation, data, demo, main, model, pretrain'):
    configs.resolve(['--config=mian'])
  result = run([sys.executable, '-m', 'gsfm_jax.train', '--helpfull'], devices=1, timeout=120)
  assert '--config' in result.stdout and '--workdir' in result.stdout


def test_stage_configs_follow_the_reference():
  stage0, stage3 = pretrain.get_config(), main.get_config()
  assert (stage0.model.single_object, stage0.data.kind, stage0.global_batch, stage0.steps) == (True, 'static', 128, 40_000)
  assert (stage0.lr, tuple(stage0.lr_milestones), stage0.start_warm, stage0.end_warm) == (4e-5, (20_000,), 3_000, 10_000)
  assert (stage3.model.single_object, stage3.data.kind, stage3.global_batch, stage3.steps) == (False, 'vos', 64, 30_000)
  assert (stage3.lr, tuple(stage3.lr_milestones), stage3.start_warm, stage3.end_warm) == (4e-5, (25_000,), 3_000, 15_000)
  assert (stage3.weight_decay, stage3.boundary_weight, stage3.top_p) == (1e-7, 0.05, 0.15)
  assert (stage0.init.kind, stage3.init.kind, stage3.init.stem_fill) == ('imagenet', 'checkpoint', 'orthogonal')


def test_ablation_configs_switch_the_right_components():
  table = {name: ablation.get_config(name).model for name in ablation.variants()}
  assert len(table) == 5 + 8 + 5
  assert (table['t5_none'].lfm_filter, table['t5_none'].hfm_filter, table['t5_none'].boundary_branch) == ('off', 'off', False)
  assert (table['t5_lfm_boundary'].lfm_filter, table['t5_lfm_boundary'].hfm_filter) == ('low', 'off')
  assert table['t5_lfm_boundary'].boundary_branch
  assert (table['t3_full_high'].lfm_filter, table['t3_low_full'].hfm_filter) == ('none', 'none')
  assert [table[f'sigma{s}'].sigma for s in (3, 5, 7, 10, 15)] == [3, 5, 7, 10, 15]
  gsfm = main.get_config().model
  for same in ('t5_all', 't3_low_high', 'sigma7'):
    assert table[same] == gsfm
  assert ablation.get_config('t5_hfm').init.checkpoint == 'runs/t5_hfm_pretrain'
  assert ablation.get_config('t5_hfm/pretrain').model.single_object
  with pytest.raises(ValueError, match='t5_bogus'):
    ablation.get_config('t5_bogus')


# ---------------------------------------------------------------- initial weights

def test_scratch_init_keeps_the_signal_and_starts_heads_and_residual_branches_at_zero():
  from gsfm_jax.models import GSFM, init_variables
  from gsfm_jax.models.scratch import scratch_params
  model = GSFM()
  shapes = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0)))
  ones = jax.tree.map(lambda x: np.ones(x.shape, x.dtype), shapes['params'])
  out = scratch_params(ones, np.random.default_rng(0))
  he = lambda kernel: np.sqrt(2 / np.prod(kernel.shape[:3]))
  for kernel in (out['key_encoder']['conv1']['kernel'], out['value_encoder']['layer3_0']['conv1']['kernel'],
                 out['decoder']['compress']['conv1']['kernel'], out['lfm']['conv1']['kernel']):
    assert kernel.std() == pytest.approx(he(kernel), rel=0.05) and abs(kernel.mean()) < 0.1 * he(kernel)
  for bias in (out['key_encoder']['layer2_0']['conv1']['bias'], out['decoder']['up_8_4']['skip_conv']['bias']):
    assert not bias.any()
  for zero in (out['key_encoder']['layer2_0']['bn3']['scale'], out['key_encoder']['res2_1']['bn3']['scale'],
               out['value_encoder']['layer1_0']['bn2']['scale'], out['decoder']['pred']['kernel'],
               out['decoder']['predict_boundary_2']['bias']):
    assert not zero.any()
  for kept in (out['key_encoder']['layer2_0']['bn2']['scale'], out['key_encoder']['layer2_0']['downsample_1']['scale'],
               out['key_proj']['key_proj']['kernel'], out['value_encoder']['fuser']['attention']['ChannelGate']['mlp_1']['kernel']):
    assert np.all(kept == 1)
  # the point of it: the key encoder's features keep a usable scale (PyTorch's default init: std ≈ 0.05)
  from gsfm_jax.checkpoint import initial_variables
  variables = initial_variables(demo.get_config().init, model, seed=0)  # init.kind 'scratch'
  frame = np.random.default_rng(1).standard_normal((1, 64, 64, 3)).astype(np.float32)
  keys = model.apply(variables, frame, method=GSFM.encode_key)
  for name in ('f16', 'f8', 'f4'):
    assert 0.3 < float(np.std(getattr(keys, name))) < 5, name


def test_main_starts_from_a_pretrain_workdir_with_the_fifth_channel_added(tmp_path):
  """A stage-0 (single-object) training workdir as `init.checkpoint` of the two-object network: every weight
  is carried over and the value encoder's stem gains its 5th input channel, orthogonal like the reference's."""
  from conftest import converted_variables
  from gsfm_jax import checkpoint
  from gsfm_jax.models import GSFM
  stage0 = converted_variables(0, single_object=True)
  store = checkpoint.Checkpoints(str(tmp_path / 'pretrain'), every=1, keep=1, asynchronous=False)
  store.save(40, {'step': np.int32(40), **stage0}, {'step': 40}, force=True)
  init = main.get_config().init
  init.checkpoint = str(tmp_path / 'pretrain')
  variables = checkpoint.initial_variables(init, GSFM(), seed=0)
  before, after = (flatten_params(v) for v in (stage0, variables))
  stem = 'params/value_encoder/conv1/kernel'
  assert before[stem].shape == (7, 7, 4, 64) and after[stem].shape == (7, 7, 5, 64)
  assert np.array_equal(after[stem][:, :, :4], before[stem])
  fifth = after[stem][:, :, 4].reshape(-1, 64)
  assert np.allclose(fifth @ fifth.T, np.eye(49), atol=1e-4)  # orthonormal columns of the (64, 49) OIHW matrix
  assert all(np.array_equal(after[k], v) for k, v in before.items() if k != stem)


def flatten_params(variables) -> dict[str, np.ndarray]:
  from gsfm_jax.export import flatten
  return flatten({k: variables[k] for k in ('params', 'batch_stats')})
