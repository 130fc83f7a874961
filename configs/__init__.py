"""Config-as-code (ml_collections). `--config=NAME[:ARG]` names `configs/NAME.py` (see `resolve`)."""

import os
import sys
from typing import Sequence

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))


def resolve(argv: Sequence[str]) -> list[str]:
  """Rewrites `--config=NAME[:ARG]` (or `--config NAME`) to `--config=<configs>/NAME.py[:ARG]`.

  Paths (anything with a '/' before the ':' or ending in .py) are left as they are.
  """
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      argv[i] = '--config=' + config_path(arg[len('--config=') :])
    elif arg == '--config' and i + 1 < len(argv):
      argv[i + 1] = config_path(argv[i + 1])
  return argv


def config_path(spec: str) -> str:
  name, colon, arg = spec.partition(':')
  if '/' in name or name.endswith('.py'):
    return spec
  path = os.path.join(CONFIG_DIR, name + '.py')
  if not os.path.exists(path):
    known = sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith('.py') and not f.startswith('_'))
    print(f'error: --config={spec}: no configs/{name}.py (known: {", ".join(known)})', file=sys.stderr)
    raise SystemExit(2)
  return path + colon + arg
