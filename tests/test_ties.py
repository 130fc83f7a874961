"""Gradients at ties equal PyTorch's (real torch, CPU): clamp at its bounds, max reductions, max-pool and ReLU
on inputs full of exact ties, the situations the official training step meets."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from gsfm_jax.models.aggregate import aggregate
from gsfm_jax.models.ties import clamp, max_first, max_pool

LO, HI = 1e-7, 1 - 1e-7


def _torch_grad(fn, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """d Σ(weights · fn(x)) / dx in PyTorch."""
  t = torch.tensor(x, requires_grad=True)
  (fn(t) * torch.tensor(weights)).sum().backward()
  return t.grad.numpy()


def _jax_grad(fn, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
  return np.asarray(jax.grad(lambda v: jnp.sum(fn(v) * weights))(x))


def _ties(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
  """Values in {0, 1, 2}: most windows and rows hold several equal maxima."""
  return np.random.default_rng(seed).integers(0, 3, shape).astype(np.float32)


def test_clamp_passes_the_gradient_at_its_bounds():
  x = np.array([0.5, HI, LO, 0.0, 1.0, np.float32(HI) - 1e-7], np.float32)
  w = np.arange(1, 7, dtype=np.float32)
  got = _jax_grad(lambda v: clamp(v, LO, HI), x, w)
  np.testing.assert_array_equal(got, _torch_grad(lambda t: torch.clamp(t, LO, HI), x, w))
  np.testing.assert_array_equal(got, [1, 2, 3, 0, 0, 6])
  np.testing.assert_array_equal(np.asarray(clamp(x, LO, HI)), np.clip(x, np.float32(LO), np.float32(HI)))


def test_aggregate_gradient_on_saturated_probabilities():
  """Sigmoids of a band of confident logits round to exactly 1 − 1e-7 in float32; the whole gradient passes."""
  logits = np.array([[15.9, 16.0, 3.0], [16.5, -2.0, 20.0]], np.float32)
  prob = np.asarray(jax.nn.sigmoid(logits))
  assert (prob == np.float32(HI)).sum() >= 3
  w = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)

  def official(t):
    bg = torch.prod(1 - t, dim=-1, keepdim=True)
    p = torch.clamp(torch.cat([bg, t], -1), LO, HI)
    return torch.log(p / (1 - p))

  np.testing.assert_allclose(_jax_grad(aggregate, prob, w), _torch_grad(official, prob, w), rtol=1e-5, atol=1e-6)


def test_max_first_is_torch_max_pool_and_max_dim():
  x = _ties((2, 5, 6, 4))
  w = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
  spatial = lambda t: torch.nn.functional.max_pool2d(t.permute(0, 3, 1, 2), (5, 6), stride=(5, 6)).flatten(1)
  np.testing.assert_array_equal(_jax_grad(lambda v: max_first(v, (1, 2)), x, w), _torch_grad(spatial, x, w))
  w = np.random.default_rng(3).standard_normal((2, 5, 6)).astype(np.float32)
  np.testing.assert_array_equal(
    _jax_grad(lambda v: max_first(v, (-1,)), x, w), _torch_grad(lambda t: torch.max(t, -1)[0], x, w)
  )
  np.testing.assert_array_equal(np.asarray(max_first(x, (1, 2))), x.max(axis=(1, 2)))
  # what max_first replaces: jnp.max shares the gradient among tied maxima
  assert not np.array_equal(
    _jax_grad(lambda v: jnp.max(v, axis=-1), x, w), _jax_grad(lambda v: max_first(v, (-1,)), x, w)
  )


def test_flax_max_pool_and_relu_already_match_torch():
  x = _ties((2, 9, 11, 3), seed=4) - 1.0  # zeros for ReLU, ties for the pool
  w = np.random.default_rng(5).standard_normal((2, 5, 6, 3)).astype(np.float32)
  pool = lambda v: nn.max_pool(nn.relu(v), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  official = lambda t: torch.nn.functional.max_pool2d(torch.relu(t.permute(0, 3, 1, 2)), 3, 2, 1).permute(0, 2, 3, 1)
  np.testing.assert_array_equal(_jax_grad(pool, x, w), _torch_grad(official, x, w))


@pytest.mark.parametrize(
  'shape,window,stride,pad', [((2, 9, 11, 3), 3, 2, 1), ((1, 8, 10, 2), 3, 2, 1), ((2, 7, 6, 2), 2, 2, 0)]
)
def test_max_pool_of_views_is_torch_max_pool_at_ties(shape, window, stride, pad):
  """`ties.max_pool` (the ResNet stem's pool; on a CPU the max of strided views with its own backward pass):
  PyTorch's values and gradients, exactly, on windows full of ties, odd and even sizes; and the CPU program
  has no reduce-window left."""
  x = _ties(shape, seed=6) - 1.0
  out = tuple((n + 2 * pad - window) // stride + 1 for n in shape[1:3])
  w = np.random.default_rng(7).standard_normal((shape[0], *out, shape[3])).astype(np.float32)
  official = lambda t: torch.nn.functional.max_pool2d(t.permute(0, 3, 1, 2), window, stride, pad).permute(0, 2, 3, 1)
  ours = lambda v: max_pool(v, window, stride, pad)
  np.testing.assert_array_equal(np.asarray(ours(x)), official(torch.tensor(x)).numpy())
  np.testing.assert_array_equal(_jax_grad(ours, x, w), _torch_grad(official, x, w))
  cpu = jax.export.export(jax.jit(jax.grad(lambda v: jnp.sum(ours(v) * w))), platforms=['cpu'])(x).mlir_module()
  assert 'reduce_window' not in cpu and 'select_and_scatter' not in cpu
