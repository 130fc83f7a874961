"""Reading a user's video and masks, writing masks and overlays. Every error names the file and the problem.

Videos: .mp4 / .avi / .mov / .mkv files (OpenCV) or a folder of .jpg / .png frames (sorted by name).
Masks: a palette PNG of object ids, or one binary PNG per object (any non-zero pixel is the object), or an
RGB PNG whose colours are all DAVIS palette colours.
"""
import os
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from data_pipelines.palette import davis_palette, write_palette_png
from gsfm_jax.visualize import overlay

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv')
FRAME_EXTENSIONS = ('.jpg', '.jpeg', '.png')


class InputError(ValueError):
  """A user input that cannot be used; the message starts with the file."""


def frame_names(path: str) -> list[str]:
  """The frame files of a folder, sorted."""
  return sorted(n for n in os.listdir(path) if n.lower().endswith(FRAME_EXTENSIONS))


def read_video(path: str) -> tuple[np.ndarray, float, list[str]]:
  """-> (frames (T, H, W, 3) uint8 RGB, frames per second, frame names for the outputs)."""
  if not os.path.exists(path):
    raise InputError(f'{path}: no such video file or frame folder')
  if os.path.isdir(path):
    names = frame_names(path)
    if not names:
      raise InputError(f'{path}: no .jpg or .png frames in this folder')
    frames = [_read_image(os.path.join(path, n)) for n in names]
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
      first = frames[0].shape
      odd = next(n for n, f in zip(names, frames) if f.shape != first)
      raise InputError(f'{os.path.join(path, odd)}: frame size {_size(frames[names.index(odd)])} differs from '
                       f'the first frame ({_size(frames[0])})')
    return np.stack(frames), 24.0, [os.path.splitext(n)[0] for n in names]
  if not path.lower().endswith(VIDEO_EXTENSIONS):
    raise InputError(f'{path}: not a video ({", ".join(VIDEO_EXTENSIONS)}) or a folder of frames')
  import cv2
  capture = cv2.VideoCapture(path)
  frames = []
  while capture.isOpened():
    ok, frame = capture.read()
    if not ok:
      break
    frames.append(frame[..., ::-1])
  fps = capture.get(cv2.CAP_PROP_FPS) or 24.0
  capture.release()
  if not frames:
    raise InputError(f'{path}: cannot read any frame (not a video, or a codec OpenCV lacks)')
  return np.stack(frames), float(fps), [f'{t:05d}' for t in range(len(frames))]


def _read_image(path: str) -> np.ndarray:
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB'))
  except (OSError, SyntaxError) as error:
    raise InputError(f'{path}: cannot read the image ({error})') from error


def _size(image: np.ndarray) -> str:
  return f'{image.shape[1]}×{image.shape[0]}'


def read_mask(paths: Sequence[str], size: tuple[int, int]) -> np.ndarray:
  """One palette / RGB-palette PNG of ids, or one binary PNG per object (ids 1, 2, … in order) -> (H, W)
  uint8 ids. size: (H, W) of the frames."""
  if len(paths) == 1:
    labels = _read_ids(paths[0])
    _check_size(paths[0], labels, size)
    return labels
  labels = np.zeros(size, np.uint8)
  for index, path in enumerate(paths, start=1):
    mask = _read_ids(path)
    _check_size(path, mask, size)
    labels[mask > 0] = index
  return labels


def _check_size(path: str, mask: np.ndarray, size: tuple[int, int]) -> None:
  if mask.shape != tuple(size):
    raise InputError(f'{path}: the mask is {mask.shape[1]}×{mask.shape[0]} but the frames are {size[1]}×{size[0]}')


def _read_ids(path: str) -> np.ndarray:
  """A mask file -> (H, W) uint8: palette indices, grey levels, or RGB colours mapped onto the palette."""
  if not os.path.exists(path):
    raise InputError(f'{path}: no such mask file')
  try:
    with Image.open(path) as image:
      mode, array = image.mode, np.asarray(image)
  except (OSError, SyntaxError) as error:
    raise InputError(f'{path}: cannot read the mask ({error})') from error
  if mode in ('P', 'L', '1'):
    return array.astype(np.uint8)
  if mode not in ('RGB', 'RGBA'):
    raise InputError(f'{path}: a {mode} image; masks are palette, grayscale or RGB PNGs')
  rgb = array[..., :3].reshape(-1, 3)
  codes = _colour_code(rgb)
  palette_codes = _colour_code(davis_palette())
  lookup = {int(c): i for i, c in enumerate(palette_codes)}
  unknown = [c for c in np.unique(codes) if int(c) not in lookup]
  if unknown:
    shown = ', '.join(str(tuple(int(v) for v in ((c >> 16) & 255, (c >> 8) & 255, c & 255))) for c in unknown[:4])
    raise InputError(f'{path}: an RGB mask with {len(unknown)} colour(s) that are not DAVIS palette colours '
                     f'(e.g. {shown}); save the mask as a palette PNG or with palette colours')
  return np.vectorize(lookup.get, otypes=[np.uint8])(codes).reshape(array.shape[:2])


def index_lookup(ids: list[int]) -> np.ndarray:
  """(256,) uint8 table mapping the given object ids to 1 … K (in the given order), all else to 0."""
  table = np.zeros(256, np.uint8)
  table[ids] = np.arange(1, len(ids) + 1)
  return table


def _colour_code(rgb: np.ndarray) -> np.ndarray:
  rgb = rgb.astype(np.int64)
  return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def write_masks(folder: str, names: Sequence[str], labels: np.ndarray, ids: Optional[np.ndarray] = None) -> None:
  """Palette PNGs <folder>/<name>.png; ids maps 0 … K back to the user's ids. Each file is written to a
  temporary name and renamed, so a failure never leaves a half-written mask."""
  os.makedirs(folder, exist_ok=True)
  for name, frame in zip(names, labels):
    path = os.path.join(folder, f'{name}.png')
    write_palette_png(frame if ids is None else ids[frame], path + '.tmp.png')
    os.replace(path + '.tmp.png', path)


def write_overlay_video(path: str, frames: np.ndarray, labels: np.ndarray, fps: float) -> None:
  """An .mp4 of the objects coloured over the frames (OpenCV, mp4v)."""
  import cv2
  height, width = frames.shape[1:3]
  writer = cv2.VideoWriter(path + '.tmp.mp4', cv2.VideoWriter_fourcc(*'mp4v'), fps, (width, height))
  if not writer.isOpened():
    raise InputError(f'{path}: OpenCV cannot write an .mp4 here')
  for frame, frame_labels in zip(frames, labels):
    writer.write(np.ascontiguousarray(overlay(frame, frame_labels)[..., ::-1]))
  writer.release()
  os.replace(path + '.tmp.mp4', path)
