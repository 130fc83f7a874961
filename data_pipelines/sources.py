"""Where the training data lives: listings of the reference folder layouts (docs/reference.md §4) as flat tables.

Static images (stage 0), under one root:
  fss/<class>/x.jpg + x.png                      FSS-1000
  DUTS-TR/, DUTS-TE/, ecssd/, BIG_small/, HRSOD_small/    flat x.jpg + x.png
  mix: fss + DUTS-TR + DUTS-TE + ecssd + 5 × (BIG_small + HRSOD_small)

Videos (stage 3):
  DAVIS 2017   DAVIS_ROOT/2017/trainval/{JPEGImages,Annotations}/480p/<video>/, the ImageSets/2017/train.txt list,
               repeated 5 × (`davis_repeat`)
  YouTube-VOS  YOUTUBE_ROOT/train_480p/{JPEGImages,Annotations}/<video>/ (every 5th frame, so its skip is ÷ 5),
               optionally restricted to a subset list (the reference's yv_subset.txt)
  your own     ROOT/{JPEGImages,Annotations}[/480p]/<video>/, every video

Missing folders are reported once (a warning); it is an error only when nothing is found. Frames are
listed only when their annotation exists, and videos shorter than three such frames are dropped.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Optional, Sequence

from configs import data as data_config
from data_pipelines.check import IMAGE_EXTENSIONS, MIN_FRAMES, resolution_level, stems

STATIC_FOLDERS = tuple(data_config.get_config().static_folders)  # the default of configs/data.py
VIDEO_SOURCES = ('davis', 'youtube', 'videos')
CLASS_FOLDERS = ('fss',)  # one sub-folder per class; the others are flat


class DataError(ValueError):
  """No usable data where the configuration points."""


@dataclass
class StaticTable:
  """Image/mask pairs; `source[i]` names the folder of pair i."""

  images: list[str] = field(default_factory=list)
  masks: list[str] = field(default_factory=list)
  source: list[str] = field(default_factory=list)


@dataclass
class VideoTable:
  """Videos as flat frame lists: video v has frames `offsets[v] … offsets[v+1]-1`."""

  names: list[str] = field(default_factory=list)
  source: list[str] = field(default_factory=list)
  skip_divisor: list[int] = field(default_factory=list)
  offsets: list[int] = field(default_factory=lambda: [0])
  frames: list[str] = field(default_factory=list)
  masks: list[str] = field(default_factory=list)

  def add(self, name: str, source: str, divisor: int, frames: list[str], masks: list[str]) -> None:
    self.names.append(name)
    self.source.append(source)
    self.skip_divisor.append(divisor)
    self.frames += frames
    self.masks += masks
    self.offsets.append(len(self.frames))

  def __len__(self) -> int:
    return len(self.names)


def _pairs(folder: str) -> list[tuple[str, str]]:
  """(image, mask) paths of the `x.jpg` + `x.png` pairs in `folder`, sorted by name."""
  images, masks = stems(folder, IMAGE_EXTENSIONS), stems(folder, ('.png',))
  return [(os.path.join(folder, images[s]), os.path.join(folder, masks[s])) for s in sorted(set(images) & set(masks))]


def list_static(root: str, folders: Sequence[str] = STATIC_FOLDERS) -> StaticTable:
  """All pairs of the present `folders` under `root` (each listed once; repeats are the sampler's job)."""
  table, missing = StaticTable(), []
  for name in folders:
    folder = os.path.join(root, name)
    if not os.path.isdir(folder):
      missing.append(folder)
      continue
    subfolders = sorted(os.path.join(folder, d) for d in os.listdir(folder)) if name in CLASS_FOLDERS else [folder]
    for sub in subfolders:
      for image, mask in _pairs(sub) if os.path.isdir(sub) else []:
        table.images.append(image)
        table.masks.append(mask)
        table.source.append(name)
  _report_missing(missing, found=len(table.images), what=f'static images under {root}')
  return table


def _add_videos(table: VideoTable, root: str, source: str, divisor: int, subset: Optional[Sequence[str]]) -> int:
  """Adds the videos of one `{JPEGImages,Annotations}` root; returns how many frames had no annotation."""
  frames_dir = resolution_level(os.path.join(root, 'JPEGImages'))
  masks_dir = resolution_level(os.path.join(root, 'Annotations'))
  unannotated = 0
  for video in subset if subset is not None else sorted(os.listdir(frames_dir)):
    video_frames, video_masks = os.path.join(frames_dir, video), os.path.join(masks_dir, video)
    if not os.path.isdir(video_frames):
      logging.warning('%s: listed video missing', video_frames)
      continue
    frames, masks = stems(video_frames, IMAGE_EXTENSIONS), stems(video_masks, ('.png',))
    kept = sorted(set(frames) & set(masks))
    unannotated += len(frames) - len(kept)
    if len(kept) < MIN_FRAMES:
      continue
    table.add(
      video,
      source,
      divisor,
      [os.path.join(video_frames, frames[s]) for s in kept],
      [os.path.join(video_masks, masks[s]) for s in kept],
    )
  return unannotated


def _read_list(path: str) -> list[str]:
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def list_videos(
  davis_root: Optional[str] = None,
  youtube_root: Optional[str] = None,
  video_roots: Sequence[str] = (),
  youtube_subset: Optional[str] = None,
  youtube_divisor: int = 5,
) -> VideoTable:
  """Videos of DAVIS 2017 train, YouTube-VOS train and any number of generic roots (in that order)."""
  table, missing, unannotated = VideoTable(), [], 0
  roots = []
  if davis_root:
    trainval = os.path.join(davis_root, '2017', 'trainval')
    train_list = os.path.join(trainval, 'ImageSets', '2017', 'train.txt')
    roots.append(('davis', trainval, 1, train_list))
  if youtube_root:
    roots.append(('youtube', os.path.join(youtube_root, 'train_480p'), youtube_divisor, youtube_subset))
  roots += [('videos', root, 1, None) for root in video_roots]
  for source, root, divisor, subset_file in roots:
    if not os.path.isdir(os.path.join(root, 'JPEGImages')):
      missing.append(root)
      continue
    subset = None
    if subset_file and os.path.exists(subset_file):
      subset = _read_list(subset_file)
    elif subset_file:
      logging.warning('%s not found: using every video of %s', subset_file, root)
    unannotated += _add_videos(table, root, source, divisor, subset)
  if unannotated:
    logging.warning('%d frame(s) without an annotation were left out', unannotated)
  _report_missing(missing, found=len(table), what='videos')
  return table


def _report_missing(missing: list[str], found: int, what: str) -> None:
  if missing:
    logging.warning('not found, skipped: %s', ', '.join(missing))
  if not found:
    raise DataError(f'no {what} found' + (f' (missing: {", ".join(missing)})' if missing else ''))


def repeats(sources: Sequence[str], factors: dict[str, int]) -> list[int]:
  """Item table of a dataset mix: the index of each entry, repeated `factors[source]` times (default 1)."""
  return [i for i, s in enumerate(sources) for _ in range(factors.get(s, 1))]
