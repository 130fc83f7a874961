"""Training end to end on the built-in dataset (tiny crops, real tf.data, real orbax, real processes):
the command line, logs and checkpoints, resume after SIGTERM and kill -9 bit for bit, restore on another
device count. (`reference`, the uninterrupted run, is in conftest.py; test_multihost.py compares with it.)"""

import json
import os
import signal

import jax
import numpy as np
import pytest
from runs import assert_same_params, cli_args, committed_steps, final_params, metrics_rows, read_until, run, start

from configs import demo

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
  assert f'finished at step 4 of 4: checkpoint {os.path.join(workdir, "checkpoints")}/4, curves' in output
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
  # 1. Ctrl-C (SIGINT) after the first step: a checkpoint of the current step, exit status 0 (SIGTERM takes the
  # same path: test_signals_ask_for_a_checkpoint)
  first = start(cli_args(workdir, data_root))
  read_until(first, 'step 1/4', log)
  first.send_signal(signal.SIGINT)
  log += first.stdout.readlines()
  assert first.wait(timeout=300) == 0, ''.join(log[-40:])
  assert 'interrupted (Ctrl-C): saved step' in ''.join(log) and 'the same command resumes' in ''.join(log)
  assert 'stopped at step' in ''.join(log)
  saved = committed_steps(workdir)
  assert len(saved) == 1 and 1 <= saved[0] < 3, saved
  # 2. resumed, then killed with SIGKILL during step 4 (an asynchronous save of step 2 may be in flight)
  second = start(cli_args(workdir, data_root))
  read_until(second, 'step 3/4', log)
  assert f'resuming from {os.path.join(workdir, "checkpoints")}/{saved[0]}' in ''.join(log)
  second.kill()
  assert second.wait(timeout=60) == -signal.SIGKILL
  assert saved[0] <= committed_steps(workdir)[-1] < 4
  # 3. resumed to the end (kill -9 left run.lock behind; the kernel released its lock): the parameters are
  # those of the uninterrupted run, bit for bit
  assert os.path.isfile(os.path.join(workdir, 'run.lock'))
  third = run(cli_args(workdir, data_root))
  assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
  assert committed_steps(workdir)[-1] == 4
  assert_same_params(final_params(workdir), final_params(reference[0]))


@pytest.mark.parametrize(
  'signum, reason', [(signal.SIGTERM, 'preemption (SIGTERM)'), (signal.SIGINT, 'interrupted (Ctrl-C)')]
)
def test_signals_ask_for_a_checkpoint(signum, reason):
  """SIGTERM and Ctrl-C set the flag inside the block; the handlers it replaced are back after it."""
  from gsfm_jax.checkpoint import Preemption

  handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
  try:
    with Preemption() as preemption:
      assert signal.getsignal(signum) != handlers[signum == signal.SIGINT]
      assert not preemption.reached(1)
      os.kill(os.getpid(), signum)
      assert preemption.reached(2) and preemption.reason == reason
      if signum == signal.SIGINT:  # a second Ctrl-C is the usual KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
          os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers
  finally:
    signal.signal(signal.SIGTERM, handlers[0])
    signal.signal(signal.SIGINT, handlers[1])


def test_checkpoint_restores_on_another_device_count(reference):
  """The 2-device checkpoint restored onto meshes of 1 and 3 devices: same values, placed on those devices."""
  from gsfm_jax import checkpoint, sharding
  from gsfm_jax.weights import flatten

  store = checkpoint.Checkpoints(reference[0], every=4, keep=2)
  raw = store.restore(None)
  for count in (1, 3):
    mesh = sharding.make_mesh(jax.devices()[:count])
    state = store.restore(checkpoint.abstract(jax.tree.map(np.asarray, raw), sharding.replicated(mesh)))
    leaf = jax.tree.leaves(state['params'])[0]
    assert len(leaf.sharding.device_set) == count and int(state['step']) == 4
    assert_same_params(
      flatten({'params': jax.device_get(state['params'])}), flatten({'params': jax.device_get(raw['params'])})
    )
