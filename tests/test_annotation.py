"""A video segmented interactively (`annotation.Session`, what the web page does without the page): masks given
on frame 0 and a later frame, propagated, corrected; its masks are `predict`'s byte for byte; bad masks are
refused with what to do."""

import argparse
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from gsfm_jax import predict
from gsfm_jax.annotation import Session
from gsfm_jax.inference import media


def options(weights: str) -> argparse.Namespace:
  return argparse.Namespace(
    checkpoint=weights, model=[], dtype='float32', top_k=50, mem_every=3, capacity=None, resize='none', max_objects=8
  )


@pytest.fixture(scope='module')
def page_engine(weights):
  from gsfm_jax import weights as weight_files
  from gsfm_jax.inference import Propagator

  model, variables = weight_files.load_for_inference(weights)
  return lambda protocol: Propagator(model, variables, protocol)


def test_a_session_gives_predicts_masks_and_keeps_the_frames_before_a_correction(weights, clip, page_engine, tmp_path):
  frames_dir, first_mask = clip
  truth = np.asarray(Image.open(first_mask))
  session = Session(page_engine, frames_dir, str(tmp_path / 'session'), options(weights))
  with pytest.raises(media.InputError, match='frame 0 first'):
    session.give(3, truth)
  with pytest.raises(media.InputError, match='no object painted'):
    session.give(0, np.zeros_like(truth))
  with pytest.raises(media.InputError, match='paint on the frame shown'):
    session.give(0, truth[:-1])
  with pytest.raises(media.InputError, match='propagate first'):
    session.archive()
  session.give(0, truth)
  assert list(session.propagate(0)) == [len(session)]  # one chunk: every frame done
  first_run = {t: session.result(t) for t in range(len(session))}
  assert (
    predict.main(
      ['--checkpoint', weights, '--video', frames_dir, '--mask', session.given[0], '--out', str(tmp_path / 'a')]
    )
    == 0
  )
  for t in range(1, len(session)):  # frame 0 reads back the given mask
    assert (tmp_path / 'session' / 'masks' / f'{t:05d}.png').read_bytes() == (
      tmp_path / 'a' / 'masks' / f'{t:05d}.png'
    ).read_bytes()

  fixed = first_run[5].copy()
  fixed[fixed == 1] = 0  # object 1 erased at frame 5
  session.give(5, fixed)
  list(session.propagate(5))
  assert all(np.array_equal(session.result(t), first_run[t]) for t in range(5))
  assert np.array_equal(session.result(5), fixed)
  zip_path, video_path = session.archive()
  archive = zipfile.ZipFile(zip_path)
  names = sorted(archive.namelist())
  assert names == sorted(
    [f'masks/{t:05d}.png' for t in range(len(session))] + ['given/00000.png', 'given/00005.png', 'predict.txt']
  )
  command = archive.read('predict.txt').decode()
  assert '--correct 5:given/00005.png' in command and '--mask given/00000.png' in command
  archive.extractall(tmp_path / 'zip')
  out = tmp_path / 'b'
  args = ['--checkpoint', weights, '--video', frames_dir, '--mask', str(tmp_path / 'zip' / 'given' / '00000.png')]
  args += ['--correct', f'5:{tmp_path / "zip" / "given" / "00005.png"}', '--out', str(out)]
  assert predict.main(args) == 0
  page = lambda t: (tmp_path / 'zip' / 'masks' / f'{t:05d}.png').read_bytes()
  assert all(page(t) == (tmp_path / 'a' / 'masks' / f'{t:05d}.png').read_bytes() for t in range(1, 5))  # kept
  assert all(page(t) == (out / 'masks' / f'{t:05d}.png').read_bytes() for t in range(5, len(session)))
  assert os.path.getsize(video_path) > 0
