"""What each SFM / FFR switch costs against GSFM, in one run: parameters (the demo's 1/4 width and the full
network), FLOPs of the jitted train step (XLA's cost analysis), its compile time and its step time (median
over interleaved rounds, so every variant sees the same machine load):

  python bench/switch_cost.py [--rounds 10] [--size 64] [--batch 4] [--width_divisor 4]

The train step is the project's own (`train_step.make_train_step`, the demo config: clips of 3 frames,
2 objects), on one device.
"""

import os
import sys
import time

import numpy as np

from gsfm_jax import cli

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIANTS = {
  'GSFM': {},
  'ffr_ideal (LFM + HFM box, c = 0.4)': {'lfm_shape': 'ideal', 'hfm_shape': 'ideal'},
  'sfm_ars_layer3': {'ars_stages': ('layer3',)},
  'sfm_ars (layer2 + layer3)': {'ars_stages': ('layer2', 'layer3')},
  'sfm_ars_msau': {'ars_stages': ('layer2', 'layer3'), 'msau_refine': True},
}


def parameters(config) -> int:
  import jax

  from gsfm_jax.models import build_model, init_variables

  shapes = jax.eval_shape(lambda: init_variables(build_model(config), jax.random.PRNGKey(0)))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes['params']))


def clip_batch(size: int, batch: int) -> dict[str, np.ndarray]:
  """Random frames and two square objects that move a pixel per frame."""
  rng = np.random.default_rng(0)
  gt = np.zeros((batch, 3, size, size), np.float32)
  sec = np.zeros_like(gt)
  for t in range(3):
    gt[:, t, 4 + t : size // 2 + t, 4 : size // 2] = 1
    sec[:, t, size // 2 : size - 4, size // 2 + t : size - 4 + t] = 1
  return {
    'frames': rng.standard_normal((batch, 3, size, size, 3)).astype(np.float32),
    'gt': gt,
    'sec_gt': sec,
    'cls_gt': np.where(sec > 0.5, 2, np.where(gt > 0.5, 1, 0)).astype(np.int32),
    'selector': np.ones((batch, 2), np.float32),
  }


def main() -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--rounds', type=int, default=10)
  parser.add_argument('--size', type=int, default=64)
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--width_divisor', type=int, default=4)
  args = parser.parse_args()
  import jax

  from bench.common import machine
  from configs import demo
  from gsfm_jax import aot, sharding
  from gsfm_jax.models import build_model, init_variables
  from gsfm_jax.train_step import make_train_step, optimizer, place_state

  print(machine())
  print(
    f'train step: batch {args.batch}, 3 frames of {args.size}², 2 objects, GSFM at 1/{args.width_divisor} width, '
    f'float32, {args.rounds} interleaved rounds'
  )
  mesh = sharding.make_mesh(jax.devices()[:1])
  runs = {}
  for name, overrides in VARIANTS.items():
    config = demo.get_config()
    config.data.size, config.global_batch = args.size, args.batch
    config.model.update(width_divisor=args.width_divisor, dtype='float32', **overrides)
    full = config.model.copy_and_resolve_references()
    full.width_divisor = 1
    model = build_model(config.model)
    step = make_train_step(model, config, mesh)
    variables = jax.device_get(init_variables(model, jax.random.PRNGKey(0)))
    state = place_state(sharding.put_replicated(variables, mesh), optimizer(config), mesh)
    batch = sharding.global_batch(clip_batch(args.size, args.batch), mesh)
    scalars = sharding.put_replicated((np.float32(0.5), np.int32(args.size**2 // 2)), mesh)
    start = time.perf_counter()
    compiled = step.lower(state, batch, *scalars).compile()
    compile_s = time.perf_counter() - start
    cost = aot.cost_of(compiled)
    state, _ = compiled(state, batch, *scalars)
    runs[name] = {
      'compiled': compiled,
      'state': state,
      'args': (batch, *scalars),
      'times': [],
      'params': parameters(config.model),
      'params_full': parameters(full),
      'gflop': cost.get('flops', float('nan')) / 1e9,
      'compile_s': compile_s,
    }
  for _ in range(args.rounds):
    for run in runs.values():
      start = time.perf_counter()
      run['state'], metrics = run['compiled'](run['state'], *run['args'])
      jax.block_until_ready(metrics)
      run['times'].append(time.perf_counter() - start)
  base = runs['GSFM']
  base_ms = 1000 * np.median(base['times'])
  print(
    f'| variant | parameters (1/{args.width_divisor} width) | parameters (full) | GFLOP / step | compile s '
    '| step ms (median) | '
    'vs GSFM |\n|---|---|---|---|---|---|---|'
  )
  for name, run in runs.items():
    ms = 1000 * np.median(run['times'])
    print(
      f'| {name} | {run["params"]:,} (+{run["params"] - base["params"]:,}) | {run["params_full"]:,} '
      f'(+{run["params_full"] - base["params_full"]:,}) | {run["gflop"]:.2f} | {run["compile_s"]:.1f} | {ms:.0f} | '
      f'{ms / base_ms:.2f}× |'
    )


if __name__ == '__main__':
  main()
