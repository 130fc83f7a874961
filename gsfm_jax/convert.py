"""Moves GSFM weights between the official PyTorch format, gsfm_jax checkpoints and numpy.

  # official GSFM/STCN-layout state_dict (.pth needs torch; .npz with official key names does not)
  python -m gsfm_jax.convert GSFM.pth ckpt/            # -> orbax checkpoint directory
  python -m gsfm_jax.convert GSFM.npz weights.npz      # -> flat numpy, '/'-joined Flax names
  # back: any gsfm_jax checkpoint or flat .npz -> official key names
  python -m gsfm_jax.convert ckpt/ GSFM.npz --to official
  # ImageNet start for training: torchvision ResNet-50/18 backbones, the rest freshly initialised
  python -m gsfm_jax.convert --resnet50 resnet50-19c8e357.pth --resnet18 resnet18-5c106cde.pth init/

Input kinds are recognised by content: a training workdir (or its checkpoints/ or a step folder) gives its
newest checkpoint and, from its config.json, the network's width; another directory is an orbax checkpoint;
an .npz whose names start with params/ is a gsfm_jax file, otherwise it holds official key names; .pth/.pt
is a PyTorch file (written only with --to official).
Nothing is written when a conversion fails, and an existing output is kept unless --overwrite.
"""
import argparse
import json
import os
import sys
from typing import Optional, Sequence

import jax
import ml_collections
import numpy as np

from gsfm_jax import console, official
from gsfm_jax.export import ConversionError, Variables, load_variables, read_npz, save_variables
from gsfm_jax.models import GSFM, init_variables

TARGETS = ('gsfm', 'official')
PTH = ('.pth', '.pt')


def _is_gsfm_npz(path: str) -> bool:
  names = read_npz(path, names_only=True)
  return bool(names) and all(k.startswith(('params/', 'batch_stats/')) for k in names)


def newest_state_dir(path: str) -> str:
  """A training workdir, its checkpoints/ folder or a step folder -> the newest `<step>/state`; other paths
  unchanged."""
  for directory in (os.path.join(path, 'checkpoints'), path):
    if os.path.isdir(directory) and not os.path.isdir(os.path.join(directory, 'state')):
      steps = [int(d) for d in os.listdir(directory) if d.isdigit()]
      if steps:
        return os.path.join(directory, str(max(steps)), 'state')
  if os.path.isdir(os.path.join(path, 'state')):
    return os.path.join(path, 'state')
  return path


def run_model_config(path: str) -> Optional[ml_collections.ConfigDict]:
  """The network's config (configs/model.py) of the training run that `path` belongs to, from the run's
  config.json: `path` is its workdir, its checkpoints/ folder, a step folder or its state/. None for other
  inputs."""
  here = os.path.abspath(path)
  for _ in range(4):   # WORKDIR/checkpoints/<step>/state
    saved = os.path.join(here, 'config.json')
    if os.path.isfile(saved):
      from configs import model as model_config
      config = model_config.get_config()
      with open(saved) as f:
        config.update(json.load(f)['model'])
      return config
    here = os.path.dirname(here)
  return None


def read_any(path: str, model: GSFM, stem_fill: str) -> Variables:
  """Flax variables for `model` from any supported input (a training workdir or step folder: its newest
  state), validated against the model's structure."""
  if not os.path.exists(path):
    raise ConversionError(f'{path}: no such file or directory')
  path = newest_state_dir(path)
  if os.path.isdir(path) or (path.endswith('.npz') and _is_gsfm_npz(path)):
    state_dict = official.variables_to_state_dict(load_variables(path))
  else:
    state_dict = official.read_state_dict(path)
  return official.state_dict_to_variables(state_dict, model, path, stem_fill)


def imagenet_start(resnet50: str, resnet18: str, model: GSFM, seed: int) -> Variables:
  """Fresh variables with both encoder trunks replaced by torchvision ImageNet weights."""
  state_dict = official.variables_to_state_dict(jax.device_get(init_variables(model, jax.random.PRNGKey(seed))))
  rng = np.random.default_rng(seed)
  in_channels = 4 if model.single_object else 5
  for path, encoder, channels in ((resnet50, 'key_encoder', 3), (resnet18, 'value_encoder', in_channels)):
    backbone = official.torchvision_backbone(official.read_state_dict(path), encoder, channels, path, rng)
    unknown = sorted(set(backbone) - set(state_dict))
    if unknown:
      raise ConversionError(f'{path}: not a torchvision ResNet-{50 if encoder == "key_encoder" else 18} '
                            f'state_dict: unexpected key(s) {", ".join(unknown[:10])}')
    state_dict.update(backbone)
  return official.state_dict_to_variables(state_dict, model, f'{resnet50} + {resnet18}')


def write_any(variables: Variables, path: str, to: str, overwrite: bool) -> None:
  if to == 'official':
    official.write_state_dict(official.variables_to_state_dict(variables), path, overwrite)
  else:
    save_variables(variables, path, overwrite)


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m gsfm_jax.convert', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('paths', nargs='+', metavar='PATH', help='SOURCE OUTPUT, or only OUTPUT with --resnet50/--resnet18')
  p.add_argument('--to', choices=TARGETS, default='gsfm',
                 help='output naming: gsfm (orbax directory, or flat .npz) or official (.npz, or .pth with torch) '
                      '(default: %(default)s)')
  p.add_argument('--single-object', action='store_true',
                 help='the single-object (stage-0, 4-channel value encoder) network (default: multi-object)')
  p.add_argument('--stem-fill', choices=('orthogonal', 'zeros'), default='orthogonal',
                 help="init of the 5th value-encoder input channel when a stage-0 checkpoint is loaded into the "
                      "multi-object network: orthogonal (official training) or zeros (official eval scripts) "
                      "(default: %(default)s)")
  p.add_argument('--resnet50', help='torchvision ResNet-50 ImageNet state_dict (.pth or .npz) for the key encoder')
  p.add_argument('--resnet18', help='torchvision ResNet-18 ImageNet state_dict (.pth or .npz) for the value encoder')
  p.add_argument('--width-divisor', type=int, default=1, choices=(1, 2, 4, 8, 16),
                 help='channel divisor of the network (1 = GSFM) for inputs without a run config.json; a training '
                      'workdir or step folder gives its own (default: %(default)s)')
  p.add_argument('--seed', type=int, default=0, help='seed of the fresh initialisation (default: %(default)s)')
  p.add_argument('--overwrite', action='store_true', help='replace an existing output')
  return p


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  console.show_info()
  from_imagenet = args.resnet50 is not None or args.resnet18 is not None
  try:
    config = run_model_config(args.paths[0]) if len(args.paths) == 2 and not from_imagenet else None
    model = GSFM(single_object=args.single_object,
                 width_divisor=config.width_divisor if config is not None else args.width_divisor)
    output = args.paths[-1]
    if output.endswith(PTH) and args.to != 'official':
      raise ConversionError(f'{output}: a .pth output holds the official names; add --to official (or write '
                            'a folder or an .npz)')
    if from_imagenet:
      if not (args.resnet50 and args.resnet18) or len(args.paths) != 1:
        raise ConversionError('--resnet50 and --resnet18 go together, with one OUTPUT path')
      variables, output = imagenet_start(args.resnet50, args.resnet18, model, args.seed), args.paths[0]
    else:
      if len(args.paths) != 2:
        raise ConversionError('expected SOURCE and OUTPUT')
      variables, output = read_any(args.paths[0], model, args.stem_fill), args.paths[1]
    write_any(variables, output, args.to, args.overwrite)
  except ConversionError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  count = sum(int(np.size(v)) for v in jax.tree.leaves(variables['params']))
  print(f'wrote {output} ({args.to} names, {count:,} parameters)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
