"""FLOPs and bytes accessed per part of the network, read from a compiled program's optimised HLO text.

XLA's cost analysis (`compiled.cost_analysis()`) gives one total; this splits it. Every top-level instruction
of the program (the entry computation and the bodies of its loops and conditionals) is one kernel that reads
its operands from memory and writes its result: its bytes accessed are its operands' and outputs' sizes (free
instructions, such as bitcasts, tuples and parameters, move nothing), its FLOPs those of the convolutions and
dot products inside it (2 per multiply-add; elementwise work is not counted). The instruction's `op_name`
metadata names the Flax module and whether it belongs to the backward pass (`profile_ops.part`).

The split is an estimate of the same kind as XLA's total (which counts a fusion's operand bytes only where the
fusion reads them): `Cost.total` is printed next to XLA's own figure.
"""

import collections
import dataclasses
import math
import re
from typing import Iterable

from profile_ops import _COMPUTATION, _INSTRUCTION, _OP_NAME, NO_SOURCE, part

_SHAPE = re.compile(r'\b(pred|s4|u4|s8|u8|s16|u16|s32|u32|s64|u64|f8e\w+|bf16|f16|f32|f64|c64|c128)\[([\d,]*)\]')
_BYTES = {'pred': 1, 's4': 0.5, 'u4': 0.5, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'bf16': 2, 'f16': 2}
_BYTES.update({'s32': 4, 'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8, 'c64': 8, 'c128': 16})
_FREE = {'parameter', 'constant', 'bitcast', 'tuple', 'get-tuple-element', 'after-all', 'partition-id'}
_CONTROL = ('while', 'conditional', 'call')
_BODIES = re.compile(r'(?:body|condition|true_computation|false_computation|branch_computations)=\{?%?([\w.\-, %]+)\}?')
_CONTRACTING = re.compile(r'lhs_contracting_dims=\{([\d,]*)\}')
_DIM_LABELS = re.compile(r'dim_labels=\w+_(\w+)->')


def _shapes(text: str) -> list[tuple[str, list[int]]]:
  return [(t, [int(d) for d in dims.split(',') if d]) for t, dims in _SHAPE.findall(text)]


def _size(shapes: list[tuple[str, list[int]]]) -> float:
  return sum(_BYTES.get(t, 1 if t.startswith('f8') else 4) * math.prod(dims) for t, dims in shapes)


def _split(rest: str) -> tuple[str, str]:
  """'OUT opcode(OPERANDS), attributes' (the text after '= ') -> (output text, operand text)."""
  m = re.match(r'(.*?) ([a-z][a-z\-]*)\(', rest)
  start, depth = m.end(), 1
  for i in range(start, len(rest)):
    depth += {'(': 1, ')': -1}.get(rest[i], 0)
    if depth == 0:
      return m.group(1), rest[start:i]
  return m.group(1), rest[start:]


def _operands(operands: str, outputs: dict[str, str]) -> list[tuple[str, list[int]]]:
  """The shapes of an instruction's operands: printed inline (TPU) or looked up by name (CPU)."""
  inline = _shapes(operands)
  if inline:
    return inline
  return [s for name in re.findall(r'%([\w.\-]+)', operands) for s in _shapes(outputs.get(name, ''))]


def _flops(opcode: str, rest: str, outputs: dict[str, str]) -> float:
  """2 × multiply-adds of one convolution or dot instruction."""
  out, operands = _split(rest)
  out_elems = math.prod(_shapes(out)[0][1])
  args = _operands(operands, outputs)
  if opcode == 'dot':
    found = _CONTRACTING.search(rest)
    dims = [int(d) for d in found.group(1).split(',') if d] if found else []
    return 2.0 * out_elems * math.prod(args[0][1][d] for d in dims)
  return 2.0 * _convolution_macs(rest, args[0][1], args[1][1], _shapes(out)[0][1])


def _window(rest: str, key: str, count: int, default: int) -> list:
  found = re.search(rf'\b{key}=([\dx_\-]+)', rest)
  return found.group(1).split('x') if found else [default] * count


def _taps(size: int, out: int, window: int, low: int, stride: int, lhs_dilation: int, rhs_dilation: int) -> int:
  """How many (output position, window tap) pairs of one spatial dimension land on an input element (not on
  padding or between dilated elements)."""
  extent = (size - 1) * lhs_dilation + 1
  return sum(
    1
    for o in range(out)
    for k in range(window)
    if 0 <= (p := o * stride + k * rhs_dilation - low) < extent and p % lhs_dilation == 0
  )


def _convolution_macs(rest: str, lhs: list[int], rhs: list[int], out: list[int]) -> float:
  """Multiply-adds of a convolution: output batch × output features × input features per group × the taps that
  land on the input in each spatial dimension (XLA:TPU writes batched matmuls as convolutions whose windows
  mostly cover padding, so window size × output size would count them many times over)."""
  labels = re.search(r'dim_labels=(\w+)_(\w+)->(\w+)', rest)
  if not labels:
    return float(math.prod(out)) * math.prod(rhs) / max(rhs[-1], 1)
  lhs_spec, rhs_spec, out_spec = labels.groups()
  spatial = sorted(c for c in out_spec if c.isdigit())
  sizes = _window(rest, 'size', len(spatial), 1)
  pads = _window(rest, 'pad', len(spatial), '0_0')
  strides = _window(rest, 'stride', len(spatial), 1)
  lhs_dilations = _window(rest, 'lhs_dilate', len(spatial), 1)
  rhs_dilations = _window(rest, 'rhs_dilate', len(spatial), 1)
  taps = 1
  for i, dim in enumerate(spatial):
    taps *= _taps(
      lhs[lhs_spec.index(dim)],
      out[out_spec.index(dim)],
      int(sizes[i]),
      int(str(pads[i]).split('_')[0]),
      int(strides[i]),
      int(lhs_dilations[i]),
      int(rhs_dilations[i]),
    )
  return float(out[out_spec.index('b')] * out[out_spec.index('f')] * rhs[rhs_spec.index('i')] * taps)


@dataclasses.dataclass
class Cost:
  """FLOPs and bytes accessed per top-level instruction, with each instruction's source (`op_name`)."""

  flops: dict[str, float]
  bytes: dict[str, float]
  sources: dict[str, str]

  def total(self) -> tuple[float, float]:
    return sum(self.flops.values()), sum(self.bytes.values())

  def by_part(self, depth: int) -> dict[str, tuple[float, float]]:
    """(FLOPs, bytes) per `profile_ops.part` of the network, most bytes first."""
    sums = collections.defaultdict(lambda: [0.0, 0.0])
    for name, b in self.bytes.items():
      key = part(self.sources[name], depth)
      sums[key][0] += self.flops.get(name, 0.0)
      sums[key][1] += b
    return dict(sorted(((k, tuple(v)) for k, v in sums.items()), key=lambda kv: -kv[1][1]))


def hlo_cost(compiled_texts: Iterable[str]) -> Cost:
  """The `Cost` of optimised HLO texts (`compiled.as_text()`)."""
  bodies, lines = collections.defaultdict(list), {}
  for text in compiled_texts:
    body = None
    for line in text.splitlines():
      head = None if line.startswith(' ') else _COMPUTATION.match(line)
      if head:
        body = bodies['ENTRY' if line.startswith('ENTRY') else head.group(1)]
      elif body is not None and (m := _INSTRUCTION.match(line)):
        body.append(m.group(1))
        lines[m.group(1)] = (m.group(2), line.split(' = ', 1)[1])
  outputs = {name: _split(rest)[0] for name, (_, rest) in lines.items()}
  flops, moved, sources = {}, {}, {}

  def inner_flops(computation: str) -> float:
    total = 0.0
    for name in bodies.get(computation, ()):
      opcode, rest = lines[name]
      if opcode in ('convolution', 'dot'):
        total += _flops(opcode, rest, outputs)
      total += sum(inner_flops(c) for c in re.findall(r'calls=%?([\w.\-]+)', rest))
    return total

  def visit(computation: str) -> None:
    for name in bodies.get(computation, ()):
      opcode, rest = lines[name]
      if opcode in _CONTROL:
        for group in _BODIES.findall(rest):
          for called in re.split(r'[, %]+', group):
            if called:
              visit(called)
        continue
      if opcode in _FREE:
        continue
      out, operands = _split(rest)
      source = _OP_NAME.search(rest)
      sources[name] = source.group(1) if source else ''
      moved[name] = _size(_shapes(out)) + _size(_operands(operands, outputs))
      calls = re.findall(r'calls=%?([\w.\-]+)', rest)
      flops[name] = (_flops(opcode, rest, outputs) if opcode in ('convolution', 'dot') else 0.0) + sum(
        inner_flops(c) for c in calls
      )

  visit('ENTRY')
  for name in sources:
    sources[name] = _inherited_source(name, sources, lines)
  return Cost(flops, moved, sources)


def _inherited_source(name: str, sources: dict[str, str], lines: dict[str, tuple[str, str]]) -> str:
  """An instruction's `op_name`, or for one XLA made (a copy, a prefetch between memories, a layout change)
  the `op_name` of the nearest instruction it moves the data of (its operands, followed breadth first)."""
  queue, seen = [name], {name}
  while queue:
    current = queue.pop(0)
    if sources.get(current):
      return sources[current]
    found = _OP_NAME.search(lines[current][1]) if current in lines else None
    if found:
      return found.group(1)
    if current in lines:
      for operand in re.findall(r'%([\w.\-]+)', _split(lines[current][1])[1]):
        if operand not in seen and len(seen) < 64:
          seen.add(operand)
          queue.append(operand)
  return ''


def print_cost(cost: Cost, xla: dict, depth: int = 2, count: int = 14) -> None:
  """The largest parts by bytes, with their share of FLOPs and bytes, and the totals against XLA's."""
  flops, moved = cost.total()
  print(
    f'  from the HLO: {flops / 1e9:.1f} GFLOP (conv + dot), {moved / 2**30:.2f} GiB accessed; XLA: '
    f'{xla.get("flops", 0) / 1e9:.1f} GFLOP, {xla.get("bytes accessed", 0) / 2**30:.2f} GiB'
  )
  print(f'  | part (depth {depth}) | GFLOP | % FLOPs | GiB accessed | % bytes | FLOPs/byte |')
  print('  |---|---|---|---|---|---|')
  for where, (f, b) in list(cost.by_part(depth).items())[:count]:
    where = where if where != NO_SOURCE else 'made by XLA (no op_name)'
    print(
      f'  | {where} | {f / 1e9:.1f} | {100 * f / max(flops, 1):.1f} | {b / 2**30:.3f} | {100 * b / moved:.1f} | '
      f'{f / max(b, 1):.0f} |'
    )
