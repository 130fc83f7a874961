"""Soft aggregation of per-object probabilities (docs/reference.md §1.9)."""

import jax
import jax.numpy as jnp

from gsfm_jax.models.ties import clamp


def aggregate(prob: jax.Array) -> jax.Array:
  """Per-object foreground probabilities (..., K) -> log-odds (..., K+1), background first.

  p_0 = Π(1 - p_i); all clamped to [1e-7, 1 - 1e-7] with PyTorch's clamp (the gradient passes at the bounds);
  l = log(p / (1 - p)). softmax(l) over the last axis gives the aggregated probabilities (with K = 1 the odds
  are squared, as in the official code).
  """
  prob = prob.astype(jnp.float32)
  background = jnp.prod(1.0 - prob, axis=-1, keepdims=True)
  p = clamp(jnp.concatenate([background, prob], axis=-1), 1e-7, 1.0 - 1e-7)
  return jnp.log(p / (1.0 - p))
