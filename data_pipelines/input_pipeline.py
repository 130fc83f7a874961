"""The training input pipeline: per-host, step-indexed, deterministic tf.data batches of clips.

Sample g of the global stream (g = 0, 1, 2, …) belongs to step g // global_batch. Host h of P reads the
samples [N·B + h·B/P, N·B + (h+1)·B/P) of step N, so the hosts together see exactly the global batch a
single process would see. Sample g shows item `perm_e[g mod L]` (L items, a fresh permutation per epoch
e = g // L, drawn from (seed, e)) and draws every random number from (seed, g): the batch of step N
depends only on (seed, N, host), and resuming at step N needs no replay.

Broken samples: a sample whose files fail to decode (or whose mask does not fit its frame) is replaced
by a deterministic substitute (attempt a of sample g draws another item from (seed, g, a)). The host
side (`Batches`) counts them and logs the file and its problem; a batch never holds a wrong sample.
"""

import dataclasses
import logging
import os
from typing import Callable, Iterator, Optional

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import check, clips, sources, tfds_builders

tf.config.set_visible_devices([], 'GPU')  # the accelerator belongs to JAX


@dataclasses.dataclass
class Source:
  """What the sampler needs from a dataset: item table, a TF loader per entry, names for the logs."""

  kind: str  # 'static' | 'vos'
  items: np.ndarray  # (L,) entry of each item (the mix repeats entries)
  load: Callable[[tf.Tensor], dict]  # entry -> refs for the clip functions (TF graph)
  read: Callable[[tf.Tensor], tf.Tensor]  # refs -> encoded bytes (file reads, or identity)
  describe: Callable[[int], str]  # entry -> name and, for files, what `check` finds wrong


def _constant(values) -> tf.Tensor:
  return tf.constant(np.asarray(values))


def _read_files(paths: tf.Tensor) -> tf.Tensor:
  return tf.map_fn(tf.io.read_file, paths, fn_output_signature=tf.string)


def _file_problems(pairs: list[tuple[str, str]], palette: bool) -> str:
  problems = [str(p) for frame, mask in pairs for p in check.check_pair(frame, mask, palette)]
  return '; '.join(problems) if problems else 'no file problem found (see the TensorFlow warning above)'


def static_files(config: ml_collections.ConfigDict) -> Source:
  table = sources.list_static(config.static_root, tuple(config.static_folders))
  images, masks = _constant(table.images), _constant(table.masks)

  def load(entry):
    return {'image': tf.gather(images, entry), 'mask': tf.gather(masks, entry), 'mask_name': tf.gather(masks, entry)}

  def describe(entry: int) -> str:
    pair = (table.images[entry], table.masks[entry])
    return f'{pair[0]}: {_file_problems([pair], palette=False)}'

  return Source(
    'static', np.asarray(sources.repeats(table.source, dict(config.static_repeats))), load, tf.io.read_file, describe
  )


def video_files(config: ml_collections.ConfigDict) -> Source:
  table = sources.list_videos(
    config.davis_root or None,
    config.youtube_root or None,
    tuple(config.video_roots),
    config.youtube_subset or None,
    config.youtube_divisor,
  )
  frames, masks = _constant(table.frames), _constant(table.masks)
  offsets, divisors = _constant(table.offsets), _constant(table.skip_divisor)

  def load(entry):
    lo, hi = offsets[entry], offsets[entry + 1]
    return {
      'frames': frames[lo:hi],
      'masks': masks[lo:hi],
      'mask_names': masks[lo:hi],
      'divisor': tf.gather(divisors, entry),
    }

  def describe(entry: int) -> str:
    lo, hi = table.offsets[entry], table.offsets[entry + 1]
    pairs = list(zip(table.frames[lo:hi], table.masks[lo:hi]))
    return f'video {table.names[entry]}: {_file_problems(pairs, palette=True)}'

  factors = {'davis': config.davis_repeat}
  return Source('vos', np.asarray(sources.repeats(table.source, factors)), load, _read_files, describe)


def _tfds_records(builder, splits: list[str]) -> tuple[Callable[[tf.Tensor], tf.Tensor], list[int]]:
  """A TF op reading record `i` of the concatenated `splits` (ArrayRecord random access), split sizes."""
  readers = [builder.as_data_source(split=s).data_source for s in splits]
  sizes = [len(r) for r in readers]
  starts = np.cumsum([0] + sizes)

  def fetch(i: np.ndarray) -> bytes:
    k = int(np.searchsorted(starts, i, side='right')) - 1
    return readers[k][int(i - starts[k])]

  def record(entry):
    data = tf.numpy_function(fetch, [tf.cast(entry, tf.int64)], tf.string, stateful=False)
    return tf.ensure_shape(data, [])

  return record, sizes


def _tfds_source(config: ml_collections.ConfigDict, kind: str) -> Source:
  builder = (tfds_builders.GsfmStatic if kind == 'static' else tfds_builders.GsfmVideos)(data_dir=config.tfds_dir)
  order = [tfds_builders.split_name(s) for s in sources.STATIC_FOLDERS + sources.VIDEO_SOURCES]
  splits = sorted(builder.info.splits, key=lambda s: order.index(s) if s in order else len(order))
  record, sizes = _tfds_records(builder, splits)
  features = builder.info.features
  skip = {k: tfds.decode.SkipDecoding() for k in (('image', 'mask') if kind == 'static' else ('frames', 'masks'))}
  names = [f'{split}[{i}]' for split, size in zip(splits, sizes) for i in range(size)]
  split_of = np.repeat(np.arange(len(splits)), sizes)
  if kind == 'static':
    factors = {tfds_builders.split_name(k): v for k, v in dict(config.static_repeats).items()}
  else:
    factors = {'davis': config.davis_repeat}
  items = np.asarray(sources.repeats([splits[k] for k in split_of], factors))
  divisors = _constant([config.youtube_divisor if splits[k] == 'youtube' else 1 for k in split_of])

  def load(entry):
    example = features.deserialize_example(record(entry), decoders=skip)
    if kind == 'static':
      return {'image': example['image'], 'mask': example['mask'], 'mask_name': example['name']}
    count = tf.size(example['masks'])
    mask_names = example['name'] + tf.constant(' frame ') + tf.strings.as_string(tf.range(count))
    return {
      'frames': example['frames'],
      'masks': example['masks'],
      'mask_names': mask_names,
      'divisor': tf.gather(divisors, entry),
    }

  return Source(kind, items, load, tf.identity, lambda entry: f'TFDS record {names[entry]} in {config.tfds_dir}')


def open_source(config: ml_collections.ConfigDict) -> Source:
  """The configured dataset: `config.kind` 'static' | 'vos', from files or (`config.tfds_dir`) TFDS."""
  if config.kind not in ('static', 'vos'):
    raise ValueError(f"data.kind must be 'static' or 'vos', not {config.kind!r}")
  if config.tfds_dir:
    return _tfds_source(config, config.kind)
  return static_files(config) if config.kind == 'static' else video_files(config)


def _candidates(seed: tf.Tensor, g: tf.Tensor, items: tf.Tensor, attempts: int) -> tf.Tensor:
  """The entries tried by attempts 0 … attempts-1 of sample `g`: (attempts,) int64.

  Attempt 0 shows the epoch's permutation at g; attempt a > 0 a substitute drawn from (seed, g, a).
  """
  count = tf.size(items, out_type=tf.int64)
  epoch_seed = tf.random.experimental.stateless_fold_in(seed, g // count)
  first = tf.gather(tf.random.experimental.stateless_shuffle(items, epoch_seed), g % count)
  sample_seed = tf.random.experimental.stateless_fold_in(seed, g)
  substitutes = []
  for a in range(1, attempts):
    draw_seed = tf.random.experimental.stateless_fold_in(sample_seed, tf.constant(a + 1_000_003, tf.int64))
    substitutes.append(tf.gather(items, tf.random.stateless_uniform([], draw_seed, 0, count, dtype=tf.int64)))
  return tf.stack([first] + substitutes)


def make_clip(
  source: Source,
  config: ml_collections.ConfigDict,
  entry: tf.Tensor,
  seed: tf.Tensor,
  step: tf.Tensor,
  total_steps: int,
) -> dict:
  """The clip of dataset entry `entry` drawn with the stateless `seed` at training step `step` (graph code)."""
  refs = source.load(entry)
  if source.kind == 'static':
    return clips.static_clip(
      seed, source.read(refs['image']), source.read(refs['mask']), refs['mask_name'], config.size
    )
  skip = clips.max_skip(step, total_steps, tuple(config.skip_values), tuple(config.skip_fractions), refs['divisor'])
  return clips.vos_clip(seed, refs['frames'], refs['masks'], refs['mask_names'], skip, config.size, source.read)


def clip_fn(
  source: Source, config: ml_collections.ConfigDict, seed: int, global_batch: int, total_steps: int
) -> Callable[[tf.Tensor, tf.Tensor], dict]:
  """(g, attempt) -> the clip of sample g (graph code), with `index`, `attempt`, `entry`, `tried`."""
  items = tf.constant(source.items, tf.int64)
  base = tf.constant([seed, 0], tf.int64)

  def make(g, attempt):
    tried = _candidates(base, g, items, config.max_attempts)
    entry = tried[attempt]
    sample_seed = tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(base, g), attempt)
    clip = make_clip(source, config, entry, sample_seed, g // global_batch, total_steps)
    return {**clip, 'index': g, 'attempt': attempt, 'entry': entry, 'tried': tried}

  return make


def make_dataset(
  config: ml_collections.ConfigDict,
  *,
  seed: int,
  global_batch: int,
  total_steps: int,
  start_step: int = 0,
  process_index: int = 0,
  process_count: int = 1,
  source: Optional[Source] = None,
) -> tf.data.Dataset:
  """This host's batches from step `start_step` on: dicts of (B/P, …) arrays (see `clips`)."""
  if global_batch % process_count:
    raise ValueError(f'global batch {global_batch} does not split over {process_count} processes')
  local = global_batch // process_count
  source = source or open_source(config)
  make = clip_fn(source, config, seed, global_batch, total_steps)

  def sample_index(n):
    return (n // local) * global_batch + process_index * local + n % local

  def first_good(g):
    attempts = tf.data.Dataset.range(config.max_attempts).map(lambda a: make(g, a))
    return attempts.ignore_errors(log_warning=True).take(1)

  workers = config.workers or os.cpu_count()
  ds = tf.data.Dataset.range(start_step * local, np.iinfo(np.int64).max).map(sample_index)
  ds = ds.interleave(first_good, cycle_length=workers, block_length=1, num_parallel_calls=workers, deterministic=True)
  ds = ds.batch(local, drop_remainder=True).prefetch(config.prefetch or tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = workers
  return ds.with_options(options)


class Batches:
  """Numpy batches from `make_dataset`, with broken samples counted and logged (file and problem).

  Raises when a sample and all its substitutes are broken, or when the stream lost its step order.
  """

  def __init__(
    self,
    dataset: tf.data.Dataset,
    source: Source,
    start_step: int,
    global_batch: int,
    process_index: int = 0,
    process_count: int = 1,
  ):
    self._iterator = dataset.as_numpy_iterator()
    self._source = source
    self._local = global_batch // process_count
    self._global, self._offset = global_batch, process_index * self._local
    self.step = start_step
    self.skipped = 0

  def __iter__(self) -> Iterator[dict]:
    return self

  def __next__(self) -> dict:
    batch = next(self._iterator)
    expected = self.step * self._global + self._offset + np.arange(self._local)
    if not np.array_equal(batch['index'], expected):
      raise RuntimeError(
        f'step {self.step}: every substitute of a sample failed to load (samples '
        f'{sorted(set(expected) - set(batch["index"]))} lost); the dataset is badly broken, '
        f'run `python -m data_pipelines.check` on it'
      )
    for index, attempts, tried in zip(batch['index'], batch['attempt'], batch['tried']):
      for entry in tried[:attempts]:
        self.skipped += 1
        logging.warning('step %d: skipped broken sample %d (%s)', self.step, index, self._source.describe(int(entry)))
    self.step += 1
    return batch
