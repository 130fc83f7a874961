"""The inference engine as one exported file: `jax.export` of the per-chunk scan step (docs/reference.md §5) with the
network's weights, for videos of one frame size, run by `gsfm_jax.inference.loader`, which needs neither
Flax nor the model code (only jax and numpy).

  python -m gsfm_jax.inference.program --checkpoint runs/main --size 480x854 --objects 3 --capacity 16 \
      --out gsfm.program
      [--resize short:480] [--dtype bfloat16] [--top_k 50] [--mem_every 3] [--platforms cpu,cuda,tpu]
  python -m gsfm_jax.inference.loader gsfm.program --video clip.mp4 --mask first.png --out out/clip

What is fixed when the file is made: the frame size (H, W) and the network's input size, the largest number
of objects (a video may have fewer), a bounded memory of --capacity frames (the first frame pinned, the
oldest other frame dropped: any length runs in constant memory) and the protocol (top-k, mem_every, memory
every `absolute` frame, all objects given in the first frame). The file (a numpy .npz) holds the serialized
program (StableHLO, lowered for every platform named), its weights, the resize matrices and a JSON header
(with the network's record: width, switches).
Its outputs are the live engine's with `Protocol(capacity=C, object_bucket=K)` bit for bit (the same
shapes); a video with fewer objects is padded to K, which changes float rounding, not the method.
"""

import json
import sys
from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax import export

from gsfm_jax import cli, console
from gsfm_jax.inference import memory_bank
from gsfm_jax.inference.engine import Geometry, Propagator, geometry, scan_chunk
from gsfm_jax.inference.loader import FORMAT
from gsfm_jax.inference.media import InputError, parse_resize
from gsfm_jax.inference.schedule import Protocol
from gsfm_jax.models import GSFM
from gsfm_jax.weights import record
from gsfm_jax.weights.files import write_arrays_npz

PLATFORMS = ('cpu', 'cuda', 'tpu')


def chunk_step(model: GSFM, top_k: Optional[int], treedef: Any):
  """The exported function: (weights (flat list), consts, carry (bank leaves…, enabled), xs) -> (carry, outputs),
  `scan_chunk` of the engine with every argument a plain array, list or dict (nothing but jax needed to call it)."""

  def step(weights: list, consts: dict, carry: tuple, xs: dict):
    variables = jax.tree.unflatten(treedef, weights)
    bank = memory_bank.MemoryBank(*carry[:-1])
    (bank, enabled), out = scan_chunk(
      model, top_k, variables, consts, (bank, carry[-1]), xs, shared=True, keep_prob=True
    )
    return (*bank, enabled), out

  return step


def step_arguments(engine: Propagator, geo: Geometry, objects: int) -> tuple[dict, tuple, dict]:
  """Example (consts, carry, xs) of `chunk_step` for one geometry: one labelled frame, an empty bank of the
  protocol's capacity, a chunk of black frames (every frame computed)."""
  consts = {**engine.resize_matrices(geo), 'labels': np.zeros((1,) + geo.size, np.uint8)}
  bank, enabled = engine.empty_carry(geo, objects)
  carry = (*memory_bank.grow(bank, engine.protocol.capacity), enabled)
  t = engine.protocol.chunk
  xs = {
    't': np.zeros(t, np.int32),
    'memorise': np.zeros(t, bool),
    'compute': np.ones(t, bool),
    'slot': np.zeros(t, np.int32),
    'new': np.zeros((t, objects), bool),
    'frame': np.zeros((t,) + geo.size + (3,), np.uint8),
  }
  return consts, carry, xs


def export_program(
  model: GSFM,
  variables: Any,
  protocol: Protocol,
  size: tuple[int, int],
  resized: Optional[tuple[int, int]],
  objects: int,
  platforms: Sequence[str],
) -> dict[str, np.ndarray]:
  """The file's arrays: 'program' (serialized `jax.export.Exported`), 'header' (JSON), weight_NNNN and const_*."""
  if protocol.capacity is None:
    raise ValueError('an exported program needs a bounded memory (Protocol.capacity)')
  geo = geometry(size, resized)
  consts, carry, xs = step_arguments(Propagator(model, variables, protocol), geo, objects)
  weights, treedef = jax.tree.flatten(variables)
  spec = lambda tree: jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), tree)
  exported = export.export(jax.jit(chunk_step(model, protocol.top_k, treedef)), platforms=tuple(platforms))(
    spec(weights), spec(consts), spec(carry), spec(xs)
  )
  header = {
    'format': FORMAT,
    'size': list(geo.size),
    'resized': list(geo.resized),
    'objects': objects,
    'capacity': protocol.capacity,
    'chunk': protocol.chunk,
    'top_k': protocol.top_k,
    'mem_every': protocol.mem_every,
    'dtype': np.dtype(model.dtype).name,
    'network': record.of(model),
    'platforms': list(platforms),
    'weights': len(weights),
    'carry': [
      {'shape': list(a.shape), 'dtype': np.dtype(a.dtype).name, 'fill': -1 if name == 'frame' else 0}
      for name, a in zip(memory_bank.MemoryBank._fields + ('enabled',), carry)
    ],
  }
  arrays = {
    'program': np.frombuffer(exported.serialize(), np.uint8),
    'header': np.frombuffer(json.dumps(header).encode(), np.uint8),
  }
  arrays.update({f'weight_{i:04d}': np.asarray(w) for i, w in enumerate(weights)})
  arrays.update({f'const_{name}': np.asarray(v) for name, v in consts.items() if name != 'labels'})
  return arrays


def parse_size(text: str) -> tuple[int, int]:
  """--size 'HxW' -> (H, W)."""
  h, _, w = text.partition('x')
  if not (h.isdigit() and w.isdigit() and int(h) >= 16 and int(w) >= 16):
    raise InputError(f'--size {text}: expected HxW (height x width, each ≥ 16), e.g. 480x854')
  return int(h), int(w)


def build_parser() -> cli.Parser:
  parser = cli.Parser(__doc__)
  parser.add_checkpoint()
  parser.add_argument('--size', required=True, help="the videos' frame size, HxW (e.g. 480x854)")
  parser.add_argument('--resize', default='none', help="network input size: 'none', 'short:N' or 'long:N'")
  parser.add_count('objects', 3, 'most objects a video may have')
  parser.add_count('capacity', 16, 'memory frames kept')
  parser.add_count('top_k', 50, 'memory entries each query pixel reads')
  parser.add_count('mem_every', 3, 'a memory frame every N frames')
  parser.add_dtype(('float32', 'bfloat16'))
  parser.add_argument('--platforms', default='cpu,cuda', help=f'comma-separated, of {", ".join(PLATFORMS)}')
  parser.add_argument('--out', required=True, help='the program file to write')
  parser.add_argument('--overwrite', action='store_true', help='replace an existing program file')
  return parser


def write(parser: cli.Parser, args) -> int:
  """Checks the flags, reads the weights, exports and writes the file; -> 0."""
  parser.check(args)
  size = parse_size(args.size)
  resized = parse_resize(args.resize, size)
  platforms = args.platforms.split(',')
  if not platforms or any(p not in PLATFORMS for p in platforms):
    raise InputError(f'--platforms {args.platforms}: expected a comma-separated list of {", ".join(PLATFORMS)}')
  cli.writable_parent('out', args.out)
  from gsfm_jax import weights

  model, variables = weights.load_for_inference(args.checkpoint, args.dtype, args.model)
  protocol = Protocol(top_k=args.top_k, mem_every=args.mem_every, capacity=args.capacity)
  arrays = export_program(model, variables, protocol, size, resized, args.objects, platforms)
  write_arrays_npz(arrays, args.out, args.overwrite)
  print(
    f'{args.out}: {len(arrays["program"]) / 1e6:.1f} MB program, {sum(a.nbytes for a in arrays.values()) / 1e6:.0f} MB '
    f'in all; frames {size[0]}x{size[1]}, up to {args.objects} objects, {args.capacity} memory frames, '
    f'{"/".join(platforms)}'
  )
  return 0


@cli.reported
def main(argv: Optional[list[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  console.show_info()  # this project's lines, not orbax's notes on reading a training checkpoint
  return write(parser, args)


if __name__ == '__main__':
  sys.exit(main())
