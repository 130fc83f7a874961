"""What the command lines show: their own INFO lines (progress, compiled programs), without the libraries'."""

import logging as py_logging

from absl import logging

# warnings that say nothing a user can act on: orbax's note on every load of a step written by its manager
_HARMLESS = ('_CHECKPOINT_METADATA',)


class _QuietLibraries(py_logging.Filter):
  """Keeps orbax's, JAX's and clu's INFO chatter and their harmless warnings off the console (other warnings
  and errors still show)."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    if any(text in record.getMessage() for text in _HARMLESS):
      return False
    return record.levelno >= py_logging.WARNING or not any(
      part in record.pathname for part in ('/orbax/', '/jax/', '/clu/')
    )


def show_info() -> None:
  """absl INFO on (this project's lines), the libraries' INFO and harmless warnings off. The filter sits on the
  'absl' logger (orbax logs there, whichever handler prints) and on absl's handler (JAX logs to its own
  loggers, which reach the root handlers)."""
  logging.set_verbosity(logging.INFO)
  for target in (logging.get_absl_logger(), logging.get_absl_handler()):  # the handler: JAX's own loggers
    if not any(isinstance(f, _QuietLibraries) for f in target.filters):
      target.addFilter(_QuietLibraries())
