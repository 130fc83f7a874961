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
FPS is frames / processing time with I/O excluded, as the reference reports it.
"""
import argparse
import json
import os
import sys
import time
import zipfile
from typing import Optional

import numpy as np
from absl import logging
from PIL import Image

from data_pipelines.palette import write_palette_png
from gsfm_jax.evaluation import davis as davis_eval
from gsfm_jax.inference import Propagator, Protocol
from gsfm_jax.inference.media import index_lookup

BENCHMARKS = ('davis17', 'davis16', 'youtube')


def _frames(folder: str, names: list[str]) -> np.ndarray:
  return np.stack([np.asarray(Image.open(os.path.join(folder, f'{n}.jpg')).convert('RGB')) for n in names])


def _names(folder: str, extension: str) -> list[str]:
  return sorted(n[:-len(extension)] for n in os.listdir(folder) if n.endswith(extension))


class Timer:
  """Processing time of the propagation only (reading and writing files excluded)."""

  def __init__(self):
    self.seconds, self.frames = 0.0, 0

  def run(self, engine: Propagator, frames: np.ndarray, labels: dict, **kwargs):
    start = time.perf_counter()
    result = engine.segment(frames, labels, **kwargs)
    self.seconds += time.perf_counter() - start
    self.frames += len(frames)
    return result

  @property
  def fps(self) -> float:
    return self.frames / max(self.seconds, 1e-9)


def run_davis(engine: Propagator, root: str, sequences: list[str], out: str, binary: bool, timer: Timer) -> None:
  """Every sequence from its first annotation; PNGs out/<seq>/<frame>.png (palette, or 0/255 if binary)."""
  for i, seq in enumerate(sequences, 1):
    image_dir = os.path.join(root, 'JPEGImages', '480p', seq)
    names = _names(image_dir, '.jpg')
    first = davis_eval.read_labels(os.path.join(root, 'Annotations', '480p', seq, names[0] + '.png'))
    first = (first > 0).astype(np.uint8) if binary else np.where(first == davis_eval.VOID, 0, first)
    result = timer.run(engine, _frames(image_dir, names), {0: first})
    os.makedirs(os.path.join(out, seq), exist_ok=True)
    for name, labels in zip(names, result.labels):
      path = os.path.join(out, seq, name + '.png')
      if binary:
        Image.fromarray((labels > 0).astype(np.uint8) * 255).save(path)
      else:
        write_palette_png(labels, path)
    print(f'[{i}/{len(sequences)}] {seq}: {len(names)} frames, {timer.fps:.2f} FPS so far', flush=True)


def run_youtube(engine: Propagator, root: str, split: str, out: str, short_side: int, timer: Timer) -> str:
  """The YouTube-VOS protocol; returns the submission zip's path."""
  with open(os.path.join(root, split, 'meta.json')) as f:
    meta = json.load(f)['videos']
  image_root = os.path.join(root, 'all_frames', f'{split}_all_frames', 'JPEGImages')
  for i, (video, info) in enumerate(sorted(meta.items()), 1):
    names = _names(os.path.join(image_root, video), '.jpg')
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
    frames = _frames(os.path.join(image_root, video), names)
    h, w = frames.shape[1:3]
    resized = (short_side, int(w * short_side / h)) if h <= w else (int(h * short_side / w), short_side)
    result = timer.run(engine, frames, labels, resized=resized, wanted=wanted)
    back = np.array([0] + ids, np.uint8)
    folder = os.path.join(out, 'Annotations', video)
    os.makedirs(folder, exist_ok=True)
    for t in np.flatnonzero(wanted):
      write_palette_png(back[result.labels[t]], os.path.join(folder, names[t] + '.png'))
    print(f'[{i}/{len(meta)}] {video}: {int(wanted.sum())} frames written, {timer.fps:.2f} FPS so far', flush=True)
  archive = out.rstrip('/') + '.zip'
  with zipfile.ZipFile(archive, 'w', zipfile.ZIP_DEFLATED) as z:
    for folder, _, files in os.walk(os.path.join(out, 'Annotations')):
      for name in files:
        path = os.path.join(folder, name)
        z.write(path, os.path.relpath(path, out))
  return archive


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n', 2)[2])
  parser.add_argument('--checkpoint', required=True, help='training workdir, .npz, variables folder or official .pth')
  parser.add_argument('--benchmark', required=True, choices=BENCHMARKS)
  parser.add_argument('--root', required=True, help='the benchmark folder (see the examples)')
  parser.add_argument('--split', default=None, help='davis17: val | test-dev; youtube: valid | test')
  parser.add_argument('--image_set', default=None, help='davis16: the 2016 val.txt (default ROOT/ImageSets/2016/val.txt)')
  parser.add_argument('--out', required=True)
  parser.add_argument('--top_k', type=int, default=None, help='default 50 (davis16: 20, as its reference script)')
  parser.add_argument('--mem_every', type=int, default=3)
  parser.add_argument('--short_side', type=int, default=480, help='youtube: shorter side of the network input')
  parser.add_argument('--dtype', default='float32', help='compute dtype: float32, bfloat16 or auto')
  args = parser.parse_args(argv)
  logging.set_verbosity(logging.INFO)   # the engine logs each new compiled program
  from gsfm_jax.checkpoint import inference_model
  model, variables = inference_model(args.checkpoint, args.dtype)
  youtube = args.benchmark == 'youtube'
  protocol = Protocol(top_k=args.top_k or (20 if args.benchmark == 'davis16' else 50), mem_every=args.mem_every,
                      memory_rule='since_last' if youtube else 'absolute')
  engine, timer = Propagator(model, variables, protocol), Timer()
  if youtube:
    archive = run_youtube(engine, args.root, args.split or 'valid', args.out, args.short_side, timer)
    print(f'{timer.frames} frames, {timer.fps:.2f} FPS (I/O excluded); submission: {archive}')
    return 0
  binary = args.benchmark == 'davis16'
  split = args.split or 'val'
  annotations, sequences = davis_eval.davis_sequences(args.root, split, binary, args.image_set)
  run_davis(engine, args.root, sequences, args.out, binary, timer)
  print(f'{timer.frames} frames, {timer.fps:.2f} FPS (I/O excluded), {len(engine.compiled)} compiled program(s)')
  if all(len(os.listdir(os.path.join(annotations, s))) > 1 for s in sequences):   # full ground truth: score it
    scores = davis_eval.evaluate_folders(args.out, annotations, sequences, binary)
    for name, value in davis_eval.summarise(scores).items():
      print(f'{name:9s} {value:.3f}')
    print('written:', *davis_eval.write_csvs(scores, args.out, split))
  return 0


if __name__ == '__main__':
  sys.exit(main())
