"""Runs a benchmark end to end from a checkpoint, by the reference's protocols (docs/reference.md §5, §7).

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
FPS is frames / processing time with I/O excluded, as the reference reports it (and compilation, which the
reference has not). Frames are decoded and masks
written chunk by chunk: host memory does not grow with a video's length.

Every local device runs whole videos with its own memory bank, longest first (--devices N: the first N);
several processes or hosts split the videos by length with --distributed (as `train`; --out on a filesystem
all of them see), and process 0 scores. The PNGs, CSVs and zip are the bytes a one-device run writes; FPS
stays frames / summed processing time (the speed of one device), the frames/s over all devices (wall time,
with I/O and compilation) beside it.
A video that fails is named; the others' outputs are kept (exit status 1, no scores).
"""

import json
import os
import sys
import threading
import time
import zipfile
from typing import Callable, Iterator, Optional

import jax
import numpy as np
from PIL import Image

from data_pipelines.palette import write_palette_png
from gsfm_jax import atomic, cli, console
from gsfm_jax.evaluation import davis as davis_eval
from gsfm_jax.inference import Propagator, Protocol, parallel
from gsfm_jax.inference.engine import Chunk
from gsfm_jax.inference.media import InputError, OutputFolder, VideoReader, frame_names, index_lookup, whole_folder
from gsfm_jax.progress import compile_seconds

BENCHMARKS = ('davis17', 'davis16', 'youtube')


def _names(folder: str, extension: str) -> list[str]:
  return sorted(n[: -len(extension)] for n in os.listdir(folder) if n.endswith(extension))


class Timer:
  """Processing time of one video's propagation (decoding frames, writing files and compiling excluded)."""

  def __init__(self):
    self.seconds, self.frames, self.compiling = 0.0, 0, 0.0

  def chunks(self, engine: Propagator, video: VideoReader, labels: dict, **kwargs) -> Iterator[Chunk]:
    """engine.chunks(video, labels, …), timed without the reader's decoding, compilation or the caller's writing."""
    chunks = engine.chunks(video, labels, **kwargs)
    while True:
      start, decoding, compiling = time.perf_counter(), video.read_seconds, compile_seconds()
      chunk = next(chunks, None)
      compiled = compile_seconds() - compiling
      self.compiling += compiled
      self.seconds += time.perf_counter() - start - (video.read_seconds - decoding) - compiled
      if chunk is None:
        return
      self.frames += len(chunk.labels)
      yield chunk


def segment_davis(engine: Propagator, root: str, seq: str, out: str, binary: bool) -> Timer:
  """One sequence from its first annotation; PNGs out/<seq>/<frame>.png (palette, or 0/255 if binary)."""
  timer = Timer()
  video = VideoReader(os.path.join(root, 'JPEGImages', '480p', seq))
  first = davis_eval.read_labels(os.path.join(root, 'Annotations', '480p', seq, video.names[0] + '.png'))
  first = (first > 0).astype(np.uint8) if binary else np.where(first == davis_eval.VOID, 0, first)
  with whole_folder(os.path.join(out, seq)) as folder:
    for chunk in timer.chunks(engine, video, {0: first}):
      for name, labels in zip(video.names[chunk.start :], chunk.labels):
        path = os.path.join(folder, name + '.png')
        if binary:
          Image.fromarray((labels > 0).astype(np.uint8) * 255).save(path)
        else:
          write_palette_png(labels, path)
  return timer


def segment_youtube(
  engine: Propagator, root: str, split: str, video: str, info: dict, out: str, short_side: int
) -> Timer:
  """One video by the YouTube-VOS protocol: out/Annotations/<video>/<frame>.png."""
  timer = Timer()
  frames = VideoReader(os.path.join(root, 'all_frames', f'{split}_all_frames', 'JPEGImages', video))
  names = frames.names
  required = {f for obj in info['objects'].values() for f in obj['frames']}
  given = {
    n: davis_eval.read_labels(os.path.join(root, split, 'Annotations', video, n + '.png'))
    for n in _names(os.path.join(root, split, 'Annotations', video), '.png')
  }
  ids = sorted({int(v) for m in given.values() for v in np.unique(m) if v > 0})
  to_index = index_lookup(ids)
  labels, seen = {}, set()
  for name in sorted(given):  # each object counts from its first labelled frame
    new = [v for v in np.unique(given[name]) if v > 0 and v not in seen]
    if new:
      labels[names.index(name)] = np.where(np.isin(given[name], new), to_index[given[name]], 0)
      seen.update(new)
  first = min(labels)
  wanted = np.array([n in required and t >= first for t, n in enumerate(names)])
  h, w = frames.size
  resized = (short_side, int(w * short_side / h)) if h <= w else (int(h * short_side / w), short_side)
  back = np.array([0] + ids, np.uint8)
  with whole_folder(os.path.join(out, 'Annotations', video)) as folder:
    for chunk in timer.chunks(engine, frames, labels, resized=resized, wanted=wanted):
      for t, frame_labels in enumerate(chunk.labels, chunk.start):
        if wanted[t]:
          write_palette_png(back[frame_labels], os.path.join(folder, names[t] + '.png'))
  return timer


def benchmark_videos(args) -> tuple[list[str], list[int], Callable[[Propagator, str, str], Timer]]:
  """(video names, their frame counts, segment(engine, name, out)) of the benchmark the flags name."""
  if args.benchmark == 'youtube':
    split = args.split or 'valid'
    with open(os.path.join(args.root, split, 'meta.json')) as f:
      meta = json.load(f)['videos']
    image_root = os.path.join(args.root, 'all_frames', f'{split}_all_frames', 'JPEGImages')
    names = sorted(meta)
    lengths = [_frame_count(os.path.join(image_root, v)) for v in names]
    return (
      names,
      lengths,
      lambda engine, video, out: segment_youtube(engine, args.root, split, video, meta[video], out, args.short_side),
    )
  binary = args.benchmark == 'davis16'
  _, names = davis_eval.davis_sequences(args.root, args.split or 'val', binary, args.image_set)
  lengths = [_frame_count(os.path.join(args.root, 'JPEGImages', '480p', s)) for s in names]
  return names, lengths, lambda engine, seq, out: segment_davis(engine, args.root, seq, out, binary)


def _frame_count(folder: str) -> int:
  if not os.path.isdir(folder):
    raise InputError(f'{folder}: not found (a video the benchmark lists has no frame folder)')
  return len(frame_names(folder))


def run_share(
  workers: list[Propagator], names: list[str], lengths: list[int], mine: list[int], segment, out: str
) -> dict:
  """The videos at indices `mine` (this process's share) over its devices; -> its report (frames, seconds
  of processing, wall seconds, failures {video: error}, compiled program shapes)."""
  lock, done, began = threading.Lock(), [0], time.perf_counter()

  def work(engine: Propagator, i: int) -> Timer:
    timer = segment(engine, names[i], out)
    with lock:
      done[0] += 1
      where = f'process {jax.process_index()}, {engine.device}' if jax.process_count() > 1 else engine.device
      print(
        f'[{done[0]}/{len(mine)}] {names[i]}: {lengths[i]} frames, {timer.frames / max(timer.seconds, 1e-9):.2f} '
        f'FPS ({where})',
        flush=True,
      )
    return timer

  timers, failures = parallel.run_all(workers, mine, [lengths[i] for i in mine], work)
  for k, error in sorted(failures.items()):
    print(f'error: video {names[mine[k]]} failed: {error}', file=sys.stderr, flush=True)
  return {
    'frames': sum(t.frames for t in timers.values()),
    'seconds': sum(t.seconds for t in timers.values()),
    'compiling': sum(t.compiling for t in timers.values()),
    'wall': time.perf_counter() - began,
    'devices': len(workers),
    'failures': {names[mine[k]]: error for k, error in failures.items()},
    'compiled': sorted({repr(c) for e in workers for c in e.compiled}),
  }


def merge(reports: list[dict]) -> dict:
  """The reports of every process as one: frames and processing seconds add up, wall time is the longest."""
  return {
    'frames': sum(r['frames'] for r in reports),
    'seconds': sum(r['seconds'] for r in reports),
    'compiling': sum(r['compiling'] for r in reports),
    'wall': max(r['wall'] for r in reports),
    'devices': sum(r['devices'] for r in reports),
    'failures': {k: v for r in reports for k, v in r['failures'].items()},
    'compiled': sorted({c for r in reports for c in r['compiled']}),
  }


def finish(args, report: dict, folder: str, names: list[str]) -> int:
  """Process 0, with every video's outputs in `folder`: the speed line, then the scores (DAVIS with full
  ground truth) or the submission zip (YouTube-VOS, after `folder` became --out). -> the exit status."""
  fps = report['frames'] / max(report['seconds'], 1e-9)
  print(
    f'{report["frames"]} frames, {fps:.2f} FPS (I/O and compilation excluded), {report["frames"] / report["wall"]:.2f} '
    f'frames/s over {report["devices"]} device(s) with both, {len(report["compiled"])} compiled program(s) '
    f'({report["compiling"]:.1f} s compiling)',
    flush=True,
  )
  if report['failures']:
    print(
      f'error: {len(report["failures"])} of {len(names)} videos failed ({", ".join(sorted(report["failures"]))}, '
      f'named above); the outputs of the others are in {args.out}, without scores',
      file=sys.stderr,
    )
    return 1
  if args.benchmark == 'youtube':
    return 0
  binary, split = args.benchmark == 'davis16', args.split or 'val'
  annotations, sequences = davis_eval.davis_sequences(args.root, split, binary, args.image_set)
  if all(len(os.listdir(os.path.join(annotations, s))) > 1 for s in sequences):  # full ground truth: score it
    scores = davis_eval.evaluate_folders(folder, annotations, sequences, binary)
    for name, value in davis_eval.summarise(scores).items():
      print(f'{name:9s} {value:.3f}')
    davis_eval.write_csvs(scores, folder, split)
    print('written:', *(os.path.join(args.out, f'{kind}_results-{split}.csv') for kind in ('global', 'per-sequence')))
  return 0


def build_parser() -> cli.Parser:
  parser = cli.Parser(__doc__)
  parser.add_checkpoint()
  parser.add_argument(
    '--benchmark',
    required=True,
    choices=BENCHMARKS,
    help='the protocol: davis17 (multi-object), davis16 (single-object, top-k 20) or youtube (YouTube-VOS)',
  )
  parser.add_argument('--root', required=True, help='the benchmark folder (see the examples)')
  parser.add_argument('--split', default=None, help='davis17: val | test-dev; youtube: valid | test')
  parser.add_argument(
    '--image_set', default=None, help='davis16: the 2016 val.txt (default ROOT/ImageSets/2016/val.txt)'
  )
  parser.add_output()
  parser.add_count(
    'top_k', None, 'memory entries each query pixel reads: default 50 (davis16: 20, as its reference script)'
  )
  parser.add_count('mem_every', 3, 'a memory frame every N frames')
  parser.add_argument('--short_side', type=int, default=480, help='youtube: shorter side of the network input')
  parser.add_dtype()
  parser.add_devices()
  parser.add_distributed()
  return parser


def run(parser: cli.Parser, args) -> int:
  """Checks everything, runs this process's share of the videos, scores (process 0); -> the exit status."""
  parser.check(args)
  check_arguments(args)
  output = OutputFolder(
    args.out, args.overwrite, shared=cli.distributed_requested(args.distributed, args.coordinator_address)
  )
  names, lengths, segment = benchmark_videos(args)
  cli.initialize_distributed(args.distributed, args.coordinator_address, args.num_processes, args.process_id)
  devices = parallel.local_devices(args.devices)
  from gsfm_jax import weights

  model, variables = weights.load_for_inference(args.checkpoint, args.dtype, args.model)
  protocol = Protocol(
    top_k=args.top_k or (20 if args.benchmark == 'davis16' else 50),
    mem_every=args.mem_every,
    memory_rule='since_last' if args.benchmark == 'youtube' else 'absolute',
  )
  mine = parallel.process_share(lengths)
  workers = parallel.engines(model, variables, protocol, devices[: max(1, len(mine))])
  if jax.process_count() == 1:
    with output as folder:
      status = finish(args, run_share(workers, names, lengths, mine, segment, folder), folder, names)
  else:
    status = parallel.gather(
      output,
      lambda folder: run_share(workers, names, lengths, mine, segment, folder),
      merge,
      lambda report, folder: finish(args, report, folder, names),
    )
  if status == 0 and args.benchmark == 'youtube' and jax.process_index() == 0:
    print(f'submission: {zip_annotations(args.out)}')
  return status


@cli.reported
def main(argv: Optional[list[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  console.show_info()  # the engine logs each new compiled program
  return run(parser, args)


def check_arguments(args) -> None:
  """The benchmark folder's layout and the flag values, before any work; InputError names what is wrong."""
  if args.short_side < 16:
    raise InputError(f'--short_side {args.short_side}: must be at least 16')
  if args.benchmark == 'youtube':
    split = args.split or 'valid'
    needed = [
      os.path.join(args.root, split, 'meta.json'),
      os.path.join(args.root, 'all_frames', f'{split}_all_frames', 'JPEGImages'),
    ]
    hint = 'the YouTube-VOS folder holding <split>/meta.json, <split>/Annotations and all_frames/'
  else:
    needed = [os.path.join(args.root, 'JPEGImages', '480p'), os.path.join(args.root, 'Annotations', '480p')]
    hint = (
      'the DAVIS folder holding JPEGImages/480p, Annotations/480p and ImageSets/ (2017: '
      'DAVIS/2017/trainval or test-dev; 2016: DAVIS/2016)'
    )
  missing = [p for p in needed if not os.path.exists(p)]
  if missing:
    raise InputError(f'--root {args.root}: {missing[0]} not found; --root is {hint}')
  if args.benchmark != 'youtube':
    davis_eval.davis_sequences(args.root, args.split or 'val', args.benchmark == 'davis16', args.image_set)


def zip_annotations(out: str) -> str:
  """OUT.zip with OUT/Annotations/ at its root (the YouTube-VOS submission); returns its path. Entries are
  sorted and carry a fixed date, so the same masks give the same bytes."""
  archive = out.rstrip('/') + '.zip'
  with atomic.replacing(archive) as target, zipfile.ZipFile(target, 'w', zipfile.ZIP_DEFLATED) as z:
    for folder, _, files in sorted(os.walk(os.path.join(out, 'Annotations'))):
      for name in sorted(files):
        path = os.path.join(folder, name)
        entry = zipfile.ZipInfo(os.path.relpath(path, out), date_time=(1980, 1, 1, 0, 0, 0))
        entry.compress_type = zipfile.ZIP_DEFLATED
        with open(path, 'rb') as f:
          z.writestr(entry, f.read())
  return archive


if __name__ == '__main__':
  sys.exit(main())
