"""Validates dataset roots and lists every problem with its file.

  python -m data_pipelines.check ROOT [ROOT …] [--workers 8]

Finds, anywhere under each ROOT, video datasets (a folder with `JPEGImages/` and `Annotations/`, with or
without a `480p/` level: DAVIS, YouTube-VOS, your own videos) and static-image folders (`x.jpg` + `x.png`
pairs, flat or one folder per class). Reports unreadable or truncated images, masks of a different size
than their frame, video masks that are not palette-indexed, annotations without a frame, frames without
a mask (static), videos shorter than three frames and empty or missing first-frame annotations.
Exit status 1 when anything is wrong.
"""

import concurrent.futures
import os
import sys
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
from PIL import Image

from gsfm_jax import cli

IMAGE_EXTENSIONS = ('.jpg', '.jpeg')
MIN_FRAMES = 3


@dataclass(frozen=True)
class Problem:
  path: str
  message: str

  def __str__(self) -> str:
    return f'{self.path}: {self.message}'


def stems(folder: str, extensions: tuple[str, ...]) -> dict[str, str]:
  """{stem: file name} of the files in `folder` with one of `extensions` (case-insensitive)."""
  if not os.path.isdir(folder):
    return {}
  return {os.path.splitext(f)[0]: f for f in os.listdir(folder) if f.lower().endswith(extensions)}


def _open(path: str) -> tuple[Optional[Image.Image], Optional[Problem]]:
  """The fully decoded image, or the problem that stopped it."""
  try:
    image = Image.open(path)
    image.load()
    return image, None
  except OSError as e:
    kind = 'truncated image' if 'truncated' in str(e) else 'unreadable image'
    return None, Problem(path, f'{kind} ({e})')
  except Exception as e:  # PIL raises assorted errors on corrupt files
    return None, Problem(path, f'unreadable image ({type(e).__name__}: {e})')


def check_pair(frame_path: Optional[str], mask_path: Optional[str], palette: bool) -> list[Problem]:
  """Decodes a frame and its mask; checks size agreement and (video masks) the palette mode."""
  problems, size = [], None
  if frame_path:
    frame, problem = _open(frame_path)
    problems += [problem] if problem else []
    size = frame.size if frame else None
  if mask_path:
    mask, problem = _open(mask_path)
    if problem:
      problems.append(problem)
    else:
      if palette and mask.mode != 'P':
        problems.append(
          Problem(mask_path, f'mask is not palette-indexed (mode {mask.mode}); save object ids as a palette (P) PNG')
        )
      if size and mask.size != size:
        problems.append(
          Problem(
            mask_path,
            f'mask size {mask.size[0]}×{mask.size[1]} differs from its frame {size[0]}×{size[1]} ({frame_path})',
          )
        )
  return problems


def resolution_level(folder: str) -> str:
  """`folder/480p` when the dataset has that level (DAVIS), else `folder`."""
  level = os.path.join(folder, '480p')
  return level if os.path.isdir(level) else folder


def video_tasks(root: str) -> Iterator[tuple]:
  """Per-video structural problems now, then (frame, mask, palette) decoding tasks."""
  frames_dir = resolution_level(os.path.join(root, 'JPEGImages'))
  masks_dir = resolution_level(os.path.join(root, 'Annotations'))
  for video in sorted(os.listdir(frames_dir)):
    video_frames = os.path.join(frames_dir, video)
    if not os.path.isdir(video_frames):
      continue
    video_masks = os.path.join(masks_dir, video)
    frames, masks = stems(video_frames, IMAGE_EXTENSIONS), stems(video_masks, ('.png',))
    if len(frames) < MIN_FRAMES:
      yield Problem(video_frames, f'video shorter than three frames ({len(frames)})')
    for stem in sorted(set(masks) - set(frames)):
      yield Problem(os.path.join(video_masks, masks[stem]), 'annotation without frame')
    if frames:
      first = min(frames)
      if first not in masks:
        yield Problem(os.path.join(video_frames, frames[first]), f'first frame has no annotation in {video_masks}')
      else:
        yield ('first', os.path.join(video_masks, masks[first]))
    for stem in sorted(frames):
      mask = os.path.join(video_masks, masks[stem]) if stem in masks else None
      yield ('pair', os.path.join(video_frames, frames[stem]), mask, True)


def static_tasks(folder: str) -> Iterator[tuple]:
  images, masks = stems(folder, IMAGE_EXTENSIONS), stems(folder, ('.png',))
  for stem in sorted(set(images) - set(masks)):
    yield Problem(os.path.join(folder, images[stem]), 'image without mask')
  for stem in sorted(set(masks) - set(images)):
    yield Problem(os.path.join(folder, masks[stem]), 'mask without image')
  for stem in sorted(set(images) & set(masks)):
    yield ('pair', os.path.join(folder, images[stem]), os.path.join(folder, masks[stem]), False)


def _empty_first_annotation(path: str) -> list[Problem]:
  mask, problem = _open(path)
  if problem or np.asarray(mask).any():
    return []  # an unreadable mask is reported by its pair check
  return [Problem(path, 'empty first-frame annotation (no object to track)')]


def find_datasets(root: str) -> tuple[list[str], list[str]]:
  """(video dataset roots, static-image folders) under `root`."""
  videos, static = [], []
  for folder, dirs, files in os.walk(root):
    if 'JPEGImages' in dirs and 'Annotations' in dirs:
      videos.append(folder)
      dirs[:] = [d for d in dirs if d not in ('JPEGImages', 'Annotations')]
    elif any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files) or any(f.lower().endswith('.png') for f in files):
      static.append(folder)
  return sorted(videos), sorted(static)


def check_roots(roots: list[str], workers: int = 8) -> tuple[list[Problem], int]:
  """All problems under `roots` (sorted by path) and the number of files decoded."""
  problems, jobs = [], []
  for root in roots:
    if not os.path.isdir(root):
      problems.append(Problem(root, 'no such folder'))
      continue
    videos, static = find_datasets(root)
    if not videos and not static:
      problems.append(Problem(root, 'no video dataset (JPEGImages/ + Annotations/) or static images found'))
    for task in [t for v in videos for t in video_tasks(v)] + [t for s in static for t in static_tasks(s)]:
      (problems if isinstance(task, Problem) else jobs).append(task)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    results = pool.map(lambda job: check_pair(*job[1:]) if job[0] == 'pair' else _empty_first_annotation(job[1]), jobs)
    for found in results:
      problems.extend(found)
  files = sum(path is not None for job in jobs if job[0] == 'pair' for path in job[1:3])
  return sorted(set(problems), key=lambda p: (p.path, p.message)), files


@cli.reported
def main(argv: Optional[list[str]] = None) -> int:
  parser = cli.Parser(__doc__)
  parser.add_argument('roots', nargs='+', metavar='ROOT')
  parser.add_argument('--workers', type=int, default=8, help='decoding threads (default: %(default)s)')
  args = parser.parse_args(argv)
  problems, files = check_roots(args.roots, args.workers)
  for problem in problems:
    print(problem)
  print(f'{len(problems)} problem(s) in {files} file(s) checked')
  return 1 if problems else 0


if __name__ == '__main__':
  sys.exit(main())
