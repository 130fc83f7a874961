"""Many videos over many devices and processes. Each device runs whole videos, one after another, with its
own engine (weights, memory bank and compiled programs on that device): videos of any sizes and lengths
need no padding to a common shape, and a device never waits for another.

Within a process, one thread per local device takes the longest video not yet started (longest first,
then greedy: the shortest videos fill the gaps at the end). Across processes (`jax.distributed`), each
process takes a fixed share, balanced by length the same way (longest first, to the least loaded process),
so that the processes need not talk while they work. Every video's outputs depend on that video only, so
they are the same whichever device or process computed them.
"""

import collections
import json
import os
import threading
from typing import Callable, Optional, Sequence, TypeVar

import jax

from gsfm_jax import cli
from gsfm_jax.inference.engine import Propagator
from gsfm_jax.inference.media import InputError
from gsfm_jax.sharding import sync

Item = TypeVar('Item')
Result = TypeVar('Result')


def share(lengths: Sequence[int], workers: int) -> list[list[int]]:
  """Longest processing time first: the indices of the items each of `workers` takes, balanced by length
  (ties: the lower index first, to the lower worker). Each list is in the order it is to be run."""
  loads, parts = [0] * workers, [[] for _ in range(workers)]
  for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
    worker = min(range(workers), key=lambda w: (loads[w], w))
    parts[worker].append(i)
    loads[worker] += lengths[i]
  return parts


def process_share(lengths: Sequence[int]) -> list[int]:
  """The indices of the items this process runs (all of them on one process)."""
  return share(lengths, jax.process_count())[jax.process_index()]


def local_devices(count: Optional[int]) -> list[jax.Device]:
  """The first `count` local devices (all by default); InputError (naming --devices) when there are fewer."""
  devices = jax.local_devices()
  if count is None:
    return devices
  if not 1 <= count <= len(devices):
    raise InputError(f'--devices {count}: this process has {len(devices)} {devices[0].platform} device(s)')
  return devices[:count]


def engines(model, variables, protocol, devices: Optional[Sequence[jax.Device]] = None) -> list[Propagator]:
  """One `Propagator` per device (default: every local device), each with its own copy of the weights."""
  return [Propagator(model, variables, protocol, device=d) for d in (devices or jax.local_devices())]


def run_all(
  workers: Sequence[Propagator],
  items: Sequence[Item],
  lengths: Sequence[int],
  work: Callable[[Propagator, Item], Result],
) -> tuple[dict[int, Result], dict[int, str]]:
  """work(engine, item) for every item, longest first, each on the next engine that is free.

  Returns ({index: result}, {index: 'ErrorType: message'}): an item that raises is reported and the
  others go on, except for a full disk, which stops every worker and is raised (no other video could be
  written either). Ctrl-C stops every worker after the video it is on.
  """
  queue = collections.deque(sorted(range(len(items)), key=lambda i: (-lengths[i], i)))
  lock, stop = threading.Lock(), threading.Event()
  results, failures, fatal = {}, {}, []

  def worker(engine: Propagator) -> None:
    while not stop.is_set():
      with lock:
        if not queue:
          return
        i = queue.popleft()
      try:
        results[i] = work(engine, items[i])
      except Exception as error:  # noqa: BLE001 - one video's failure must not end the others
        if cli.disk_full(error):
          fatal.append(error)
          stop.set()
        else:
          failures[i] = f'{type(error).__name__}: {error}'

  if len(workers) == 1:  # in this thread: Ctrl-C and tracebacks as usual
    worker(workers[0])
  else:
    join_all([threading.Thread(target=worker, args=(e,), daemon=True) for e in workers], stop)
  if fatal:
    raise fatal[0]
  return results, failures


def join_all(threads: list[threading.Thread], stop: threading.Event) -> None:
  """Starts and joins `threads`; Ctrl-C sets `stop` (each ends after the video it is on) and is raised."""
  for thread in threads:
    thread.start()
  try:
    for thread in threads:
      while thread.is_alive():
        thread.join(0.2)
  except KeyboardInterrupt:
    stop.set()
    raise


def gather(
  output, run: Callable[[str], dict], merge: Callable[[list[dict]], dict], finish: Callable[[dict, str], int]
) -> int:
  """Several processes write one output folder: process 0 opens the shared folder, each process runs its
  share into it (run(folder) -> a JSON-able report), process 0 then merges the reports, finishes
  (finish(report, folder) -> exit status) and makes the folder `output.out`. The folder must be on a
  filesystem every process sees (InputError otherwise). Returns the exit status (0 on processes > 0)."""
  index, count = jax.process_index(), jax.process_count()
  marker = os.path.join(output.work, '.opened')
  if index == 0:
    output.open()
    open(marker, 'w').close()
  sync('outputs_opened')
  if not os.path.exists(marker):
    raise InputError(
      f'--out {output.out}: process {index} cannot see {output.work}, which process 0 made; with '
      'several hosts --out must be on a filesystem they all see'
    )
  report_path = lambda p: os.path.join(output.work, f'.process-{p}.json')
  with open(report_path(index), 'w') as f:
    json.dump(run(output.work), f)
  sync('outputs_written')
  if index > 0:
    return 0
  reports = []
  for p in range(count):
    with open(report_path(p)) as f:
      reports.append(json.load(f))
    os.remove(report_path(p))
  os.remove(marker)
  status = finish(merge(reports), output.work)
  output.commit()
  return status
