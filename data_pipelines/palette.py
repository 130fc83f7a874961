"""The DAVIS annotation palette and palette-PNG I/O (masks are palette-indexed 'P' images)."""

import numpy as np
from PIL import Image


def davis_palette() -> np.ndarray:
  """The 256-colour palette of DAVIS / YouTube-VOS annotations (the PASCAL VOC bit pattern), (256, 3) uint8."""
  palette = np.zeros((256, 3), np.uint8)
  for index in range(256):
    c, r, g, b = index, 0, 0, 0
    for bit in range(8):
      r |= ((c >> 0) & 1) << (7 - bit)
      g |= ((c >> 1) & 1) << (7 - bit)
      b |= ((c >> 2) & 1) << (7 - bit)
      c >>= 3
    palette[index] = (r, g, b)
  return palette


def write_palette_png(labels: np.ndarray, path: str) -> None:
  """(H, W) uint8 object ids -> palette PNG."""
  image = Image.fromarray(labels.astype(np.uint8), mode='P')
  image.putpalette(davis_palette().reshape(-1).tolist())
  image.save(path)
