"""The exported inference program (`gsfm_jax.inference.program`, `jax.export`) run by its loader in a process where
Flax and the model code cannot be imported: the live engine's masks and probabilities, bit for bit, with
the same bounded memory and object count, over several chunks; and the command lines' bad inputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gsfm_jax.inference import program

BLOCKED = ('flax', 'gsfm_jax.models', 'gsfm_jax.inference.engine', 'orbax', 'optax', 'tensorflow')


@pytest.fixture(scope='module')
def exported(weights, tmp_path_factory) -> str:
  """A program for the built-in videos' 96×160 frames: up to 4 objects, 4 memory frames, lowered for CPU and
  CUDA (a file made here runs on a GPU)."""
  path = str(tmp_path_factory.mktemp('program') / 'gsfm.program')
  assert (
    program.main(
      [
        '--checkpoint',
        weights,
        '--size',
        '96x160',
        '--objects',
        '4',
        '--capacity',
        '4',
        '--platforms',
        'cpu,cuda',
        '--out',
        path,
      ]
    )
    == 0
  )
  return path


def test_the_loader_without_flax_gives_the_live_engines_masks(exported, weights, clip, tmp_path):
  from gsfm_jax.inference import Propagator, Protocol
  from gsfm_jax.inference.media import VideoReader
  from gsfm_jax.weights import load_for_inference

  frames_dir, first_mask = clip
  first = np.asarray(Image.open(first_mask))
  ids = [int(i) for i in np.unique(first) if i > 0]
  # longer than one chunk (16): the clip forwards, backwards, forwards; the 4-frame memory full from frame 9
  frames = VideoReader(frames_dir)[0 : len(VideoReader(frames_dir))]
  frames = np.concatenate([frames, frames[::-1], frames])
  np.save(tmp_path / 'frames.npy', frames)
  script = (
    f'import sys, json\nfor name in {BLOCKED!r}:\n  sys.modules[name] = None\n'
    'import numpy as np\nfrom gsfm_jax.inference.loader import Program\n'
    f'p = Program({exported!r})\n'
    f'out = p.segment(np.load({str(tmp_path / "frames.npy")!r}), '
    f'np.asarray(__import__("PIL.Image").Image.open({first_mask!r})))\n'
    f'np.savez({str(tmp_path / "loaded.npz")!r}, labels=out.labels, prob=out.prob)\n'
    'print(json.dumps(sorted(m for m, v in sys.modules.items() if v is not None)))\n'
  )
  from runs import REPO, env

  result = subprocess.run(
    [sys.executable, '-c', script], cwd=REPO, env=env(1), capture_output=True, text=True, timeout=600
  )
  assert result.returncode == 0, result.stderr[-3000:]
  modules = json.loads(result.stdout.strip().splitlines()[-1])
  assert 'gsfm_jax.inference.loader' in modules and 'jax' in modules
  assert not [
    m
    for m in modules
    if m.split('.')[0] in ('flax', 'orbax', 'optax', 'tensorflow')
    or m.startswith(('gsfm_jax.models', 'gsfm_jax.inference.engine'))
  ]
  loaded = np.load(tmp_path / 'loaded.npz')

  model, variables = load_for_inference(weights, 'float32')
  # the program's shapes: 4 memory slots, the 3 objects padded to 4 (as object_bucket pads them)
  live = Propagator(model, variables, Protocol(capacity=4, object_bucket=4)).segment(frames, {0: first}, keep_prob=True)
  assert loaded['labels'].shape == live.labels.shape == (len(frames),) + first.shape
  assert loaded['prob'].shape == live.prob.shape == (len(frames),) + first.shape + (len(ids) + 1,)
  assert np.array_equal(loaded['labels'], live.labels) and np.array_equal(loaded['prob'], live.prob)
  assert set(np.unique(loaded['labels'])) <= {0, *range(1, len(ids) + 1)}


def test_the_loaders_command_line_writes_the_masks(exported, clip, tmp_path):
  frames_dir, first_mask = clip
  from runs import REPO, env

  out = tmp_path / 'out'
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'gsfm_jax.inference.loader',
      exported,
      '--video',
      frames_dir,
      '--mask',
      first_mask,
      '--out',
      str(out),
    ],
    cwd=REPO,
    env=env(1),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  masks = sorted(os.listdir(out / 'masks'))
  assert masks == sorted(n.replace('.jpg', '.png') for n in os.listdir(frames_dir))
  first = np.asarray(Image.open(first_mask))
  assert np.array_equal(np.asarray(Image.open(out / 'masks' / masks[0])), first)  # the given mask comes back
  header = json.loads(np.load(exported)['header'].tobytes())
  assert header['size'] == [96, 160] and header['objects'] == 4 and header['platforms'] == ['cpu', 'cuda']
  assert header['network']['width_divisor'] == 4 and header['network']['ars_stages'] == []  # the file's record


@pytest.mark.parametrize(
  'args, message',
  [
    (['--size', '96'], '--size 96: expected HxW'),
    (['--size', '96x160', '--platforms', 'cpu,gpu'], '--platforms cpu,gpu: expected'),
    (['--size', '96x160', '--capacity', '0'], '--capacity 0: must be at least 1'),
  ],
)
def test_bad_export_flags(args, message, weights, tmp_path, capsys):
  assert program.main(['--checkpoint', weights, '--out', str(tmp_path / 'p')] + args) == 2
  assert message in capsys.readouterr().err and not os.listdir(tmp_path)


def test_the_loader_refuses_a_video_of_another_size(exported, tmp_path, capsys):
  from gsfm_jax.inference import loader

  frames = tmp_path / 'frames'
  os.makedirs(frames)
  for t in range(3):
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(frames / f'{t:05d}.png')
  Image.fromarray(np.pad(np.ones((8, 8), np.uint8), 28)).save(tmp_path / 'mask.png')
  assert (
    loader.main(
      [exported, '--video', str(frames), '--mask', str(tmp_path / 'mask.png'), '--out', str(tmp_path / 'out')]
    )
    == 2
  )
  assert 'this program is for 96x160 frames and masks; got frames (64, 64)' in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'out')
  assert (
    loader.main(
      [
        str(tmp_path / 'mask.png'),
        '--video',
        str(frames),
        '--mask',
        str(tmp_path / 'mask.png'),
        '--out',
        str(tmp_path / 'out'),
      ]
    )
    == 2
  )
  assert f'{tmp_path / "mask.png"}: not a gsfm_jax program file' in capsys.readouterr().err


@pytest.mark.parametrize('fault', ['ctrl-c', 'full disk'])
def test_the_loader_ends_in_one_line_and_keeps_earlier_outputs(fault, exported, clip, tmp_path, capsys, monkeypatch):
  from test_interruptions import FAULTS, assert_left_as_it_was, earlier_output, fail_on_call

  from gsfm_jax.inference import loader, media

  raise_it, status, line = FAULTS[fault]
  frames_dir, first_mask = clip
  earlier_output(tmp_path / 'out')
  monkeypatch.setattr(media, 'write_palette_png', fail_on_call(2, raise_it, media.write_palette_png))
  args = [exported, '--video', frames_dir, '--mask', first_mask, '--out', str(tmp_path / 'out'), '--overwrite']
  assert loader.main(args) == status
  assert capsys.readouterr().err.startswith(line)
  assert_left_as_it_was(tmp_path, tmp_path / 'out')
