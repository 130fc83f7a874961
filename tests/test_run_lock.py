"""One training per workdir: while a run trains, a second one (one process, or a two-process job) is refused at
start with one line naming the running process; after the running one is killed with -9, the next starts."""

import os
import signal
import socket

from runs import cli_args, read_until, run, start


def test_a_second_training_is_refused_and_a_killed_one_does_not_block(data_root, tmp_path):
  workdir, log = str(tmp_path / 'run'), []
  first = start(cli_args(workdir, data_root, steps=1000))
  try:
    read_until(first, 'step 1/1000', log)
    line = f'{workdir} is in use by another training: pid {first.pid} on {socket.gethostname()}'

    second = run(cli_args(workdir, data_root))
    assert second.returncode == 2, second.stderr[-3000:]
    errors = [x for x in second.stderr.splitlines() if x.startswith('error:')]
    assert len(errors) == 1 and line in errors[0] and 'gsfm_jax.train' in errors[0], second.stderr[-3000:]
    assert 'Traceback' not in second.stderr

    with socket.socket() as s:  # a job of two processes: both refused, with the same line
      s.bind(('localhost', 0))
      coordinator = f'localhost:{s.getsockname()[1]}'
    job = [
      start(
        cli_args(workdir, data_root)
        + [f'--coordinator_address={coordinator}', '--num_processes=2', f'--process_id={p}'],
        devices=4,
      )
      for p in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in job]
    for process, output in zip(job, outputs):
      assert process.returncode == 2, output[-3000:]
      assert line in output and 'Traceback' not in output, output[-3000:]
    assert first.poll() is None  # the running training went on
  finally:
    first.kill()
  assert first.wait(timeout=60) == -signal.SIGKILL

  third = run(cli_args(workdir, data_root, steps=2))  # kill -9 left the lock file; the next run is not blocked
  assert third.returncode == 0, third.stderr[-3000:]
  assert 'in use' not in third.stderr and os.path.isfile(os.path.join(workdir, 'run.lock'))
