"""Segments the objects of your own video, given their masks in the first frame.

  python -m gsfm_jax.predict --checkpoint runs/main --video clip.mp4 --mask first.png --out out/clip
  python -m gsfm_jax.predict --checkpoint GSFM.pth --video frames/ --mask cat.png --mask dog.png --out out/x
      [--later_mask 40:bird.png]   # an object that enters at frame 40 (the next id)
      [--resize short:480]         # network size: shorter side 480 (or long:864, or none); outputs stay
                                   # at the video's size
      [--probabilities]            # also prob/<frame>.npy, (H, W, K+1) float16, background first

Writes OUT/masks/<frame>.png (palette PNGs with your object ids), OUT/overlay.mp4 (in the same colours),
OUT/overlay_last.png and OUT/summary.json (seconds, frames/s after compilation, compiled programs). Frames
are decoded and results written chunk by chunk, so host memory does not grow with the video; with
--capacity N neither does device memory.
The checkpoint is a training workdir (its config gives the network), an exported .npz or variables folder,
or an official GSFM/STCN .pth. Every input is checked before anything runs; the outputs are written to a new
folder that replaces OUT only when the run succeeds (an OUT with files in it needs --overwrite).
"""
import argparse
import json
import os
import sys
import time
from typing import NamedTuple, Optional

import numpy as np

from gsfm_jax import console
from gsfm_jax.inference import media
from gsfm_jax.progress import Rate

MAX_OBJECTS = 8
DTYPES = ('float32', 'bfloat16', 'auto')


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


class Inputs(NamedTuple):
  video: media.VideoReader
  labels: dict[int, np.ndarray]   # {frame: (H, W) indices 0 … K}
  user_ids: np.ndarray            # (K+1,) uint8: the user's id of index 0 … K (0 first)
  notes: list[str]


def read_inputs(args) -> Inputs:
  """The video (opened, not decoded), the masks as indices 0 … K and the user's ids; every file is checked."""
  video = media.VideoReader(args.video)
  if len(video) < 2:
    raise media.InputError(f'{args.video}: only one frame; there is nothing to propagate to')
  first = media.read_mask(args.mask, video.size, args.mask_resize)
  notes = list(first.notes)
  user_ids = [int(i) for i in np.unique(first.labels) if i > 0]
  if not user_ids:
    raise media.InputError(f'{", ".join(args.mask)}: the first mask has no object (every pixel is 0)')
  labels = {0: first.labels}
  for spec in args.later_mask:
    frame, _, path = spec.partition(':')
    if not frame.isdigit() or not path or not 0 < int(frame) < len(video):
      raise media.InputError(f'--later_mask {spec}: expected FRAME:PATH with 0 < FRAME < {len(video)}')
    mask = media.read_mask([path], video.size, args.mask_resize)
    notes += mask.notes
    new = [int(i) for i in np.unique(mask.labels) if i > 0 and i not in user_ids]
    if not new:
      raise media.InputError(f'{path}: no object that is not already known ({user_ids})')
    labels[int(frame)] = np.where(np.isin(mask.labels, new), mask.labels, 0)
    user_ids += new
  if len(user_ids) > args.max_objects:
    raise media.InputError(f'{args.mask[0]}: {len(user_ids)} objects (ids {user_ids[:10]}), more than '
                           f'--max_objects {args.max_objects}')
  to_index = media.index_lookup(user_ids)
  return Inputs(video, {t: to_index[m] for t, m in labels.items()}, np.array([0] + user_ids, np.uint8), notes)


def check_flags(args) -> None:
  """Flag values out of range, named before anything runs."""
  for flag in ('top_k', 'mem_every', 'max_objects', 'capacity'):
    value = getattr(args, flag)
    if value is not None and value < 1:
      raise media.InputError(f'--{flag} {value}: must be at least 1')
  if args.dtype not in DTYPES:
    raise media.InputError(f'--dtype {args.dtype}: expected one of {", ".join(DTYPES)}')


def write_outputs(folder: str, chunks, inputs: Inputs, probabilities: bool, progress) -> None:
  """Masks, probabilities and the overlay video, chunk by chunk as they come back; the last frame's overlay."""
  video = media.OverlayVideo(os.path.join(folder, 'overlay.mp4'), inputs.video.size, inputs.video.fps)
  if probabilities:
    os.makedirs(os.path.join(folder, 'prob'), exist_ok=True)
  last = None
  for chunk in chunks:
    names = inputs.video.names[chunk.start:chunk.start + len(chunk.labels)]
    ids = inputs.user_ids[chunk.labels]
    media.write_masks(os.path.join(folder, 'masks'), names, ids)
    if probabilities:
      for name, prob in zip(names, chunk.prob):
        np.save(os.path.join(folder, 'prob', f'{name}.npy'), prob.astype(np.float16))
    video.write(chunk.frames, ids)
    last = (chunk.frames[-1], ids[-1])
    progress(chunk.start + len(chunk.labels))
  video.close()
  from PIL import Image
  from gsfm_jax.visualize import overlay
  Image.fromarray(overlay(*last)).save(os.path.join(folder, 'overlay_last.png'))


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n', 2)[2])
  parser.add_argument('--checkpoint', required=True, help='training workdir, .npz, variables folder or official .pth')
  parser.add_argument('--video', required=True, help='video file or folder of frames')
  parser.add_argument('--mask', required=True, action='append', help='first-frame mask (palette PNG, grayscale ids '
                      'or a binary mask), or one binary PNG per object (repeat --mask)')
  parser.add_argument('--later_mask', action='append', default=[], help='FRAME:PATH, objects entering later')
  parser.add_argument('--mask_resize', default='none', choices=media.MASK_RESIZE,
                      help='a mask of another size than the frames: refuse (none) or resize it (nearest)')
  parser.add_argument('--out', required=True, help='output folder (refused if it holds files, unless --overwrite)')
  parser.add_argument('--overwrite', action='store_true', help="replace the outputs of an earlier run in --out")
  parser.add_argument('--resize', default='none', help="network input size: 'none', 'short:N' or 'long:N'; the "
                      "outputs stay at the video's size")
  parser.add_argument('--probabilities', action='store_true', help='also write per-frame probabilities')
  parser.add_argument('--max_objects', type=int, default=MAX_OBJECTS)
  parser.add_argument('--top_k', type=int, default=50)
  parser.add_argument('--mem_every', type=int, default=3)
  parser.add_argument('--capacity', type=int, default=None,
                      help='memory frames kept (default: all); with it a video of any length runs in constant memory')
  parser.add_argument('--dtype', default='float32', help="compute dtype: float32, bfloat16 or auto")
  args = parser.parse_args(argv)
  console.show_info()   # the engine logs each new compiled program
  try:
    check_flags(args)
    output = media.OutputFolder(args.out, args.overwrite)
    inputs = read_inputs(args)
    resized = parse_resize(args.resize, inputs.video.size)
    from gsfm_jax.checkpoint import inference_model
    from gsfm_jax.inference import Propagator, Protocol
    model, variables = inference_model(args.checkpoint, args.dtype)
    protocol = Protocol(top_k=args.top_k, mem_every=args.mem_every, capacity=args.capacity,
                        memory_rule='absolute' if list(inputs.labels) == [0] else 'since_last')
  except (media.InputError, ValueError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  for note in inputs.notes:
    print(f'note: {note}', flush=True)
  engine = Propagator(model, variables, protocol)
  total = len(inputs.video)
  meter = Rate(total)

  def progress(done: int) -> None:
    if not meter.started:   # the first chunk compiles: rates and the ETA count from its end
      meter.begin(done)
      print(f'frames {done}/{total} ({100 * done / total:.0f} %) | compiled', flush=True)
      return
    meter.update(done)
    print(f'frames {done}/{total} ({100 * done / total:.0f} %) | {meter.rate:.2f} frames/s | ETA {meter.eta()}',
          flush=True)

  began = time.perf_counter()
  try:
    with output as folder:
      chunks = engine.chunks(inputs.video, inputs.labels, resized=resized, keep_prob=args.probabilities)
      write_outputs(folder, chunks, inputs, args.probabilities, progress)
      with open(os.path.join(folder, 'summary.json'), 'w') as f:
        json.dump({'frames': total, 'objects': inputs.user_ids[1:].tolist(), 'seconds': time.perf_counter() - began,
                 'frames_per_s': meter.overall() if total > protocol.chunk else None,   # after the compiling chunk
                 'compiled_programs': len(engine.compiled)}, f, indent=2)
  except media.InputError as error:   # a frame that cannot be decoded, found when it is read
    print(f'error: {error} (nothing written to {args.out})', file=sys.stderr)
    return 2
  speed = (f'{meter.overall():.2f} frames/s after the first chunk, which compiles' if total > protocol.chunk
           else f'{time.perf_counter() - began:.1f} s with compilation')
  print(f'{total} frames, {len(inputs.user_ids) - 1} object(s), {speed}; written to {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
