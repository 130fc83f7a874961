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


def fit(kernel: np.ndarray, shape: tuple[int, ...], fill: str, rng: np.random.Generator) -> np.ndarray:
  """A stem kernel (H, W, I, O) with fewer input channels than `shape` (else equal) widened to `shape`, the new
  channels after the existing ones; any other array unchanged (the structure check then names a mismatch).

  fill: 'orthogonal' (the reference's training and ImageNet start: PyTorch's `orthogonal_` on the new
  (O, extra, H, W) weight) or 'zeros' (the reference's evaluation scripts).
  """
  found = kernel.shape
  if not (len(found) == len(shape) == 4 and found[2] < shape[2] and found[:2] + found[3:] == shape[:2] + shape[3:]):
    return kernel
  h, w, i, o = found
  if fill == 'orthogonal':
    new = orthogonal((o, shape[2] - i, h, w), rng).transpose(2, 3, 1, 0)
  elif fill == 'zeros':
    new = np.zeros((h, w, shape[2] - i, o), np.float32)
  else:
    raise ValueError(f'stem fill {fill!r}: expected one of {", ".join(FILLS)}')
  return np.concatenate([kernel, new], axis=2)
