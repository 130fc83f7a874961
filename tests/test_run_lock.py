"""One training per workdir: while a process holds the workdir's lock (as a running training does), a second
training (one process, or a two-process job) is refused at start with one line naming the holder; the lock
is the kernel's, so a killed holder leaves none (the real training killed with -9 and resumed:
test_train.py::test_resume_after_sigterm_and_kill_9_is_bit_exact)."""

import os
import signal
import socket
import subprocess
import sys

import pytest
from runs import REPO, cli_args, env, run, start

from gsfm_jax import run_lock

HOLD = (
  'import sys, time\n'
  'from gsfm_jax.run_lock import RunLock\n'
  'with RunLock(sys.argv[1]):\n'
  "  print('holding', flush=True)\n"
  '  time.sleep(600)\n'
)


def test_a_second_lock_on_a_workdir_is_refused_and_names_the_holder(tmp_path):
  with run_lock.RunLock(str(tmp_path)):
    with pytest.raises(run_lock.WorkdirInUse, match=f'in use by another training: pid {os.getpid()} on '):
      run_lock.RunLock(str(tmp_path)).__enter__()  # another open file: refused even in this process
  with run_lock.RunLock(str(tmp_path)):  # released on exit: taken again
    pass


def test_a_second_training_is_refused_on_one_host_and_across_processes(data_root, tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  holder = subprocess.Popen(
    [sys.executable, '-c', HOLD, str(workdir)], cwd=REPO, env=env(1), stdout=subprocess.PIPE, text=True
  )
  try:
    assert holder.stdout.readline().strip() == 'holding'
    line = f'{workdir} is in use by another training: pid {holder.pid} on {socket.gethostname()}'

    second = run(cli_args(str(workdir), data_root))
    assert second.returncode == 2, second.stderr[-3000:]
    errors = [x for x in second.stderr.splitlines() if x.startswith('error:')]
    assert len(errors) == 1 and line in errors[0] and 'Traceback' not in second.stderr, second.stderr[-3000:]

    with socket.socket() as s:  # a job of two processes: both refused, with the same line
      s.bind(('localhost', 0))
      coordinator = f'localhost:{s.getsockname()[1]}'
    job = [
      start(
        cli_args(str(workdir), data_root)
        + [f'--coordinator_address={coordinator}', '--num_processes=2', f'--process_id={p}'],
        devices=4,
      )
      for p in range(2)
    ]
    for process, output in zip(job, [p.communicate(timeout=300)[0] for p in job]):
      assert process.returncode == 2, output[-3000:]
      assert line in output and 'Traceback' not in output, output[-3000:]
    assert sorted(os.listdir(workdir)) == ['run.lock']  # refused before anything was written
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
