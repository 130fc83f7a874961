"""Input-pipeline settings (`data_pipelines.input_pipeline`); training configs embed one as `config.data`.

kind             'static' (stage 0 pseudo-videos) | 'vos' (stage 3 clips)
tfds_dir         read the TFDS form written by `data_pipelines.tfds_builders` instead of the folders
static_root      folder holding fss/, DUTS-TR/, DUTS-TE/, ecssd/, BIG_small/, HRSOD_small/
davis_root       DAVIS root (2017/trainval/...); youtube_root: YouTube-VOS root (train_480p/...)
video_roots      your own `{JPEGImages,Annotations}` roots
size             square crop side (384 in the reference)
skip_values / skip_fractions   the max-skip curriculum (docs/reference.md §3.3)
max_attempts     a broken sample is replaced by up to this many substitutes
workers          parallel clips per host (0: one per CPU core); prefetch: batches (0: autotune)
"""

import ml_collections


def get_config(kind: str = 'vos') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.kind = kind
  config.tfds_dir = ''
  config.static_root = 'data/static'
  config.static_folders = ('fss', 'DUTS-TR', 'DUTS-TE', 'ecssd', 'BIG_small', 'HRSOD_small')
  config.static_repeats = {'BIG_small': 5, 'HRSOD_small': 5}
  config.davis_root = 'data/DAVIS'
  config.youtube_root = 'data/YouTube'
  config.youtube_subset = ''
  config.youtube_divisor = 5
  config.video_roots = ()
  config.davis_repeat = 5
  config.size = 384
  config.skip_values = (5, 10, 15, 20, 25, 5)
  config.skip_fractions = (0.1, 0.2, 0.3, 0.4, 0.9)
  config.max_attempts = 8
  config.workers = 0
  config.prefetch = 0
  return config
