"""The network's input: RGB scaled to [0, 1], then normalised with the ImageNet statistics its trunks were
trained with (torchvision's), as the reference's loaders do."""

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalise(frames_u8: np.ndarray) -> np.ndarray:
  """uint8 (…, 3) -> float32 ImageNet-normalised."""
  return ((frames_u8 / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def denormalise(frames: np.ndarray) -> np.ndarray:
  """ImageNet-normalised (…, 3) -> uint8."""
  return np.clip(np.round((frames * IMAGENET_STD + IMAGENET_MEAN) * 255), 0, 255).astype(np.uint8)
