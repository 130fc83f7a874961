"""Helpers of the training tests: tiny runs of the real command line on the built-in dataset, in child
processes that share the session's compilation cache, and readers of what a run wrote."""

import os
import subprocess
import sys

import numpy as np
import pytest

from configs import demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 32² crops, 8 clips per step, 4 steps, the network at a quarter of its width (the machinery under test does
# not depend on it; it cuts memory and checkpoints 16×); the schedule and data depend on `steps`, so every run
# compared here uses the same values (previews and checkpoint intervals do not change the parameters)
TINY = {
  'data.size': 32,
  'data.workers': 2,
  'global_batch': 8,
  'steps': 4,
  'checkpoint_every': 2,
  'keep_checkpoints': 2,
  'log_every': 1,
  'progress_every': 1,
  'image_every': 1000,
  'builtin_data': '',
  'model.width_divisor': 4,
}
DATASET = dict(
  train=3, val=1, frames=8, height=96, width=160, static_flat=2, static_classes=1, static_per_class=2, static_size=64
)


def demo_config(data_root: str):
  """The demo config with TINY applied (what `cli_args` gives the command line)."""
  config = demo.get_config()
  config.update_from_flattened_dict(TINY)
  config.data.davis_root = os.path.join(data_root, 'DAVIS')
  return config


def cli_args(workdir: str, data_root: str, **overrides) -> list[str]:
  flat = {**TINY, 'data.davis_root': os.path.join(data_root, 'DAVIS'), **overrides}
  return [sys.executable, '-m', 'gsfm_jax.train', '--config=demo', f'--workdir={workdir}'] + [
    f'--config.{k}={v}' for k, v in flat.items()
  ]


def xla_flags(devices: int) -> str:
  """The session's XLA_FLAGS (the test command's compiler settings) with `devices` virtual CPU devices."""
  kept = [f for f in os.environ.get('XLA_FLAGS', '').split() if not f.startswith('--xla_force_host_platform')]
  return ' '.join([f'--xla_force_host_platform_device_count={devices}', *kept])


def env(devices: int) -> dict:
  """A CPU-only child with `devices` virtual devices, sharing the session's compilation cache and compiler
  settings."""
  return dict(
    os.environ,
    PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, 'tests')]),
    JAX_PLATFORMS='cpu',
    XLA_FLAGS=xla_flags(devices),
    TF_CPP_MIN_LOG_LEVEL='2',
  )


def start(args: list[str], devices: int = 2) -> subprocess.Popen:
  return subprocess.Popen(args, cwd=REPO, env=env(devices), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


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
  from gsfm_jax.weights.files import flatten, load_orbax
  from gsfm_jax.weights.workdir import newest_state

  return flatten({'params': load_orbax(newest_state(workdir))['params']})


def assert_same_params(found: dict, expected: dict, exact: bool = True) -> None:
  assert found.keys() == expected.keys()
  differ = [
    k
    for k in expected
    if not (
      np.array_equal(found[k], expected[k]) if exact else np.allclose(found[k], expected[k], rtol=1e-5, atol=1e-5)
    )
  ]
  assert not differ, f'{len(differ)} of {len(expected)} parameters differ, e.g. {differ[:3]}'
