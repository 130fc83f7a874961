"""Gradients of the training loss by official parameter name: the port against the official PyTorch training step
(the parity README's `grad_case*.npz`, tests/test_grad_parity.py) and bfloat16 against float32
(bench/bf16_gradients.py).

A case holds `input/{frames, gt, sec_gt, cls_gt, selector}`, the iteration `meta/it` of the hard-mining schedule
and the weights `make_state_dict(meta/weights_seed)` with the mask head scaled by `meta/pred_scale`.
"""

import functools
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gsfm_jax.losses import hard_mining
from gsfm_jax.models import GSFM
from gsfm_jax.train_step import clip_loss
from gsfm_jax.weights.official import state_dict_to_variables, variables_to_state_dict

START_WARM, END_WARM = 3000, 15000  # the parity README's loss computer
MASK_HEAD = ('decoder.pred.weight', 'decoder.pred.bias')
# tensor groups for reports, first match wins: the two output heads, then the network's parts
GROUPS = (
  ('heads', ('decoder.pred.', 'decoder.predict_boundary_2.')),
  ('key encoder', ('key_encoder.',)),
  ('value encoder', ('value_encoder.',)),
  ('LFM', ('lfm.',)),
  ('memory', ('key_proj.', 'key_comp.')),
  ('decoder', ('decoder.',)),
)
EXACT_ZERO = ('key_proj.key_proj.bias',)  # its gradient is 0 in exact arithmetic: the bias cancels in the affinity


class GradCase(NamedTuple):
  arrays: dict[str, np.ndarray]  # the file's arrays
  variables: dict  # {'params', 'batch_stats'} of the case's weights
  batch: dict[str, np.ndarray]  # frames (B, 3, H, W, 3), gt, sec_gt, cls_gt (B, 3, H, W), selector (B, 2)
  p: np.float32  # hard-mining fraction at meta/it
  num_kept: np.int32  # pixels kept per sample


def read_grad_case(path: str, state_dict: Callable[[int], Mapping[str, np.ndarray]]) -> GradCase:
  """A `grad_case*.npz` and its weights; state_dict(seed) is the parity folder's `make_state_dict`."""
  with np.load(path) as data:
    arrays = {k: data[k] for k in data.files}
  seed = int(arrays['meta/weights_seed'])
  weights = dict(state_dict(seed))
  scale = np.float32(arrays['meta/pred_scale'])
  for key in MASK_HEAD:
    weights[key] = weights[key].astype(np.float32) * scale
  batch = {k: arrays[f'input/{k}'] for k in ('frames', 'gt', 'sec_gt', 'cls_gt', 'selector')}
  p, num_kept = hard_mining(int(arrays['meta/it']), int(np.prod(batch['cls_gt'].shape[2:])), START_WARM, END_WARM)
  variables = state_dict_to_variables(weights, GSFM(), f'make_state_dict({seed})')
  return GradCase(arrays, variables, batch, np.float32(p), np.int32(num_kept))


@functools.lru_cache(maxsize=None)
def loss_and_grad(dtype: str = 'float32') -> Callable:
  """Jitted (params, batch_stats, batch, p, num_kept) -> ((total loss, metrics), grads) of the project's own
  training loss (`train_step.clip_loss`) for the two-object GSFM computing in `dtype`."""
  return jax.jit(jax.value_and_grad(clip_loss(GSFM(dtype=jnp.dtype(dtype))), has_aux=True))


def official_gradients(grads: Mapping) -> dict[str, np.ndarray]:
  """A params-shaped gradient tree -> {official name: gradient in the official layout (OIHW, (out, in))}."""
  return variables_to_state_dict({'params': jax.device_get(grads)})


def group(key: str) -> str:
  """The report group (`GROUPS`) of an official parameter name."""
  return next(name for name, prefixes in GROUPS if key.startswith(prefixes))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
  """Cosine similarity of two tensors, flattened, in float64 (1 for two zero tensors)."""
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  norms = np.linalg.norm(a) * np.linalg.norm(b)
  return 1.0 if norms == 0 else float(a @ b / norms)
