"""Numerical parity with the official PyTorch GSFM on every case in GSFM_PARITY_CASES.

Tolerances are those of the parity cases' README (docs/reference.md, "Parity cases"); the measured errors
are printed.
"""

import functools

import jax
import numpy as np
import pytest
from conftest import converted_variables, parity_cases, per_frame

from gsfm_jax.losses import gsfm_loss, hard_mining
from gsfm_jax.models import GSFM
from gsfm_jax.models.frequency import SpectralFilter

FEATURE_KEYS = ('k16', 'f16', 'f16_thin', 'ref_values', 'frame1_values', 'boundary_1', 'boundary_2')
START_WARM, END_WARM = 3000, 15000  # the README's loss computer
LOGIT_RESOLVED = 10.0  # beyond this |log-odds| float32 resolves the aggregated probability only to ~5 % of 1 - p


@functools.lru_cache(maxsize=None)
def _clip_forward():
  return jax.jit(GSFM().apply)


@functools.lru_cache(maxsize=4)
def _load(path: str) -> dict[str, np.ndarray]:
  with np.load(path) as data:
    return {k: data[k] for k in data.files}


def _first_masks(case: dict) -> np.ndarray:
  """(B, H, W, K) object masks of frame 0: gt, then sec_gt when the case has two object slots."""
  k = case['train/selector'].shape[1]
  return np.stack([case['train/gt'][:, 0], case['train/sec_gt'][:, 0]][:k], axis=-1)


@functools.lru_cache(maxsize=4)
def _run(path: str) -> dict[str, np.ndarray]:
  case = _load(path)
  variables = converted_variables(int(case['meta/weights_seed']))
  out = _clip_forward()(variables, case['train/frames'], _first_masks(case), case['train/selector'])
  return jax.device_get(out)


def _report(name: str, got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
  diff = np.abs(np.asarray(got, np.float64) - ref)
  scale = float(np.abs(ref).max())
  print(f'  {name:24s} max|diff| {diff.max():.3e}  relative {diff.max() / max(scale, 1e-30):.3e}')
  return float(diff.max()), scale


@pytest.mark.parametrize('path', parity_cases())
def test_train_features(path, capsys):
  out, case = per_frame(_run(path)), _load(path)
  with capsys.disabled():
    print(f'\n[parity] {path}: features (limit 1e-4 · max|ref|)')
    for key in FEATURE_KEYS:
      assert key in out, f'clip forward does not return {key}'
      assert out[key].shape == case[f'train/{key}'].shape, key
      err, scale = _report(key, out[key], case[f'train/{key}'])
      assert err <= 1e-4 * scale, f'{key}: max |diff| {err:.3e} > 1e-4 · {scale:.3e}'


@pytest.mark.parametrize('path', parity_cases())
def test_train_predictions(path, capsys):
  out, case = per_frame(_run(path)), _load(path)
  with capsys.disabled():
    print(f'\n[parity] {path}: predictions')
    for t in (1, 2):
      prob, ref = out[f'prob_{t}'], case[f'train/prob_{t}']
      err, _ = _report(f'prob_{t}', prob, ref)
      within = np.mean(np.abs(prob - ref) <= 1e-4)
      print(f'  {"":24s} within 1e-4: {100 * within:.3f} %  (need ≥ 99.9 %, max ≤ 1e-2)')
      assert err <= 1e-2 and within >= 0.999
      logits, ref = out[f'logits_{t}'], case[f'train/logits_{t}']
      _report(f'logits_{t}', logits, ref)
      within, near, far = logits_agreement(logits, ref)
      print(
        f'  {"":24s} within 1e-4·max|ref|: {100 * within:.3f} % (need ≥ 99.5 %); max|diff| {near:.3e} where '
        f'|ref| ≤ {LOGIT_RESOLVED:g} (need ≤ 0.05), {far:.3e} beyond (need ≤ 0.5)'
      )
      assert logits_agree(logits, ref)


def logits_agreement(logits: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
  """(share within 1e-4·max|ref|, max |diff| where |ref| ≤ LOGIT_RESOLVED, max |diff| beyond) of aggregated
  log-odds, whose large values float32 resolves coarsely."""
  diff = np.abs(np.asarray(logits, np.float64) - ref)
  moderate = np.abs(ref) <= LOGIT_RESOLVED
  return (
    float(np.mean(diff <= 1e-4 * np.abs(ref).max())),
    float(diff[moderate].max(initial=0.0)),
    float(diff[~moderate].max(initial=0.0)),
  )


def logits_agree(logits: np.ndarray, ref: np.ndarray) -> bool:
  """The README's rule for logits: ≥ 99.5 % within 1e-4·max|ref|, ≤ 0.05 where |ref| ≤ 10, ≤ 0.5 beyond."""
  within, near, far = logits_agreement(logits, ref)
  return within >= 0.995 and near <= 0.05 and far <= 0.5


@pytest.mark.parametrize('path', parity_cases())
def test_train_losses(path, capsys):
  out, case = _run(path), _load(path)
  k = case['train/selector'].shape[1]
  masks = np.stack([case['train/gt'], case['train/sec_gt']][:k], axis=-1)
  iterations = sorted(int(key.split('/')[1][len('loss_it') :]) for key in case if key.endswith('/total_loss'))
  assert iterations, 'case has no train/loss_it*/ keys'
  with capsys.disabled():
    print(f'\n[parity] {path}: losses (limit relative 1e-4)')
    for it in iterations:
      p, num_kept = hard_mining(it, int(np.prod(case['train/cls_gt'].shape[2:])), START_WARM, END_WARM)
      losses = jax.device_get(gsfm_loss(out, masks, case['train/cls_gt'], case['train/selector'], p, num_kept))
      for name in ('total_loss', 'loss_1', 'loss_2', 'p'):
        ref = float(case[f'train/loss_it{it}/{name}'])
        rel = abs(float(losses[name]) - ref) / abs(ref)
        print(f'  it {it:6d} {name:10s} {float(losses[name]):.6f} vs {ref:.6f}  relative {rel:.2e}')
        assert rel <= 1e-4, f'it {it} {name}'


@pytest.mark.parametrize('path', parity_cases())
def test_units(path, capsys):
  case = _load(path)
  params = converted_variables(int(case['meta/weights_seed']))['params']
  units = {'lfm': ('low', params['lfm']), 'lfm_odd': ('low', params['lfm']), 'hfm': ('high', params['decoder']['hfm'])}
  with capsys.disabled():
    print(f'\n[parity] {path}: LFM / HFM units (limit 1e-4 · max|ref|)')
    for name, (kind, unit_params) in units.items():
      if f'units/{name}_in' not in case:
        continue
      got = SpectralFilter(kind).apply({'params': unit_params}, case[f'units/{name}_in'])
      err, scale = _report(name, got, case[f'units/{name}_out'])
      assert err <= 1e-4 * scale, name


@pytest.mark.parametrize('path', parity_cases())
def test_eval_keys(path, capsys):
  """The inference engine on the case's video: DAVIS settings (top-k, mem_every, padding) of the case."""
  case = _load(path)
  if 'eval/frames' not in case:
    pytest.skip(f'{path} has no eval/* keys')
  from gsfm_jax.inference import Propagator, Protocol
  from gsfm_jax.inference.resize import pad_split

  frames, first = case['eval/frames'], case['eval/first_labels']
  assert pad_split(frames.shape[2]) + pad_split(frames.shape[1]) == tuple(case['eval/pad_lrtb'])
  protocol = Protocol(top_k=int(case['eval/top_k']), mem_every=int(case['eval/mem_every']))
  engine = Propagator(GSFM(), converted_variables(int(case['meta/weights_seed'])), protocol)
  result = engine.segment(frames, {0: first}, keep_prob=True)
  ref_prob, ref_labels = case['eval/prob'], case['eval/labels']
  assert result.prob.shape == ref_prob.shape and result.labels.shape == ref_labels.shape
  close = float(np.mean(np.abs(result.prob - ref_prob) <= 1e-3))
  same = float(np.mean(result.labels == ref_labels))
  with capsys.disabled():
    print(
      f'\n[parity] {path}: eval ({frames.shape[0]} frames, {int(first.max())} objects): prob within 1e-3 '
      f'{100 * close:.3f} % (need 99.5), max|diff| {np.abs(result.prob - ref_prob).max():.3e}; '
      f'labels equal {100 * same:.3f} % (need 99.9)'
    )
  assert close >= 0.995
  assert same >= 0.999
