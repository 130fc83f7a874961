"""Moves GSFM weights between the official PyTorch format, gsfm_jax checkpoints and numpy.

  # official GSFM/STCN-layout state_dict (.pth needs torch; .npz with official key names does not)
  python -m gsfm_jax.convert GSFM.pth ckpt/            # -> orbax checkpoint directory
  python -m gsfm_jax.convert GSFM.npz weights.npz      # -> flat numpy, '/'-joined Flax names
  # back: any gsfm_jax checkpoint or flat .npz -> official key names
  python -m gsfm_jax.convert ckpt/ GSFM.npz --to official
  # ImageNet start for training: torchvision ResNet-50/18 backbones, the rest freshly initialised
  python -m gsfm_jax.convert --resnet50 resnet50-19c8e357.pth --resnet18 resnet18-5c106cde.pth init/

Input kinds are recognised by content (gsfm_jax.weights): a training workdir (or its checkpoints/ or a step
folder) gives its newest checkpoint; another directory is an orbax checkpoint; an .npz whose names start with
params/ is a gsfm_jax file, otherwise it holds official key names; .pth/.pt is a PyTorch file (written only
with --to official).
The network (width, single/multi-object, SFM/FFR switches) comes from the input's record, which every file
gsfm_jax writes carries and the output gets too (not a .pth, which has no place for it); an input without one
(an official .pth) is GSFM unless --model says otherwise, e.g. --model width_divisor=4 --model single_object=true.
Nothing is written when a conversion fails, and an existing output is kept unless --overwrite.
"""

import sys
from typing import Optional, Sequence

import jax
import numpy as np

from gsfm_jax import cli, console, weights
from gsfm_jax.models import build_model
from gsfm_jax.weights import record
from gsfm_jax.weights.imagenet import imagenet_start
from gsfm_jax.weights.stem import FILLS

PTH = ('.pth', '.pt')


def build_parser() -> cli.Parser:
  p = cli.Parser(__doc__, prog='python -m gsfm_jax.convert')
  p.add_argument('paths', nargs='+', metavar='PATH', help='SOURCE OUTPUT, or only OUTPUT with --resnet50/--resnet18')
  p.add_argument(
    '--to',
    choices=('gsfm', 'official'),
    default='gsfm',
    help='output naming: gsfm (orbax directory, or flat .npz) or official (.npz, or .pth with torch) '
    '(default: %(default)s)',
  )
  p.add_argument(
    '--stem_fill',
    choices=FILLS,
    default='orthogonal',
    help='init of the 5th value-encoder input channel when a stage-0 checkpoint is loaded into the '
    'multi-object network: orthogonal (official training) or zeros (official eval scripts) '
    '(default: %(default)s)',
  )
  p.add_argument('--resnet50', help='torchvision ResNet-50 ImageNet state_dict (.pth or .npz) for the key encoder')
  p.add_argument('--resnet18', help='torchvision ResNet-18 ImageNet state_dict (.pth or .npz) for the value encoder')
  p.add_model()
  p.add_argument('--seed', type=int, default=0, help='seed of the fresh initialisation (default: %(default)s)')
  p.add_argument('--overwrite', action='store_true', help='replace an existing output')
  return p


def convert(args) -> int:
  """Reads or builds the variables the flags name and writes them; -> 0."""
  from_imagenet = args.resnet50 is not None or args.resnet18 is not None
  if from_imagenet and (not (args.resnet50 and args.resnet18) or len(args.paths) != 1):
    raise cli.UsageError('--resnet50 and --resnet18 go together, with one OUTPUT path')
  if not from_imagenet and len(args.paths) != 2:
    raise cli.UsageError('expected SOURCE and OUTPUT')
  output = args.paths[-1]
  if output.endswith(PTH) and args.to != 'official':
    raise cli.UsageError(
      f'{output}: a .pth output holds the official names; add --to official (or write a folder or an .npz)'
    )
  if from_imagenet:
    config = record.config(record.parse_overrides(args.model), '--model')
  else:
    config = weights.network(args.paths[0], args.model)
  config.dtype = 'float32'
  model = build_model(config)
  if from_imagenet:
    variables = imagenet_start(args.resnet50, args.resnet18, model, args.seed)
  else:
    variables = weights.load(args.paths[0], model, args.stem_fill)
  weights.save(variables, output, config, args.to, args.overwrite)
  count = sum(int(np.size(v)) for v in jax.tree.leaves(variables['params']))
  print(f'wrote {output} ({args.to} names, {count:,} parameters, {describe(config)})')
  return 0


def describe(config) -> str:
  """'multi-object GSFM at width_divisor 4, ars_stages=[...]': the network, with the switches not GSFM's."""
  gsfm, network = record.of(record.defaults()), record.of(config)
  changed = [f'{k}={v}' for k, v in network.items() if v != gsfm[k] and k not in ('single_object', 'width_divisor')]
  kind = 'single-object' if config.single_object else 'multi-object'
  return f'{kind} GSFM at width_divisor {config.width_divisor}' + ''.join(f', {c}' for c in changed)


@cli.reported
def main(argv: Optional[Sequence[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  console.show_info()
  return convert(args)


if __name__ == '__main__':
  sys.exit(main())
