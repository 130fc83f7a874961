"""What the command lines share: one parser (flags spelled with underscores, hyphens accepted), the common
flags (checkpoint, output folder, dtype, devices, multi-process) and their checks, and one way to end: a
single line, no traceback, and the exit status every command documents (`report`):

  0    done
  1    the work failed (a disk full or another system error, a video that could not be decoded, a training
       stopped by non-finite steps); what it would have written is not kept
  2    bad input: a flag, a file or a config field, named in the line; nothing was written
  130  interrupted (Ctrl-C); what it would have written is not kept, earlier outputs are as they were

Imports nothing but the standard library (and the plain-data `configs` package when a config name is
resolved): `inference.loader` and the data tools use it too.
"""

import argparse
import difflib
import errno
import functools
import os
import signal
import sys
import textwrap
import threading
from typing import Callable, Optional, Sequence

DTYPES = ('float32', 'bfloat16', 'auto')
CHECKPOINT_HELP = (
  'the weights: a training workdir or step folder, an .npz or variables folder written by gsfm_jax.convert, '
  'or an official .pth (required)'
)
MODEL_HELP = (
  'a switch of the network (configs/model.py), repeatable, e.g. --model width_divisor=4; needed only for files '
  'that do not record their network (official .pth); overrides the record otherwise (default: the record, or GSFM)'
)


class UsageError(ValueError):
  """A flag value that cannot work; the message names the flag."""


def spell(argv: Sequence[str]) -> list[str]:
  """`--some-flag[=v]` -> `--some_flag[=v]`: the project spells flags with underscores and accepts hyphens."""
  out = []
  for arg in argv:
    name, eq, value = arg.partition('=')
    out.append('--' + name[2:].replace('-', '_') + eq + value if name.startswith('--') else arg)
  return out


def command_name() -> str:
  """How this process was started: `python -m PACKAGE.MODULE`, or the script's file name."""
  spec = getattr(sys.modules.get('__main__'), '__spec__', None)
  return f'python -m {spec.name}' if spec is not None and spec.name != '__main__' else os.path.basename(sys.argv[0])


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
  """The docstring's layout kept, and every optional flag's default shown after its help."""

  def _get_help_string(self, action: argparse.Action) -> str:
    text = action.help or ''
    unset = action.default is None or action.default is False or action.default in ([], argparse.SUPPRESS)
    shown = not unset and '%(default)' not in text
    return f'{text} (default: %(default)s)' if shown and action.option_strings and not action.required else text


class Parser(argparse.ArgumentParser):
  """argparse with the project's conventions: help from the module docstring (first paragraph, then the rest),
  hyphenated spellings accepted, argparse's own errors as one `error:` line."""

  def __init__(self, doc: str, prog: Optional[str] = None):
    first, _, rest = doc.strip('\n').partition('\n\n')  # the first paragraph, then the rest
    super().__init__(
      prog=prog or command_name(),
      description=first,
      epilog='\n\n'.join(part for part in (rest.strip('\n'), EXIT_STATUS) if part),
      formatter_class=HelpFormatter,
    )
    self.counts: list[str] = []
    self.dtypes: tuple[str, ...] = ()

  def parse_args(self, args: Optional[Sequence[str]] = None, namespace=None) -> argparse.Namespace:
    return super().parse_args(spell(sys.argv[1:] if args is None else args), namespace)

  def error(self, message: str):
    print(f'error: {message} (see {self.prog} --help)', file=sys.stderr)
    raise SystemExit(2)

  def add_count(self, name: str, default: Optional[int], help: str) -> None:
    """An integer flag that must be at least 1 when given (`check`)."""
    self.add_argument(f'--{name}', type=int, default=default, help=help)
    self.counts.append(name)

  def add_checkpoint(self) -> None:
    """--checkpoint and --model: the weights, and what to build for a file that does not record its network."""
    self.add_argument('--checkpoint', required=True, help=CHECKPOINT_HELP)
    self.add_model()

  def add_model(self) -> None:
    """`--model FIELD=VALUE` (repeatable): a network switch for weights whose file does not record it."""
    self.add_argument('--model', action='append', default=[], metavar='FIELD=VALUE', help=MODEL_HELP)

  def add_output(self) -> None:
    self.add_argument('--out', required=True, help='output folder (refused if it holds files, unless --overwrite)')
    self.add_argument('--overwrite', action='store_true', help='replace the outputs of an earlier run in --out')

  def add_dtype(self, dtypes: tuple[str, ...] = DTYPES) -> None:
    self.add_argument('--dtype', default='float32', help=f'compute dtype: {", ".join(dtypes)}')
    self.dtypes = dtypes

  def add_devices(self) -> None:
    self.add_argument('--devices', type=int, default=None, help='local devices to use (default: all)')
    self.counts.append('devices')

  def add_distributed(self) -> None:
    """The multi-process flags, as `gsfm_jax.train` has them."""
    self.add_argument('--distributed', action='store_true', help=DISTRIBUTED_HELP)
    self.add_argument('--coordinator_address', default=None, help=COORDINATOR_HELP)
    self.add_argument('--num_processes', type=int, default=None, help=NUM_PROCESSES_HELP)
    self.add_argument('--process_id', type=int, default=None, help=PROCESS_ID_HELP)

  def check(self, args: argparse.Namespace) -> None:
    """UsageError naming the first count below 1 or a dtype not offered."""
    for name in self.counts:
      check_count(name, getattr(args, name))
    if self.dtypes and args.dtype not in self.dtypes:
      raise UsageError(f'--dtype {args.dtype}: expected one of {", ".join(self.dtypes)}')


DISTRIBUTED_HELP = (
  'join a multi-process run with jax.distributed.initialize() (TPU pods and SLURM are detected; '
  'elsewhere add the three flags below)'
)
COORDINATOR_HELP = 'host:port of process 0 (multi-process runs)'
NUM_PROCESSES_HELP = 'number of processes (multi-process runs)'
PROCESS_ID_HELP = 'this process, 0 … num_processes-1'


def check_count(name: str, value: Optional[int], joiner: str = ' ') -> None:
  """UsageError `--NAME VALUE: must be at least 1` (joiner '=' for absl's spelling) when a given count is < 1."""
  if value is not None and value < 1:
    raise UsageError(f'--{name}{joiner}{value}: must be at least 1')


def distributed_requested(distributed: bool, coordinator_address: Optional[str]) -> bool:
  """Launched as one of several processes: --distributed, --coordinator_address or JAX_COORDINATOR_ADDRESS."""
  return bool(distributed or coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS'))


def initialize_distributed(
  distributed: bool, coordinator_address: Optional[str], num_processes: Optional[int], process_id: Optional[int]
) -> None:
  """jax.distributed.initialize when asked (before anything touches a device)."""
  if distributed_requested(distributed, coordinator_address):
    import jax

    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def resolve_configs(argv: Sequence[str]) -> list[str]:
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
  """'NAME[:ARG]' -> '<configs>/NAME.py[:ARG]'; an unknown NAME is one `error:` line and exit status 2."""
  name, colon, arg = spec.partition(':')
  if '/' in name or name.endswith('.py'):
    return spec
  path = os.path.join(config_dir(), name + '.py')
  if not os.path.exists(path):
    known = sorted(f[:-3] for f in os.listdir(config_dir()) if f.endswith('.py') and not f.startswith('_'))
    print(f'error: --config={spec}: no configs/{name}.py (known: {", ".join(known)})', file=sys.stderr)
    raise SystemExit(2)
  return path + colon + arg


def config_dir() -> str:
  """The folder of the project's configs (configs/NAME.py)."""
  import configs

  return os.path.dirname(os.path.abspath(configs.__file__))


def absl_argv(argv: Sequence[str]) -> list[str]:
  """An absl command line (train, aot) with hyphenated flags respelled and config names resolved; a
  `--config.FIELD=` the config does not have is one `error:` line (with the nearest field) and exit 2."""
  argv = resolve_configs(spell(argv))
  check_config_fields(argv)
  return argv


def config_spec(argv: Sequence[str], default: str = 'main') -> str:
  """The resolved `--config` of an absl command line (`default` when it has none)."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg[len('--config=') :]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return config_path(default)


def config_name(spec: str) -> str:
  """'…/configs/ablation.py:t5_lfm' -> 'ablation:t5_lfm'."""
  path, colon, arg = spec.partition(':')
  return os.path.splitext(os.path.basename(path))[0] + colon + arg


def load_config(spec: str):
  """The ConfigDict of 'path/NAME.py[:ARG]' (as ml_collections' config flag loads it)."""
  import importlib.util

  path, _, arg = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('gsfm_jax_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def config_fields(config, prefix: str = '') -> dict:
  """{'model.width_divisor': 4, …}: every leaf field of a ConfigDict, by its dotted name."""
  out = {}
  for name, value in config.items():
    if hasattr(value, 'items') and not isinstance(value, dict):  # a nested ConfigDict
      out.update(config_fields(value, f'{prefix}{name}.'))
    else:
      out[f'{prefix}{name}'] = value
  return out


def check_config_fields(argv: Sequence[str]) -> None:
  """Exit 2 with one line for the first `--config.FIELD` the config lacks, naming the nearest field."""
  overrides = [a[len('--config.') :].partition('=')[0] for a in argv if a.startswith('--config.')]
  if not overrides:
    return
  spec = config_spec(argv)
  try:
    fields = config_fields(load_config(spec))
  except Exception:  # a config that does not load here: ml_collections names the problem when it loads it
    return
  groups = {f.rsplit('.', 1)[0] for f in fields if '.' in f}
  for name in overrides:
    if name not in fields and name not in groups:
      near = difflib.get_close_matches(name, list(fields), n=1)
      hint = f'; did you mean --config.{near[0]}?' if near else ''
      print(
        f'error: --config.{name}: config {config_name(spec)} has no field {name}{hint} '
        f'({command_name()} --config={config_name(spec)} --help lists them)',
        file=sys.stderr,
      )
      raise SystemExit(EXIT_USAGE)


EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
EXIT_STATUS = textwrap.fill(
  'exit status: 0 done; 1 the work failed (a full disk, a video that cannot be decoded), its outputs not kept; '
  '2 bad input (the line names the flag or file), nothing written; 130 interrupted (Ctrl-C), nothing '
  'half-written kept',
  110,
)
FULL = (errno.ENOSPC, errno.EDQUOT)
SHORT_WRITE = 'requested and'  # numpy's "N requested and M written": a write the device had no room for


INTERRUPTED = threading.Event()  # a Ctrl-C came while a command ran


def _interrupt(signum, frame) -> None:
  INTERRUPTED.set()
  raise KeyboardInterrupt


def raise_if_interrupted() -> None:
  """KeyboardInterrupt if a Ctrl-C came: called where work is committed and between chunks of work, since the
  KeyboardInterrupt of the signal itself is lost when it lands in a finaliser (Python reports and ignores it)."""
  if INTERRUPTED.is_set():
    raise KeyboardInterrupt


def report(work: Callable[[], int]) -> int:
  """work() -> its exit status, and one line for how it ended otherwise (the statuses of the module docstring):
  a ValueError (bad flag, file, config field or weights) -> 2; a full disk or another system error -> 1;
  Ctrl-C -> 130. The writers write through temporary names, so nothing half-written is left by either."""
  INTERRUPTED.clear()
  main_thread = threading.current_thread() is threading.main_thread()
  previous = signal.signal(signal.SIGINT, _interrupt) if main_thread else None
  try:
    return work()
  except ValueError as error:
    print(f'error: {error}', file=sys.stderr)
    return EXIT_USAGE
  except KeyboardInterrupt:
    print(
      'interrupted (Ctrl-C): stopped; nothing half-written was kept, earlier outputs are as they were', file=sys.stderr
    )
    return EXIT_INTERRUPTED
  except OSError as error:
    print(f'error: {system_error(error)}', file=sys.stderr)
    return EXIT_FAILED
  finally:
    INTERRUPTED.clear()  # the flag lives as long as the command
    if main_thread:
      signal.signal(signal.SIGINT, previous)


def reported(main: Callable[..., int]) -> Callable[..., int]:
  """A command's `main`, ending as `report` says."""

  @functools.wraps(main)
  def wrapped(*args, **kwargs) -> int:
    return report(lambda: main(*args, **kwargs))

  return wrapped


def disk_full(error: BaseException) -> bool:
  """Whether an error says the device has no room left (ENOSPC, EDQUOT, or numpy's short write)."""
  return isinstance(error, OSError) and (error.errno in FULL or SHORT_WRITE in str(error))


def system_error(error: OSError) -> str:
  """One line for an OSError: what and where, and what to do about a full disk."""
  where = f' ({error.filename})' if error.filename else ''
  if disk_full(error):
    return (
      f'no space left on the device{where}: the outputs of this run were removed; free some space (or write '
      'elsewhere) and run it again'
    )
  return f'{error.strerror or error}{where}; the outputs of this run were removed'


def writable_parent(flag: str, path: str) -> None:
  """UsageError unless the folder `path` goes into exists and can be written."""
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
    raise UsageError(f'--{flag} {path}: {parent} is not a folder this process can write to')
