"""The command lines that segment videos: `gsfm_jax.predict` on videos of the built-in dataset (a frame
folder and an .mp4) with every bad input it must name (missing or unreadable video or frame, mask size,
non-palette RGB mask, empty first mask, one-frame video, too many objects; a failure leaves earlier outputs
as they were), and `gsfm_jax.evaluate` by the DAVIS and YouTube-VOS protocols."""
import json
import os
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import converted_variables
from data_pipelines.palette import write_palette_png
from gsfm_jax import predict
from gsfm_jax.export import save_npz


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp('weights') / 'gsfm.npz')
  save_npz(converted_variables(0), path)
  return path


@pytest.fixture(scope='module')
def clip(data_root) -> tuple[str, str]:
  """(frame folder, first mask) of the built-in dataset's first validation video."""
  davis = os.path.join(data_root, 'DAVIS', '2017', 'trainval')
  name = open(os.path.join(davis, 'ImageSets', '2017', 'val.txt')).read().split()[0]
  return (os.path.join(davis, 'JPEGImages', '480p', name), os.path.join(davis, 'Annotations', '480p', name, '00000.png'))


def read_frames(folder: str) -> np.ndarray:
  return np.stack([np.asarray(Image.open(os.path.join(folder, n))) for n in sorted(os.listdir(folder))])


def test_a_frame_folder_and_an_mp4_give_masks_overlays_and_probabilities(weights, clip, tmp_path, capsys):
  frames_dir, first_mask = clip
  frames, first = read_frames(frames_dir), np.asarray(Image.open(first_mask))
  ids = [i for i in np.unique(first) if i > 0]
  out = tmp_path / 'out'
  assert predict.main(['--checkpoint', weights, '--video', frames_dir, '--mask', first_mask, '--out', str(out),
                       '--probabilities']) == 0
  masks = sorted(os.listdir(out / 'masks'))
  assert masks == [f'{t:05d}.png' for t in range(len(frames))]
  first_out = Image.open(out / 'masks' / '00000.png')
  assert first_out.mode == 'P' and np.array_equal(np.asarray(first_out), first)  # the given mask comes back
  later = np.asarray(Image.open(out / 'masks' / masks[-1]))
  assert later.shape == first.shape and set(np.unique(later)) <= {0, *ids}
  prob = np.load(out / 'prob' / '00003.npy')
  assert prob.shape == first.shape + (len(ids) + 1,) and np.allclose(prob.sum(-1), 1, atol=1e-2)
  video = cv2.VideoCapture(str(out / 'overlay.mp4'))
  assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames)
  assert (int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))) == first.shape[::-1]
  summary = json.load(open(out / 'summary.json'))
  assert summary['frames'] == len(frames) and summary['objects'] == ids and summary['frames_per_s'] > 0
  assert 'frames/s' in capsys.readouterr().out

  # the same frames as an .mp4, run at a smaller size: outputs at the video's size
  mp4 = str(tmp_path / 'clip.mp4')
  writer = cv2.VideoWriter(mp4, cv2.VideoWriter_fourcc(*'mp4v'), 10, first.shape[::-1])
  for frame in frames:
    writer.write(np.ascontiguousarray(frame[..., ::-1]))
  writer.release()
  assert predict.main(['--checkpoint', weights, '--video', mp4, '--mask', first_mask, '--out', str(tmp_path / 'mp4'),
                       '--resize', 'short:64']) == 0
  assert len(os.listdir(tmp_path / 'mp4' / 'masks')) == len(frames)
  assert np.asarray(Image.open(tmp_path / 'mp4' / 'masks' / '00004.png')).shape == first.shape

  # a failing run into the same folder changes nothing there
  before = {n: os.path.getmtime(out / 'masks' / n) for n in masks}
  assert predict.main(['--checkpoint', weights, '--video', str(tmp_path / 'nope.mp4'), '--mask', first_mask,
                       '--out', str(out)]) == 2
  assert {n: os.path.getmtime(out / 'masks' / n) for n in masks} == before


def _bad_case(kind: str, tmp_path, clip) -> tuple[list[str], str]:
  """(extra predict arguments, expected message) for one kind of bad input."""
  frames_dir, first_mask = clip
  shape = np.asarray(Image.open(first_mask)).shape
  one = tmp_path / 'one'
  if kind == 'missing video':
    return ['--video', str(tmp_path / 'missing.mp4'), '--mask', first_mask], 'missing.mp4: no such video file or frame folder'
  if kind == 'unreadable video':
    (tmp_path / 'broken.mp4').write_bytes(b'not a video at all')
    return ['--video', str(tmp_path / 'broken.mp4'), '--mask', first_mask], 'broken.mp4: cannot read any frame'
  if kind == 'unreadable frame':
    os.makedirs(one)
    for name in sorted(os.listdir(frames_dir))[:3]:
      (one / name).write_bytes(open(os.path.join(frames_dir, name), 'rb').read())
    (one / '00001.jpg').write_bytes(b'\xff\xd8 truncated')
    return ['--video', str(one), '--mask', first_mask], '00001.jpg: cannot read the image'
  if kind == 'mask size':
    write_palette_png(np.ones((10, 12), np.uint8), str(tmp_path / 'small.png'))
    return (['--video', frames_dir, '--mask', str(tmp_path / 'small.png')],
            f'small.png: the mask is 12×10 but the frames are {shape[1]}×{shape[0]}')
  if kind == 'rgb not palette':
    rgb = np.zeros(shape + (3,), np.uint8)
    rgb[:5, :5] = (12, 34, 56)
    Image.fromarray(rgb).save(tmp_path / 'rgb.png')
    return ['--video', frames_dir, '--mask', str(tmp_path / 'rgb.png')], 'rgb.png: an RGB mask with 1 colour(s) that are not DAVIS palette colours (e.g. (12, 34, 56))'
  if kind == 'empty mask':
    write_palette_png(np.zeros(shape, np.uint8), str(tmp_path / 'empty.png'))
    return ['--video', frames_dir, '--mask', str(tmp_path / 'empty.png')], 'empty.png: the first mask has no object'
  if kind == 'one frame':
    os.makedirs(one)
    name = sorted(os.listdir(frames_dir))[0]
    (one / name).write_bytes(open(os.path.join(frames_dir, name), 'rb').read())
    return ['--video', str(one), '--mask', first_mask], 'one: only one frame; there is nothing to propagate to'
  assert kind == 'too many objects'
  many = np.zeros(shape, np.uint8)
  for i in range(1, 4):
    many[i * 5:i * 5 + 3, :4] = i
  write_palette_png(many, str(tmp_path / 'many.png'))
  return (['--video', frames_dir, '--mask', str(tmp_path / 'many.png'), '--max_objects', '2'],
          'many.png: 3 objects, more than --max_objects 2')


@pytest.mark.parametrize('kind', ['missing video', 'unreadable video', 'unreadable frame', 'mask size',
                                  'rgb not palette', 'empty mask', 'one frame', 'too many objects'])
def test_bad_input_is_named_and_nothing_is_written(kind, tmp_path, clip, capsys):
  args, message = _bad_case(kind, tmp_path, clip)
  out = tmp_path / 'out'
  assert predict.main(['--checkpoint', str(tmp_path / 'unused.npz'), '--out', str(out)] + args) == 2
  assert message in capsys.readouterr().err
  assert not out.exists()


def test_an_rgb_mask_in_palette_colours_is_read_as_ids(tmp_path):
  from data_pipelines.palette import davis_palette
  from gsfm_jax.inference.media import read_mask
  ids = np.zeros((6, 8), np.uint8)
  ids[1:3, 1:4], ids[4:, 5:] = 1, 3
  Image.fromarray(davis_palette()[ids]).save(tmp_path / 'rgb.png')
  assert np.array_equal(read_mask([str(tmp_path / 'rgb.png')], (6, 8)), ids)
  # one binary PNG per object: ids in argument order
  Image.fromarray((ids == 3).astype(np.uint8) * 255).save(tmp_path / 'a.png')
  Image.fromarray((ids == 1).astype(np.uint8) * 255).save(tmp_path / 'b.png')
  assert np.array_equal(read_mask([str(tmp_path / 'a.png'), str(tmp_path / 'b.png')], (6, 8)),
                        np.where(ids == 3, 1, np.where(ids == 1, 2, 0)))


# ---------------------------------------------------------------- benchmarks (python -m gsfm_jax.evaluate)

def test_davis_benchmark_writes_pngs_and_the_toolkit_csvs(weights, data_root, tmp_path, capsys):
  from gsfm_jax import evaluate
  root = os.path.join(data_root, 'DAVIS', '2017', 'trainval')
  out = tmp_path / 'd17'
  assert evaluate.main(['--checkpoint', weights, '--benchmark', 'davis17', '--root', root, '--out', str(out)]) == 0
  printed = capsys.readouterr().out
  assert 'FPS (I/O excluded)' in printed and 'J&F-Mean' in printed
  seq = open(os.path.join(root, 'ImageSets', '2017', 'val.txt')).read().split()[0]
  assert len(os.listdir(out / seq)) == len(os.listdir(os.path.join(root, 'Annotations', '480p', seq)))
  rows = open(out / 'global_results-val.csv').read().splitlines()
  assert rows[0].startswith('J&F-Mean,J-Mean') and 0 <= float(rows[1].split(',')[0]) <= 1


def test_youtube_protocol_late_objects_original_ids_meta_frames_and_zip(weights, clip, tmp_path):
  """Object 1 labelled at frame 0, object 5 only at frame 3; meta.json asks for every other frame."""
  from gsfm_jax import evaluate
  frames_dir, first_mask = clip
  root, video = tmp_path / 'yv', 'vid0'
  images = root / 'all_frames' / 'valid_all_frames' / 'JPEGImages' / video
  annotations = root / 'valid' / 'Annotations' / video
  os.makedirs(images)
  os.makedirs(annotations)
  names = sorted(os.listdir(frames_dir))
  for name in names:
    (images / name).write_bytes(open(os.path.join(frames_dir, name), 'rb').read())
  truth = [np.asarray(Image.open(first_mask.replace('00000', n[:-4]))) for n in names[:4]]
  write_palette_png(np.where(truth[0] == 1, 1, 0).astype(np.uint8), str(annotations / '00000.png'))
  write_palette_png(np.where(truth[3] == 2, 5, 0).astype(np.uint8), str(annotations / '00003.png'))
  meta = {'videos': {video: {'objects': {'1': {'frames': ['00000', '00002', '00004', '00006']},
                                         '5': {'frames': ['00003', '00004', '00006']}}}}}
  os.makedirs(root / 'valid', exist_ok=True)
  json.dump(meta, open(root / 'valid' / 'meta.json', 'w'))
  out = tmp_path / 'yv_out'
  assert evaluate.main(['--checkpoint', weights, '--benchmark', 'youtube', '--root', str(root), '--split', 'valid',
                        '--out', str(out), '--short_side', '64']) == 0
  written = sorted(os.listdir(out / 'Annotations' / video))
  assert written == ['00000.png', '00002.png', '00003.png', '00004.png', '00006.png']
  labels = {n: np.asarray(Image.open(out / 'Annotations' / video / n)) for n in written}
  assert all(set(np.unique(m)) <= {0, 1, 5} for m in labels.values())
  assert not (labels['00000.png'] == 5).any() and not (labels['00002.png'] == 5).any()  # not entered yet
  assert np.mean(labels['00003.png'][truth[3] == 2] == 5) > 0.8                          # its given mask
  assert labels['00000.png'].shape == truth[0].shape                                     # original size
  names_in_zip = zipfile.ZipFile(str(out) + '.zip').namelist()
  assert sorted(names_in_zip) == [f'Annotations/{video}/{n}' for n in written]


def test_an_object_given_later_on_the_command_line(weights, clip, tmp_path):
  """--later_mask FRAME:PATH: object 1 from frame 0, the video's object 2 (given as id 7) from frame 3."""
  frames_dir, first_mask = clip
  truth = [np.asarray(Image.open(first_mask.replace('00000', f'{t:05d}'))) for t in range(4)]
  write_palette_png(np.where(truth[0] == 1, 1, 0).astype(np.uint8), str(tmp_path / 'first.png'))
  write_palette_png(np.where(truth[3] == 2, 7, 0).astype(np.uint8), str(tmp_path / 'later.png'))
  out = tmp_path / 'out'
  assert predict.main(['--checkpoint', weights, '--video', frames_dir, '--mask', str(tmp_path / 'first.png'),
                       '--later_mask', f'3:{tmp_path / "later.png"}', '--out', str(out)]) == 0
  masks = [np.asarray(Image.open(out / 'masks' / f'{t:05d}.png')) for t in range(4)]
  assert all(not (m == 7).any() for m in masks[:3]) and np.array_equal(masks[3] == 7, truth[3] == 2)
  assert json.load(open(out / 'summary.json'))['objects'] == [1, 7]


def test_davis_2016_protocol_writes_0_255_masks(weights, clip, tmp_path, capsys):
  """One object per sequence from 0/255 annotations, an explicit image set, top-k 20 by default."""
  from gsfm_jax import evaluate
  frames_dir, first_mask = clip
  seq, root = os.path.basename(frames_dir), tmp_path / 'DAVIS2016'
  os.makedirs(root / 'JPEGImages' / '480p')
  os.symlink(frames_dir, root / 'JPEGImages' / '480p' / seq)
  annotations = root / 'Annotations' / '480p' / seq
  os.makedirs(annotations)
  for name in sorted(os.listdir(frames_dir)):
    labels = np.asarray(Image.open(first_mask.replace('00000.png', name.replace('.jpg', '.png'))))
    Image.fromarray(np.where(labels == 1, 255, 0).astype(np.uint8)).save(annotations / name.replace('.jpg', '.png'))
  (tmp_path / 'val.txt').write_text(seq + '\n')
  out = tmp_path / 'd16'
  assert evaluate.main(['--checkpoint', weights, '--benchmark', 'davis16', '--root', str(root), '--image_set',
                        str(tmp_path / 'val.txt'), '--out', str(out)]) == 0
  first = Image.open(out / seq / '00000.png')
  assert first.mode == 'L' and set(np.unique(np.asarray(first))) == {0, 255}
  assert 'J&F-Mean' in capsys.readouterr().out and (out / 'global_results-val.csv').exists()
