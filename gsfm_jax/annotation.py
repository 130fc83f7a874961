"""One video segmented interactively: masks painted on frames, propagated, corrected, propagated again.

  session = Session(engine_for, 'clip.mp4', folder, max_objects=8)
  session.give(0, first_ids)                  # (H, W) uint8 object ids painted on frame 0
  for done in session.propagate(0): …         # frames done so far (results appear chunk by chunk)
  session.give(40, fixed_ids)                 # every object's mask at frame 40
  for done in session.propagate(40): …        # frames 40 … T-1 again; frames before stay as they were
  session.archive()                           # masks.zip and overlay.mp4

The page of `gsfm_jax.app` holds one Session per browser tab; nothing here knows about the page. The masks a
session gives are saved as palette PNGs (`given/<frame>.png`) and read back through `predict.read_inputs`, the
command line's own reading, so that a session's masks are `predict`'s byte for byte:
`predict --mask given/00000.png --correct 40:given/00040.png` (the command is in the zip's `predict.txt`).
Results are palette PNGs in `masks/` as `predict` writes them: host memory does not grow with the video.
"""

import argparse
import os
import shlex
import zipfile
from typing import Callable, Iterator, Optional

import numpy as np
from PIL import Image

from data_pipelines.palette import write_palette_png
from gsfm_jax import predict
from gsfm_jax.inference import Propagator, media
from gsfm_jax.visualize import overlay


class Session:
  """One video: the masks given on its frames, the results so far (`masks/` in `folder`) and the engine.

  engine_for(protocol) -> the Propagator of that memory protocol (the page keeps one per protocol);
  options: the `predict` flags that shape a run (top_k, mem_every, capacity, resize, max_objects).
  """

  def __init__(self, engine_for: Callable[..., Propagator], video: str, folder: str, options: argparse.Namespace):
    self.video = media.VideoReader(video)
    if len(self.video) < 2:
      raise media.InputError(f'{video}: only one frame; there is nothing to propagate to')
    self.path, self.folder, self.options, self.engine_for = video, folder, options, engine_for
    self.resized = media.parse_resize(options.resize, self.video.size)
    self.given: dict[int, str] = {}  # frame -> its saved mask (given/<frame>.png)
    self.done = np.zeros(len(self.video), bool)  # frames with a result in masks/
    # the last frame a chunk brought back: shown while propagating without decoding it again (going back in a
    # video file reopens it and decodes from the start)
    self.latest: tuple[int, Optional[np.ndarray]] = (-1, None)
    os.makedirs(os.path.join(folder, 'given'), exist_ok=True)

  def __len__(self) -> int:
    return len(self.video)

  def frame(self, t: int) -> np.ndarray:
    """Frame t, (H, W, 3) uint8 RGB."""
    return self.latest[1] if self.latest[0] == t else self.video[t : t + 1][0]

  def result(self, t: int) -> Optional[np.ndarray]:
    """The ids (H, W) uint8 at frame t: the mask given there, else the propagated one, else None."""
    if t in self.given:
      return np.asarray(Image.open(self.given[t]))
    if self.done[t]:
      return np.asarray(Image.open(os.path.join(self.folder, 'masks', f'{self.video.names[t]}.png')))
    return None

  def give(self, t: int, ids: np.ndarray) -> None:
    """The mask of every object at frame t (H, W) uint8 ids 1 … max_objects: the first mask (frame 0) or a
    correction of a later frame. Bad masks raise media.InputError with what to do."""
    if ids.shape != self.video.size:
      raise media.InputError(
        f'the mask is {ids.shape[1]}×{ids.shape[0]}, the video {self.video.size[1]}×{self.video.size[0]}: '
        'paint on the frame shown'
      )
    if t != 0 and 0 not in self.given:
      raise media.InputError('paint the objects on frame 0 first: propagation starts there')
    objects = [int(i) for i in np.unique(ids) if i > 0]
    if t == 0 and not objects:
      raise media.InputError('no object painted on frame 0: pick an object and paint it')
    if objects and objects[-1] > self.options.max_objects:
      raise media.InputError(f'object {objects[-1]}: at most {self.options.max_objects} objects (--max_objects)')
    path = os.path.join(self.folder, 'given', f'{t:05d}.png')
    write_palette_png(ids.astype(np.uint8), path)
    self.given[t] = path

  def inputs(self) -> predict.Inputs:
    """The given masks as `predict` reads them (the first as --mask, later ones as --correct)."""
    return predict.read_inputs(self.predict_args(), self.video)

  def predict_args(self) -> argparse.Namespace:
    return argparse.Namespace(
      video=self.path,
      mask=[self.given[0]],
      later_mask=[],
      correct=[f'{t}:{p}' for t, p in sorted(self.given.items()) if t > 0],
      mask_resize='none',
      max_objects=self.options.max_objects,
    )

  def propagate(self, start: int) -> Iterator[int]:
    """Segments frames start … T-1 from the masks given at or before them; yields the frames done after each
    chunk (their masks are in masks/ by then). Frames before `start` keep their results."""
    if 0 not in self.given:
      raise media.InputError('paint the objects on frame 0 first: propagation starts there')
    inputs = self.inputs()
    engine = self.engine_for(predict.protocol_for(self.options, [inputs]))
    wanted = np.arange(len(self.video)) >= start
    chunks = engine.chunks(self.video, inputs.labels, resized=self.resized, wanted=wanted, corrected=inputs.corrected)
    for chunk in chunks:
      frames = np.arange(chunk.start, chunk.start + len(chunk.labels))
      keep = frames >= start
      names = [self.video.names[t] for t in frames[keep]]
      media.write_masks(os.path.join(self.folder, 'masks'), names, inputs.user_ids[chunk.labels[keep]])
      self.done[frames[keep]] = True
      self.latest = (int(frames[-1]), chunk.frames[-1])
      yield int(frames[-1]) + 1

  def overlay(self, t: int) -> np.ndarray:
    """Frame t with its objects coloured in, (H, W, 3) uint8 (the frame alone before any result)."""
    ids = self.result(t)
    frame = self.frame(t)
    return frame if ids is None else overlay(frame, ids)

  def archive(self) -> tuple[str, str]:
    """(masks.zip, overlay.mp4) in the session's folder: every frame's mask as `predict` writes it
    (masks/<frame>.png), the given masks (given/<frame>.png) and predict.txt, the command that gives the same
    masks; the overlay video in the masks' colours."""
    if not self.done.all():
      missing = int(np.flatnonzero(~self.done)[0])
      raise media.InputError(f'frame {missing} has no result yet: propagate first')
    zip_path = os.path.join(self.folder, 'masks.zip')
    with zipfile.ZipFile(zip_path, 'w', zipfile.ZIP_DEFLATED) as archive:
      for name in self.video.names:
        archive.write(os.path.join(self.folder, 'masks', f'{name}.png'), f'masks/{name}.png')
      for t, path in sorted(self.given.items()):
        archive.write(path, f'given/{os.path.basename(path)}')
      archive.writestr('predict.txt', self.command() + '\n')
    video_path = os.path.join(self.folder, 'overlay.mp4')
    writer = media.OverlayVideo(video_path, self.video.size, self.video.fps)
    chunk = 16
    for start in range(0, len(self.video), chunk):
      stop = min(start + chunk, len(self.video))
      writer.write(self.video[start:stop], np.stack([self.result(t) for t in range(start, stop)]))
    writer.close()
    return zip_path, video_path

  def command(self) -> str:
    """The `predict` command line that segments this video from the masks given here (paths in the zip)."""
    args = self.options
    words = ['python', '-m', 'gsfm_jax.predict', '--checkpoint', args.checkpoint, '--video', self.path]
    words += ['--mask', 'given/00000.png']
    words += [w for t in sorted(self.given) if t > 0 for w in ('--correct', f'{t}:given/{t:05d}.png')]
    words += ['--top_k', str(args.top_k), '--mem_every', str(args.mem_every), '--resize', args.resize]
    if args.capacity:
      words += ['--capacity', str(args.capacity)]
    return shlex.join(words + ['--out', 'out'])
