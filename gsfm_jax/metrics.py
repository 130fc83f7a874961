"""Training metrics: the report window (docs/reference.md §2.5), writers (TensorBoard, console, metrics.jsonl),
the progress line with ETA, and the loss / IoU curve as an image."""

import json
import os
from typing import Any, Mapping, Optional

import jax
import numpy as np

from gsfm_jax.progress import Rate

_COUNTS = ('iou_i', 'iou_u', 'sec_iou_i', 'sec_iou_u')
_NOT_AVERAGED = _COUNTS + ('finite', 'refused_in_a_row')


class Window:
  """Step metrics accumulated between reports: means of the losses, IoU = (ΣI + 1) / (ΣU + 1) as the
  reference logs it, the learning rate of the last step, and the refused-step count."""

  def __init__(self):
    self._steps: list[Mapping[str, Any]] = []

  def add(self, metrics: Mapping[str, Any]) -> None:
    self._steps.append(metrics)  # device arrays: fetched only at report time

  def __len__(self) -> int:
    return len(self._steps)

  def report(self) -> dict[str, float]:
    steps = jax.device_get(self._steps)
    self._steps = []
    out = {k: float(np.mean([s[k] for s in steps])) for k in steps[0] if k not in _NOT_AVERAGED}
    out['lr'] = float(steps[-1]['lr'])
    totals = {k: sum(float(s[k]) for s in steps) for k in _COUNTS}
    out['iou'] = (totals['iou_i'] + 1) / (totals['iou_u'] + 1)
    if totals['sec_iou_u'] or totals['sec_iou_i']:
      out['sec_iou'] = (totals['sec_iou_i'] + 1) / (totals['sec_iou_u'] + 1)
    out['refused'] = float(sum(not bool(s['finite']) for s in steps))
    return out


class JsonlWriter:
  """Scalars appended to WORKDIR/metrics.jsonl, one JSON object per report (for plots and scripts); the
  other methods of clu's MetricWriter interface do nothing (clu, and with it TensorFlow, is imported only
  when a run writes, so that `train --help` is quick)."""

  def __init__(self, path: str):
    self._path = path

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    with open(self._path, 'a') as f:
      f.write(json.dumps({'step': int(step), **{k: float(v) for k, v in scalars.items()}}) + '\n')

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def create_writer(workdir: str):
  """A clu MetricWriter: TensorBoard events + console + metrics.jsonl on process 0; the console only on the
  others."""
  from clu import metric_writers

  if jax.process_index() > 0:
    return metric_writers.create_default_writer(just_logging=True)
  return metric_writers.MultiWriter(
    [
      metric_writers.create_default_writer(workdir, asynchronous=False),
      JsonlWriter(os.path.join(workdir, 'metrics.jsonl')),
    ]
  )


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class Progress:
  """Console progress: step, steps/s and clips/s (over the last interval), loss and ETA."""

  def __init__(self, start_step: int, total_steps: int, global_batch: int):
    self._meter, self._batch = Rate(total_steps, start_step), global_batch
    self.rate: Optional[float] = None

  def begin(self, step: int) -> None:
    """The rate and ETA count from `step` on (call after the first, compiling step)."""
    self._meter.begin(step)

  def line(self, step: int, loss: float) -> str:
    self.rate = self._meter.update(step)
    total = self._meter.total
    return (
      f'step {step}/{total} ({100 * step / total:.1f} %) | {self.rate:.2f} steps/s | '
      f'{self.rate * self._batch:.1f} clips/s | loss {loss:.4f} | ETA {self._meter.eta()}'
    )


def plot_curves(path: str, out: str) -> None:
  """metrics.jsonl -> PNG: total loss (left) and IoU of both objects (right) against the step."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  rows = read_jsonl(path)
  steps = [r['step'] for r in rows]
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
  left.plot(steps, [r['total_loss'] for r in rows], label='total loss (frames 1 + 2)')
  left.set_xlabel('step')
  left.legend()
  for key, label in (('iou', 'IoU, target object'), ('sec_iou', 'IoU, second object')):
    if any(key in r for r in rows):
      right.plot([r['step'] for r in rows if key in r], [r[key] for r in rows if key in r], label=label)
  right.set_xlabel('step')
  right.set_ylim(0, 1)
  right.legend()
  fig.tight_layout()
  fig.savefig(out, dpi=100)
  plt.close(fig)
