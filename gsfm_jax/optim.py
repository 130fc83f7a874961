"""The reference's optimiser (docs/reference.md §3.1): PyTorch `Adam(lr, weight_decay=1e-7)` with `MultiStepLR(×0.1)`
stepped every iteration.

PyTorch's Adam couples the weight decay to the gradient (L2, not AdamW): g ← g + wd·θ before the moment
updates; ε is added outside the square root. MultiStepLR multiplies the rate by γ at each milestone, so
update number i (0-based) runs at lr · γ^(milestones ≤ i).
"""

from typing import Sequence

import optax


def multistep_schedule(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> optax.Schedule:
  """lr · gamma^(number of milestones ≤ update count)."""
  return optax.piecewise_constant_schedule(lr, {int(m): gamma for m in milestones})


def adam_l2(
  schedule: optax.Schedule, weight_decay: float = 1e-7, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
  """PyTorch's `Adam(weight_decay=wd)`: decay added to the gradient, then Adam, then -lr(step)."""
  return optax.chain(
    optax.add_decayed_weights(weight_decay), optax.scale_by_adam(b1, b2, eps), optax.scale_by_learning_rate(schedule)
  )
