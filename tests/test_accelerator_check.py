"""`bench/accelerator_check.sh --tiny`: the accelerator check's every part (device-path tests, train step,
inference, many videos) at toy sizes on the CPU, with TensorFlow unimportable, into one report."""

import os
import re
import subprocess

from runs import REPO


def test_the_tiny_accelerator_check_writes_every_part(tmp_path):
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_PLATFORMS')}
  result = subprocess.run(
    ['bash', 'bench/accelerator_check.sh', '--tiny', '--out', str(tmp_path)],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=1200,
  )
  report = open(tmp_path / 'report.md').read()
  assert result.returncode == 0, report[-4000:]
  assert 'tensorflow: blocked for every part' in report
  for part in ('tests', 'train', 'inference', 'videos'):
    assert re.search(rf'^## {part} \(\d+ s, ok\)$', report, re.M), part
    assert os.path.getsize(tmp_path / f'{part}.log') > 0
  assert re.search(r'^2 passed', report, re.M)
  assert re.search(r'^\| main \| bfloat16 \| 1 \| 1 \| [\d.]+ \| [\d.]+ \|', report, re.M)  # step ms, clips/s
  assert re.search(r'^\| bfloat16 \| 2 \| [\d.]+ \| [\d.]+ \|', report, re.M)  # frames/s
  assert re.search(r'^\| 1 × 2 \| [\d.]+ \| [\d.]+ \| [\d.]+× \| \d+ % \|$', report, re.M)  # two devices
  assert 'every part ok' in report.splitlines()[-1]


def test_a_bad_argument_is_named(tmp_path):
  result = subprocess.run(['bash', 'bench/accelerator_check.sh', '--fast'], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 2 and 'unknown argument --fast' in result.stderr
