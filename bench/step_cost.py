"""Where the FLOPs and the bytes of the compiled train step go, per part of the network, and its roofline.

  python bench/step_cost.py --config main --topology v5p-8 --per_chip 2     # the TPU program (needs libtpu)
  python bench/step_cost.py --config pretrain --topology v5p-8 --per_chip 2
  python bench/step_cost.py --config main --topology host --per_chip 1      # this machine's program

Compiles the step `gsfm_jax.train` runs (`aot.train_lowered`: abstract state and batch, nothing allocated;
bfloat16 on a TPU, float32 on a CPU, as `model.dtype: auto` picks) and prints XLA's cost analysis per chip and
per clip, the roofline estimate on a TPU chip (the step takes at least max(FLOPs / peak, bytes / HBM
bandwidth), data-sheet figures in `gsfm_jax.tpu_topologies`) and the split of FLOPs and bytes accessed per
forward / backward module (`hlo_cost`). The last line is the JSON that `bench/before_after.py` reads.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from hlo_cost import hlo_cost, print_cost  # noqa: E402

from configs import main as main_config  # noqa: E402
from configs import pretrain as pretrain_config
from gsfm_jax import aot, cli, tpu_topologies  # noqa: E402

CONFIGS = {'main': main_config.get_config, 'pretrain': pretrain_config.get_config}


def roofline(flops: float, moved: float, chip: tpu_topologies.Chip) -> dict:
  """The step's lower bound on one chip: arithmetic and memory times (s) and the MFU it allows."""
  arithmetic, memory = flops / chip.peak_bf16, moved / chip.hbm_bandwidth
  return {'arithmetic_s': arithmetic, 'memory_s': memory, 'mfu_bound': arithmetic / max(arithmetic, memory)}


def main(argv=None) -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--config', default='main', choices=sorted(CONFIGS))
  parser.add_argument('--topology', default='v5p-8', help='a TPU slice (needs libtpu), or host')
  parser.add_argument('--per_chip', type=int, default=2, help='training clips per chip')
  parser.add_argument('--depth', type=int, default=2, help='Flax scope depth of the per-part table')
  args = parser.parse_args(argv)
  if args.topology != 'host':
    jax.config.update('jax_platforms', 'cpu')  # compile-only: never open this host's accelerators
  target = aot.make_target(args.topology)
  config = aot.target_config(CONFIGS[args.config](), target)
  start = time.perf_counter()
  compiled = aot.train_lowered(config, target.devices, args.per_chip).compile()
  seconds = time.perf_counter() - start
  xla, text = aot.cost_of(compiled), compiled.as_text()
  flops, moved = xla.get('flops', 0.0), xla.get('bytes accessed', 0.0)
  print(
    f'{args.config} on {target.name} ({config.model.dtype}), {args.per_chip} clips of {aot.TRAIN_FRAMES} frames at '
    f'{config.data.size}² per chip, compiled in {seconds:.0f} s: {flops / 1e12:.3f} TFLOP and '
    f'{moved / 1e9:.1f} GB accessed per chip, {flops / args.per_chip / 1e9:.0f} GFLOP and '
    f'{moved / args.per_chip / 1e9:.2f} GB per clip, {flops / max(moved, 1):.0f} FLOPs/byte'
  )
  result = {'config': args.config, 'topology': target.name, 'per_chip': args.per_chip, 'flops': flops, 'bytes': moved}
  chip = tpu_topologies.lookup(args.topology).chip if target.platform == 'tpu' else None
  if hasattr(chip, 'hbm_bandwidth'):  # revisions before 2026-12-04 (before_after.py) have no bandwidth figures
    bound = roofline(flops, moved, chip)
    print(
      f'roofline on a {chip.generation} chip: arithmetic {1e3 * bound["arithmetic_s"]:.1f} ms, memory '
      f'{1e3 * bound["memory_s"]:.1f} ms, so at most {100 * bound["mfu_bound"]:.0f} % MFU'
    )
    result.update(bound)
  print_cost(hlo_cost([text]), xla, depth=args.depth)
  print(json.dumps(result))


if __name__ == '__main__':
  main()
