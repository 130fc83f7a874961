"""The memory read's top-k: exact `lax.top_k` against `lax.approx_max_k`, and a dense readout against a
gathered one, for speed and for accuracy.

  python bench/top_k.py [--memory_frames 5 20 80] [--objects 2] [--repeats 5]

One query frame of DAVIS 480p (30×54 positions at 1/16, keys of 64 channels) reads a memory of T frames
(N = T·1620 entries, values of 512 channels per object), keeping the top 50 per query (docs/reference.md §1.7):

  exact+dense   the baseline (the training read; inference used it until top_k_read): lax.top_k, the k
                weights scattered into the (N, M) affinity,
                then one dense affinity × values product (its cost grows with N·M·512)
  exact+gather  the same top-k, then Σ_k w · v[index] from the k gathered value rows (cost M·k·512): the
                inference read now (`models.memory.top_k_read`)
  approx+dense  lax.approx_max_k (recall target 0.95) instead of the exact top-k (the op is only
                optimised on TPU; the recall column says what a platform returns)

Accuracy: the largest absolute difference of the readout from the baseline, and the recall of the
top-k index sets. Medians of --repeats jitted calls, compile excluded.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import machine, median_seconds  # noqa: E402

from gsfm_jax import cli  # noqa: E402
from gsfm_jax.models.memory import affinity_logits, memory_softmax, readout, top_k_read  # noqa: E402

H, W, KEY_DIM, VALUE_DIM, TOP_K = 30, 54, 64, 512, 50


def dense_read(mem_keys: jax.Array, query: jax.Array, values: jax.Array) -> jax.Array:
  """The dense read: memory keys (N, 64), query (M, 64), values (K, N, Cv) -> (K, M, Cv)."""
  return readout(memory_softmax(affinity_logits(mem_keys[None], query[None]), TOP_K), values[None])[0]


def approx_dense_read(mem_keys: jax.Array, query: jax.Array, values: jax.Array) -> jax.Array:
  """The same with `lax.approx_max_k`: its k weights scattered into the dense affinity, one dense product."""
  logits = affinity_logits(mem_keys[None], query[None], query_major=True)[0]  # (M, N)
  top, indices = _top_k(logits, approx=True)
  dense = jnp.put_along_axis(jnp.zeros_like(logits), indices, jax.nn.softmax(top, -1), axis=-1, inplace=False)
  return readout(dense.T[None], values[None])[0]


def gather_read(mem_keys: jax.Array, query: jax.Array, values: jax.Array) -> jax.Array:
  """The same function from the k gathered value rows per query (`top_k_read`)."""
  logits = affinity_logits(mem_keys[None], query[None], query_major=True)
  return top_k_read(logits, jnp.ones(logits.shape[::2], bool), values[None], TOP_K)[0]


def _top_k(x: jax.Array, approx: bool) -> tuple[jax.Array, jax.Array]:
  return jax.lax.approx_max_k(x, TOP_K, recall_target=0.95) if approx else jax.lax.top_k(x, TOP_K)


def top_k_indices(mem_keys: jax.Array, query: jax.Array, approx: bool) -> np.ndarray:
  return np.asarray(_top_k(affinity_logits(mem_keys[None], query[None], query_major=True)[0], approx)[1])


def recall(found: np.ndarray, exact: np.ndarray) -> float:
  """Mean share of the exact top-k indices that `found` holds, per query."""
  return float(np.mean([len(np.intersect1d(f, e)) / len(e) for f, e in zip(found, exact)]))


def main() -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--memory_frames', type=int, nargs='+', default=[5, 20, 80])
  parser.add_argument('--objects', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  print(f'machine: {machine()}')
  print(
    f'query {H}×{W}, keys {KEY_DIM}, values {VALUE_DIM}, {args.objects} objects, top-{TOP_K}, float32, '
    f'medians of {args.repeats}'
  )
  print('| memory frames | form | ms | speed-up | max abs diff | top-k recall |')
  print('|---|---|---|---|---|---|')
  forms = {
    'exact+dense': (jax.jit(dense_read), False),
    'exact+gather': (jax.jit(gather_read), False),
    'approx+dense': (jax.jit(approx_dense_read), True),
  }
  for frames in args.memory_frames:
    rng = np.random.default_rng(frames)
    n = frames * H * W
    mem_keys = jnp.asarray(rng.standard_normal((n, KEY_DIM)), jnp.float32)
    query = jnp.asarray(rng.standard_normal((H * W, KEY_DIM)), jnp.float32)
    values = jnp.asarray(rng.standard_normal((args.objects, n, VALUE_DIM)), jnp.float32)
    base_out, exact = np.asarray(dense_read(mem_keys, query, values)), top_k_indices(mem_keys, query, False)
    base_seconds = None
    for name, (fn, approx) in forms.items():
      seconds = median_seconds(fn, mem_keys, query, values, repeats=args.repeats)
      base_seconds = base_seconds or seconds
      diff = np.max(np.abs(np.asarray(fn(mem_keys, query, values)) - base_out))
      found = top_k_indices(mem_keys, query, approx)
      print(
        f'| {frames} | {name} | {1e3 * seconds:.1f} | {base_seconds / seconds:.2f}× | {diff:.1e} | '
        f'{recall(found, exact):.4f} |',
        flush=True,
      )


if __name__ == '__main__':
  main()
