"""Help that a user can act on: every flag of every command explained, with its default and the exit statuses;
`train --help` quick (no TensorFlow at import), exit 0, listing the config fields; a mistyped config field
answered in one line with the nearest field."""

import importlib
import re
import sys

import pytest
from runs import run

COMMANDS = (
  'gsfm_jax.predict',
  'gsfm_jax.app',
  'gsfm_jax.evaluate',
  'gsfm_jax.convert',
  'gsfm_jax.inference.program',
  'gsfm_jax.inference.loader',
  'gsfm_jax.analysis.aliasing',
  'gsfm_jax.evaluation.davis',
  'data_pipelines.synthetic',
  'data_pipelines.stats',
  'data_pipelines.check',
  'data_pipelines.tfds_builders',
)


def unexplained(text: str) -> list[str]:
  """The flags in argparse help `text` that have no help of their own."""
  lines = text.splitlines()
  start = lines.index('options:')
  missing = []
  for i in range(start + 1, len(lines)):
    line = lines[i]
    if not line.strip():
      break
    if re.match(r'^  -', line) and not re.match(r'^  -\S.*?\s{2,}\S', line):
      following = lines[i + 1] if i + 1 < len(lines) else ''
      if not re.match(r'^ {8,}\S', following):
        missing.append(line.strip())
  return missing


@pytest.mark.parametrize('command', COMMANDS)
def test_every_flag_is_explained(command, capsys):
  with pytest.raises(SystemExit) as ended:
    importlib.import_module(command).main(['--help'])
  assert ended.value.code == 0
  text = capsys.readouterr().out
  assert unexplained(text) == [], command
  assert 'exit status: 0 done; 1 the work failed' in ' '.join(text.split())
  description = text.split('\n\n')[1]
  assert description.rstrip().endswith(('.', ')', ':')), description  # whole sentences


def test_help_shows_defaults(capsys):
  from gsfm_jax import predict

  with pytest.raises(SystemExit):
    predict.main(['--help'])
  text = ' '.join(capsys.readouterr().out.split())
  for flag in ('--top_k TOP_K memory entries each query pixel reads (default: 50)', '(default: 3)', '(default: 8)'):
    assert flag in text


def test_train_help_is_whole_and_lists_the_config_fields():
  result = run([sys.executable, '-m', 'gsfm_jax.train', '--help', '--config=demo'], devices=1)
  assert result.returncode == 0, result.stderr[-2000:]
  assert '--config.steps=3000' in result.stdout and '--config.model.width_divisor=4' in result.stdout
  assert '--workdir: run folder' in result.stdout and 'exit status:' in result.stdout
  assert 'oneDNN' not in result.stdout + result.stderr  # TensorFlow's start-up lines: it is not imported
  imported = run([sys.executable, '-c', "import sys, gsfm_jax.train; print('tensorflow' in sys.modules)"], devices=1)
  assert imported.stdout.strip() == 'False', imported.stderr[-2000:]


@pytest.mark.parametrize(
  'flag, expected',
  [
    ('--config.stepz=10', 'error: --config.stepz: config demo has no field stepz; did you mean --config.steps?'),
    ('--config.model.widht_divisor=2', 'did you mean --config.model.width_divisor?'),
  ],
)
def test_a_mistyped_config_field_is_one_line(flag, expected, tmp_path):
  result = run(
    [sys.executable, '-m', 'gsfm_jax.train', '--config=demo', f'--workdir={tmp_path / "w"}', flag], devices=1
  )
  assert result.returncode == 2
  lines = [x for x in result.stderr.splitlines() if x.strip()]
  assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
  assert not (tmp_path / 'w').exists()
