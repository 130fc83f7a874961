"""What bfloat16 compute costs in gradient fidelity: per-tensor cosine similarity and norm ratio of the training
loss's gradients in bfloat16 (`model.dtype`, the GPU/TPU default under `auto`) against float32, on the parity
folder's training-step cases (official weights, official batches).

  JAX_PLATFORMS=cpu python bench/bf16_gradients.py [--cases REFERENCE/parity/grad_case0.npz,...]

Prints, per case and per tensor group, the smallest cosine and the norm ratio range, and the losses.
"""

import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
from bench.common import machine  # noqa: E402
from gsfm_jax import cli  # noqa: E402
from gsfm_jax.analysis import gradients  # noqa: E402

PARITY_DIR = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'reference', 'parity')


def make_state_dict(seed: int) -> dict:
  sys.path.insert(0, PARITY_DIR)
  from make_weights import make_state_dict as make  # the parity folder's generator

  return make(seed)


def case_gradients(case: gradients.GradCase, dtype: str) -> tuple[float, dict[str, np.ndarray]]:
  (loss, _), grads = gradients.loss_and_grad(dtype)(
    case.variables['params'], case.variables['batch_stats'], case.batch, case.p, case.num_kept
  )
  return float(loss), gradients.official_gradients(grads)


def compare(fp32: dict[str, np.ndarray], bf16: dict[str, np.ndarray]) -> dict[str, tuple[float, float, float, str]]:
  """group -> (min cosine, min norm ratio, max norm ratio, tensor of the min cosine)."""
  out: dict[str, tuple[float, float, float, str]] = {}
  for key in sorted(fp32):
    if key in gradients.EXACT_ZERO:  # noise against noise
      continue
    name = gradients.group(key)
    cos = gradients.cosine(bf16[key], fp32[key])
    ratio = float(
      np.linalg.norm(bf16[key].astype(np.float64)) / max(np.linalg.norm(fp32[key].astype(np.float64)), 1e-30)
    )
    lo, rmin, rmax, arg = out.get(name, (2.0, np.inf, 0.0, ''))
    out[name] = (min(lo, cos), min(rmin, ratio), max(rmax, ratio), key if cos < lo else arg)
  return out


def main() -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--cases', default=','.join(os.path.join(PARITY_DIR, f'grad_case{i}.npz') for i in (0, 1)))
  args = parser.parse_args()
  print(machine())
  for path in args.cases.split(','):
    case = gradients.read_grad_case(path, make_state_dict)
    loss32, fp32 = case_gradients(case, 'float32')
    loss16, bf16 = case_gradients(case, 'bfloat16')
    a = case.arrays
    print(
      f'\n{os.path.basename(path)}: seed {int(a["meta/weights_seed"])}, it {int(a["meta/it"])}, '
      f'{a["input/frames"].shape[2]}², pred_scale {float(a["meta/pred_scale"])}; '
      f'loss float32 {loss32:.5f}, bfloat16 {loss16:.5f} ({abs(loss16 - loss32) / abs(loss32):.2e} relative)'
    )
    rows = compare(fp32, bf16)
    print(f'  {"group":14s} {"min cosine":>10s}  {"norm ratio":>15s}  tensor of the min cosine')
    for name, _ in gradients.GROUPS:
      cos, rmin, rmax, key = rows[name]
      print(f'  {name:14s} {cos:10.5f}  {rmin:6.3f} … {rmax:6.3f}  {key}')
    all_cos = sorted(gradients.cosine(bf16[k], fp32[k]) for k in fp32 if k not in gradients.EXACT_ZERO)
    print(
      f'  all {len(all_cos)} tensors: min {all_cos[0]:.5f}, 1st percentile {np.percentile(all_cos, 1):.5f}, '
      f'median {np.median(all_cos):.5f}'
    )
  jax.clear_caches()


if __name__ == '__main__':
  main()
