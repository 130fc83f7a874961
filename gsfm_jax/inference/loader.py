"""Runs an exported inference program (`python -m gsfm_jax.inference.program`) with jax and numpy only: no Flax, no
model code. The host side is the engine's (`inference.schedule`); the device side is the file's program.

  python -m gsfm_jax.inference.loader gsfm.program --video clip.mp4 --mask first.png --out out/clip

  program = Program('gsfm.program')
  labels = program.segment(frames, first_labels)   # frames (T, H, W, 3) uint8, first_labels (H, W) ids 0 … K

Writes OUT/masks/<frame>.png (palette PNGs with the mask's ids).
"""

import json
import sys
import zipfile
from typing import Iterator, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from gsfm_jax import cli
from gsfm_jax.inference.schedule import Protocol, pad_to, plan

FORMAT = 'gsfm_jax.program/1'


class Output(NamedTuple):
  """Frames start … start + n - 1 of a video: labels (n, H, W) uint8 (0 background, k object k) and prob
  (n, H, W, K+1) float32, background first."""

  start: int
  labels: np.ndarray
  prob: np.ndarray


class Program:
  """An exported program on one device: `chunks(frames, first_labels)` / `segment(…)`; see the module docstring."""

  def __init__(self, path: str, device: Optional[jax.Device] = None):
    try:
      with np.load(path) as f:
        self.header = json.loads(f['header'].tobytes())
        if self.header.get('format') != FORMAT:
          raise ValueError(f'format {self.header.get("format")!r}, not {FORMAT!r}')
        self.exported = export.deserialize(bytearray(f['program'].tobytes()))
        weights = [f[f'weight_{i:04d}'] for i in range(self.header['weights'])]
        consts = {name[len('const_') :]: f[name] for name in f.files if name.startswith('const_')}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
      raise ValueError(
        f'{path}: not a gsfm_jax program file ({error}); make one with python -m gsfm_jax.inference.program'
      ) from None
    self.device = device
    self.weights, self.consts = jax.device_put((weights, consts), device)
    # fewer objects than the program's: padded to its count, as the engine pads to its object bucket
    self.protocol = Protocol(
      top_k=self.header['top_k'],
      mem_every=self.header['mem_every'],
      capacity=self.header['capacity'],
      chunk=self.header['chunk'],
      object_bucket=self.header['objects'],
    )

  def empty_carry(self) -> tuple:
    """The memory bank's and the enabled flags' starting values (an empty bank), made on the device."""
    with jax.default_device(self.device or jax.devices()[0]):
      return tuple(jnp.full(c['shape'], c['fill'], jnp.dtype(c['dtype'])) for c in self.header['carry'])

  def chunks(self, frames: Sequence[np.ndarray], first_labels: np.ndarray) -> Iterator[Output]:
    """frames: (T, H, W, 3) uint8 (or a sequence whose [a:b] reads them); first_labels (H, W) ids 0 … K of the
    objects in frame 0. Yields each chunk's outputs in order."""
    size, objects = tuple(self.header['size']), self.header['objects']
    if first_labels.shape != size or np.asarray(frames[0:1]).shape[1:3] != size:
      raise ValueError(
        f'this program is for {size[0]}x{size[1]} frames and masks; got frames '
        f'{np.asarray(frames[0:1]).shape[1:3]}, mask {first_labels.shape}'
      )
    video = plan(len(frames), {0: first_labels}, self.protocol)
    if video.padded != objects:
      raise ValueError(f'{video.objects} objects in the first mask; this program takes 1 to {objects}')
    consts = {**self.consts, 'labels': jax.device_put(video.labels, self.device)}
    carry, chunk = self.empty_carry(), self.protocol.chunk
    for start in range(0, len(frames), chunk):
      stop = min(start + chunk, len(frames))
      xs = {name: pad_to(v[start:stop], chunk) for name, v in video.xs.items()}
      xs['frame'] = pad_to(np.asarray(frames[start:stop]), chunk)
      carry, out = self.exported.call(self.weights, consts, carry, jax.device_put(xs, self.device))
      out = jax.device_get(out)
      yield Output(start, out['labels'][: stop - start], out['prob'][: stop - start, ..., : video.objects + 1])

  def segment(self, frames: Sequence[np.ndarray], first_labels: np.ndarray) -> Output:
    """`chunks` with every chunk's outputs concatenated: labels (T, H, W), prob (T, H, W, K+1)."""
    parts = list(self.chunks(frames, first_labels))
    return Output(0, np.concatenate([p.labels for p in parts]), np.concatenate([p.prob for p in parts]))


@cli.reported
def main(argv: Optional[list[str]] = None) -> int:
  parser = cli.Parser(__doc__)
  parser.add_argument('program', help='a file written by python -m gsfm_jax.inference.program')
  parser.add_argument('--video', required=True, help='video file or folder of frames')
  parser.add_argument('--mask', required=True, action='append', help='first-frame mask (or one binary PNG per object)')
  parser.add_output()
  args = parser.parse_args(argv)
  from gsfm_jax.inference import media

  output = media.OutputFolder(args.out, args.overwrite)
  video = media.VideoReader(args.video)
  mask = media.read_mask(args.mask, video.size)
  ids = [int(i) for i in np.unique(mask.labels) if i > 0]
  program = Program(args.program)
  with output as folder:
    for out in program.chunks(video, media.index_lookup(ids)[mask.labels]):
      names = video.names[out.start : out.start + len(out.labels)]
      media.write_masks(f'{folder}/masks', names, np.array([0] + ids, np.uint8)[out.labels])
  print(f'{len(video)} frames, {len(ids)} object(s); written to {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
