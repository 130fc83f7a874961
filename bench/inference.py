"""Inference speed: frames/s of the scan engine on a synthetic video, and where the time goes.

  python bench/inference.py                                   # 480×864 (DAVIS after padding), 60 frames,
                                                              # 1, 2 and 5 objects, float32 and bfloat16
  python bench/inference.py --frames 12 --objects 2 --dtypes float32 --repeats 3     # a quick CPU run

For each setting: the whole video through `Propagator.segment` (memory every 3rd frame, top-k 50, compile
excluded: a warm-up video first), as the median of --repeats runs, and a split of one frame's work into
encode (key encoder + LFM, and the value encoder of memory frames, amortised by mem_every), match (affinity
+ top-k + readout over the memory a mid-video frame sees) and decode (the decoder for every object), each
jitted alone and timed as medians. Random weights: the speed does not depend on them.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gsfm_jax.inference import Propagator, Protocol, memory_bank  # noqa: E402
from gsfm_jax.models import GSFM, init_variables  # noqa: E402


def median_time(fn, repeats: int) -> float:
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def synthetic_video(frames: int, height: int, width: int, objects: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(0)
  video = rng.integers(0, 255, (frames, height, width, 3), dtype=np.uint8)
  labels = np.zeros((height, width), np.uint8)
  for k in range(objects):
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    labels[top:top + height // 4, left:left + width // 6] = k + 1
  return video, labels


def split_times(model: GSFM, variables, height: int, width: int, objects: int, memory_frames: int, top_k: int,
                repeats: int) -> dict[str, float]:
  """Median seconds of one frame's encode, match and decode."""
  frame = jnp.zeros((1, height, width, 3))
  keys = jax.jit(lambda v, f: model.apply(v, f, method=GSFM.encode_key))(variables, frame)
  masks = jnp.zeros((1, height, width, objects))
  h, w = height // 16, width // 16
  bank = memory_bank.empty(memory_frames, objects, h, w, dtype=model.dtype)
  bank = bank._replace(valid=jnp.ones_like(bank.valid), frame=jnp.arange(memory_frames, dtype=jnp.int32),
                       keys=jax.random.normal(jax.random.PRNGKey(0), bank.keys.shape, bank.keys.dtype))
  encode_key = jax.jit(lambda v, f: model.apply(v, f, method=GSFM.encode_key))
  encode_value = jax.jit(lambda v, f, k, m: model.apply(v, f, k, m, method=GSFM.encode_value))
  match = jax.jit(lambda b, q: memory_bank.read(b, q, top_k, True, model.dtype))
  memory = match(bank, keys.k16[0])
  decode = jax.jit(lambda v, k, m: model.apply(v, k, m, None, method=GSFM.decode).logits)
  return {'encode_key': median_time(lambda: encode_key(variables, frame), repeats),
          'encode_value': median_time(lambda: encode_value(variables, frame, keys.f16, masks), repeats),
          'match': median_time(lambda: match(bank, keys.k16[0]), repeats),
          'decode': median_time(lambda: decode(variables, keys, memory[None]), repeats)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--height', type=int, default=480)
  parser.add_argument('--width', type=int, default=864)
  parser.add_argument('--frames', type=int, default=60)
  parser.add_argument('--objects', type=int, nargs='+', default=[1, 2, 5])
  parser.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'])
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--chunk', type=int, default=16)
  args = parser.parse_args()
  device = jax.devices()[0]
  print(f'device: {device.platform} {device.device_kind}, jax {jax.__version__}; {args.frames} frames of '
        f'{args.height}×{args.width}, mem_every 3, top-k 50, medians of {args.repeats}')
  print('| dtype | objects | frames/s | video s | encode_key ms | encode_value ms | match ms | decode ms |')
  print('|---|---|---|---|---|---|---|---|')
  for dtype in args.dtypes:
    model = GSFM(dtype=jnp.dtype(dtype))
    variables = init_variables(model, jax.random.PRNGKey(0))
    engine = Propagator(model, variables, Protocol(chunk=args.chunk))
    for objects in args.objects:
      video, labels = synthetic_video(args.frames, args.height, args.width, objects)
      engine.segment(video, {0: labels})                     # compile
      seconds = median_time(lambda: engine.segment(video, {0: labels}).labels, args.repeats)
      split = split_times(model, variables, args.height, args.width, objects, args.frames // 3 // 2 + 1, 50,
                          args.repeats)
      print(f'| {dtype} | {objects} | {args.frames / seconds:.2f} | {seconds:.2f} | '
            + ' | '.join(f'{1000 * split[k]:.1f}' for k in ('encode_key', 'encode_value', 'match', 'decode')) + ' |',
            flush=True)


if __name__ == '__main__':
  main()
