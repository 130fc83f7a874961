"""The command lines that segment videos: `gsfm_jax.predict` on videos of the built-in dataset (a frame
folder and an .mp4) with every bad input it must name (missing or unreadable video or frame, mask size,
non-palette RGB mask, empty first mask, one-frame video, too many objects, flags out of range, an --out that
is a file or holds an earlier run; a failure leaves earlier outputs as they were), the masks people have
(0/255 grey, white on black, anti-aliased, JPEG, a pixel off the frame size), and `gsfm_jax.evaluate` by the
DAVIS and YouTube-VOS protocols."""

import json
import os
import stat
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from data_pipelines.palette import write_palette_png
from gsfm_jax import predict


def read_frames(folder: str) -> np.ndarray:
  return np.stack([np.asarray(Image.open(os.path.join(folder, n))) for n in sorted(os.listdir(folder))])


def test_a_frame_folder_and_an_mp4_give_masks_overlays_and_probabilities(weights, clip, tmp_path, capsys):
  frames_dir, first_mask = clip
  frames, truth = read_frames(frames_dir), np.asarray(Image.open(first_mask))
  first = np.where(truth == 2, 4, truth).astype(np.uint8)  # ids 1 and 4: the overlay must use 4's colour
  write_palette_png(first, str(tmp_path / 'first.png'))
  ids = [i for i in np.unique(first) if i > 0]
  out = tmp_path / 'out'
  args = ['--checkpoint', weights, '--video', frames_dir, '--mask', str(tmp_path / 'first.png'), '--out', str(out)]
  previous = os.umask(0o027)  # folders are created as the user's umask says (not tempfile's private 0700)
  try:
    assert predict.main(args + ['--probabilities']) == 0
  finally:
    os.umask(previous)
  assert [stat.S_IMODE(os.stat(p).st_mode) for p in (out, out / 'masks', out / 'summary.json')] == [0o750, 0o750, 0o640]
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
  overlay0 = video.read()[1][..., ::-1].astype(np.float32)  # the overlay's colours are the mask PNGs' colours
  palette = np.asarray(first_out.getpalette()[:768], np.float32).reshape(256, 3)
  for i in ids:
    inner = cv2.erode((first == i).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    expected = 0.5 * frames[0][inner].astype(np.float32) + 0.5 * palette[i]
    assert np.abs(overlay0[inner].mean(0) - expected.mean(0)).max() < 12, i
  assert sorted(os.listdir(tmp_path)) == ['first.png', 'out']  # no partial folder left behind
  summary = json.load(open(out / 'summary.json'))
  assert summary['frames'] == len(frames) and summary['objects'] == ids and summary['seconds'] > 0
  # one chunk: frames/s leaves the compiling out (decoding and writing stay in)
  assert 0 <= summary['compiling_seconds'] < summary['seconds']
  assert summary['frames_per_s'] == pytest.approx(len(frames) / (summary['seconds'] - summary['compiling_seconds']))
  assert 's of compiling left out' in capsys.readouterr().out

  # the same frames as an .mp4, run at a smaller size: outputs at the video's size
  mp4 = str(tmp_path / 'clip.mp4')
  writer = cv2.VideoWriter(mp4, cv2.VideoWriter_fourcc(*'mp4v'), 10, first.shape[::-1])
  for frame in frames:
    writer.write(np.ascontiguousarray(frame[..., ::-1]))
  writer.release()
  assert (
    predict.main(
      [
        '--checkpoint',
        weights,
        '--video',
        mp4,
        '--mask',
        first_mask,
        '--out',
        str(tmp_path / 'mp4'),
        '--resize',
        'short:64',
      ]
    )
    == 0
  )
  assert len(os.listdir(tmp_path / 'mp4' / 'masks')) == len(frames)
  assert np.asarray(Image.open(tmp_path / 'mp4' / 'masks' / '00004.png')).shape == first.shape

  # the same --out again: refused without --overwrite; a failing run with it changes nothing there
  before = {n: os.path.getmtime(out / 'masks' / n) for n in masks}
  capsys.readouterr()
  assert predict.main(args) == 2
  assert f'--out {out}: already holds files (an earlier run?); pass --overwrite' in capsys.readouterr().err
  bad = ['--checkpoint', weights, '--video', str(tmp_path / 'nope.mp4'), '--mask', first_mask, '--out', str(out)]
  assert predict.main(bad + ['--overwrite']) == 2
  assert {n: os.path.getmtime(out / 'masks' / n) for n in masks} == before
  # a run that succeeds with --overwrite replaces the folder whole: no probabilities from the first run remain
  assert predict.main(args + ['--overwrite']) == 0
  assert sorted(os.listdir(out)) == ['masks', 'overlay.mp4', 'overlay_last.png', 'summary.json']


def test_a_training_workdir_without_library_chatter(reference, clip, tmp_path):
  """predict on the narrow network of a training run (its config.json gives the width), as a user runs it:
  the progress and the closing line, not orbax's or JAX's INFO lines or orbax's metadata warning."""
  import subprocess
  import sys

  from runs import REPO, env

  frames_dir, first_mask = clip
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'gsfm_jax.predict',
      '--checkpoint',
      reference[0],
      '--video',
      frames_dir,
      '--mask',
      first_mask,
      '--out',
      str(tmp_path / 'out'),
    ],
    cwd=REPO,
    env=env(1),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  printed = result.stdout + result.stderr
  assert ' object(s), ' in result.stdout and 'inference program 1' in printed
  for chatter in ('orbax', '_CHECKPOINT_METADATA', 'Restoring checkpoint', 'Finished load'):
    assert chatter not in printed, chatter
  assert len(os.listdir(tmp_path / 'out' / 'masks')) == len(os.listdir(frames_dir))


def _bad_case(kind: str, tmp_path, clip) -> tuple[list[str], str]:
  """(extra predict arguments, expected message) for one kind of bad input."""
  frames_dir, first_mask = clip
  shape = np.asarray(Image.open(first_mask)).shape
  one = tmp_path / 'one'
  if kind == 'missing video':
    return [
      '--video',
      str(tmp_path / 'missing.mp4'),
      '--mask',
      first_mask,
    ], 'missing.mp4: no such video file or frame folder'
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
    return (
      ['--video', frames_dir, '--mask', str(tmp_path / 'small.png')],
      f'small.png: the mask is 12×10 but the frames are {shape[1]}×{shape[0]}; pass --mask_resize nearest',
    )
  if kind == 'rgb not palette':
    rgb = np.zeros(shape + (3,), np.uint8)
    rgb[:5, :5] = (12, 34, 56)
    Image.fromarray(rgb).save(tmp_path / 'rgb.png')
    return (
      ['--video', frames_dir, '--mask', str(tmp_path / 'rgb.png')],
      'rgb.png: an RGB mask with 1 colour(s) that are neither DAVIS palette colours nor grey levels '
      '(e.g. (12, 34, 56))',
    )
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
    many[i * 5 : i * 5 + 3, :4] = i
  write_palette_png(many, str(tmp_path / 'many.png'))
  return (
    ['--video', frames_dir, '--mask', str(tmp_path / 'many.png'), '--max_objects', '2'],
    'many.png: 3 objects (ids [1, 2, 3]), more than --max_objects 2',
  )


@pytest.mark.parametrize(
  'kind',
  [
    'missing video',
    'unreadable video',
    'unreadable frame',
    'mask size',
    'rgb not palette',
    'empty mask',
    'one frame',
    'too many objects',
  ],
)
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
  assert np.array_equal(read_mask([str(tmp_path / 'rgb.png')], (6, 8)).labels, ids)
  # one binary PNG per object: ids in argument order
  Image.fromarray((ids == 3).astype(np.uint8) * 255).save(tmp_path / 'a.png')
  Image.fromarray((ids == 1).astype(np.uint8) * 255).save(tmp_path / 'b.png')
  assert np.array_equal(
    read_mask([str(tmp_path / 'a.png'), str(tmp_path / 'b.png')], (6, 8)).labels,
    np.where(ids == 3, 1, np.where(ids == 1, 2, 0)),
  )


def test_video_reader_decodes_frames_only_when_asked(clip, tmp_path):
  """An .mp4 and a frame folder: the length and size come from opening, frames from slices, in any order."""
  from gsfm_jax.inference.media import InputError, VideoReader

  frames_dir, _ = clip
  frames = read_frames(frames_dir)
  folder = VideoReader(frames_dir)
  assert len(folder) == len(frames) and folder.size == frames.shape[1:3] and folder.read_seconds == 0
  np.testing.assert_array_equal(folder[2:5], frames[2:5])
  mp4 = str(tmp_path / 'v.mp4')
  writer = cv2.VideoWriter(mp4, cv2.VideoWriter_fourcc(*'mp4v'), 10, frames.shape[2:0:-1])
  for frame in frames:
    writer.write(np.ascontiguousarray(frame[..., ::-1]))
  writer.release()
  video = VideoReader(mp4)
  assert len(video) == len(frames) and video.names[:2] == ['00000', '00001']
  whole = video[:]
  np.testing.assert_array_equal(video[3:6], whole[3:6])  # forward from the start again
  np.testing.assert_array_equal(video[1:2], whole[1:2])  # backwards: reopened
  assert np.abs(whole.astype(int) - frames).mean() < 8 and video.read_seconds > 0  # mp4v is lossy
  os.makedirs(tmp_path / 'mixed')
  Image.fromarray(frames[0]).save(tmp_path / 'mixed' / 'a.png')
  Image.fromarray(frames[0][:-2]).save(tmp_path / 'mixed' / 'b.png')
  with pytest.raises(InputError, match='b.png: frame size'):
    VideoReader(str(tmp_path / 'mixed'))


def _disc(size: tuple[int, int] = (40, 60)) -> np.ndarray:
  y, x = np.mgrid[: size[0], : size[1]]
  return (y - 20) ** 2 + (x - 30) ** 2 < 12**2


@pytest.mark.parametrize('kind', ['grey 0/255', 'white on black RGB', 'grey ids', 'palette 0/1'])
def test_the_masks_people_have_are_read_as_objects(kind, tmp_path):
  """DAVIS 2016 style 0/255 grayscale and white-on-black RGB are object 1, not id 255 or a refusal."""
  from gsfm_jax.inference.media import read_mask

  disc = _disc()
  path = str(tmp_path / 'mask.png')
  if kind == 'grey 0/255':
    Image.fromarray(disc.astype(np.uint8) * 255).save(path)
  elif kind == 'white on black RGB':
    Image.fromarray(np.repeat(disc[..., None], 3, -1).astype(np.uint8) * 255).save(path)
  elif kind == 'grey ids':
    Image.fromarray(disc.astype(np.uint8) * 2).save(path)
  else:
    write_palette_png(disc.astype(np.uint8), path)
  mask = read_mask([path], disc.shape)
  assert np.array_equal(mask.labels, disc.astype(np.uint8) * (2 if kind == 'grey ids' else 1)) and not mask.notes


@pytest.mark.parametrize('kind', ['anti-aliased grey', 'JPEG RGB'])
def test_soft_binary_masks_are_thresholded_at_half_with_a_note(kind, tmp_path):
  from gsfm_jax.inference.media import read_mask

  disc = _disc()
  soft = cv2.GaussianBlur(disc.astype(np.float32) * 255, (5, 5), 1.0).round().astype(np.uint8)
  path = str(tmp_path / ('mask.png' if kind == 'anti-aliased grey' else 'mask.jpg'))
  Image.fromarray(soft if kind == 'anti-aliased grey' else np.repeat(soft[..., None], 3, -1)).save(path, quality=70)
  mask = read_mask([path], disc.shape)
  assert set(np.unique(mask.labels)) == {0, 1}
  assert np.mean(mask.labels == disc) > 0.99
  assert len(mask.notes) == 1 and 'thresholded at 50 % into one object' in mask.notes[0] and path in mask.notes[0]


def test_a_mask_a_pixel_off_the_frame_size(tmp_path):
  from gsfm_jax.inference.media import InputError, read_mask

  write_palette_png(_disc((40, 59)).astype(np.uint8), str(tmp_path / 'm.png'))  # 59 wide, the frames 60
  with pytest.raises(InputError, match='the mask is 59×40 but the frames are 60×40; pass --mask_resize nearest'):
    read_mask([str(tmp_path / 'm.png')], (40, 60))
  mask = read_mask([str(tmp_path / 'm.png')], (40, 60), resize='nearest')
  assert mask.labels.shape == (40, 60) and np.mean(mask.labels == _disc()) > 0.98
  assert mask.notes == [f'{tmp_path / "m.png"}: resized from 59×40 to 60×40 (nearest neighbour)']


@pytest.mark.parametrize(
  'flags, message',
  [
    (['--top_k', '0'], '--top_k 0: must be at least 1'),
    (['--dtype', 'float16'], '--dtype float16: expected one of float32, bfloat16, auto'),
    (['--capacity', '0'], '--capacity 0: must be at least 1'),
  ],
)
def test_flag_values_out_of_range(flags, message, clip, tmp_path, capsys):
  frames_dir, first_mask = clip
  assert (
    predict.main(
      ['--checkpoint', 'unused', '--video', frames_dir, '--mask', first_mask, '--out', str(tmp_path / 'o')] + flags
    )
    == 2
  )
  assert message in capsys.readouterr().err and not (tmp_path / 'o').exists()


def test_out_that_is_a_file_is_refused_before_any_work(clip, tmp_path, capsys):
  frames_dir, first_mask = clip
  (tmp_path / 'o').write_text('mine')
  assert (
    predict.main(['--checkpoint', 'unused', '--video', frames_dir, '--mask', first_mask, '--out', str(tmp_path / 'o')])
    == 2
  )
  assert f'--out {tmp_path / "o"}: is a file; give a folder' in capsys.readouterr().err
  assert (tmp_path / 'o').read_text() == 'mine'


# ---------------------------------------------------------------- benchmarks (python -m gsfm_jax.evaluate)


def test_davis_benchmark_writes_pngs_and_the_toolkit_csvs(weights, data_root, tmp_path, capsys):
  from gsfm_jax import evaluate

  root = os.path.join(data_root, 'DAVIS', '2017', 'trainval')
  out = tmp_path / 'd17'
  assert evaluate.main(['--checkpoint', weights, '--benchmark', 'davis17', '--root', root, '--out', str(out)]) == 0
  printed = capsys.readouterr().out
  assert 'FPS (I/O and compilation excluded)' in printed and 'J&F-Mean' in printed
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
  meta = {
    'videos': {
      video: {
        'objects': {'1': {'frames': ['00000', '00002', '00004', '00006']}, '5': {'frames': ['00003', '00004', '00006']}}
      }
    }
  }
  os.makedirs(root / 'valid', exist_ok=True)
  json.dump(meta, open(root / 'valid' / 'meta.json', 'w'))
  out = tmp_path / 'yv_out'
  assert (
    evaluate.main(
      [
        '--checkpoint',
        weights,
        '--benchmark',
        'youtube',
        '--root',
        str(root),
        '--split',
        'valid',
        '--out',
        str(out),
        '--short_side',
        '64',
      ]
    )
    == 0
  )
  written = sorted(os.listdir(out / 'Annotations' / video))
  assert written == ['00000.png', '00002.png', '00003.png', '00004.png', '00006.png']
  labels = {n: np.asarray(Image.open(out / 'Annotations' / video / n)) for n in written}
  assert all(set(np.unique(m)) <= {0, 1, 5} for m in labels.values())
  assert not (labels['00000.png'] == 5).any() and not (labels['00002.png'] == 5).any()  # not entered yet
  assert np.mean(labels['00003.png'][truth[3] == 2] == 5) > 0.8  # its given mask
  assert labels['00000.png'].shape == truth[0].shape  # original size
  names_in_zip = zipfile.ZipFile(str(out) + '.zip').namelist()
  assert sorted(names_in_zip) == [f'Annotations/{video}/{n}' for n in written]


def test_an_object_given_later_on_the_command_line(weights, clip, tmp_path):
  """--later_mask FRAME:PATH: object 1 from frame 0, the video's object 2 (given as id 7) from frame 3."""
  frames_dir, first_mask = clip
  truth = [np.asarray(Image.open(first_mask.replace('00000', f'{t:05d}'))) for t in range(4)]
  write_palette_png(np.where(truth[0] == 1, 1, 0).astype(np.uint8), str(tmp_path / 'first.png'))
  write_palette_png(np.where(truth[3] == 2, 7, 0).astype(np.uint8), str(tmp_path / 'later.png'))
  out = tmp_path / 'out'
  assert (
    predict.main(
      [
        '--checkpoint',
        weights,
        '--video',
        frames_dir,
        '--mask',
        str(tmp_path / 'first.png'),
        '--later_mask',
        f'3:{tmp_path / "later.png"}',
        '--out',
        str(out),
      ]
    )
    == 0
  )
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
  assert (
    evaluate.main(
      [
        '--checkpoint',
        weights,
        '--benchmark',
        'davis16',
        '--root',
        str(root),
        '--image_set',
        str(tmp_path / 'val.txt'),
        '--out',
        str(out),
      ]
    )
    == 0
  )
  first = Image.open(out / seq / '00000.png')
  assert first.mode == 'L' and set(np.unique(np.asarray(first))) == {0, 255}
  assert 'J&F-Mean' in capsys.readouterr().out and (out / 'global_results-val.csv').exists()


def test_a_correction_on_the_command_line_replaces_every_objects_mask_from_its_frame_on(weights, clip, tmp_path):
  """--correct FRAME:PATH: the frame's mask replaces the prediction of every object (one left out is absent
  there); the frames before are the uncorrected run's."""
  frames_dir, first_mask = clip
  truth = np.asarray(Image.open(first_mask))
  write_palette_png(truth, str(tmp_path / 'first.png'))
  fixed = np.zeros_like(truth)
  fixed[10:40, 20:70] = 2  # object 2 moved to a box, object 1 gone
  write_palette_png(fixed, str(tmp_path / 'fixed.png'))
  common = ['--checkpoint', weights, '--video', frames_dir, '--mask', str(tmp_path / 'first.png')]
  assert predict.main(common + ['--out', str(tmp_path / 'plain')]) == 0
  assert predict.main(common + ['--correct', f'4:{tmp_path / "fixed.png"}', '--out', str(tmp_path / 'fixed')]) == 0
  read = lambda run, t: np.asarray(Image.open(tmp_path / run / 'masks' / f'{t:05d}.png'))
  # frames before: the uncorrected run's, up to a pixel flipped by the float rounding of another compiled program
  assert all(np.mean(read('plain', t) != read('fixed', t)) < 1e-3 for t in range(4))
  assert np.array_equal(read('fixed', 4), fixed) and not np.array_equal(read('plain', 4), fixed)
  assert json.load(open(tmp_path / 'fixed' / 'summary.json'))['objects'] == [int(i) for i in np.unique(truth) if i]
  assert predict.main(common + ['--correct', f'9:{tmp_path / "fixed.png"}', '--out', str(tmp_path / 'bad')]) == 2
  assert not (tmp_path / 'bad').exists()
