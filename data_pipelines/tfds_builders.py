"""TFDS datasets of the training data: a few large ArrayRecord shards instead of many small files.

  python -m data_pipelines.tfds_builders static --static_root data/static --data_dir data/tfds
  python -m data_pipelines.tfds_builders videos --davis_root data/DAVIS --youtube_root data/YouTube \\
      [--video_roots my/videos …] --data_dir data/tfds

Both read the folder layouts of `data_pipelines.sources` (as TFDS manual data) and write one split per
source (`fss`, `duts_tr`, … / `davis`, `youtube`, `videos`), so the pipeline applies the reference's mix
(5 × BIG + HRSOD, DAVIS × 5) and YouTube's ÷ 5 skip per split. JPEG frames are stored byte for byte;
masks are stored as object-id (grayscale) PNGs, so any TFDS reader decodes them correctly. Files that
`data_pipelines.check` finds broken are left out with a warning naming them. The pipeline reads the
ArrayRecord form (random access: the batch of step N is read directly on resume); `data_dir` may be a
`gs://` path where the installed file systems support it.
"""

import logging
import os
import sys
from typing import Iterator, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from data_pipelines import check, sources
from gsfm_jax import cli

FILE_FORMAT = 'array_record'


def split_name(source: str) -> str:
  """TFDS split name of a source folder: `DUTS-TR` -> `duts_tr`."""
  return source.lower().replace('-', '_')


def _ids_png(path: str) -> np.ndarray:
  """A palette or grayscale mask as (H, W, 1) uint8 object ids."""
  return np.asarray(Image.open(path))[..., None].astype(np.uint8)


def _gray_png(path: str) -> np.ndarray:
  return np.asarray(Image.open(path).convert('L'))[..., None]


def _broken(frame: str, mask: str, palette: bool) -> bool:
  problems = check.check_pair(frame, mask, palette)
  for problem in problems:
    logging.warning('left out of the TFDS dataset: %s', problem)
  return bool(problems)


# run as `python -m`, this file is __main__ too: only the package module's classes register (see the end)
_COPY = __name__ == '__main__'


class GsfmStatic(tfds.core.GeneratorBasedBuilder, skip_registration=_COPY):
  """Static salient-object images (stage 0): image + 8-bit mask, one split per folder."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'A folder with fss/, DUTS-TR/, DUTS-TE/, ecssd/, BIG_small/, HRSOD_small/.'

  def __init__(self, *, static_root: Optional[str] = None, **kwargs):
    self._static_root = static_root
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          'name': tfds.features.Text(),
          'image': tfds.features.Image(encoding_format='jpeg'),
          'mask': tfds.features.Image(shape=(None, None, 1), encoding_format='png'),
        }
      )
    )

  def _split_generators(self, dl_manager):
    table = sources.list_static(self._static_root or os.fspath(dl_manager.manual_dir))
    present = list(dict.fromkeys(table.source))
    return {split_name(s): self._generate_examples(table, s) for s in present}

  def _generate_examples(self, table: sources.StaticTable, source: str) -> Iterator[tuple[str, dict]]:
    for image, mask, s in zip(table.images, table.masks, table.source):
      if s == source and not _broken(image, mask, palette=False):
        name = os.path.relpath(image, os.path.dirname(os.path.dirname(image)))
        yield name, {'name': name, 'image': image, 'mask': _gray_png(mask)}


class GsfmVideos(tfds.core.GeneratorBasedBuilder, skip_registration=_COPY):
  """Annotated training videos (stage 3): one example per video, one split per source."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Pass davis_root / youtube_root / video_roots (the layouts of sources.py).'

  def __init__(
    self,
    *,
    davis_root: Optional[str] = None,
    youtube_root: Optional[str] = None,
    video_roots: Sequence[str] = (),
    youtube_subset: Optional[str] = None,
    **kwargs,
  ):
    self._roots = dict(
      davis_root=davis_root, youtube_root=youtube_root, video_roots=tuple(video_roots), youtube_subset=youtube_subset
    )
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          'name': tfds.features.Text(),
          'frames': tfds.features.Sequence(tfds.features.Image(encoding_format='jpeg')),
          'masks': tfds.features.Sequence(tfds.features.Image(shape=(None, None, 1), encoding_format='png')),
        }
      )
    )

  def _split_generators(self, dl_manager):
    table = sources.list_videos(**self._roots)
    present = list(dict.fromkeys(table.source))
    return {split_name(s): self._generate_examples(table, s) for s in present}

  def _generate_examples(self, table: sources.VideoTable, source: str) -> Iterator[tuple[str, dict]]:
    for v, name in enumerate(table.names):
      if table.source[v] != source:
        continue
      lo, hi = table.offsets[v], table.offsets[v + 1]
      pairs = [(f, m) for f, m in zip(table.frames[lo:hi], table.masks[lo:hi]) if not _broken(f, m, palette=True)]
      if len(pairs) < check.MIN_FRAMES:
        logging.warning('left out of the TFDS dataset: video %s (fewer than three good frames)', name)
        continue
      yield name, {'name': name, 'frames': [f for f, _ in pairs], 'masks': [_ids_png(m) for _, m in pairs]}


def build(kind: str, data_dir: str, **roots) -> tfds.core.DatasetBuilder:
  """Writes (or reuses) the `kind` ('static' | 'videos') dataset under `data_dir`; returns its builder."""
  tfds.disable_progress_bar()
  if kind == 'videos':  # no data: DataError before anything is written
    sources.list_videos(**roots)
  elif roots.get('static_root'):
    sources.list_static(roots['static_root'])
  builder = (GsfmStatic if kind == 'static' else GsfmVideos)(data_dir=data_dir, **roots)
  builder.download_and_prepare(file_format=FILE_FORMAT)
  return builder


@cli.reported
def main(argv: Optional[list[str]] = None) -> int:
  parser = cli.Parser(__doc__)
  parser.add_argument('kind', choices=('static', 'videos'))
  parser.add_argument('--data_dir', required=True, help='TFDS data_dir to write (local or gs://)')
  parser.add_argument('--static_root', help='static images root (kind static)')
  parser.add_argument('--davis_root', help='DAVIS root, holding 2017/trainval (kind videos)')
  parser.add_argument('--youtube_root', help='YouTube-VOS root, holding train_480p (kind videos)')
  parser.add_argument('--youtube_subset', help='list of YouTube-VOS videos to use (default all)')
  parser.add_argument('--video_roots', nargs='*', default=[], help='your own {JPEGImages,Annotations} roots')
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
  try:
    if args.kind == 'static':
      builder = build('static', args.data_dir, static_root=args.static_root)
    else:
      builder = build(
        'videos',
        args.data_dir,
        davis_root=args.davis_root,
        youtube_root=args.youtube_root,
        video_roots=args.video_roots,
        youtube_subset=args.youtube_subset,
      )
  except sources.DataError as error:
    print(
      f'error: {error}: check the --*-root flags (python -m data_pipelines.check ROOT lists what is wrong)',
      file=sys.stderr,
    )
    return 2
  for name, split in builder.info.splits.items():
    print(f'{name}: {split.num_examples} examples in {split.num_shards} shard(s)')
  print(f'written to {builder.data_dir}')
  return 0


if __name__ == '__main__':
  # the builders must be classes of the package module, not of __main__: TFDS looks up their metadata by module
  from data_pipelines import tfds_builders

  sys.exit(tfds_builders.main())
