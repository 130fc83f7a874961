"""The jitted train step on a 2-device mesh, without the data pipeline: gradient accumulation gives the same
step as one batch, a non-finite step never reaches the parameters, and the step compiles once."""

import functools

import jax
import numpy as np
import pytest

from configs import demo
from gsfm_jax import sharding
from gsfm_jax.models import build_model, init_variables
from gsfm_jax.train_step import make_train_step, optimizer, place_state
from gsfm_jax.weights.files import flatten

SIZE, BATCH = 32, 4


def config(grad_accum: int = 1):
  c = demo.get_config()
  c.data.size, c.global_batch, c.grad_accum = SIZE, BATCH, grad_accum
  return c


@functools.lru_cache(maxsize=None)
def setup(grad_accum: int):
  """(model, mesh, jitted step) for a 2-device mesh."""
  c = config(grad_accum)
  mesh = sharding.make_mesh(jax.devices()[:2])
  model = build_model(c.model)
  return model, mesh, make_train_step(model, c, mesh)


def fresh_state(model, mesh):
  variables = sharding.put_replicated(jax.device_get(init_variables(model, jax.random.PRNGKey(0))), mesh)
  return place_state(variables, optimizer(config()), mesh)


def clip_batch(seed: int = 0) -> dict[str, np.ndarray]:
  """Random frames and two square objects that move by a pixel per frame."""
  rng = np.random.default_rng(seed)
  gt = np.zeros((BATCH, 3, SIZE, SIZE), np.float32)
  sec = np.zeros_like(gt)
  for b in range(BATCH):
    y, x = rng.integers(2, SIZE // 2, 2)
    for t in range(3):
      gt[b, t, y + t : y + t + 8, x : x + 8] = 1
      sec[b, t, SIZE // 2 + 2 : SIZE // 2 + 10, x + t : x + t + 10] = 1
  return {
    'frames': rng.standard_normal((BATCH, 3, SIZE, SIZE, 3)).astype(np.float32),
    'gt': gt,
    'sec_gt': sec,
    'cls_gt': np.where(sec > 0.5, 2, np.where(gt > 0.5, 1, 0)).astype(np.int32),
    'selector': np.ones((BATCH, 2), np.float32),
  }


def run_step(grad_accum: int, batch: dict, state=None):
  model, mesh, step = setup(grad_accum)
  state = fresh_state(model, mesh) if state is None else state
  scalars = sharding.put_replicated((np.float32(0.5), np.int32(SIZE * SIZE // 2)), mesh)
  return step(state, sharding.global_batch(batch, mesh), *scalars)


def test_gradient_accumulation_equals_one_batch():
  batch = clip_batch()
  one_state, one = jax.device_get(run_step(1, batch))
  two_state, two = jax.device_get(run_step(2, batch))
  for key in ('total_loss', 'loss_1', 'loss_2', 'grad_norm'):
    assert two[key] == pytest.approx(one[key], rel=1e-5), key
  for key in ('iou_i', 'iou_u', 'sec_iou_i', 'sec_iou_u'):
    assert two[key] == one[key], key
  assert one['finite'] and two['finite'] and int(two_state.step) == 1
  lr = config().lr
  moved = flatten({'p': one_state.params})
  for name, value in flatten({'p': two_state.params}).items():
    np.testing.assert_allclose(value, moved[name], atol=2.5 * lr, err_msg=name)  # Adam's first step: ±lr


def test_non_finite_steps_are_refused_and_counted():
  model, mesh, _ = setup(1)
  state = fresh_state(model, mesh)
  before = flatten({'p': jax.device_get(state.params)})
  bad = clip_batch()
  bad['frames'][1, 2, 5, 5, 0] = np.nan
  state, metrics = run_step(1, bad, state)
  state, metrics2 = run_step(1, bad, state)
  assert not metrics['finite'] and not metrics2['finite']
  assert (int(state.step), int(state.refused), int(state.refused_in_a_row)) == (2, 2, 2)
  after = flatten({'p': jax.device_get(state.params)})
  assert all(np.array_equal(after[k], before[k]) for k in before), 'a refused step changed the parameters'
  assert int(state.opt_state[1].count) == 0  # Adam's state did not advance either
  state, metrics = run_step(1, clip_batch(), state)
  assert metrics['finite'] and float(metrics['lr']) == pytest.approx(config().lr)
  assert (int(state.step), int(state.refused), int(state.refused_in_a_row)) == (3, 2, 0)
  assert int(state.opt_state[1].count) == 1
  assert any(not np.array_equal(v, before[k]) for k, v in flatten({'p': jax.device_get(state.params)}).items())
  # a placed fresh state and the step's own output states, bad and good batches: one compiled program
  assert setup(1)[2]._cache_size() == 1
