"""Runs a benchmark end to end from a checkpoint, by the reference's protocols (spec §5, §7).

  python -m gsfm_jax.evaluate --checkpoint runs/main --benchmark davis17 --root data/DAVIS/2017/trainval \
      --split val --out out/d17_val            # palette PNGs, then J&F (the toolkit's two CSVs)
  python -m gsfm_jax.evaluate --checkpoint GSFM.pth --benchmark davis17 --root data/DAVIS/2017/test-dev \
      --split test-dev --out out/d17_td        # no ground truth: PNGs for the server
  python -m gsfm_jax.evaluate --checkpoint GSFM.pth --benchmark davis16 --root data/DAVIS/2016 \
      --image_set data/DAVIS/2017/trainval/ImageSets/2016/val.txt --out out/d16   # 0/255 PNGs, top-k 20
  python -m gsfm_jax.evaluate --checkpoint GSFM.pth --benchmark youtube --root data/YouTube --split valid \
      --out out/yv19                           # Annotations/ + a submission zip

DAVIS: 480p frames as they are, the first frame's objects, memory by absolute frame index.
YouTube-VOS: all frames from all_frames/<split>_all_frames/JPEGImages, shorter side resized to 480, objects
start at their first labelled frame, memory by distance from the last memory frame, original ids restored,
only the frames meta.json lists (from each video's first labelled frame on) are computed and written.
FPS is frames / processing time with I/O excluded, as the reference reports it. Frames are decoded and masks
written chunk by chunk: host memory does not grow with a video's length.
"""
import argparse
import json
import os
import sys
import time
import zipfile
from typing import Iterator, Optional

import numpy as np
from PIL import Image

from data_pipelines.palette import write_palette_png
from gsfm_jax import console
from gsfm_jax.evaluation import davis as davis_eval
from gsfm_jax.inference import Propagator, Protocol
from gsfm_jax.inference.engine import Chunk
from gsfm_jax.inference.media import InputError, OutputFolder, VideoReader, index_lookup

BENCHMARKS = ('davis17', 'davis16', 'youtube')


def _names(folder: str, extension: str) -> list[str]:
  return sorted(n[:-len(extension)] for n in os.listdir(folder) if n.endswith(extension))


class Timer:
  """Processing time of the propagation only (decoding frames and writing files excluded)."""

  def __init__(self):
    self.seconds, self.frames = 0.0, 0

  def chunks(self, engine: Propagator, video: VideoReader, labels: dict, **kwargs) -> Iterator[Chunk]:
    """engine.chunks(video, labels, …), timed without the reader's decoding or the caller's writing."""
    chunks = engine.chunks(video, labels, **kwargs)
    while True:
      start, decoding = time.perf_counter(), video.read_seconds
      chunk = next(chunks, None)
      self.seconds += time.perf_counter() - start - (video.read_seconds - decoding)
      if chunk is None:
        return
      self.frames += len(chunk.labels)
      yield chunk

  @property
  def fps(self) -> float:
    return self.frames / max(self.seconds, 1e-9)


def run_davis(engine: Propagator, root: str, sequences: list[str], out: str, binary: bool, timer: Timer) -> None:
  """Every sequence from its first annotation; PNGs out/<seq>/<frame>.png (palette, or 0/255 if binary)."""
  for i, seq in enumerate(sequences, 1):
    video = VideoReader(os.path.join(root, 'JPEGImages', '480p', seq))
    first = davis_eval.read_labels(os.path.join(root, 'Annotations', '480p', seq, video.names[0] + '.png'))
    first = (first > 0).astype(np.uint8) if binary else np.where(first == davis_eval.VOID, 0, first)
    os.makedirs(os.path.join(out, seq), exist_ok=True)
    for chunk in timer.chunks(engine, video, {0: first}):
      for name, labels in zip(video.names[chunk.start:], chunk.labels):
        path = os.path.join(out, seq, name + '.png')
        if binary:
          Image.fromarray((labels > 0).astype(np.uint8) * 255).save(path)
        else:
          write_palette_png(labels, path)
    print(f'[{i}/{len(sequences)}] {seq}: {len(video)} frames, {timer.fps:.2f} FPS so far', flush=True)


def run_youtube(engine: Propagator, root: str, split: str, out: str, short_side: int, timer: Timer) -> None:
  """The YouTube-VOS protocol: out/Annotations/<video>/<frame>.png."""
  with open(os.path.join(root, split, 'meta.json')) as f:
    meta = json.load(f)['videos']
  image_root = os.path.join(root, 'all_frames', f'{split}_all_frames', 'JPEGImages')
  for i, (video, info) in enumerate(sorted(meta.items()), 1):
    frames = VideoReader(os.path.join(image_root, video))
    names = frames.names
    required = {f for obj in info['objects'].values() for f in obj['frames']}
    given = {n: davis_eval.read_labels(os.path.join(root, split, 'Annotations', video, n + '.png'))
             for n in _names(os.path.join(root, split, 'Annotations', video), '.png')}
    ids = sorted({int(v) for m in given.values() for v in np.unique(m) if v > 0})
    to_index = index_lookup(ids)
    labels, seen = {}, set()
    for name in sorted(given):                       # each object counts from its first labelled frame
      new = [v for v in np.unique(given[name]) if v > 0 and v not in seen]
      if new:
        labels[names.index(name)] = np.where(np.isin(given[name], new), to_index[given[name]], 0)
        seen.update(new)
    first = min(labels)
    wanted = np.array([n in required and t >= first for t, n in enumerate(names)])
    h, w = frames.size
    resized = (short_side, int(w * short_side / h)) if h <= w else (int(h * short_side / w), short_side)
    back = np.array([0] + ids, np.uint8)
    folder = os.path.join(out, 'Annotations', video)
    os.makedirs(folder, exist_ok=True)
    for chunk in timer.chunks(engine, frames, labels, resized=resized, wanted=wanted):
      for t, frame_labels in enumerate(chunk.labels, chunk.start):
        if wanted[t]:
          write_palette_png(back[frame_labels], os.path.join(folder, names[t] + '.png'))
    print(f'[{i}/{len(meta)}] {video}: {int(wanted.sum())} frames written, {timer.fps:.2f} FPS so far', flush=True)


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n', 2)[2])
  parser.add_argument('--checkpoint', required=True, help='training workdir, .npz, variables folder or official .pth')
  parser.add_argument('--benchmark', required=True, choices=BENCHMARKS)
  parser.add_argument('--root', required=True, help='the benchmark folder (see the examples)')
  parser.add_argument('--split', default=None, help='davis17: val | test-dev; youtube: valid | test')
  parser.add_argument('--image_set', default=None, help='davis16: the 2016 val.txt (default ROOT/ImageSets/2016/val.txt)')
  parser.add_argument('--out', required=True, help='output folder (refused if it holds files, unless --overwrite)')
  parser.add_argument('--overwrite', action='store_true', help='replace the outputs of an earlier run in --out')
  parser.add_argument('--top_k', type=int, default=None, help='default 50 (davis16: 20, as its reference script)')
  parser.add_argument('--mem_every', type=int, default=3)
  parser.add_argument('--short_side', type=int, default=480, help='youtube: shorter side of the network input')
  parser.add_argument('--dtype', default='float32', help='compute dtype: float32, bfloat16 or auto')
  args = parser.parse_args(argv)
  console.show_info()   # the engine logs each new compiled program
  youtube = args.benchmark == 'youtube'
  try:
    check_arguments(args)
    output = OutputFolder(args.out, args.overwrite)
    from gsfm_jax.checkpoint import inference_model
    model, variables = inference_model(args.checkpoint, args.dtype)
  except ValueError as error:   # InputError and ConversionError (a missing or broken checkpoint) among them
    print(f'error: {error}', file=sys.stderr)
    return 2
  protocol = Protocol(top_k=args.top_k or (20 if args.benchmark == 'davis16' else 50), mem_every=args.mem_every,
                      memory_rule='since_last' if youtube else 'absolute')
  engine, timer = Propagator(model, variables, protocol), Timer()
  if youtube:
    with output as folder:
      run_youtube(engine, args.root, args.split or 'valid', folder, args.short_side, timer)
    archive = zip_annotations(args.out)
    print(f'{timer.frames} frames, {timer.fps:.2f} FPS (I/O excluded); submission: {archive}')
    return 0
  binary = args.benchmark == 'davis16'
  split = args.split or 'val'
  annotations, sequences = davis_eval.davis_sequences(args.root, split, binary, args.image_set)
  with output as folder:
    run_davis(engine, args.root, sequences, folder, binary, timer)
    print(f'{timer.frames} frames, {timer.fps:.2f} FPS (I/O excluded), {len(engine.compiled)} compiled program(s)')
    if all(len(os.listdir(os.path.join(annotations, s))) > 1 for s in sequences):   # full ground truth: score it
      scores = davis_eval.evaluate_folders(folder, annotations, sequences, binary)
      for name, value in davis_eval.summarise(scores).items():
        print(f'{name:9s} {value:.3f}')
      davis_eval.write_csvs(scores, folder, split)
      print('written:', *(os.path.join(args.out, f'{kind}_results-{split}.csv') for kind in ('global', 'per-sequence')))
  return 0


def check_arguments(args) -> None:
  """The benchmark folder's layout and the flag values, before any work; InputError names what is wrong."""
  for flag in ('mem_every', 'top_k'):
    value = getattr(args, flag)
    if value is not None and value < 1:
      raise InputError(f'--{flag} {value}: must be at least 1')
  if args.short_side < 16:
    raise InputError(f'--short_side {args.short_side}: must be at least 16')
  if args.dtype not in ('float32', 'bfloat16', 'auto'):
    raise InputError(f'--dtype {args.dtype}: expected float32, bfloat16 or auto')
  if args.benchmark == 'youtube':
    split = args.split or 'valid'
    needed = [os.path.join(args.root, split, 'meta.json'),
              os.path.join(args.root, 'all_frames', f'{split}_all_frames', 'JPEGImages')]
    hint = 'the YouTube-VOS folder holding <split>/meta.json, <split>/Annotations and all_frames/'
  else:
    needed = [os.path.join(args.root, 'JPEGImages', '480p'), os.path.join(args.root, 'Annotations', '480p')]
    hint = ('the DAVIS folder holding JPEGImages/480p, Annotations/480p and ImageSets/ (2017: '
            'DAVIS/2017/trainval or test-dev; 2016: DAVIS/2016)')
  missing = [p for p in needed if not os.path.exists(p)]
  if missing:
    raise InputError(f'--root {args.root}: {missing[0]} not found; --root is {hint}')
  if args.benchmark != 'youtube':
    davis_eval.davis_sequences(args.root, args.split or 'val', args.benchmark == 'davis16', args.image_set)


def zip_annotations(out: str) -> str:
  """OUT.zip with OUT/Annotations/ at its root (the YouTube-VOS submission); returns its path."""
  archive = out.rstrip('/') + '.zip'
  with zipfile.ZipFile(archive + '.tmp', 'w', zipfile.ZIP_DEFLATED) as z:
    for folder, _, files in sorted(os.walk(os.path.join(out, 'Annotations'))):
      for name in sorted(files):
        path = os.path.join(folder, name)
        z.write(path, os.path.relpath(path, out))
  os.replace(archive + '.tmp', archive)
  return archive


if __name__ == '__main__':
  sys.exit(main())
