"""Where a compiled program spends its time: a JAX profiler trace, summed per part of the network and per
kind of XLA op.

`profile(fn, compiled_texts, calls, logdir)` runs `fn` `calls` times under `jax.profiler.trace` (the trace
stays in `logdir` for TensorBoard / Perfetto) and sums the duration of every XLA op event of the trace. The
optimised HLO of the programs (`compiled.as_text()`) says what each op is:
- its source, through the `op_name` metadata: Flax scopes give the module (`key_encoder/layer3_2`,
  `decoder/hfm`), `transpose(jvp(…))` marks the backward pass (`part`);
- its kind (`KINDS`): convolution, matmul, FFT, collective, a pure layout change (transpose / copy), other
  data movement, or elementwise / reduction work, from the ops inside a fusion (`kind`).
Works on CPU (thunk events per device thread) and GPU (the device planes' op events; cuDNN / cuBLAS
custom calls count as convolution / matmul).
"""

import collections
import dataclasses
import glob
import os
import re
from typing import Callable, Iterable

import jax
from jax.profiler import ProfileData

_COMPUTATION = re.compile(r'^(?:ENTRY )?%?([\w.\-]+) .*\{$')
_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = .*? ([a-z][a-z\-]*)\((.*)$')
_CALLS = re.compile(r'calls=%?([\w.\-]+)')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_TARGET = re.compile(r'custom_call_target="([^"]*)"')
_TRANSFORM = re.compile(r'^(jit|jvp|transpose|vmap|checkpoint|remat|pjit)\(.*\)$')
COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'collective-permute', 'all-to-all')
CONTROL_FLOW = ('while', 'conditional', 'call')  # their events enclose their bodies' op events: not counted
COLLECTIVE_PART = 'collectives'  # the part of collective ops (XLA merges their op_names into one)
NO_SOURCE = 'made by XLA (no op_name)'  # e.g. the transposed kernels of a convolution's backward pass
_LAYOUT = {'transpose', 'copy'}
_MOVES = {'pad', 'slice', 'concatenate', 'reverse', 'dynamic-slice', 'dynamic-update-slice', 'gather'}
_FREE = {'parameter', 'constant', 'bitcast', 'reshape', 'broadcast', 'iota', 'tuple', 'get-tuple-element', 'fusion'}
KINDS = (
  'convolution',
  'matmul',
  'fft',
  'collective',
  'layout: transpose / copy',
  'data movement: pad / slice / concatenate / gather',
  'elementwise / reduction with a transpose',
  'elementwise / reduction',
)


@dataclasses.dataclass(frozen=True)
class Op:
  """One top-level HLO instruction: its source (`op_name` metadata) and `kind` (one of `KINDS`)."""

  source: str
  kind: str


def kind(opcode: str, inner: set[str], target: str = '') -> str:
  """The kind of an instruction from its opcode, the opcodes inside it (a fusion's computation, nested
  fusions included; the instruction's own may be among them) and a custom call's target."""
  ops = inner | {opcode}
  target = target.lower()
  if opcode.startswith(COLLECTIVES):
    return 'collective'
  if 'convolution' in ops or 'conv' in target:
    return 'convolution'
  if 'dot' in ops or any(t in target for t in ('gemm', 'matmul', 'cublas')):
    return 'matmul'
  if 'fft' in ops:
    return 'fft'
  work = ops - _FREE
  if work and work <= _LAYOUT:
    return 'layout: transpose / copy'
  if work and work <= _LAYOUT | _MOVES:
    return 'data movement: pad / slice / concatenate / gather'
  return 'elementwise / reduction with a transpose' if 'transpose' in ops else 'elementwise / reduction'


class _Hlo:
  """The instructions of optimised HLO texts: name -> (opcode, called computation, op_name, custom-call
  target), and each computation's instruction names (the entry computation's under 'ENTRY')."""

  def __init__(self, compiled_texts: Iterable[str]):
    self.bodies, self.instructions = collections.defaultdict(list), {}
    for text in compiled_texts:
      body = None
      for line in text.splitlines():
        head = None if line.startswith(' ') else _COMPUTATION.match(line)
        if head:
          body = self.bodies['ENTRY' if line.startswith('ENTRY') else head.group(1)]
        elif body is not None and (m := _INSTRUCTION.match(line)):
          name, opcode, rest = m.groups()
          calls, source, target = _CALLS.search(rest), _OP_NAME.search(rest), _TARGET.search(rest)
          body.append(name)
          self.instructions[name] = (
            opcode,
            calls and calls.group(1),
            source.group(1) if source else '',
            target.group(1) if target else '',
          )

  def opcodes(self, name: str) -> set[str]:
    """The opcode of an instruction and of everything inside the computations it calls."""
    opcode, calls, _, _ = self.instructions[name]
    return {opcode}.union(*(self.opcodes(n) for n in self.bodies.get(calls, ()))) if calls else {opcode}


def hlo_ops(compiled_texts: Iterable[str]) -> dict[str, Op]:
  """HLO instruction name -> `Op`, over every instruction of the given optimised HLO texts."""
  hlo = _Hlo(compiled_texts)
  return {
    name: Op(source, kind(opcode, hlo.opcodes(name), target))
    for name, (opcode, _, source, target) in hlo.instructions.items()
  }


def transposing_ops(compiled_text: str) -> int:
  """How many top-level ops of a program's entry computation transpose (alone or inside a fusion)."""
  hlo = _Hlo([compiled_text])
  return sum('transpose' in hlo.opcodes(name) for name in hlo.bodies['ENTRY'])


def part(source: str, depth: int) -> str:
  """op_name metadata -> 'forward|backward: module/submodule' (the first `depth` Flax scopes below the
  innermost GSFM method; the method itself for ops outside its submodules), or for ops outside the network
  (loss, optimiser, memory read, resizing) 'outside the network' and, from depth 2, the op's primitive;
  `NO_SOURCE` for ops XLA made without metadata."""
  if not source:
    return NO_SOURCE
  parts = [p for p in re.sub(r'\[[^]]*\]', '', source).split('/') if p]
  methods = [i for i, p in enumerate(parts) if p.startswith('GSFM.')]
  if not methods:
    return 'outside the network' + (f': {parts[-1]}' if depth > 1 and parts else '')
  backward = any(p.startswith('transpose(') for p in parts)
  modules = [p for p in parts[methods[-1] + 1 :] if not _TRANSFORM.match(p)][:-1]  # the last is the primitive
  return f'{"backward" if backward else "forward"}: {"/".join(modules[:depth]) or parts[methods[-1]]}'


@dataclasses.dataclass
class OpTimes:
  """Seconds per call of each HLO instruction of a profiled program (summed over devices and threads)."""

  seconds: dict[str, float]
  ops: dict[str, Op]

  def total(self) -> float:
    return sum(self.seconds.values())

  def by(self, key: Callable[[Op], str]) -> dict[str, float]:
    """Seconds summed per key(op), largest first."""
    sums = collections.Counter()
    for name, seconds in self.seconds.items():
      sums[key(self.ops[name])] += seconds
    return dict(sums.most_common())

  def by_part(self, depth: int) -> dict[str, float]:
    """Seconds per `part` of the network; every collective op under `COLLECTIVE_PART`."""
    return self.by(lambda op: COLLECTIVE_PART if op.kind == 'collective' else part(op.source, depth))

  def by_kind(self) -> dict[str, float]:
    return self.by(lambda op: op.kind)


def _op_events(path: str, ops: dict[str, Op]) -> list[tuple[str, float]]:
  """(instruction name, seconds) of every event in the trace that is an op of the programs (not control flow)."""
  return [
    (event.name, event.duration_ns * 1e-9)
    for plane in ProfileData.from_file(path).planes
    for line in plane.lines
    for event in line.events
    if event.name in ops and event.name.split('.')[0] not in CONTROL_FLOW
  ]


def profile(fn: Callable[[], object], compiled_texts: Iterable[str], calls: int, logdir: str) -> OpTimes:
  """Runs fn once, then `calls` times under the profiler -> the op times per call."""
  ops = hlo_ops(compiled_texts)
  jax.block_until_ready(fn())
  with jax.profiler.trace(logdir):
    for _ in range(calls):
      jax.block_until_ready(fn())
  path = max(glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True), key=os.path.getmtime)
  seconds = collections.Counter()
  for name, duration in _op_events(path, ops):
    seconds[name] += duration / calls
  return OpTimes(dict(seconds), ops)


def _shares(seconds: dict[str, float], total: float, count: int) -> str:
  return '; '.join(f'{where} {100 * s / total:.1f} %' for where, s in list(seconds.items())[:count])


def print_parts(times: OpTimes, depths: tuple[int, ...] = (1, 2), count: int = 10) -> None:
  """Prints the `count` largest parts at each scope depth, the share of each op kind, and the kinds of the
  ops XLA made itself, as shares of the total op time."""
  total = times.total()
  for depth in depths:
    print(f'  largest parts (scope depth {depth}): {_shares(times.by_part(depth), total, count)}', flush=True)
  print(f'  op kinds: {_shares(times.by_kind(), total, len(KINDS))}', flush=True)
  made = OpTimes({n: s for n, s in times.seconds.items() if not times.ops[n].source}, times.ops)
  print(f'  {NO_SOURCE}, by kind: {_shares(made.by_kind(), total, len(KINDS))}', flush=True)
