"""Extra input channels of a stem convolution: a stage-0 (single-object, RGB + mask) value encoder loaded
into the multi-object network, which also sees the other objects' mask; and torchvision's RGB trunks."""

import numpy as np

STEM = ('params', 'value_encoder', 'conv1', 'kernel')
FILLS = ('orthogonal', 'zeros')


def orthogonal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
  """PyTorch `orthogonal_` semantics: rows = shape[0], columns = the rest flattened; float32."""
  rows, cols = shape[0], int(np.prod(shape[1:]))
  flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
  q, r = np.linalg.qr(flat)
  q *= np.sign(np.diag(r))
  if rows < cols:
    q = q.T
  return q.reshape(shape).astype(np.float32)


def widen(kernel: np.ndarray, in_channels: int, fill: str, rng: np.random.Generator) -> np.ndarray:
  """Flax stem kernel (H, W, I, O) -> (H, W, in_channels, O), the new channels after the existing ones.

  fill: 'orthogonal' (the reference's training and ImageNet start: PyTorch's `orthogonal_` on the new
  (O, extra, H, W) weight) or 'zeros' (the reference's evaluation scripts).
  """
  h, w, i, o = kernel.shape
  if fill == 'orthogonal':
    new = orthogonal((o, in_channels - i, h, w), rng).transpose(2, 3, 1, 0)
  elif fill == 'zeros':
    new = np.zeros((h, w, in_channels - i, o), np.float32)
  else:
    raise ValueError(f'stem fill {fill!r}: expected one of {", ".join(FILLS)}')
  return np.concatenate([kernel, new], axis=2)


def can_widen(found: tuple[int, ...], expected: tuple[int, ...]) -> bool:
  """Whether a stem kernel of shape `found` (H, W, I, O) widens to `expected` (fewer inputs, else equal)."""
  return (
    len(found) == len(expected) == 4 and found[2] < expected[2] and found[:2] + found[3:] == expected[:2] + expected[3:]
  )
