"""`bench/accelerator_check.py --tiny`: the accelerator check's every part (device-path tests, train step,
inference, many videos) at toy sizes, in this process, with TensorFlow unimportable, into one report."""

import os
import re
import subprocess
import sys

from runs import REPO

sys.path.insert(0, os.path.join(REPO, 'bench'))


def test_the_tiny_accelerator_check_writes_every_part(tmp_path):
  import accelerator_check

  assert accelerator_check.main(['--tiny', '--out', str(tmp_path)]) == 0, (tmp_path / 'report.md').read_text()[-4000:]
  report = (tmp_path / 'report.md').read_text()
  assert 'tensorflow: blocked for every part' in report
  for part in ('tests', 'train', 'inference', 'videos'):
    assert re.search(rf'^## {part} \(\d+ s, ok\)$', report, re.M), part
    assert os.path.getsize(tmp_path / f'{part}.log') > 0
  assert re.search(r'^2 passed', report, re.M)
  assert re.search(r'^\| main \| bfloat16 \| 1 \| 1 \| [\d.]+ \| [\d.]+ \|', report, re.M)  # step ms, clips/s
  assert re.search(r'^\| bfloat16 \| 2 \| [\d.]+ \| [\d.]+ \|', report, re.M)  # frames/s
  assert re.search(r'^\| 1 × 2 \| [\d.]+ \| [\d.]+ \| [\d.]+× \| \d+ % \|$', report, re.M)  # two devices
  assert 'every part ok' in report.splitlines()[-1]
  import tensorflow  # noqa: F401 - the block ended with the check


def test_a_bad_argument_is_named():
  result = subprocess.run(
    [sys.executable, 'bench/accelerator_check.py', '--fast'], cwd=REPO, capture_output=True, text=True
  )
  assert result.returncode == 2 and 'unrecognized arguments: --fast' in result.stderr
  assert 'Traceback' not in result.stderr and len(result.stderr.strip().splitlines()) == 1
