"""The DAVIS measures (docs/reference.md §7.1), following the rules of the standard DAVIS 2017 evaluation toolkit:

J, region similarity: |pred ∩ gt| / |pred ∪ gt| over non-void pixels; 1 when the union is empty.
F, contour accuracy: boundary maps of both masks (a pixel is boundary where the mask differs from its east,
  south or south-east neighbour; last row and column compare along the border only); each boundary is
  matched within a disk of radius ceil(0.008 · image diagonal); precision and recall of the matches, with
  the empty-boundary rules (no predicted boundary: precision 1; no true boundary: recall 1; both empty: 1);
  F = 2PR / (P + R), 0 when P + R = 0. Void pixels are removed from both masks first.
Statistics of a per-frame series: mean, recall (fraction of frames > 0.5) and decay (mean of the first
  quarter minus mean of the last quarter, on the toolkit's bins), NaN frames ignored.
"""

import math
import warnings
from typing import Optional

import numpy as np

BOUNDARY_TOLERANCE = 0.008  # fraction of the image diagonal


def region_similarity(pred: np.ndarray, gt: np.ndarray, void: Optional[np.ndarray] = None) -> np.ndarray:
  """J of (…, H, W) boolean masks -> (…)."""
  pred, gt = pred.astype(bool), gt.astype(bool)
  keep = np.ones_like(gt) if void is None else ~void.astype(bool)
  inter = np.sum(pred & gt & keep, axis=(-2, -1))
  union = np.sum((pred | gt) & keep, axis=(-2, -1))
  with np.errstate(divide='ignore', invalid='ignore'):
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def boundary_map(mask: np.ndarray) -> np.ndarray:
  """(H, W) mask -> (H, W) bool boundary pixels (where the mask changes towards east, south or south-east)."""
  m = mask.astype(bool)
  east, south, south_east = np.zeros_like(m), np.zeros_like(m), np.zeros_like(m)
  east[:, :-1], south[:-1, :], south_east[:-1, :-1] = m[:, 1:], m[1:, :], m[1:, 1:]
  edges = (m ^ east) | (m ^ south) | (m ^ south_east)
  edges[-1, :] = m[-1, :] ^ east[-1, :]
  edges[:, -1] = m[:, -1] ^ south[:, -1]
  edges[-1, -1] = False
  return edges


def disk(radius: int) -> np.ndarray:
  """(2r+1, 2r+1) uint8 disk: x² + y² ≤ r²."""
  y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
  return (x * x + y * y <= radius * radius).astype(np.uint8)


def boundary_radius(shape: tuple[int, int], tolerance: float = BOUNDARY_TOLERANCE) -> int:
  """The match radius in pixels: ceil(tolerance · diagonal) (a tolerance ≥ 1 is taken as pixels)."""
  return int(tolerance if tolerance >= 1 else math.ceil(tolerance * math.hypot(*shape)))


def contour_accuracy(
  pred: np.ndarray, gt: np.ndarray, void: Optional[np.ndarray] = None, tolerance: float = BOUNDARY_TOLERANCE
) -> float:
  """F of one (H, W) frame."""
  import cv2

  keep = np.ones(gt.shape, bool) if void is None else ~void.astype(bool)
  pred_b, gt_b = boundary_map(pred.astype(bool) & keep), boundary_map(gt.astype(bool) & keep)
  kernel = disk(boundary_radius(gt.shape, tolerance))
  pred_near = cv2.dilate(pred_b.astype(np.uint8), kernel) > 0
  gt_near = cv2.dilate(gt_b.astype(np.uint8), kernel) > 0
  n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
  if n_pred == 0 or n_gt == 0:
    precision, recall = (1.0 if n_pred == 0 else 0.0), (1.0 if n_gt == 0 else 0.0)
  else:
    precision, recall = np.sum(pred_b & gt_near) / n_pred, np.sum(gt_b & pred_near) / n_gt
  return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def statistics(series: np.ndarray, bins: int = 4) -> tuple[float, float, float]:
  """(mean, recall at 0.5, decay) of a per-frame series, NaN ignored."""
  series = np.asarray(series, np.float64)
  edges = (np.round(np.linspace(1, len(series), bins + 1) + 1e-10) - 1).astype(int)
  parts = [series[edges[i] : edges[i + 1] + 1] for i in range(bins)]
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)
    return (
      float(np.nanmean(series)),
      float(np.nanmean(series > 0.5)),
      float(np.nanmean(parts[0]) - np.nanmean(parts[-1])),
    )
