"""Inference speed and memory: frames/s of the scan engine on a synthetic video, where the time goes, and
the longest video that fits.

  python bench/inference.py                                   # 480×864 (DAVIS after padding), 60 frames,
                                                              # 1, 2 and 5 objects, float32 and bfloat16
  python bench/inference.py --frames 12 --objects 2 --dtypes float32 --repeats 3     # a quick CPU run
  python bench/inference.py --profile /tmp/trace              # + a profiler trace: time per network part
  python bench/inference.py --longest --capacity 8            # the longest video, unbounded / bounded memory
  python bench/inference.py --transfers                       # host↔device bytes, weights kept on the device

For each setting: the whole video through `Propagator.segment` (memory every 3rd frame, top-k 50, compile
excluded: a warm-up video first), as the median of --repeats runs, and a split of one frame's work into
encode (key encoder + LFM, and the value encoder of memory frames, amortised by mem_every), match (affinity
+ top-k + readout over the memory a mid-video frame sees) and decode (the decoder for every object), each
jitted alone and timed as medians. Random weights: the speed does not depend on them. GFLOP/frame: XLA's
cost analysis of the four parts (the value encoder counted once per mem_every frames); MFU against the
device's peak (`common.peak_flops`).

--longest: the device bytes of the compiled chunk program (XLA's buffer assignment: weights, memory bank,
a chunk of frames and outputs, temporaries such as the affinity) for growing memory banks, and from it the
most memory frames, so the longest video (× mem_every frames), that fits in 90 % of the device; with
--capacity C (bounded memory) the footprint does not grow with the video.

--transfers: the bytes sent to the device (frames) and back (labels) per chunk call, and the video's time
with the weights kept on the device (what the engine does) against host weights sent with every chunk call
(what it did with weights loaded from a file, before 2026-11-22), in the same run.
"""

import functools
import os
import sys
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import device_memory_bytes, flops_of, footprint, largest_within, machine, median_seconds, peak_flops  # noqa: E402
from profile_ops import print_parts, profile  # noqa: E402

from gsfm_jax import cli  # noqa: E402
from gsfm_jax.inference import Propagator, Protocol, memory_bank  # noqa: E402
from gsfm_jax.models import GSFM, init_variables  # noqa: E402

MEM_EVERY, TOP_K = 3, 50


def synthetic_video(frames: int, height: int, width: int, objects: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(0)
  video = rng.integers(0, 255, (frames, height, width, 3), dtype=np.uint8)
  labels = np.zeros((height, width), np.uint8)
  for k in range(objects):
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    labels[top : top + height // 4, left : left + width // 6] = k + 1
  return video, labels


class RecordingEngine(Propagator):
  """A Propagator that keeps the abstract arguments of its last chunk call (to lower that program again)."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    program, self.last_call = self.chunk_program, None

    def record(*call_args, **call_kwargs):
      self.last_call = (jax.tree.map(_abstract, call_args), call_kwargs)
      return program(*call_args, **call_kwargs)

    self.program, self.chunk_program = program, record

  def compiled_chunk(self, capacity: int = 0) -> Any:
    """The last chunk program compiled again, with a bank of `capacity` slots (0: as it was)."""
    (variables, consts, (bank, enabled), piece), kwargs = self.last_call
    if capacity:
      k, _, h, w, _ = bank.values.shape
      bank = jax.eval_shape(
        lambda: memory_bank.empty(capacity, k, h, w, self.model.key_dim, self.model.value_dim, self.model.dtype)
      )
    return self.program.lower(variables, consts, (bank, enabled), piece, **kwargs).compile()


def _abstract(x: Any) -> Any:
  return jax.ShapeDtypeStruct(x.shape, x.dtype) if isinstance(x, jax.Array) else x


def split_times(
  model: GSFM, variables, height: int, width: int, objects: int, memory_frames: int, top_k: int, repeats: int
) -> tuple[dict[str, float], float]:
  """(median seconds of one frame's encode, match and decode; the model FLOPs of one frame, with the value
  encoder amortised over mem_every frames, from XLA's cost analysis), at the engine's padded input size (the next
  multiples of 16)."""
  height, width = -(-height // 16) * 16, -(-width // 16) * 16
  frame = jnp.zeros((1, height, width, 3))
  keys = jax.jit(lambda v, f: model.apply(v, f, method=GSFM.encode_key))(variables, frame)
  masks = jnp.zeros((1, height, width, objects))
  h, w = height // 16, width // 16
  bank = memory_bank.empty(memory_frames, objects, h, w, model.key_dim, model.value_dim, model.dtype)
  bank = bank._replace(
    valid=jnp.ones_like(bank.valid),
    frame=jnp.arange(memory_frames, dtype=jnp.int32),
    keys=jax.random.normal(jax.random.PRNGKey(0), bank.keys.shape, bank.keys.dtype),
  )
  encode_key = jax.jit(lambda v, f: model.apply(v, f, method=GSFM.encode_key))
  encode_value = jax.jit(lambda v, f, k, m: model.apply(v, f, k, m, method=GSFM.encode_value))
  match = jax.jit(lambda b, q: memory_bank.read(b, q, top_k, True, model.dtype))
  memory = match(bank, keys.k16[0])
  decode = jax.jit(lambda v, k, m: model.apply(v, k, m, None, method=GSFM.decode).logits)
  parts = {
    'encode_key': (encode_key, (variables, frame)),
    'encode_value': (encode_value, (variables, frame, keys.f16, masks)),
    'match': (match, (bank, keys.k16[0])),
    'decode': (decode, (variables, keys, memory[None])),
  }
  flops = {name: flops_of(fn.lower(*args)) for name, (fn, args) in parts.items()}
  frame_flops = sum(flops.values()) - flops['encode_value'] * (1 - 1 / MEM_EVERY)
  return {name: median_seconds(fn, *args, repeats=repeats) for name, (fn, args) in parts.items()}, frame_flops


def report_profile(engine: RecordingEngine, video: np.ndarray, labels: np.ndarray, logdir: str) -> None:
  times = profile(lambda: engine.segment(video, {0: labels}).labels, [engine.compiled_chunk().as_text()], 1, logdir)
  total = times.total()
  print(f'  profile ({logdir}): op time {total:.2f} s per video ({1e3 * total / len(video):.0f} ms per frame)')
  print_parts(times)


def longest_video(engine: RecordingEngine, capacity: int, objects: int, budget: float) -> None:
  """Prints the bytes per memory slot and the longest video in unbounded memory, and the bounded footprint."""
  cost = functools.lru_cache()(lambda slots: footprint(engine.compiled_chunk(slots)))
  slots = largest_within(cost, budget, limit=1 << 20)
  per_slot = cost(slots) - cost(slots - 1)
  bounded = cost(capacity)
  print(
    f'| {engine.model.dtype.name} | {objects} | {per_slot / 2**20:.1f} | {slots} | '
    f'{MEM_EVERY * slots} | {capacity}: {bounded / 2**30:.2f} GiB, any length |',
    flush=True,
  )


def host_transfers(engine: RecordingEngine, video: np.ndarray, labels: np.ndarray, repeats: int) -> None:
  """Prints the bytes a video sends to and from the device per chunk, and the video's time with the weights
  on the device (as the engine keeps them) against host weights sent with every chunk call (as the engine
  did with weights loaded from a file)."""
  on_device = engine.variables
  weights = sum(x.nbytes for x in jax.tree.leaves(on_device))
  frames_up = engine.protocol.chunk * video[0].nbytes
  labels_down = engine.protocol.chunk * video[0, ..., 0].nbytes
  times = {}
  for where, variables in (('host, every chunk', jax.device_get(on_device)), ('device, once', on_device)):
    engine.variables = variables
    engine.segment(video, {0: labels})  # compile for these argument types
    times[where] = median_seconds(lambda: engine.segment(video, {0: labels}).labels, repeats=repeats)
  engine.variables = on_device
  base = times['host, every chunk']
  for where, seconds in times.items():
    up = frames_up + (weights if where.startswith('host') else 0)
    print(
      f'| weights on the {where} | {seconds:.2f} | {len(video) / seconds:.2f} | {base / seconds:.2f}× | '
      f'{up / 1e6:.1f} | {labels_down / 1e6:.1f} |',
      flush=True,
    )


def main(argv: Optional[list[str]] = None) -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--height', type=int, default=480)
  parser.add_argument('--width', type=int, default=864)
  parser.add_argument('--frames', type=int, default=60)
  parser.add_argument('--objects', type=int, nargs='+', default=[1, 2, 5])
  parser.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'])
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--chunk', type=int, default=16)
  parser.add_argument('--width_divisor', type=int, default=1, help='1: GSFM; 4: the demo network')
  parser.add_argument('--profile', help='write traces here and print where the time goes')
  parser.add_argument('--longest', action='store_true', help='the longest video that fits, instead of speed')
  parser.add_argument('--capacity', type=int, default=8, help='memory frames kept in bounded mode (--longest)')
  parser.add_argument('--memory_gib', type=float, help='device memory on a CPU (default: the host RAM)')
  parser.add_argument(
    '--transfers',
    action='store_true',
    help='host↔device bytes per chunk, and weights kept on the device vs sent per chunk',
  )
  args = parser.parse_args(argv)
  print(f'machine: {machine()}')
  print(
    f'{args.frames} frames of {args.height}×{args.width}, mem_every {MEM_EVERY}, top-k {TOP_K}, '
    f'width divisor {args.width_divisor}, medians of {args.repeats}'
  )
  if args.longest:
    capacity, source = device_memory_bytes(args.memory_gib)
    print(f'device memory: {capacity / 2**30:.1f} GiB ({source}); 90 % of it is the budget')
    print(
      '| dtype | objects | MiB per memory frame | memory frames that fit | longest video (frames) | '
      'bounded: capacity, footprint |'
    )
    print('|---|---|---|---|---|---|')
  elif args.transfers:
    print('| weights | video s | frames/s | speed-up | MB up per chunk | MB down per chunk |')
    print('|---|---|---|---|---|---|')
  else:
    print(
      '| dtype | objects | frames/s | video s | GFLOP/frame | MFU | encode_key ms | encode_value ms | match ms | '
      'decode ms |'
    )
    print('|---|---|---|---|---|---|---|---|---|---|')
  for dtype in args.dtypes:
    speed = not (args.longest or args.transfers)
    peak, peak_source = peak_flops(dtype) if speed else (None, '')  # a timed matmul: only for MFU
    model = GSFM(dtype=jnp.dtype(dtype), width_divisor=args.width_divisor)
    variables = init_variables(model, jax.random.PRNGKey(0))
    engine = RecordingEngine(model, variables, Protocol(top_k=TOP_K, mem_every=MEM_EVERY, chunk=args.chunk))
    for objects in args.objects:
      video, labels = synthetic_video(args.frames, args.height, args.width, objects)
      engine.segment(video, {0: labels})  # compile
      if args.longest:
        longest_video(engine, args.capacity, objects, 0.9 * capacity)
      if args.transfers:
        host_transfers(engine, video, labels, args.repeats)
      if not speed:
        continue
      seconds = median_seconds(lambda: engine.segment(video, {0: labels}).labels, repeats=args.repeats)
      split, flops = split_times(
        model, variables, args.height, args.width, objects, args.frames // 3 // 2 + 1, TOP_K, args.repeats
      )
      rate = flops * args.frames / seconds
      print(
        f'| {dtype} | {objects} | {args.frames / seconds:.2f} | {seconds:.2f} | {flops / 1e9:.0f} | '
        f'{100 * rate / peak:.1f} % | '
        + ' | '.join(f'{1000 * split[k]:.1f}' for k in ('encode_key', 'encode_value', 'match', 'decode'))
        + ' |',
        flush=True,
      )
      if args.profile:
        report_profile(engine, video, labels, os.path.join(args.profile, f'inference_{dtype}_{objects}obj'))
    if peak:
      print(f'peak of one device ({dtype}): {peak / 1e12:.2f} TFLOP/s ({peak_source})')


if __name__ == '__main__':
  main()
