"""Many videos over many devices and processes (`inference.parallel`): the length-balanced shares, a failing
video that leaves the others' outputs, `evaluate` on two devices and on two `jax.distributed` processes
writing the bytes of a one-device run (PNGs, CSVs, the YouTube-VOS zip), and `predict --videos`."""

import filecmp
import json
import os
import re
import socket
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from data_pipelines.palette import write_palette_png
from gsfm_jax import evaluate, predict
from gsfm_jax.inference import parallel

LENGTHS = {'mid': 5, 'long': 8, 'short': 3}  # val.txt order: not the order they run in


def test_shares_are_balanced_by_length_longest_first():
  lengths = [3, 9, 4, 9, 1, 6]
  assert parallel.share(lengths, 1) == [[1, 3, 5, 2, 0, 4]]
  # 9 → w0, 9 → w1, 6 → w0 (15), 4 → w1 (13), 3 → w1 (16), 1 → w0 (16)
  assert parallel.share(lengths, 2) == [[1, 5, 4], [3, 2, 0]]
  assert parallel.share(lengths, 4) == [[1], [3], [5, 4], [2, 0]]
  assert parallel.share([2], 3) == [[0], [], []]


def test_workers_take_the_longest_video_left_and_a_failure_stops_only_its_video():
  """Three workers, six items; item 2 raises. Each item runs once, longest first, on whichever worker is
  free; the others' results come back and the failure is reported with its message."""
  started, lock = [], threading.Lock()

  def work(worker: str, item: int) -> str:
    with lock:
      started.append(item)
    if item == 2:
      raise OSError('frame 00004.jpg is truncated')
    time.sleep(0.01 * item)
    return f'{worker}:{item}'

  lengths = [10, 60, 30, 50, 20, 40]
  results, failures = parallel.run_all(['a', 'b', 'c'], list(range(6)), lengths, work)
  assert sorted(results) == [0, 1, 3, 4, 5] and failures == {2: 'OSError: frame 00004.jpg is truncated'}
  assert started[:3] and sorted(started[:3]) == [1, 3, 5] and sorted(started) == list(range(6))
  assert {r.split(':')[0] for r in results.values()} <= {'a', 'b', 'c'}


def _link_davis(src: str, root, lengths: dict[str, int], broken: str = '') -> str:
  """A DAVIS-layout folder whose sequences are the first n frames of one video (full ground truth);
  the sequence `broken` gets a frame whose JPEG data is cut short (its header reads, its pixels do not)."""
  seq = open(os.path.join(src, 'ImageSets', '2017', 'val.txt')).read().split()[0]
  for name, n in lengths.items():
    for kind, ext in (('JPEGImages', '.jpg'), ('Annotations', '.png')):
      os.makedirs(root / kind / '480p' / name)
      for t in range(n):
        os.symlink(os.path.join(src, kind, '480p', seq, f'{t:05d}{ext}'), root / kind / '480p' / name / f'{t:05d}{ext}')
  if broken:
    frame = root / 'JPEGImages' / '480p' / broken / '00002.jpg'
    data = open(os.path.realpath(frame), 'rb').read()
    os.remove(frame)
    frame.write_bytes(data[: len(data) // 3])
  os.makedirs(root / 'ImageSets' / '2017')
  (root / 'ImageSets' / '2017' / 'val.txt').write_text('\n'.join(lengths) + '\n')
  return str(root)


@pytest.fixture(scope='module')
def davis(data_root, tmp_path_factory) -> str:
  return _link_davis(os.path.join(data_root, 'DAVIS', '2017', 'trainval'), tmp_path_factory.mktemp('davis'), LENGTHS)


@pytest.fixture(scope='module')
def one_device(weights, davis, tmp_path_factory) -> str:
  """The one-device evaluation every other run is compared with."""
  out = str(tmp_path_factory.mktemp('one') / 'out')
  assert (
    evaluate.main(['--checkpoint', weights, '--benchmark', 'davis17', '--root', davis, '--out', out, '--devices', '1'])
    == 0
  )
  return out


def assert_same_files(found: str, expected: str) -> None:
  """The same file names under both folders, each with the same bytes."""
  files = lambda root: sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
  assert files(found) == files(expected)
  _, mismatch, errors = filecmp.cmpfiles(found, expected, files(expected), shallow=False)
  assert not mismatch and not errors, (mismatch, errors)


def test_two_devices_write_the_bytes_of_one(weights, davis, one_device, tmp_path, capsys):
  out = tmp_path / 'two'
  capsys.readouterr()
  assert (
    evaluate.main(
      ['--checkpoint', weights, '--benchmark', 'davis17', '--root', davis, '--out', str(out), '--devices', '2']
    )
    == 0
  )
  printed = capsys.readouterr().out
  assert '(cpu:0)' in printed and '(cpu:1)' in printed and 'over 2 device(s)' in printed
  fps, compiling = re.search(
    r'([\d.]+) FPS \(I/O and compilation excluded\).*\(([\d.]+) s compiling\)', printed
  ).groups()
  assert float(fps) > 0 and float(compiling) > 0
  assert printed.index('long:') < printed.index('short:')  # longest first
  assert_same_files(str(out), one_device)
  assert sorted(os.listdir(out)) == ['global_results-val.csv', 'long', 'mid', 'per-sequence_results-val.csv', 'short']


def test_two_processes_write_the_bytes_of_one(weights, davis, one_device, tmp_path):
  """Two `jax.distributed` processes of one CPU device each: process 0 takes the longest video, process 1
  the other two (5 + 3 frames); process 0 merges, scores and makes --out."""
  from runs import start

  with socket.socket() as s:
    s.bind(('localhost', 0))
    coordinator = f'localhost:{s.getsockname()[1]}'
  out = tmp_path / 'distributed'
  args = [
    sys.executable,
    '-m',
    'gsfm_jax.evaluate',
    '--checkpoint',
    weights,
    '--benchmark',
    'davis17',
    '--root',
    davis,
    '--out',
    str(out),
    '--coordinator_address',
    coordinator,
    '--num_processes',
    '2',
  ]
  workers = [start(args + ['--process_id', str(p)], devices=1) for p in range(2)]
  printed = [w.communicate(timeout=600)[0] for w in workers]
  for w, text in zip(workers, printed):
    assert w.returncode == 0, text[-4000:]
  assert '[1/1] long: 8 frames' in printed[0] and 'J&F-Mean' in printed[0]
  assert '[1/2] mid: 5 frames' in printed[1] and '[2/2] short: 3 frames' in printed[1] and 'J&F' not in printed[1]
  assert 'over 2 device(s)' in printed[0]
  assert_same_files(str(out), one_device)
  assert not [n for n in os.listdir(tmp_path) if n.startswith('.')]  # no shared partial folder left


def test_a_video_that_fails_is_named_and_the_others_are_kept(weights, data_root, tmp_path, capsys):
  root = _link_davis(
    os.path.join(data_root, 'DAVIS', '2017', 'trainval'), tmp_path / 'davis', {'short': 3, 'cut': 4}, broken='cut'
  )
  out = tmp_path / 'out'
  assert (
    evaluate.main(
      ['--checkpoint', weights, '--benchmark', 'davis17', '--root', root, '--out', str(out), '--devices', '2']
    )
    == 1
  )
  err = capsys.readouterr().err
  assert 'error: video cut failed: ' in err and '00002.jpg' in err
  assert '1 of 2 videos failed (cut, named above); the outputs of the others are in' in err
  assert sorted(os.listdir(out)) == ['short'] and len(os.listdir(out / 'short')) == 3  # no scores, no half video


def _youtube(clip, root, lengths: dict[str, int]) -> str:
  """A YouTube-VOS layout (valid split) of videos cut from one clip; object 1 from frame 0, 5 from frame 1."""
  frames_dir, first_mask = clip
  meta = {}
  for video, n in lengths.items():
    images, annotations = (
      root / 'all_frames' / 'valid_all_frames' / 'JPEGImages' / video,
      root / 'valid' / 'Annotations' / video,
    )
    os.makedirs(images)
    os.makedirs(annotations)
    for t in range(n):
      os.symlink(os.path.join(frames_dir, f'{t:05d}.jpg'), images / f'{t:05d}.jpg')
    truth = [np.asarray(Image.open(first_mask.replace('00000', f'{t:05d}'))) for t in range(2)]
    write_palette_png(np.where(truth[0] == 1, 1, 0).astype(np.uint8), str(annotations / '00000.png'))
    write_palette_png(np.where(truth[1] == 2, 5, 0).astype(np.uint8), str(annotations / '00001.png'))
    meta[video] = {
      'objects': {
        '1': {'frames': [f'{t:05d}' for t in range(0, n, 2)]},
        '5': {'frames': [f'{t:05d}' for t in range(1, n)]},
      }
    }
  json.dump({'videos': meta}, open(root / 'valid' / 'meta.json', 'w'))
  return str(root)


def test_youtube_submission_zip_has_the_same_bytes_on_two_devices(weights, clip, tmp_path):
  root = _youtube(clip, tmp_path / 'yv', {'v0': 6, 'v1': 4, 'v2': 3})
  zips = []
  for devices in ('1', '2'):
    out = tmp_path / f'out{devices}'
    assert (
      evaluate.main(
        [
          '--checkpoint',
          weights,
          '--benchmark',
          'youtube',
          '--root',
          root,
          '--out',
          str(out),
          '--short_side',
          '64',
          '--devices',
          devices,
        ]
      )
      == 0
    )
    zips.append(open(str(out) + '.zip', 'rb').read())
  assert zips[0] == zips[1]
  assert_same_files(str(tmp_path / 'out2'), str(tmp_path / 'out1'))


# ---------------------------------------------------------------- predict --videos


def test_predict_many_videos_from_a_folder_or_a_list(weights, clip, tmp_path, capsys):
  """A folder of a frame folder, an .mp4 and a video whose frame 2 cannot be decoded, each with NAME.png
  beside it, on two devices: each video's outputs in OUT/<name>/, the failing one named and left out,
  and the same masks, byte for byte, from a list file on one device."""
  import cv2

  frames_dir, first_mask = clip
  folder = tmp_path / 'footage'
  os.makedirs(folder)
  os.symlink(frames_dir, folder / 'walk')
  (folder / 'walk.png').write_bytes(open(first_mask, 'rb').read())
  frames = [np.asarray(Image.open(os.path.join(frames_dir, n))) for n in sorted(os.listdir(frames_dir))][:5]
  writer = cv2.VideoWriter(str(folder / 'clip.mp4'), cv2.VideoWriter_fourcc(*'mp4v'), 10, frames[0].shape[1::-1])
  for frame in frames:
    writer.write(np.ascontiguousarray(frame[..., ::-1]))
  writer.release()
  (folder / 'clip.png').write_bytes(open(first_mask, 'rb').read())
  os.makedirs(folder / 'cut')
  for t in range(4):
    data = open(os.path.join(frames_dir, f'{t:05d}.jpg'), 'rb').read()
    (folder / 'cut' / f'{t:05d}.jpg').write_bytes(data[: len(data) // 3] if t == 2 else data)
  (folder / 'cut.png').write_bytes(open(first_mask, 'rb').read())
  (folder / 'notes.txt').write_text('not a video')

  out = tmp_path / 'out'
  assert predict.main(['--checkpoint', weights, '--videos', str(folder), '--out', str(out), '--devices', '2']) == 1
  printed = capsys.readouterr()
  assert 'error: cut (' in printed.err and '00002.jpg' in printed.err
  assert '2 of 3 videos, 13 frames' in printed.out and '2 device(s)' in printed.out
  assert sorted(os.listdir(out)) == ['clip', 'summary.json', 'walk']
  assert len(os.listdir(out / 'walk' / 'masks')) == len(os.listdir(frames_dir))
  assert sorted(os.listdir(out / 'clip')) == ['masks', 'overlay.mp4', 'overlay_last.png', 'summary.json']
  summary = json.load(open(out / 'summary.json'))
  assert sorted(summary['videos']) == ['clip', 'walk'] and list(summary['failed']) == ['cut']
  assert summary['videos']['clip']['frames'] == 5 and summary['devices'] == 2

  listing = tmp_path / 'list.txt'
  listing.write_text('# video  mask\nfootage/walk footage/walk.png\n\nfootage/clip.mp4 footage/clip.png  # the mp4\n')
  again = tmp_path / 'again'
  assert predict.main(['--checkpoint', weights, '--videos', str(listing), '--out', str(again), '--devices', '1']) == 0
  for name in ('walk', 'clip'):
    assert_same_files(str(again / name / 'masks'), str(out / name / 'masks'))


@pytest.mark.parametrize(
  'case, message',
  [
    ('no_mask', 'its first-frame mask'),
    ('both', '--videos: the masks come from its naming rule; leave out --video'),
    ('bad_line', 'list.txt:2: expected VIDEO MASK'),
    ('twice', 'more than one video is named a'),
    ('devices', '--devices 9: this process has 8 cpu device(s)'),
  ],
)
def test_bad_batches_are_named_before_any_work(case, message, weights, clip, tmp_path, capsys):
  frames_dir, first_mask = clip
  os.makedirs(tmp_path / 'f')
  os.symlink(frames_dir, tmp_path / 'f' / 'a')
  if case != 'no_mask':
    (tmp_path / 'f' / 'a.png').write_bytes(open(first_mask, 'rb').read())
  (tmp_path / 'list.txt').write_text('f/a f/a.png\nf/a\n' if case == 'bad_line' else 'f/a f/a.png\nf/a/ f/a.png\n')
  videos = str(tmp_path / ('list.txt' if case in ('bad_line', 'twice') else 'f'))
  extra = {'both': ['--mask', first_mask], 'devices': ['--devices', '9']}.get(case, [])
  assert predict.main(['--checkpoint', weights, '--videos', videos, '--out', str(tmp_path / 'out')] + extra) == 2
  assert message in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'out')
