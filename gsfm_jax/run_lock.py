"""One training per workdir: `WORKDIR/run.lock`, held by process 0 of the running job for as long as it trains.

The lock is an advisory `flock` on that file, which the kernel releases when the holder ends however it ends
(kill -9 included), so a lock left by a killed run never blocks the next one; the file names the holder (host,
pid, start time, command) for the refusal. Process 0 of a job takes it, and every process of the job learns the
answer, so a second job (one host or many) is refused at start, all of its processes with the same line.
"""

import datetime
import errno
import fcntl
import json
import os
import socket
import sys

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from gsfm_jax import cli

FILE = 'run.lock'
MESSAGE_BYTES = 2048  # the refusal, as every process of a job receives it
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class WorkdirInUse(ValueError):
  """Another training holds the workdir; the message names it."""


class RunLock:
  """The lock of a workdir for this job (a context manager: held inside, released on exit)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, FILE)
    self._file = None

  def __enter__(self) -> 'RunLock':
    refusal = self._take() if jax.process_index() == 0 else ''
    if jax.process_count() > 1:
      refusal = share(refusal)
    if refusal:
      self.__exit__()
      raise WorkdirInUse(refusal)
    return self

  def __exit__(self, *exc_info) -> None:
    if self._file is not None:
      self._file.close()  # closing the file releases the flock
      self._file = None

  def _take(self) -> str:
    """Takes the lock and writes this run's line into it; -> '' or the refusal naming the holder."""
    self._file = open(self.path, 'a+')
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      return refusal(os.path.dirname(self.path), self._file.read())
    except OSError as e:
      if e.errno not in NO_LOCKS:
        raise
      logging.warning(
        '%s: this file system has no locks; a second training on this workdir would not be refused', self.path
      )
      return ''
    self._file.seek(0)
    self._file.truncate()
    self._file.write(json.dumps(holder()) + '\n')
    self._file.flush()
    return ''


def holder() -> dict:
  """What the lock file says of the run holding it."""
  return {
    'host': socket.gethostname(),
    'pid': os.getpid(),
    'started': datetime.datetime.now().isoformat(timespec='seconds'),
    'processes': jax.process_count(),
    'command': ' '.join([cli.command_name(), *sys.argv[1:]]),
  }


def refusal(workdir: str, text: str) -> str:
  """The one line that refuses a second run, naming the running one from its lock file's `text`."""
  try:
    who = json.loads(text)
    running = f'pid {who["pid"]} on {who["host"]}, started {who["started"]} ({who["command"]})'
  except (ValueError, KeyError, TypeError):
    running = 'a process that has not written its name yet'
  return (
    f'{workdir} is in use by another training: {running}; wait for it or stop it before resuming here, or '
    'choose another --workdir'
  )


def share(message: str) -> str:
  """Process 0's `message` on every process of the job."""
  data = np.zeros(MESSAGE_BYTES, np.uint8)
  encoded = message.encode()[:MESSAGE_BYTES]
  data[: len(encoded)] = np.frombuffer(encoded, np.uint8)
  received = np.asarray(multihost_utils.broadcast_one_to_all(data), np.uint8)
  return received.tobytes().rstrip(b'\0').decode(errors='replace')
