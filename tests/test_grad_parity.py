"""Training-step parity with the official PyTorch GSFM on every case in GSFM_GRAD_CASES, and bfloat16 gradients
against float32 ones.

Each case (docs/reference.md, "Parity cases") holds the official gradients of the
multi-object training loss at `meta/it` and the total losses of `meta/steps` Adam steps. The project's own
loss (`train_step.clip_loss`) and optimiser (`train_step.optimizer`) are run on the case's weights and batch;
every gradient is compared through its official name and layout, and the worst error per tensor group is
printed (relative to ‖g‖ of the reference tensor).
"""

import functools
import os
import zlib
from typing import NamedTuple

import jax
import numpy as np
import optax
import pytest
from conftest import PARITY_DIR, official_state_dict

from configs import main
from gsfm_jax.analysis import gradients
from gsfm_jax.train_step import optimizer

TOLERANCE = 1e-2  # of ‖g‖, for the norm, the projection and the full tensor
LOSS_TOLERANCE = 1e-4  # relative, for every step's total loss
# bfloat16 against float32, per tensor (bench/bf16_gradients.py; README "bfloat16"): the measured worst cosine is
# 0.997 and norm ratios stay within 0.98-1.02; bfloat16's 8-bit mantissa rounds each op by ≤ 2^-9, so 1 - cos of
# a few 1e-3 is its floor. The limits allow 4× that and fail the bias gradients summed in bfloat16 (cos 0.93,
# norms 0.16-0.4 of float32) that this port had before.
BF16_MIN_COSINE = 0.99
BF16_NORM_RATIO = (0.95, 1.05)
BF16_CASE = os.path.join(PARITY_DIR, 'grad_case1.npz')


def grad_cases() -> list[str]:
  """Case files from GSFM_GRAD_CASES (comma-separated), default the shared grad_case*.npz."""
  default = ','.join(os.path.join(PARITY_DIR, f'grad_case{i}.npz') for i in (0, 1))
  return [p for p in os.environ.get('GSFM_GRAD_CASES', default).split(',') if p]


def projection(key: str, official_layout: np.ndarray) -> float:
  """Σ g·r with the README's ±1 vector for `key`, over the gradient flattened in the official layout."""
  flat = official_layout.astype(np.float64).ravel()
  signs = np.random.default_rng(zlib.crc32(key.encode())).integers(0, 2, flat.size) * 2 - 1
  return float(flat @ signs)


class Run(NamedTuple):
  case: gradients.GradCase
  metrics: dict[str, np.ndarray]  # the loss terms at the initial weights
  grads: dict[str, np.ndarray]  # official name -> gradient at the initial weights, official layout
  losses: list[float]  # total loss before each update, and after the last


@functools.lru_cache(maxsize=2)
def _run(path: str) -> Run:
  case = gradients.read_grad_case(path, official_state_dict)
  step = gradients.loss_and_grad('float32')
  training = main.get_config()  # the main stage's optimiser at the case's learning rate
  training.lr = float(case.arrays['meta/lr'])
  tx = optimizer(training)
  params = case.variables['params']
  opt_state = tx.init(params)
  losses, metrics, grads = [], None, None
  for _ in range(int(case.arrays['meta/steps']) + 1):
    (loss, step_metrics), step_grads = step(params, case.variables['batch_stats'], case.batch, case.p, case.num_kept)
    losses.append(float(loss))
    if grads is None:
      metrics, grads = jax.device_get(step_metrics), gradients.official_gradients(step_grads)
    updates, opt_state = tx.update(step_grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  return Run(case, metrics, grads, losses)


def _describe(case: gradients.GradCase) -> str:
  a = case.arrays
  return (
    f'seed {int(a["meta/weights_seed"])}, it {int(a["meta/it"])}, {a["input/frames"].shape[2]}², '
    f'pred_scale {float(a["meta/pred_scale"])}'
  )


@pytest.mark.parametrize('path', grad_cases())
def test_gradients(path, capsys):
  run = _run(path)
  ref, grads = run.case.arrays, run.grads
  reference = sorted(k[len('grad/') : -len('/norm')] for k in ref if k.startswith('grad/') and k.endswith('/norm'))
  assert reference, f'{path} has no grad/<key>/norm entries'
  assert sorted(grads) == reference, (
    f'trainable tensors differ: only in the port {sorted(set(grads) - set(reference))}, '
    f'only in the case {sorted(set(reference) - set(grads))}'
  )
  worst: dict[str, tuple[float, str]] = {}
  failures = []
  for key in reference:
    if key in gradients.EXACT_ZERO:
      continue
    g, norm = grads[key], float(ref[f'grad/{key}/norm'])
    errors = [
      abs(float(np.linalg.norm(g.astype(np.float64))) - norm),
      abs(projection(key, g) - float(ref[f'grad/{key}/proj'])),
    ]
    if f'grad/{key}/full' in ref:
      errors.append(float(np.abs(g.astype(np.float64) - ref[f'grad/{key}/full']).max()))
    relative = max(errors) / max(norm, 1e-30)
    if relative > worst.get(gradients.group(key), (-1.0, ''))[0]:
      worst[gradients.group(key)] = (relative, key)
    if relative > TOLERANCE:
      failures.append(f'{key}: {relative:.3e} of ‖g‖ = {norm:.3e}')
  with capsys.disabled():
    print(f'\n[grad parity] {path} ({_describe(run.case)}): worst error / ‖g‖ per group, limit {TOLERANCE:g}')
    for name, _ in gradients.GROUPS:
      print(f'  {name:14s} {worst[name][0]:.3e}  ({worst[name][1]})')
  assert not failures, f'{len(failures)} of {len(reference)} tensors off: ' + '; '.join(failures)


@pytest.mark.parametrize('path', grad_cases())
def test_losses_through_adam_steps(path, capsys):
  run = _run(path)
  ref = run.case.arrays
  checks = [
    (f'step0/{name}', float(run.metrics[name]), float(ref[f'step0/{name}'])) for name in ('loss_1', 'loss_2', 'p')
  ]
  checks += [(f'step/loss_{i}', loss, float(ref[f'step/loss_{i}'])) for i, loss in enumerate(run.losses)]
  with capsys.disabled():
    print(
      f'\n[grad parity] {path}: losses over {int(ref["meta/steps"])} Adam steps (limit relative {LOSS_TOLERANCE:g})'
    )
    for name, got, want in checks:
      print(f'  {name:14s} {got:.6f} vs {want:.6f}  relative {abs(got - want) / abs(want):.2e}')
  for name, got, want in checks:
    assert abs(got - want) <= LOSS_TOLERANCE * abs(want), f'{name}: {got} vs {want}'


def test_bfloat16_gradients_agree_with_float32(capsys):
  """The GPU/TPU default (`dtype=auto` is bfloat16 there) against float32, on the official weights and batch."""
  fp32 = _run(BF16_CASE).grads
  case = gradients.read_grad_case(BF16_CASE, official_state_dict)
  (loss, _), grads = gradients.loss_and_grad('bfloat16')(
    case.variables['params'], case.variables['batch_stats'], case.batch, case.p, case.num_kept
  )
  bf16 = gradients.official_gradients(grads)
  rows = []
  for key in sorted(fp32):
    if key in gradients.EXACT_ZERO:
      continue
    ratio = float(np.linalg.norm(bf16[key].astype(np.float64)) / np.linalg.norm(fp32[key].astype(np.float64)))
    rows.append((gradients.cosine(bf16[key], fp32[key]), ratio, key))
  worst = min(rows)
  ratios = sorted(r[1] for r in rows)
  with capsys.disabled():
    print(
      f'\n[bf16] {BF16_CASE}: loss {float(loss):.5f} vs float32 {_run(BF16_CASE).losses[0]:.5f}; min cosine '
      f'{worst[0]:.5f} ({worst[2]}), norm ratios {ratios[0]:.3f} … {ratios[-1]:.3f}'
    )
  assert worst[0] >= BF16_MIN_COSINE, f'{worst[2]}: cosine {worst[0]:.5f} < {BF16_MIN_COSINE}'
  low = [(r, k) for c, r, k in rows if not BF16_NORM_RATIO[0] <= r <= BF16_NORM_RATIO[1]]
  assert not low, f'norm ratios outside {BF16_NORM_RATIO}: {low[:5]}'
  assert abs(float(loss) - _run(BF16_CASE).losses[0]) <= 2e-3 * _run(BF16_CASE).losses[0]
