"""Console progress of long work: rate over the last interval and time left; the seconds a thread spent
compiling, so that speeds can leave compilation out."""

import threading
import time

import numpy as np

# JAX's monitoring events of one program's tracing, lowering and XLA compilation (or cache read)
COMPILE_EVENTS = (
  '/jax/core/compile/jaxpr_trace_duration',
  '/jax/core/compile/jaxpr_to_mlir_module_duration',
  '/jax/core/compile/backend_compile_duration',
)
_compiling = threading.local()
_listening = threading.Lock()


def _on_event(event: str, duration: float, **_) -> None:
  if event in COMPILE_EVENTS:
    _compiling.seconds = getattr(_compiling, 'seconds', 0.0) + duration


def compile_seconds() -> float:
  """Seconds this thread has spent compiling JAX programs since the first call (JAX compiles in the thread
  that calls a program); the difference of two calls is the compilation between them."""
  with _listening:
    if not getattr(compile_seconds, 'listening', False):
      import jax

      jax.monitoring.register_event_duration_secs_listener(_on_event)
      compile_seconds.listening = True
  return getattr(_compiling, 'seconds', 0.0)


def duration(seconds: float) -> str:
  """'1h05m', '3m07s', or '?' when unknown."""
  if not np.isfinite(seconds):
    return '?'
  h, rest = divmod(int(seconds), 3600)
  return f'{h}h{rest // 60:02d}m' if h else f'{rest // 60}m{rest % 60:02d}s'


class Rate:
  """Units done per second over the last interval, the overall rate, and the ETA of `total` units (from
  `begin`, if called, so that compilation is not taken for the speed of the work)."""

  def __init__(self, total: int, start: int = 0):
    self.total, self._start, self._began = total, start, time.perf_counter()
    self._last, self._last_time = start, self._began
    self.rate = 0.0
    self.started = False  # whether `begin` was called

  def begin(self, done: int) -> None:
    """Counts from here: call after the first unit of work, whose time includes compilation."""
    self._start = self._last = done
    self._began = self._last_time = time.perf_counter()
    self.started = True

  def update(self, done: int) -> float:
    """Marks `done` units finished; returns the rate since the previous update."""
    now = time.perf_counter()
    self.rate = (done - self._last) / max(now - self._last_time, 1e-9)
    self._last, self._last_time = done, now
    return self.rate

  def overall(self) -> float:
    return (self._last - self._start) / max(self._last_time - self._began, 1e-9)

  def eta(self) -> str:
    return duration((self.total - self._last) / self.rate if self.rate > 0 else float('inf'))
