"""Files and folders written whole or not at all: the writer fills a temporary sibling, which is moved into
place only when it finished, so a failure (or Ctrl-C) never leaves a half-written output or damages an
earlier one. Imports nothing but the standard library."""

import contextlib
import os
import shutil
import tempfile
from typing import Callable, Iterator


class OutputExists(ValueError):
  """The output is there already and may not be replaced."""


@contextlib.contextmanager
def replacing(path: str, overwrite: bool = True) -> Iterator[str]:
  """Yields a temporary path beside `path` (nothing there yet: write a file or make a folder); when the block
  ends without an error it becomes `path`, replacing a file or folder there (OutputExists unless `overwrite`).
  """
  path = os.path.abspath(path)
  if os.path.exists(path) and not overwrite:
    raise OutputExists(f'{path}: already exists (pass --overwrite to replace it)')
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.tmp-{os.path.basename(path)}-', dir=parent)
  try:
    target = os.path.join(tmp, os.path.basename(path))
    yield target
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    os.replace(target, path)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def fresh_folder(parent: str, prefix: str) -> str:
  """A new, empty, uniquely named folder in `parent` with the permissions of the user's umask (tempfile's are
  private, 0700, which would stay so once it becomes an output)."""
  folder = tempfile.mkdtemp(prefix=prefix, dir=parent)
  mask = os.umask(0)
  os.umask(mask)
  os.chmod(folder, 0o777 & ~mask)
  return folder


def write(path: str, writer: Callable[[str], None], overwrite: bool = True) -> None:
  """writer(tmp) on a temporary sibling of `path`, then moved into place (see `replacing`)."""
  with replacing(path, overwrite) as target:
    writer(target)
