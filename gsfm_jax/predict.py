"""Segments the objects of your own video, given their masks in the first frame.

  python -m gsfm_jax.predict --checkpoint runs/main --video clip.mp4 --mask first.png --out out/clip
  python -m gsfm_jax.predict --checkpoint GSFM.pth --video frames/ --mask cat.png --mask dog.png --out out/x
      [--later_mask 40:bird.png]   # an object that enters at frame 40 (the next id)
      [--resize short:480]         # network size: shorter side 480 (or long:864, or none); outputs stay
                                   # at the video's size
      [--probabilities]            # also prob/<frame>.npy, (H, W, K+1) float16, background first

Writes OUT/masks/<frame>.png (palette PNGs with your object ids), OUT/overlay.mp4, OUT/overlay_last.png and
OUT/summary.json (frames/s, compiled programs).
The checkpoint is a training workdir (its config gives the network), an exported .npz or variables folder,
or an official GSFM/STCN .pth. Every input is checked before anything is written; files already in OUT
are only replaced by complete new ones.
"""
import argparse
import json
import os
import sys
from typing import Optional

import numpy as np
from absl import logging

from gsfm_jax.inference import media
from gsfm_jax.progress import Rate

MAX_OBJECTS = 8


def parse_resize(text: str, size: tuple[int, int]) -> Optional[tuple[int, int]]:
  """'none' | 'short:N' | 'long:N' -> the network's (H, W) for frames of `size` (None: unchanged)."""
  if text == 'none':
    return None
  side, _, value = text.partition(':')
  if side not in ('short', 'long') or not value.isdigit() or int(value) < 16:
    raise media.InputError(f"--resize {text}: expected 'none', 'short:N' or 'long:N' with N ≥ 16")
  h, w = size
  scale = int(value) / (min(h, w) if side == 'short' else max(h, w))
  return max(1, round(h * scale)), max(1, round(w * scale))


def read_inputs(args) -> tuple[np.ndarray, float, list[str], dict[int, np.ndarray], np.ndarray]:
  """-> frames, fps, frame names, {frame: ids 0 … K}, and the user's ids of objects 1 … K."""
  frames, fps, names = media.read_video(args.video)
  if len(frames) < 2:
    raise media.InputError(f'{args.video}: only one frame; there is nothing to propagate to')
  first = media.read_mask(args.mask, frames.shape[1:3])
  user_ids = [int(i) for i in np.unique(first) if i > 0]
  if not user_ids:
    raise media.InputError(f'{", ".join(args.mask)}: the first mask has no object (every pixel is 0)')
  labels = {0: first}
  for spec in args.later_mask:
    frame, _, path = spec.partition(':')
    if not frame.isdigit() or not path or not 0 < int(frame) < len(frames):
      raise media.InputError(f'--later_mask {spec}: expected FRAME:PATH with 0 < FRAME < {len(frames)}')
    mask = media.read_mask([path], frames.shape[1:3])
    new = [int(i) for i in np.unique(mask) if i > 0 and i not in user_ids]
    if not new:
      raise media.InputError(f'{path}: no object that is not already known ({user_ids})')
    labels[int(frame)] = np.where(np.isin(mask, new), mask, 0)
    user_ids += new
  if len(user_ids) > args.max_objects:
    raise media.InputError(f'{args.mask[0]}: {len(user_ids)} objects, more than --max_objects {args.max_objects}')
  to_index = media.index_lookup(user_ids)
  return frames, fps, names, {t: to_index[m] for t, m in labels.items()}, np.array([0] + user_ids, np.uint8)


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n', 2)[2])
  parser.add_argument('--checkpoint', required=True, help='training workdir, .npz, variables folder or official .pth')
  parser.add_argument('--video', required=True, help='video file or folder of frames')
  parser.add_argument('--mask', required=True, action='append', help='first-frame mask (palette PNG), or one '
                      'binary PNG per object (repeat --mask)')
  parser.add_argument('--later_mask', action='append', default=[], help='FRAME:PATH, objects entering later')
  parser.add_argument('--out', required=True, help='output folder')
  parser.add_argument('--resize', default='none', help="network input size: 'none', 'short:N' or 'long:N'")
  parser.add_argument('--probabilities', action='store_true', help='also write per-frame probabilities')
  parser.add_argument('--max_objects', type=int, default=MAX_OBJECTS)
  parser.add_argument('--top_k', type=int, default=50)
  parser.add_argument('--mem_every', type=int, default=3)
  parser.add_argument('--capacity', type=int, default=None, help='memory frames kept (default: all)')
  parser.add_argument('--dtype', default='float32', help="compute dtype: float32, bfloat16 or auto")
  args = parser.parse_args(argv)
  logging.set_verbosity(logging.INFO)   # the engine logs each new compiled program
  try:
    frames, fps, names, labels, user_ids = read_inputs(args)
    resized = parse_resize(args.resize, frames.shape[1:3])
    from gsfm_jax.checkpoint import inference_model
    from gsfm_jax.inference import Propagator, Protocol
    model, variables = inference_model(args.checkpoint, args.dtype)
  except (media.InputError, ValueError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  protocol = Protocol(top_k=args.top_k, mem_every=args.mem_every, capacity=args.capacity,
                      memory_rule='absolute' if list(labels) == [0] else 'since_last')
  engine = Propagator(model, variables, protocol)
  meter = Rate(len(frames))

  def progress(done: int) -> None:
    meter.update(done)
    print(f'frames {done}/{len(frames)} ({100 * done / len(frames):.0f} %) | {meter.rate:.2f} frames/s | '
          f'ETA {meter.eta()}', flush=True)

  result = engine.segment(frames, labels, resized=resized, keep_prob=args.probabilities, progress=progress)
  media.write_masks(os.path.join(args.out, 'masks'), names, result.labels, user_ids)
  if args.probabilities:
    os.makedirs(os.path.join(args.out, 'prob'), exist_ok=True)
    for name, prob in zip(names, result.prob):
      np.save(os.path.join(args.out, 'prob', f'{name}.npy'), prob.astype(np.float16))
  media.write_overlay_video(os.path.join(args.out, 'overlay.mp4'), frames, result.labels, fps)
  from PIL import Image
  from gsfm_jax.visualize import overlay
  Image.fromarray(overlay(frames[-1], result.labels[-1])).save(os.path.join(args.out, 'overlay_last.png'))
  with open(os.path.join(args.out, 'summary.json'), 'w') as f:
    json.dump({'frames': len(frames), 'objects': user_ids[1:].tolist(), 'frames_per_s': meter.overall(),
               'compiled_programs': len(engine.compiled)}, f, indent=2)
  print(f'{len(frames)} frames, {len(user_ids) - 1} object(s), {meter.overall():.2f} frames/s '
        f'(first call includes compilation); written to {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
