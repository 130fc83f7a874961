"""The progress meter: rates and the ETA count from the end of the first (compiling) unit of work."""

from gsfm_jax import progress
from gsfm_jax.progress import Rate, duration


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self) -> float:
    return self.now


def test_the_eta_excludes_compilation(monkeypatch):
  clock = Clock()
  monkeypatch.setattr(progress.time, 'perf_counter', clock)
  meter = Rate(total=100)
  clock.now = 120.0  # the first step: 2 minutes of compilation
  assert not meter.started
  meter.begin(1)
  assert meter.started
  for done in range(2, 12):  # then 0.5 s per step
    clock.now += 0.5
    meter.update(done)
  assert meter.rate == 2.0 and meter.overall() == 2.0
  assert meter.eta() == duration(88 / 2.0) == '0m44s'
  # without `begin`, the compile time would be taken for the speed of the work
  clock.now = 0.0
  naive = Rate(total=100)
  clock.now = 125.0
  naive.update(11)
  assert naive.overall() < 0.1


def test_durations_read_as_people_write_them():
  assert (duration(3727), duration(187), duration(float('inf'))) == ('1h02m', '3m07s', '?')
