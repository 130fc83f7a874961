"""Segments the objects of your own videos, given their masks in the first frame.

  python -m gsfm_jax.predict --checkpoint runs/main --video clip.mp4 --mask first.png --out out/clip
  python -m gsfm_jax.predict --checkpoint runs/main --videos footage/ --out out/footage   # many videos
  python -m gsfm_jax.predict --checkpoint GSFM.pth --video frames/ --mask cat.png --mask dog.png --out out/x
      [--later_mask 40:bird.png]   # an object that enters at frame 40 (the next id)
      [--correct 60:fixed.png]     # every object's mask at frame 60 (it replaces the prediction there)
      [--resize short:480]         # network size: shorter side 480 (or long:864, or none); outputs stay
                                   # at the video's size
      [--probabilities]            # also prob/<frame>.npy, (H, W, K+1) float16, background first

Writes OUT/masks/<frame>.png (palette PNGs with your object ids), OUT/overlay.mp4 (in the same colours),
OUT/overlay_last.png and OUT/summary.json (seconds, seconds compiling, frames/s = frames / the seconds not
spent compiling, for any length, and compiled programs). Frames
are decoded and results written chunk by chunk, so host memory does not grow with the video; with
--capacity N neither does device memory.
--videos FOLDER: every video file (.mp4 .avi .mov .mkv) and every folder of frames in FOLDER, each with its
first-frame mask beside it as NAME.png (clip.mp4 -> clip.png, frames folder walk/ -> walk.png). --videos
LIST.txt: one video per line, `VIDEO MASK [MASK …]` (paths relative to the list; # starts a comment).
Each video's outputs go to OUT/<NAME>/ as above, OUT/summary.json lists them all; the videos run side by
side on every local device (--devices N: the first N), longest first. A video that fails is named and the
others' outputs are kept (exit status 1).
The checkpoint is a training workdir (its config gives the network), an exported .npz or variables folder,
or an official GSFM/STCN .pth. Every input is checked before anything runs; the outputs are written to a new
folder that replaces OUT only when the run succeeds (an OUT with files in it needs --overwrite).
"""

import argparse
import json
import os
import sys
import threading
import time
from typing import Callable, NamedTuple, Optional

import numpy as np

from gsfm_jax import cli, console
from gsfm_jax.inference import media
from gsfm_jax.progress import Rate, compile_seconds

MAX_OBJECTS = 8


class Inputs(NamedTuple):
  video: media.VideoReader
  labels: dict[int, np.ndarray]  # {frame: (H, W) indices 0 … K}
  user_ids: np.ndarray  # (K+1,) uint8: the user's id of index 0 … K (0 first)
  notes: list[str]
  corrected: tuple[int, ...] = ()  # labelled frames whose mask replaces every object's prediction


def read_inputs(args, video: Optional[media.VideoReader] = None) -> Inputs:
  """The video (opened, not decoded; or `video`, args.video opened before), the masks as indices 0 … K and the
  user's ids; every file is checked."""
  video = video or media.VideoReader(args.video)
  if len(video) < 2:
    raise media.InputError(f'{args.video}: only one frame; there is nothing to propagate to')
  first = media.read_mask(args.mask, video.size, args.mask_resize)
  notes = list(first.notes)
  user_ids = [int(i) for i in np.unique(first.labels) if i > 0]
  if not user_ids:
    raise media.InputError(f'{", ".join(args.mask)}: the first mask has no object (every pixel is 0)')
  labels, corrected = {0: first.labels}, []
  for spec, correction in [(s, False) for s in args.later_mask] + [(s, True) for s in args.correct]:
    flag = '--correct' if correction else '--later_mask'
    frame, _, path = spec.partition(':')
    if not frame.isdigit() or not path or not 0 < int(frame) < len(video):
      raise media.InputError(f'{flag} {spec}: expected FRAME:PATH with 0 < FRAME < {len(video)}')
    if int(frame) in labels:
      raise media.InputError(f'{flag} {spec}: frame {frame} already has a mask (one mask per frame)')
    mask = media.read_mask([path], video.size, args.mask_resize)
    notes += mask.notes
    new = [int(i) for i in np.unique(mask.labels) if i > 0 and i not in user_ids]
    if not new and not correction:
      raise media.InputError(f'{path}: no object that is not already known ({user_ids})')
    labels[int(frame)] = mask.labels if correction else np.where(np.isin(mask.labels, new), mask.labels, 0)
    corrected += [int(frame)] if correction else []
    user_ids += new
  if len(user_ids) > args.max_objects:
    raise media.InputError(
      f'{args.mask[0]}: {len(user_ids)} objects (ids {user_ids[:10]}), more than --max_objects {args.max_objects}'
    )
  to_index = media.index_lookup(user_ids)
  labels = {t: to_index[m] for t, m in labels.items()}
  return Inputs(video, labels, np.array([0] + user_ids, np.uint8), notes, tuple(sorted(corrected)))


def write_outputs(folder: str, chunks, inputs: Inputs, probabilities: bool, progress) -> None:
  """Masks, probabilities and the overlay video, chunk by chunk as they come back; the last frame's overlay."""
  os.makedirs(folder, exist_ok=True)
  video = media.OverlayVideo(os.path.join(folder, 'overlay.mp4'), inputs.video.size, inputs.video.fps)
  if probabilities:
    os.makedirs(os.path.join(folder, 'prob'), exist_ok=True)
  last = None
  for chunk in chunks:
    names = inputs.video.names[chunk.start : chunk.start + len(chunk.labels)]
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


class Job(NamedTuple):
  """One video to segment: its output name (None: the single video of --video), inputs and network size."""

  name: Optional[str]
  inputs: Inputs
  resized: Optional[tuple[int, int]]


def batch_list(path: str) -> list[tuple[str, list[str]]]:
  """--videos: a folder (videos and frame folders, each with NAME.png beside it) or a list file
  (`VIDEO MASK [MASK …]` per line) -> [(video, [mask, …])]."""
  if os.path.isdir(path):
    entries = sorted(os.listdir(path))
    videos = [n for n in entries if os.path.isdir(os.path.join(path, n)) or n.lower().endswith(media.VIDEO_EXTENSIONS)]
    if not videos:
      raise media.InputError(
        f'--videos {path}: no video file ({", ".join(media.VIDEO_EXTENSIONS)}) or frame folder in it'
      )
    pairs = []
    for name in videos:
      mask = os.path.join(path, os.path.splitext(name)[0] + '.png')
      if not os.path.isfile(mask):
        raise media.InputError(
          f'{os.path.join(path, name)}: its first-frame mask {mask} is missing (--videos FOLDER '
          'pairs each video NAME.mp4 or frame folder NAME/ with NAME.png)'
        )
      pairs.append((os.path.join(path, name), [mask]))
    return pairs
  if not os.path.isfile(path):
    raise media.InputError(f'--videos {path}: no such folder or list file')
  base, pairs = os.path.dirname(path), []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      fields = line.split('#', 1)[0].split()
      if not fields:
        continue
      if len(fields) < 2:
        raise media.InputError(f'{path}:{number}: expected VIDEO MASK [MASK …], got {line.strip()!r}')
      pairs.append((os.path.join(base, fields[0]), [os.path.join(base, m) for m in fields[1:]]))
  if not pairs:
    raise media.InputError(f'--videos {path}: lists no video (lines: VIDEO MASK [MASK …])')
  return pairs


def read_jobs(args) -> list[Job]:
  """Every video of the command line, each checked (video, masks, sizes) before anything runs."""
  if args.videos is None:
    if not args.video or not args.mask:
      raise media.InputError('give --video and --mask (one video), or --videos (many)')
    inputs = read_inputs(args)
    return [Job(None, inputs, media.parse_resize(args.resize, inputs.video.size))]
  if args.video or args.mask or args.later_mask or args.correct:
    raise media.InputError(
      '--videos: the masks come from its naming rule; leave out --video, --mask, --later_mask and --correct'
    )
  jobs = []
  for video, masks in batch_list(args.videos):
    inputs = read_inputs(
      argparse.Namespace(**{**vars(args), 'video': video, 'mask': masks, 'later_mask': [], 'correct': []})
    )
    jobs.append(
      Job(
        os.path.splitext(os.path.basename(video.rstrip('/')))[0],
        inputs,
        media.parse_resize(args.resize, inputs.video.size),
      )
    )
  names = [j.name for j in jobs]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise media.InputError(
      f'--videos {args.videos}: more than one video is named {twice[0]} (outputs go to OUT/<name>)'
    )
  return jobs


def segment(engine, job: Job, folder: str, probabilities: bool, show: Optional[Callable[[str], None]]) -> dict:
  """One video into `folder` (masks, overlay, summary.json); show(line) after each chunk. -> its summary."""
  total, meter, began = len(job.inputs.video), Rate(len(job.inputs.video)), time.perf_counter()
  compiling = compile_seconds()

  def progress(done: int) -> None:
    cli.raise_if_interrupted()
    if not meter.started:  # the first chunk compiles: rates and the ETA count from its end
      meter.begin(done)
      line = 'compiled'
    else:
      meter.update(done)
      line = f'{meter.rate:.2f} frames/s | ETA {meter.eta()}'
    if show is not None:
      show(f'frames {done}/{total} ({100 * done / total:.0f} %) | {line}')

  chunks = engine.chunks(
    job.inputs.video, job.inputs.labels, resized=job.resized, keep_prob=probabilities, corrected=job.inputs.corrected
  )
  write_outputs(folder, chunks, job.inputs, probabilities, progress)
  seconds, compiled = time.perf_counter() - began, compile_seconds() - compiling
  summary = {
    'frames': total,
    'objects': job.inputs.user_ids[1:].tolist(),
    'seconds': seconds,
    'compiling_seconds': compiled,
    'frames_per_s': total / max(seconds - compiled, 1e-9),  # compiling left out; decoding and writing in
    'compiled_programs': len(engine.compiled),
  }
  with open(os.path.join(folder, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  return summary


def build_parser() -> cli.Parser:
  parser = cli.Parser(__doc__)
  parser.add_checkpoint()
  parser.add_argument('--video', help='video file or folder of frames')
  parser.add_argument(
    '--mask',
    action='append',
    help='first-frame mask (palette PNG, grayscale ids or a binary mask), or one binary PNG per object (repeat --mask)',
  )
  parser.add_argument('--videos', help='many videos: a folder (each with NAME.png beside it) or a list file')
  parser.add_argument('--later_mask', action='append', default=[], help='FRAME:PATH, objects entering later')
  parser.add_argument(
    '--correct',
    action='append',
    default=[],
    help="FRAME:PATH, every object's mask at a later frame: it replaces the prediction there (a correction)",
  )
  parser.add_argument(
    '--mask_resize',
    default='none',
    choices=media.MASK_RESIZE,
    help='a mask of another size than the frames: refuse (none) or resize it (nearest)',
  )
  parser.add_output()
  parser.add_argument(
    '--resize',
    default='none',
    help="network input size: 'none', 'short:N' or 'long:N'; the outputs stay at the video's size",
  )
  parser.add_argument('--probabilities', action='store_true', help='also write per-frame probabilities')
  parser.add_count('max_objects', MAX_OBJECTS, 'most objects in a video')
  parser.add_count('top_k', 50, 'memory entries each query pixel reads')
  parser.add_count('mem_every', 3, 'a memory frame every N frames')
  parser.add_count(
    'capacity', None, 'memory frames kept (default: all); with it a video of any length runs in constant memory'
  )
  parser.add_dtype()
  parser.add_devices()
  return parser


def prepare(parser: cli.Parser, args):
  """Every flag, file and video checked, the weights read: -> (output folder, jobs, engines)."""
  parser.check(args)
  output = media.OutputFolder(args.out, args.overwrite)
  jobs = read_jobs(args)
  from gsfm_jax import weights
  from gsfm_jax.inference import parallel

  devices = parallel.local_devices(args.devices)
  model, variables = weights.load_for_inference(args.checkpoint, args.dtype, args.model)
  protocol = protocol_for(args, [j.inputs for j in jobs])
  for job in jobs:
    for note in job.inputs.notes:
      print(f'note: {job.name + ": " if job.name else ""}{note}', flush=True)
  return output, jobs, parallel.engines(model, variables, protocol, devices[: len(jobs)])


def protocol_for(args, inputs: list[Inputs]):
  """The memory protocol of --top_k, --mem_every and --capacity: the DAVIS engine's rule for videos labelled
  only at frame 0, the YouTube-VOS engine's where masks are given later."""
  from gsfm_jax.inference import Protocol

  return Protocol(
    top_k=args.top_k,
    mem_every=args.mem_every,
    capacity=args.capacity,
    memory_rule='absolute' if all(list(i.labels) == [0] for i in inputs) else 'since_last',
  )


def run_one(engine, job: Job, output: media.OutputFolder, args) -> int:
  """The single video of --video into --out; -> the exit status."""
  try:
    with output as folder:
      summary = segment(engine, job, folder, args.probabilities, lambda line: print(line, flush=True))
  except media.InputError as error:  # a frame that cannot be decoded, found when it is read
    raise media.InputError(f'{error} (nothing written to {args.out})') from None
  print(
    f'{summary["frames"]} frames, {len(summary["objects"])} object(s), {summary["frames_per_s"]:.2f} frames/s '
    f'({summary["compiling_seconds"]:.1f} s of compiling left out); written to {args.out}'
  )
  return 0


@cli.reported
def main(argv: Optional[list[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  console.show_info()  # the engine logs each new compiled program

  def work() -> int:
    output, jobs, engines = prepare(parser, args)
    if args.videos is not None:
      return run_batch(engines, jobs, output, args)
    return run_one(engines[0], jobs[0], output, args)

  return work()


def run_batch(workers: list, jobs: list[Job], output: media.OutputFolder, args) -> int:
  """Every job over the devices of `workers`, into OUT/<name>/; OUT/summary.json. -> the exit status."""
  from gsfm_jax.inference import parallel

  lengths = [len(j.inputs.video) for j in jobs]
  meter, lock, done, began = Rate(sum(lengths)), threading.Lock(), [0, 0], time.perf_counter()

  def work(engine, job: Job) -> dict:
    with media.whole_folder(os.path.join(out, job.name)) as folder:
      summary = segment(engine, job, folder, args.probabilities, None)
    with lock:
      done[0], done[1] = done[0] + 1, done[1] + summary['frames']
      if meter.started:
        meter.update(done[1])
      else:  # rates and the ETA count from the end of the first video, which compiles
        meter.begin(done[1])
      rate = f' | {meter.rate:.2f} frames/s | ETA {meter.eta()}' if done[0] > 1 else ''
      print(
        f'[{done[0]}/{len(jobs)}] {job.name}: {summary["frames"]} frames ({engine.device}) | '
        f'{done[1]}/{meter.total} frames{rate}',
        flush=True,
      )
    return summary

  with output as out:
    summaries, failures = parallel.run_all(workers, jobs, lengths, work)
    seconds = time.perf_counter() - began
    frames = sum(s['frames'] for s in summaries.values())
    with open(os.path.join(out, 'summary.json'), 'w') as f:
      json.dump(
        {
          'videos': {jobs[i].name: s for i, s in sorted(summaries.items())},
          'failed': {jobs[i].name: e for i, e in sorted(failures.items())},
          'devices': len(workers),
          'seconds': seconds,
          'frames_per_s': frames / seconds,
        },
        f,
        indent=2,
      )
  for i, error in sorted(failures.items()):
    print(f'error: {jobs[i].name} ({jobs[i].inputs.video.path}) failed: {error}', file=sys.stderr)
  print(
    f'{len(summaries)} of {len(jobs)} videos, {frames} frames in {seconds:.1f} s ({frames / seconds:.2f} frames/s '
    f'with compilation, {len(workers)} device(s)); written to {args.out}'
  )
  return 1 if failures else 0


if __name__ == '__main__':
  sys.exit(main())
