"""The optimiser against PyTorch's Adam (L2 weight decay) and MultiStepLR (real torch), step by step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from gsfm_jax.optim import adam_l2, multistep_schedule


def torch_adam_reference(params, grads, lr, milestones, wd):
  """torch.optim.Adam(weight_decay=wd) stepped with MultiStepLR(γ = 0.1) every update, in float64 (real torch)."""
  theta = torch.tensor(params, dtype=torch.float64, requires_grad=True)
  adam = torch.optim.Adam([theta], lr=lr, weight_decay=wd)
  scheduler = torch.optim.lr_scheduler.MultiStepLR(adam, milestones, gamma=0.1)
  for g in grads:
    theta.grad = torch.tensor(g, dtype=torch.float64)
    adam.step()
    scheduler.step()
  return theta.detach().numpy()


def test_schedule_and_adam_match_pytorch():
  schedule = multistep_schedule(4e-5, [2, 4])
  np.testing.assert_allclose([float(schedule(i)) for i in range(6)], [4e-5, 4e-5, 4e-6, 4e-6, 4e-7, 4e-7], rtol=1e-6)
  rng = np.random.default_rng(0)
  params = rng.standard_normal(16)
  grads = [rng.standard_normal(16) for _ in range(6)]
  wd = 0.3  # large, so that the coupling shows
  optimizer = adam_l2(multistep_schedule(1e-2, [2, 4]), weight_decay=wd)
  theta = jnp.asarray(params, jnp.float32)
  state = optimizer.init(theta)
  for g in grads:
    updates, state = optimizer.update(jnp.asarray(g, jnp.float32), state, theta)
    theta = optax.apply_updates(theta, updates)
  expected = torch_adam_reference(params, grads, 1e-2, [2, 4], wd)
  np.testing.assert_allclose(np.asarray(theta), expected, rtol=1e-5, atol=1e-6)
  decoupled = optax.adamw(multistep_schedule(1e-2, [2, 4]), weight_decay=wd)  # AdamW differs
  theta_w = jnp.asarray(params, jnp.float32)
  state_w = decoupled.init(theta_w)
  for g in grads:
    updates, state_w = decoupled.update(jnp.asarray(g, jnp.float32), state_w, theta_w)
    theta_w = optax.apply_updates(theta_w, updates)
  assert np.abs(np.asarray(theta_w) - expected).max() > 1e-4
  assert jax.tree.leaves(state)  # the state is a plain pytree (shardable, checkpointable)
