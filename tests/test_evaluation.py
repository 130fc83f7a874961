"""J&F on hand-made masks: the DAVIS toolkit's rules pinned one by one (region, boundary map, tolerance,
empty-mask cases, void pixels, first and last frames, statistics, the two CSVs and bad inputs)."""

import csv
import os

import numpy as np
import pytest

from data_pipelines.palette import write_palette_png
from gsfm_jax.evaluation import davis
from gsfm_jax.evaluation.measures import boundary_map, boundary_radius, contour_accuracy, region_similarity, statistics


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
  mask = np.zeros((size, size), bool)
  mask[top : top + side, left : left + side] = True
  return mask


def test_region_similarity_counts_pixels_ignores_void_and_scores_empty_as_one():
  a, b = square(10, 0, 0, 4), square(10, 2, 0, 4)  # 16 px each, overlap 8
  assert region_similarity(a, b) == pytest.approx(8 / 24)
  assert region_similarity(a, a) == 1 and region_similarity(a, ~a) == 0
  assert region_similarity(np.zeros((5, 5)), np.zeros((5, 5))) == 1
  void = square(10, 4, 0, 2)  # the 4 pixels b has below a
  assert region_similarity(a, b, void) == pytest.approx(8 / 20)
  assert region_similarity(np.stack([a, a]), np.stack([b, a])).tolist() == pytest.approx([1 / 3, 1])


def test_boundary_map_marks_changes_towards_east_south_and_south_east():
  edges = boundary_map(square(10, 2, 2, 4))
  expected = np.zeros((10, 10), bool)
  expected[1:6, 1:6] = True
  expected[2:5, 2:5] = False  # the outer ring above/left, inner ring below/right
  np.testing.assert_array_equal(edges, expected)
  assert not boundary_map(np.ones((6, 7), bool)).any()  # the image border is not a boundary
  right = np.zeros((4, 4), bool)
  right[:, 3] = True  # last column: compared towards the south only
  assert not boundary_map(right)[:, 3].any() and boundary_map(right)[:, 2].all()


def test_contour_tolerance_is_ceil_of_0_008_diagonal():
  assert boundary_radius((480, 854)) == 8 and boundary_radius((100, 100)) == 2 and boundary_radius((10, 10)) == 1
  gt = square(100, 30, 30, 40)
  assert contour_accuracy(square(100, 30, 32, 40), gt) == 1.0  # 2 px off: within the disk
  assert contour_accuracy(square(100, 30, 33, 40), gt) < 0.8  # 3 px off: the vertical edges miss
  assert contour_accuracy(square(100, 30, 33, 40), gt, tolerance=3) == 1.0  # ≥ 1: pixels


def test_contour_accuracy_empty_rules_and_void():
  empty, obj = np.zeros((50, 50), bool), square(50, 10, 10, 20)
  assert contour_accuracy(empty, empty) == 1.0
  assert contour_accuracy(empty, obj) == 0.0 and contour_accuracy(obj, empty) == 0.0
  # a wrong prediction hidden under void pixels does not count
  wrong = obj | square(50, 35, 35, 10)
  void = square(50, 33, 33, 15)
  assert contour_accuracy(wrong, obj) < 1 and contour_accuracy(wrong, obj, void) == 1.0


def test_statistics_mean_recall_and_decay_bins():
  mean, recall, decay = statistics(np.array([1, 1, 1, 0.5, 0.5, 0, 0, 0]))
  assert (mean, recall, decay) == (0.5, 3 / 8, 1.0)  # bins 0-2 and 5-7 of 8 frames
  mean, recall, decay = statistics(np.array([np.nan, 0.8, 0.6, 0.4]))
  assert mean == pytest.approx(0.6) and recall == 0.5 and decay == pytest.approx(0.8 - 0.5)  # bins 0-1, 2-3


def write_sequence(root: str, name: str, labels: np.ndarray) -> None:
  os.makedirs(os.path.join(root, name), exist_ok=True)
  for t, frame in enumerate(labels):
    write_palette_png(frame, os.path.join(root, name, f'{t:05d}.png'))


def test_folders_to_the_toolkit_csvs(tmp_path):
  """Two sequences: first and last frames are excluded, void is ignored, objects are averaged."""
  size, frames = 40, 5
  gt_a = np.zeros((frames, size, size), np.uint8)
  gt_a[:, 5:15, 5:15], gt_a[:, 20:30, 20:30] = 1, 2
  gt_a[:, 0, :] = 255  # a void row
  pred_a = np.where(gt_a == 255, 1, gt_a)  # object 1 also painted over the void row
  pred_a[0], pred_a[-1] = 0, 0  # first and last frames do not count
  pred_a[2][pred_a[2] == 2] = 0  # object 2 missed in one of the 3 middle frames
  gt_b = np.zeros((frames, size, size), np.uint8)
  gt_b[:, 10:20, 10:30] = 1
  pred_b = np.zeros_like(gt_b)
  pred_b[:, 10:20, 10:20] = 1  # half the object
  for root, seqs in (('gt', (gt_a, gt_b)), ('pred', (pred_a, pred_b))):
    for name, labels in zip(('a', 'b'), seqs):
      write_sequence(str(tmp_path / root), name, labels)
  scores = davis.evaluate_folders(str(tmp_path / 'pred'), str(tmp_path / 'gt'))
  assert [s.name for s in scores] == ['a_1', 'a_2', 'b_1']
  np.testing.assert_allclose(scores[0].j, 1)
  np.testing.assert_allclose(scores[1].j, [1, 0, 1])
  np.testing.assert_allclose(scores[2].j, 0.5)
  assert scores[1].f.tolist() == [1, 0, 1] and 0 < scores[2].f[0] < 1
  summary = davis.summarise(scores)
  assert summary['J-Mean'] == pytest.approx((1 + 2 / 3 + 0.5) / 3)
  assert summary['J-Recall'] == pytest.approx((1 + 2 / 3 + 0) / 3)  # 0.5 is not > 0.5
  assert summary['J&F-Mean'] == pytest.approx((summary['J-Mean'] + summary['F-Mean']) / 2)
  global_csv, per_seq_csv = davis.write_csvs(scores, str(tmp_path / 'out'), 'val')
  assert os.path.basename(global_csv) == 'global_results-val.csv'
  rows = list(csv.reader(open(global_csv)))
  assert rows[0] == list(davis.GLOBAL_COLUMNS) and rows[1][1] == f'{summary["J-Mean"]:.3f}'
  rows = list(csv.reader(open(per_seq_csv)))
  assert rows == [
    ['Sequence', 'J-Mean', 'F-Mean'],
    ['a_1', '1.000', f'{scores[0].f.mean():.3f}'],
    ['a_2', '0.667', '0.667'],
    ['b_1', '0.500', f'{scores[2].f.mean():.3f}'],
  ]


def test_csvs_are_the_toolkits_bytes(tmp_path):
  """The toolkit writes both tables with pandas (`to_csv(index=False, float_format='%.3f')`); so does this
  test, from the same scores, and the files must be equal byte for byte (LF line ends, rounding, an
  object scored NaN on every frame)."""
  import pandas as pd

  rng = np.random.default_rng(0)
  scores = [davis.ObjectScores(f'seq-{i}_{i % 3 + 1}', rng.random(7), rng.random(7)) for i in range(5)]
  scores.append(davis.ObjectScores('empty_1', np.full(3, np.nan), np.full(3, 0.25)))
  ours = davis.write_csvs(scores[:-1], str(tmp_path / 'ours'), 'val')
  summary = davis.summarise(scores[:-1])
  os.makedirs(tmp_path / 'toolkit')
  toolkit = (tmp_path / 'toolkit' / 'global_results-val.csv', tmp_path / 'toolkit' / 'per-sequence_results-val.csv')
  pd.DataFrame([list(summary.values())], columns=list(davis.GLOBAL_COLUMNS)).to_csv(
    toolkit[0], index=False, float_format='%.3f'
  )
  with np.errstate(all='ignore'), pytest.warns(RuntimeWarning):
    per_object = [(s.name, np.nanmean(s.j), np.nanmean(s.f)) for s in scores]
    ours_nan = davis.write_csvs(scores, str(tmp_path / 'ours_nan'), 'val')
  pd.DataFrame(per_object, columns=['Sequence', 'J-Mean', 'F-Mean']).to_csv(
    toolkit[1], index=False, float_format='%.3f'
  )
  assert open(ours[0], 'rb').read() == open(toolkit[0], 'rb').read()
  assert open(ours_nan[1], 'rb').read() == open(toolkit[1], 'rb').read()
  assert b'\r' not in open(ours[1], 'rb').read() and b'empty_1,,0.250\n' in open(ours_nan[1], 'rb').read()


def test_binary_davis_2016_masks(tmp_path):
  gt = np.zeros((4, 20, 20), np.uint8)
  gt[:, 5:10, 5:10] = 255
  scores = davis.sequence_scores('s', (gt > 0).astype(np.uint8), gt, binary=True)
  assert len(scores) == 1 and scores[0].j.tolist() == [1, 1]


def test_bad_inputs_name_the_file_and_the_problem(tmp_path):
  gt = np.zeros((3, 8, 8), np.uint8)
  gt[:, 2:4, 2:4] = 1
  write_sequence(str(tmp_path / 'gt'), 'seq', gt)
  with pytest.raises(ValueError, match=r'pred/seq: no prediction for 3 ground-truth frames, e.g. 00000.png'):
    davis.evaluate_folders(str(tmp_path / 'pred'), str(tmp_path / 'gt'))
  write_sequence(str(tmp_path / 'pred'), 'seq', gt * 3)
  with pytest.raises(ValueError, match='seq: the predictions hold object id 3 but the first ground-truth frame has 1'):
    davis.evaluate_folders(str(tmp_path / 'pred'), str(tmp_path / 'gt'))
  open(tmp_path / 'pred' / 'seq' / '00001.png', 'wb').write(b'not a png')
  with pytest.raises(ValueError, match=r'00001.png: cannot read the mask'):
    davis.evaluate_folders(str(tmp_path / 'pred'), str(tmp_path / 'gt'))
  with pytest.raises(ValueError, match='ImageSets/2017/val.txt: no such image set'):
    davis.davis_sequences(str(tmp_path), 'val', binary=False)
