"""Ordinary mistakes on every command line: one line that names the file or flag and what to do, exit status
2, no traceback, and nothing written. (predict's own are in test_predict.py.)"""

import os
import subprocess
import sys

import numpy as np
import pytest
from runs import REPO, cli_args, env

from gsfm_jax import convert, evaluate
from gsfm_jax.evaluation import davis


def _one_error_line(stderr: str) -> str:
  lines = [line for line in stderr.splitlines() if line.startswith('error: ')]
  assert len(lines) == 1 and 'Traceback' not in stderr, stderr[-3000:]
  return lines[0]


def _module(args: list[str], devices: int = 1) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, '-m'] + args, cwd=REPO, env=env(devices), capture_output=True, text=True, timeout=300
  )


def test_train_without_a_pretrain_run(data_root, tmp_path):
  """The command line: --config=main's start (a stage-0 workdir) is missing; the line names the config field."""
  overrides = {'init.kind': 'checkpoint', 'init.checkpoint': 'runs/no_pretrain'}
  result = subprocess.run(
    cli_args(str(tmp_path / 'w'), data_root, **overrides),
    cwd=REPO,
    env=env(2),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2
  assert (
    'runs/no_pretrain: no such file or directory [config.init.checkpoint=runs/no_pretrain: train the stage'
    in _one_error_line(result.stderr)
  )


@pytest.mark.parametrize(
  'overrides, error, expected',
  [
    ({'global_batch': 3}, 'ConfigError', 'config.global_batch 3 must be a multiple of the device count 8'),
    (
      {'model.dtype': 'float16'},
      'ConfigError',
      "config.model.dtype 'float16': expected 'float32', 'bfloat16' or 'auto'",
    ),
    (
      {'data.davis_root': '/nonexistent/DAVIS'},
      'DataError',
      'no videos found (missing: /nonexistent/DAVIS/2017/trainval)',
    ),
  ],
)
def test_train_config_mistakes(overrides, error, expected, data_root, tmp_path):
  """The errors the command line turns into one line and exit 2 (see main), raised before any step runs."""
  from runs import demo_config

  from gsfm_jax import train

  config = demo_config(data_root)
  config.update_from_flattened_dict(overrides)
  with pytest.raises(Exception) as raised:
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert type(raised.value).__name__ == error and expected in str(raised.value)
  assert not os.path.exists(tmp_path / 'w' / 'checkpoints' / '1')
  if error == 'ConfigError':  # refused before the workdir is made: no empty folder left behind
    assert not os.path.exists(tmp_path / 'w')


def test_evaluate(tmp_path, data_root, capsys):
  root = os.path.join(data_root, 'DAVIS', '2017', 'trainval')
  (tmp_path / 'file').write_text('mine')
  broken = tmp_path / 'broken_ckpt'
  os.makedirs(broken / 'params')
  (broken / 'params' / 'x').write_bytes(b'not tensorstore')
  base = ['--benchmark', 'davis17', '--out', str(tmp_path / 'out')]
  for args, expected in (
    (
      ['--checkpoint', 'x.npz', '--root', str(tmp_path)],
      f'--root {tmp_path}: {tmp_path}/JPEGImages/480p not found; --root is the DAVIS folder holding',
    ),
    (['--checkpoint', 'x.npz', '--root', root, '--top_k', '0'], '--top_k 0: must be at least 1'),
    (
      ['--checkpoint', 'x.npz', '--root', root, '--dtype', 'fp8'],
      '--dtype fp8: expected one of float32, bfloat16, auto',
    ),
    (['--checkpoint', str(tmp_path / 'absent.npz'), '--root', root], 'absent.npz: no such file or directory'),
    (['--checkpoint', str(broken), '--root', root], f'{broken}: cannot restore as an orbax checkpoint'),
  ):
    assert evaluate.main(base + args) == 2
    assert expected in _one_error_line(capsys.readouterr().err)
  assert (
    evaluate.main(['--benchmark', 'davis17', '--out', str(tmp_path / 'file'), '--checkpoint', 'x.npz', '--root', root])
    == 2
  )
  assert f'--out {tmp_path / "file"}: is a file; give a folder' in _one_error_line(capsys.readouterr().err)
  assert not (tmp_path / 'out').exists() and (tmp_path / 'file').read_text() == 'mine'


def test_scorer_and_converter(tmp_path, capsys):
  assert davis.main(['--results', str(tmp_path / 'none'), '--davis_root', str(tmp_path)]) == 2
  assert f'--results {tmp_path / "none"}: no such folder' in _one_error_line(capsys.readouterr().err)
  os.makedirs(tmp_path / 'res')
  assert davis.main(['--results', str(tmp_path / 'res'), '--davis_root', str(tmp_path)]) == 2
  assert 'no such image set (is --davis_root the folder holding ImageSets/?)' in _one_error_line(
    capsys.readouterr().err
  )
  np.savez(tmp_path / 'pickled.npz', a=np.array([{'x': 1}], dtype=object))
  assert convert.main([str(tmp_path / 'pickled.npz'), str(tmp_path / 'o.npz')]) == 2
  line = _one_error_line(capsys.readouterr().err)
  assert 'pickled.npz: holds Python objects, not only arrays; not a weights file' in line and 'allow_pickle' not in line


def test_data_tools(tmp_path, data_root):
  result = _module(
    [
      'data_pipelines.tfds_builders',
      'videos',
      '--davis_root',
      str(tmp_path / 'none'),
      '--data_dir',
      str(tmp_path / 'tfds'),
    ]
  )
  assert result.returncode == 2
  assert 'no videos found' in _one_error_line(result.stderr) and not (tmp_path / 'tfds').exists()
  # and the command itself works when run as a module (its builders are found by their package module)
  good = _module(
    [
      'data_pipelines.tfds_builders',
      'videos',
      '--davis_root',
      os.path.join(data_root, 'DAVIS'),
      '--data_dir',
      str(tmp_path / 'tfds_ok'),
    ]
  )
  assert good.returncode == 0 and 'written to' in good.stdout, good.stderr[-2000:]
