"""Pictures people look at: masks coloured over frames, and the training preview grid."""

import numpy as np

from data_pipelines.palette import davis_palette
from gsfm_jax.models.normalisation import denormalise


def overlay(frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """uint8 frame (H, W, 3) with the DAVIS colours of labels (H, W) blended in (label 0 left as is)."""
  colours = davis_palette()[labels]
  return np.where(labels[..., None] > 0, (0.5 * frame + 0.5 * colours).astype(np.uint8), frame)


def labels(masks: np.ndarray) -> np.ndarray:
  """Per-object masks or probabilities (…, K) -> labels (…) in 0 … K (0 where no object exceeds 0.5)."""
  return np.where(masks.max(-1) > 0.5, masks.argmax(-1) + 1, 0)


def clip_preview(frames: np.ndarray, true: np.ndarray, pred: np.ndarray) -> np.ndarray:
  """One training clip as a uint8 grid: top row the ground truth on every frame, bottom row frame 0's
  ground truth then the predictions of frames 1 … T-1.

  frames (T, H, W, 3) normalised; true (T, H, W, K) masks; pred (T-1, H, W, K) probabilities.
  """
  images = denormalise(frames)
  top = [overlay(f, labels(m)) for f, m in zip(images, true)]
  bottom = [top[0]] + [overlay(f, labels(p)) for f, p in zip(images[1:], pred)]
  return np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)
