"""The built-in synthetic dataset and the dataset checker, on real image files."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_pipelines import check, synthetic

SMALL = dict(
  train=2, val=1, frames=6, height=96, width=160, static_flat=4, static_classes=2, static_per_class=2, static_size=96
)
VOS = os.path.join('DAVIS', '2017', 'trainval')


def _digest(root: str) -> str:
  h = hashlib.sha256()
  for folder, _, files in sorted(os.walk(root)):
    for name in sorted(files):
      h.update(os.path.relpath(os.path.join(folder, name), root).encode())
      with open(os.path.join(folder, name), 'rb') as f:
        h.update(f.read())
  return h.hexdigest()


@pytest.fixture(scope='module')
def dataset(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp('synthetic'))
  synthetic.generate(root, seed=3, **SMALL)
  return root


def test_synthetic_layout_and_content(dataset):
  sets = os.path.join(dataset, VOS, 'ImageSets', '2017')
  assert open(os.path.join(sets, 'train.txt')).read().split() == ['train_000', 'train_001']
  assert open(os.path.join(sets, 'val.txt')).read().split() == ['val_000']
  for video in ('train_000', 'train_001', 'val_000'):
    frames = sorted(os.listdir(os.path.join(dataset, VOS, 'JPEGImages', '480p', video)))
    assert frames == [f'{i:05d}.jpg' for i in range(6)]
    masks = [Image.open(os.path.join(dataset, VOS, 'Annotations', '480p', video, f'{i:05d}.png')) for i in range(6)]
    assert all(m.mode == 'P' and m.size == (160, 96) for m in masks)
    labels = np.stack([np.asarray(m) for m in masks])
    ids = sorted(set(np.unique(labels)) - {0})
    assert 2 <= len(ids) <= 4 and set(np.unique(labels[0])) - {0} == set(ids)  # all objects in frame 0
    assert (labels[0] != labels[-1]).mean() > 0.01  # they move
  flat = sorted(os.listdir(os.path.join(dataset, 'static', 'DUTS-TR')))
  assert len(flat) == 8 and flat[:2] == ['synthetic_0000.jpg', 'synthetic_0000.png']
  mask = np.asarray(Image.open(os.path.join(dataset, 'static', 'DUTS-TR', 'synthetic_0000.png')))
  assert set(np.unique(mask)) == {0, 255}
  assert len(os.listdir(os.path.join(dataset, 'static', 'fss'))) == 2


def test_synthetic_is_reproducible(dataset, tmp_path):
  synthetic.generate(str(tmp_path / 'again'), seed=3, **SMALL)
  synthetic.generate(str(tmp_path / 'other'), seed=4, **SMALL)
  assert _digest(str(tmp_path / 'again')) == _digest(dataset)
  assert _digest(str(tmp_path / 'other')) != _digest(dataset)


def test_an_interrupted_write_leaves_no_partial_dataset(tmp_path, monkeypatch, capsys):
  root = tmp_path / 'builtin'

  def interrupted(*args):
    raise KeyboardInterrupt

  with monkeypatch.context() as patch:
    patch.setattr(synthetic, 'write_static', interrupted)  # Ctrl-C after the videos were written
    with pytest.raises(KeyboardInterrupt):
      synthetic.generate(str(root), seed=3, **SMALL)
  assert os.listdir(tmp_path) == []  # neither the dataset nor its temporary folder
  os.makedirs(root / 'DAVIS')  # what an interrupted earlier version left
  synthetic.generate(str(root), seed=3, **SMALL)
  assert synthetic.is_complete(str(root)) and os.listdir(tmp_path) == ['builtin']
  assert len(os.listdir(root / 'static' / 'DUTS-TR')) == 8
  assert synthetic.main(['--out', str(root)]) == 2  # a whole dataset is not written over
  assert 'the built-in dataset is already there' in capsys.readouterr().err


def test_check_passes_the_builtin_dataset(dataset):
  problems, files = check.check_roots([dataset])
  assert problems == [] and files == 3 * 6 * 2 + 8 + 8


def _break_everything(root: str) -> dict[str, str]:
  """Damages a copy of the dataset in every way the checker knows; returns {path: expected message}."""
  frames, masks = os.path.join(root, VOS, 'JPEGImages', '480p'), os.path.join(root, VOS, 'Annotations', '480p')
  expected = {}
  path = os.path.join(frames, 'train_000', '00002.jpg')
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[: len(data) // 2])
  expected[path] = 'truncated image'
  path = os.path.join(frames, 'train_000', '00003.jpg')
  open(path, 'wb').write(b'this is not a jpeg')
  expected[path] = 'unreadable image'
  path = os.path.join(masks, 'train_000', '00001.png')
  Image.open(path).convert('RGB').save(path)
  expected[path] = 'mask is not palette-indexed (mode RGB)'
  path = os.path.join(masks, 'train_001', '00004.png')
  Image.open(path).resize((80, 48), Image.NEAREST).save(path)
  expected[path] = 'mask size 80×48 differs from its frame 160×96'
  path = os.path.join(masks, 'train_001', '00009.png')
  Image.open(os.path.join(masks, 'train_001', '00000.png')).save(path)
  expected[path] = 'annotation without frame'
  for i in range(2, 6):
    os.remove(os.path.join(frames, 'val_000', f'{i:05d}.jpg'))
    os.remove(os.path.join(masks, 'val_000', f'{i:05d}.png'))
  expected[os.path.join(frames, 'val_000')] = 'video shorter than three frames (2)'
  path = os.path.join(masks, 'train_001', '00000.png')
  first = Image.open(path)
  empty = Image.fromarray(np.zeros_like(np.asarray(first)), mode='P')
  empty.putpalette(first.getpalette())
  empty.save(path)
  expected[path] = 'empty first-frame annotation'
  path = os.path.join(root, 'static', 'DUTS-TR', 'synthetic_0001.png')
  os.remove(path)
  expected[path.replace('.png', '.jpg')] = 'image without mask'
  return expected


def test_check_reports_every_kind_of_bad_input(dataset, tmp_path):
  import shutil

  broken = str(tmp_path / 'broken')
  shutil.copytree(dataset, broken)
  expected = _break_everything(broken)
  result = subprocess.run(
    [sys.executable, '-m', 'data_pipelines.check', broken], capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 1
  lines = result.stdout.strip().splitlines()
  for path, message in expected.items():
    assert any(line.startswith(f'{path}: ') and message in line for line in lines), (path, message, lines)
  assert len(lines) - 1 == len(expected)  # nothing else reported, then the summary line
  assert lines[-1].startswith(f'{len(expected)} problem(s) in ')


def test_check_reports_a_root_with_nothing_in_it(tmp_path):
  problems, _ = check.check_roots([str(tmp_path), str(tmp_path / 'absent')])
  assert [p.message for p in problems] == [
    'no video dataset (JPEGImages/ + Annotations/) or static images found',
    'no such folder',
  ]
