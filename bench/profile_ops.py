"""Where a compiled program spends its time: a JAX profiler trace, summed per part of the network.

`profile(fn, compiled_texts, calls, logdir)` runs `fn` `calls` times under `jax.profiler.trace` (the trace
stays in `logdir` for TensorBoard / Perfetto), then sums the duration of every XLA op event of the trace
and maps each op to its source through the `op_name` metadata of the compiled HLO (`compiled.as_text()`):
Flax scopes give the module (`key_encoder/layer3_2`, `decoder/hfm`), `transpose(jvp(…))` marks the
backward pass. Works on CPU (thunk events per device thread) and GPU (the device planes' op events).
"""
import collections
import glob
import os
import re
from typing import Callable, Iterable

import jax
from jax.profiler import ProfileData

_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = .*?op_name="([^"]*)"', re.MULTILINE)
_TRANSFORM = re.compile(r'^(jit|jvp|transpose|vmap|checkpoint|remat|pjit)\(.*\)$')
COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'collective-permute', 'all-to-all')
CONTROL_FLOW = ('while', 'conditional', 'call')   # their events enclose their bodies' op events: not counted
COLLECTIVE_PART = 'collectives'   # the part of collective ops (XLA merges their op_names into one)


def op_sources(compiled_texts: Iterable[str]) -> dict[str, str]:
  """HLO instruction name -> op_name metadata, over the given optimised HLO texts."""
  sources = {}
  for text in compiled_texts:
    sources.update(dict(_INSTRUCTION.findall(text)))
  return sources


def part(op_name: str, depth: int) -> str:
  """op_name metadata -> 'forward|backward: module/submodule' (the first `depth` Flax scopes below the
  innermost GSFM method; the method itself for ops outside its submodules), or for ops outside the network
  (loss, optimiser, memory read, resizing) 'outside the network' and, from depth 2, the op's primitive."""
  if op_name.startswith(COLLECTIVE_PART):
    return op_name
  parts = [p for p in re.sub(r"\[[^]]*\]", '', op_name).split('/') if p]
  methods = [i for i, p in enumerate(parts) if p.startswith('GSFM.')]
  if not methods:
    return 'outside the network' + (f': {parts[-1]}' if depth > 1 and parts else '')
  backward = any(p.startswith('transpose(') for p in parts)
  modules = [p for p in parts[methods[-1] + 1:] if not _TRANSFORM.match(p)][:-1]   # the last is the primitive
  return f'{"backward" if backward else "forward"}: {"/".join(modules[:depth]) or parts[methods[-1]]}'


def by_part(op_seconds: dict[str, float], depth: int) -> dict[str, float]:
  """Seconds per op_name -> seconds per `part`, largest first."""
  seconds = collections.Counter()
  for op_name, duration in op_seconds.items():
    seconds[part(op_name, depth)] += duration
  return dict(seconds.most_common())


def _op_events(path: str, sources: dict[str, str]) -> list[tuple[str, float]]:
  """(instruction name, seconds) of every event in the trace that is an op of the programs (not control flow)."""
  return [(event.name, event.duration_ns * 1e-9) for plane in ProfileData.from_file(path).planes
          for line in plane.lines for event in line.events
          if event.name in sources and event.name.split('.')[0] not in CONTROL_FLOW]


def profile(fn: Callable[[], object], compiled_texts: Iterable[str], calls: int,
            logdir: str) -> dict[str, float]:
  """-> seconds per call of each op_name, summed over devices and threads; every collective op (all-reduce
  & co.) under `COLLECTIVE_PART`."""
  sources = op_sources(compiled_texts)
  jax.block_until_ready(fn())
  with jax.profiler.trace(logdir):
    for _ in range(calls):
      jax.block_until_ready(fn())
  path = max(glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True), key=os.path.getmtime)
  seconds = collections.Counter()
  for name, duration in _op_events(path, sources):
    collective = name.startswith(COLLECTIVES)
    seconds[COLLECTIVE_PART if collective else sources[name]] += duration / calls
  return dict(seconds)


def print_parts(op_seconds: dict[str, float], depths: tuple[int, ...] = (1, 2), count: int = 10) -> None:
  """Prints the `count` largest parts at each scope depth, as shares of the total op time."""
  total = sum(op_seconds.values())
  for depth in depths:
    print(f'  largest parts (scope depth {depth}): ' + '; '.join(
        f'{where} {100 * s / total:.1f} %' for where, s in list(by_part(op_seconds, depth).items())[:count]),
        flush=True)
