"""Reading a user's video and masks, writing masks, overlays and output folders. Every error names the file
and the problem.

Videos: .mp4 / .avi / .mov / .mkv files (OpenCV) or a folder of .jpg / .png frames (sorted by name), decoded
chunk by chunk (`VideoReader`). Masks (`read_mask`): a palette PNG of object ids, a grayscale PNG of ids, a
binary mask (0/255 grayscale as DAVIS 2016, white on black RGB, anti-aliased or JPEG: object 1), an RGB PNG of
DAVIS palette colours, or one binary PNG per object.
"""

import contextlib
import os
import shutil
import tempfile
import time
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np
from PIL import Image

from data_pipelines.palette import davis_palette, write_palette_png
from gsfm_jax import atomic, cli
from gsfm_jax.visualize import overlay

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv')
FRAME_EXTENSIONS = ('.jpg', '.jpeg', '.png')


class InputError(ValueError):
  """A user input that cannot be used; the message starts with the file."""


def frame_names(path: str) -> list[str]:
  """The frame files of a folder, sorted."""
  return sorted(n for n in os.listdir(path) if n.lower().endswith(FRAME_EXTENSIONS))


class VideoReader:
  """The frames of a video file or frame folder, decoded only when asked for, so a video of any length is
  read in constant memory: len(reader), reader.size (H, W), reader.fps, reader.names (output names) and
  reader[a:b] -> (b - a, H, W, 3) uint8 RGB. Files are checked when the reader opens: a folder's frames by
  their headers (all one size), a video file by decoding it once (the frame count). `read_seconds` adds up
  the time spent decoding frames.
  """

  def __init__(self, path: str):
    if not os.path.exists(path):
      raise InputError(f'{path}: no such video file or frame folder')
    self.path, self.read_seconds = path, 0.0
    self._capture, self._position = None, 0
    if os.path.isdir(path):
      self.files = [os.path.join(path, n) for n in frame_names(path)]
      if not self.files:
        raise InputError(f'{path}: no .jpg or .png frames in this folder')
      sizes = [_image_size(f) for f in self.files]
      odd = next((f for f, s in zip(self.files, sizes) if s != sizes[0]), None)
      if odd is not None:
        raise InputError(
          f'{odd}: frame size {_wxh(sizes[self.files.index(odd)])} differs from the first frame ({_wxh(sizes[0])})'
        )
      self.size, self.fps = sizes[0], 24.0
      self.names = [os.path.splitext(os.path.basename(f))[0] for f in self.files]
      return
    if not path.lower().endswith(VIDEO_EXTENSIONS):
      raise InputError(f'{path}: not a video ({", ".join(VIDEO_EXTENSIONS)}) or a folder of frames')
    import cv2

    capture = cv2.VideoCapture(path)
    count = 0
    while capture.grab():
      count += 1
    self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 24.0)
    self.size = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
    capture.release()
    if not count:
      raise InputError(f'{path}: cannot read any frame (not a video, or a codec OpenCV lacks)')
    self.files, self.names = None, [f'{t:05d}' for t in range(count)]

  def __len__(self) -> int:
    return len(self.names)

  def __getitem__(self, index: slice) -> np.ndarray:
    start, stop, step = index.indices(len(self))
    if step != 1:
      raise IndexError('frames are read in consecutive runs')
    began = time.perf_counter()
    if self.files is not None:
      frames = [_read_image(f) for f in self.files[start:stop]]
    else:
      frames = [self._decode(t) for t in range(start, stop)]
    self.read_seconds += time.perf_counter() - began
    return np.stack(frames) if frames else np.zeros((0, *self.size, 3), np.uint8)

  def _decode(self, t: int) -> np.ndarray:
    """Frame t of the video file: forward from the current position (reopened to go back)."""
    import cv2

    if self._capture is None or t < self._position:
      if self._capture is not None:
        self._capture.release()
      self._capture, self._position = cv2.VideoCapture(self.path), 0
    while self._position < t:
      self._capture.grab()
      self._position += 1
    ok, frame = self._capture.read()
    if not ok:
      raise InputError(f'{self.path}: frame {t} cannot be decoded')
    self._position += 1
    return frame[..., ::-1]


def _image_size(path: str) -> tuple[int, int]:
  """(H, W) of an image file from its header."""
  try:
    with Image.open(path) as image:
      return image.height, image.width
  except (OSError, SyntaxError) as error:
    raise InputError(f'{path}: cannot read the image ({error})') from error


def _wxh(size: tuple[int, int]) -> str:
  return f'{size[1]}×{size[0]}'


def _read_image(path: str) -> np.ndarray:
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB'))
  except (OSError, SyntaxError) as error:
    raise InputError(f'{path}: cannot read the image ({error})') from error


class Mask(NamedTuple):
  labels: np.ndarray  # (H, W) uint8 object ids
  notes: list[str]  # what was done to make the file usable (thresholded, resized), one line each


MASK_RESIZE = ('none', 'nearest')


def read_mask(paths: Sequence[str], size: tuple[int, int], resize: str = 'none') -> Mask:
  """One mask of ids, or one binary mask per object (ids 1, 2, … in the given order) -> (H, W) uint8 ids.

  size: (H, W) of the frames. A mask of another size is refused, or with resize='nearest' resized to it.
  Kinds: a palette PNG (its indices are the ids); a grayscale PNG of small ids (0, 1, 2, …); a binary
  grayscale or RGB mask, white (or any level ≥ 50 %) on black, which is object 1 (anti-aliased or JPEG edges
  are thresholded at 50 %, with a note); an RGB PNG of DAVIS palette colours.
  """
  if resize not in MASK_RESIZE:
    raise InputError(f'--mask_resize {resize}: expected one of {", ".join(MASK_RESIZE)}')
  notes: list[str] = []
  labels = np.zeros(size, np.uint8)
  for index, path in enumerate(paths, start=1):
    ids = _fit(path, _read_ids(path, notes), size, resize, notes)
    if len(paths) == 1:
      return Mask(ids, notes)
    labels[ids > 0] = index
  return Mask(labels, notes)


def _fit(path: str, ids: np.ndarray, size: tuple[int, int], resize: str, notes: list[str]) -> np.ndarray:
  """The mask at the frames' size (H, W): as it is, or resized with nearest neighbours if asked."""
  if ids.shape == tuple(size):
    return ids
  found = f'{ids.shape[1]}×{ids.shape[0]}'
  if resize != 'nearest':
    raise InputError(
      f'{path}: the mask is {found} but the frames are {size[1]}×{size[0]}; '
      'pass --mask_resize nearest to resize it to the frames'
    )
  notes.append(f'{path}: resized from {found} to {size[1]}×{size[0]} (nearest neighbour)')
  return np.asarray(Image.fromarray(ids).resize((size[1], size[0]), Image.NEAREST))


def _read_ids(path: str, notes: list[str]) -> np.ndarray:
  """A mask file -> (H, W) uint8 ids: palette indices, grey ids or levels, or RGB colours."""
  if not os.path.exists(path):
    raise InputError(f'{path}: no such mask file')
  try:
    with Image.open(path) as image:
      mode, array = image.mode, np.asarray(image)
  except (OSError, SyntaxError) as error:
    raise InputError(f'{path}: cannot read the mask ({error})') from error
  if mode in ('P', '1'):
    return array.astype(np.uint8)
  if mode in ('L', 'LA'):
    return _grey_ids(path, array if mode == 'L' else array[..., 0], notes)
  if mode not in ('RGB', 'RGBA'):
    raise InputError(f'{path}: a {mode} image; masks are palette, grayscale or RGB PNGs')
  rgb = array[..., :3].astype(np.int64)
  codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
  palette = davis_palette().astype(np.int64)
  lookup = {int(c): i for i, c in enumerate((palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2])}
  unknown = [int(c) for c in np.unique(codes) if int(c) not in lookup]
  if not unknown:
    return np.vectorize(lookup.get, otypes=[np.uint8])(codes)
  if int((rgb.max(-1) - rgb.min(-1)).max()) <= GREY_SPREAD:  # grey levels: a binary mask
    return _grey_ids(path, np.round(rgb.mean(-1)).astype(np.uint8), notes)
  shown = ', '.join(str(((c >> 16) & 255, (c >> 8) & 255, c & 255)) for c in unknown[:4])
  raise InputError(
    f'{path}: an RGB mask with {len(unknown)} colour(s) that are neither DAVIS palette colours nor '
    f'grey levels (e.g. {shown}); save it as a palette PNG of ids or as a white-on-black mask'
  )


GREY_SPREAD = 24  # RGB pixels whose channels differ by at most this are grey (JPEG tints included)


def _grey_ids(path: str, grey: np.ndarray, notes: list[str]) -> np.ndarray:
  """Grey levels -> ids: small values (all < 128) are ids as they are; otherwise a binary mask, object 1
  where the level is ≥ 50 % (128), with a note when levels other than 0 and 255 were thresholded."""
  if grey.max() < 128:
    return grey.astype(np.uint8)
  between = int(np.count_nonzero((grey > 0) & (grey < 255)))
  if between:
    notes.append(
      f'{path}: {between} pixels between black and white (anti-aliased or JPEG edges); '
      'thresholded at 50 % into one object'
    )
  return (grey >= 128).astype(np.uint8)


def index_lookup(ids: list[int]) -> np.ndarray:
  """(256,) uint8 table mapping the given object ids to 1 … K (in the given order), all else to 0."""
  table = np.zeros(256, np.uint8)
  table[ids] = np.arange(1, len(ids) + 1)
  return table


def write_masks(folder: str, names: Sequence[str], ids: np.ndarray) -> None:
  """Palette PNGs <folder>/<name>.png of ids (n, H, W) uint8. Each file is written to a temporary name and
  renamed, so a failure never leaves a half-written mask."""
  os.makedirs(folder, exist_ok=True)
  for name, frame in zip(names, ids):
    path = os.path.join(folder, f'{name}.png')
    atomic.write(path, lambda target: write_palette_png(frame, target))


class OutputFolder:
  """A run's output folder, written whole or not at all: outputs go to a fresh folder beside `out`, which
  replaces `out` when the run succeeds (`with OutputFolder(out, overwrite) as folder: …`). A failed or
  interrupted run leaves an earlier run's outputs as they were, and `out` never mixes two runs. An `out` that
  is a file, or a folder with files in it and no `overwrite`, is refused before any work. shared: the
  fresh folder has a fixed name (`.<out>.partial-shared`), so that several processes find the same one
  (one of them calls `open` and `commit`)."""

  def __init__(self, out: str, overwrite: bool, shared: bool = False):
    if os.path.exists(out) and not os.path.isdir(out):
      raise InputError(f'--out {out}: is a file; give a folder')
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
      raise InputError(
        f'--out {out}: already holds files (an earlier run?); pass --overwrite to replace them or choose another folder'
      )
    self.out = os.path.abspath(out)
    self.parent = os.path.dirname(self.out)
    if not os.path.isdir(self.parent):
      try:
        os.makedirs(self.parent, exist_ok=True)
      except OSError as error:
        raise InputError(f'--out {out}: cannot create its parent folder ({error.strerror})') from None
    if not os.access(self.parent, os.W_OK):
      raise InputError(f'--out {out}: {self.parent} is not writable')
    self.shared = shared
    self.work = os.path.join(self.parent, f'.{os.path.basename(self.out)}.partial-shared') if shared else None

  def open(self) -> str:
    """Makes the fresh folder (a shared one left by an interrupted run is emptied first); returns its path."""
    if self.shared:
      shutil.rmtree(self.work, ignore_errors=True)
      os.makedirs(self.work)
    else:
      self.work = atomic.fresh_folder(self.parent, f'.{os.path.basename(self.out)}.partial-')
    return self.work

  def commit(self) -> None:
    """The fresh folder becomes `out` (an earlier `out` is removed only after that)."""
    old = None
    if os.path.exists(self.out):
      old = tempfile.mkdtemp(prefix=f'.{os.path.basename(self.out)}.old-', dir=self.parent)
      os.replace(self.out, os.path.join(old, 'previous'))
    os.replace(self.work, self.out)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)

  def __enter__(self) -> str:
    return self.open()

  def __exit__(self, kind, value, traceback) -> bool:
    if kind is None and not cli.INTERRUPTED.is_set():
      self.commit()
      return False
    shutil.rmtree(self.work, ignore_errors=True)
    if kind is None:  # a Ctrl-C whose KeyboardInterrupt was lost on the way (`cli.raise_if_interrupted`)
      raise KeyboardInterrupt
    return False


@contextlib.contextmanager
def whole_folder(path: str) -> Iterator[str]:
  """`with whole_folder(path):` one video's outputs, made there; removed if the work inside fails, so that a
  batch never holds a half-written video."""
  os.makedirs(path, exist_ok=True)
  try:
    yield path
  except BaseException:
    shutil.rmtree(path, ignore_errors=True)
    raise


class OverlayVideo:
  """An .mp4 of the objects coloured over the frames (OpenCV, mp4v), written chunk by chunk: `write(frames,
  ids)` with the ids of the mask PNGs (so the colours are theirs), `close()` renames the finished file to `path`."""

  def __init__(self, path: str, size: tuple[int, int], fps: float):
    import cv2

    self.target = atomic.replacing(path)
    self.writer = cv2.VideoWriter(self.target.__enter__(), cv2.VideoWriter_fourcc(*'mp4v'), fps, (size[1], size[0]))
    if not self.writer.isOpened():
      error = InputError(f'{path}: OpenCV cannot write an .mp4 here')
      self.target.__exit__(InputError, error, None)  # removes the temporary file
      raise error

  def write(self, frames: np.ndarray, ids: np.ndarray) -> None:
    """frames (n, H, W, 3) uint8 RGB, ids (n, H, W) uint8."""
    for frame, frame_ids in zip(frames, ids):
      self.writer.write(np.ascontiguousarray(overlay(frame, frame_ids)[..., ::-1]))

  def close(self) -> None:
    self.writer.release()
    self.target.__exit__(None, None, None)


def parse_resize(text: str, size: tuple[int, int]) -> Optional[tuple[int, int]]:
  """'none' | 'short:N' | 'long:N' -> the network's (H, W) for frames of `size` (None: unchanged)."""
  if text == 'none':
    return None
  side, _, value = text.partition(':')
  if side not in ('short', 'long') or not value.isdigit() or int(value) < 16:
    raise InputError(f"--resize {text}: expected 'none', 'short:N' or 'long:N' with N ≥ 16")
  h, w = size
  scale = int(value) / (min(h, w) if side == 'short' else max(h, w))
  return max(1, round(h * scale)), max(1, round(w * scale))
