"""GSFM training loss (docs/reference.md §2): bootstrapped (hard-mining) cross entropy on the soft-aggregated
log-odds plus 0.05 × (BCE + Dice) on the boundary logits, per sample, per predicted frame.

Works under jit with a traced hard-mining count: it becomes a mask over the sorted per-pixel
losses, so no shape depends on the iteration.
"""

from typing import Mapping, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

# numpy, not jnp: importing this module must not start a JAX backend (jax.distributed comes first)
_LAPLACIAN = np.array([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]], np.float32)
_MASKED_LOGIT = -1e30
BOUNDARY_WEIGHT = 0.05  # the reference's weight of the boundary loss


def hard_mining(it: int, num_pixels: int, start_warm: int, end_warm: int, top_p: float = 0.15) -> tuple[float, int]:
  """(p, k): the fraction and number of hardest pixels kept per sample at iteration `it`.

  p is 1 before start_warm, then linear down to top_p at end_warm, top_p after; k = int(num_pixels · p).
  Computed on the host in float64 like the official code, because float32 rounding changes k by one
  whenever num_pixels · p is (nearly) whole. Feed both to a jitted step as arrays: nothing recompiles.
  """
  if it < start_warm:
    p = 1.0
  elif it > end_warm:
    p = top_p
  else:
    p = top_p + (1 - top_p) * ((end_warm - it) / (end_warm - start_warm))
  return p, int(num_pixels * p)


def bootstrapped_ce(
  logits: jax.Array, labels: jax.Array, num_kept: Union[int, jax.Array], class_valid: Optional[jax.Array] = None
) -> jax.Array:
  """Mean of the `num_kept` largest per-pixel cross entropies of each sample (see `hard_mining`).

  logits (B, H, W, C), labels (B, H, W) int, class_valid (B, C) bool (invalid classes are left out
  of the softmax, like the official `logits[:, :2]` for samples without a second object) -> (B,).
  """
  if class_valid is not None:
    logits = jnp.where(class_valid[:, None, None, :], logits, _MASKED_LOGIT)
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  pixel_loss = -jnp.take_along_axis(log_p, labels[..., None].astype(jnp.int32), axis=-1)
  pixel_loss = pixel_loss.reshape(pixel_loss.shape[0], -1)
  ranked = -jnp.sort(-pixel_loss, axis=-1)
  keep = jnp.arange(ranked.shape[1]) < num_kept
  return jnp.sum(jnp.where(keep, ranked, 0.0), axis=-1) / num_kept


def boundary_target(mask: jax.Array) -> jax.Array:
  """Inner 1-pixel contour: (B, H, W) in [0, 1] -> (B, H, W) in {0, 1}.

  3×3 Laplacian with zero padding, clamped at 0, thresholded at 0.1 (border pixels count as boundary).
  """
  edges = jax.lax.conv_general_dilated(
    mask[..., None].astype(jnp.float32),
    _LAPLACIAN[:, :, None, None],
    (1, 1),
    ((1, 1), (1, 1)),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )
  return (jnp.maximum(edges[..., 0], 0.0) > 0.1).astype(jnp.float32)


def boundary_loss(logits: jax.Array, target: jax.Array) -> jax.Array:
  """BCE-with-logits (pixel mean) + Dice (plain sums, smooth 1): (B, H, W), (B, H, W) -> (B,)."""
  logits = logits.astype(jnp.float32)
  bce = jax.nn.softplus(logits) - logits * target  # gradient σ(z) − t everywhere, as PyTorch's backward
  prob = jax.nn.sigmoid(logits)
  dice = 1.0 - (2.0 * jnp.sum(prob * target, axis=(1, 2)) + 1.0) / (
    jnp.sum(prob, axis=(1, 2)) + jnp.sum(target, axis=(1, 2)) + 1.0
  )
  return jnp.mean(bce, axis=(1, 2)) + dice


def gsfm_loss(
  outputs: Mapping[str, jax.Array],
  masks: jax.Array,
  cls_gt: jax.Array,
  selector: Optional[jax.Array],
  p: Union[float, jax.Array],
  num_kept: Union[int, jax.Array],
  boundary_weight: float = BOUNDARY_WEIGHT,
) -> dict[str, jax.Array]:
  """The official loss over frames 1 … T-1 of a clip batch.

  outputs: the clip forward's `logits` (B, T-1, H, W, K+1) and `boundary` (B, T-1, H, W, K) of frames 1 … T-1;
  masks (B, T, H, W, K) object ground truth; cls_gt (B, T, H, W) in 0 … K; selector (B, K) or None
  (all objects present); p, num_kept from `hard_mining`. Returns `loss_t` (batch mean of CE +
  weight · boundary loss, the boundary loss averaged over present objects), `total_loss` = Σ_t loss_t,
  and the hard-mining fraction `p`.
  """
  b, num_frames = cls_gt.shape[:2]
  k = masks.shape[-1]
  present = jnp.ones((b, k), bool) if selector is None else selector > 0.5
  class_valid = jnp.concatenate([jnp.ones((b, 1), bool), present], axis=-1)
  weights = present.astype(jnp.float32)
  losses = {'total_loss': jnp.zeros((), jnp.float32)}
  for t in range(1, num_frames):
    per_sample = bootstrapped_ce(outputs['logits'][:, t - 1], cls_gt[:, t], num_kept, class_valid)
    if 'boundary' in outputs:
      per_object = jax.vmap(boundary_loss, in_axes=(-1, -1), out_axes=-1)(
        outputs['boundary'][:, t - 1], jax.vmap(boundary_target, in_axes=-1, out_axes=-1)(masks[:, t])
      )
      per_sample = per_sample + boundary_weight * jnp.sum(per_object * weights, -1) / jnp.sum(weights, -1)
    losses[f'loss_{t}'] = jnp.mean(per_sample)
    losses['total_loss'] = losses['total_loss'] + losses[f'loss_{t}']
  losses['p'] = jnp.asarray(p, jnp.float32)
  return losses
