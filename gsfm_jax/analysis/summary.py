"""Model summary: parameters per module, one timed training-clip forward + loss on a built-in clip,
and the predictions written as an image.

  python -m gsfm_jax.analysis.summary --out out/summary [--weights W] [--config.dtype=bfloat16] [--size=384]

The clip is three frames of a built-in-dataset video (data_pipelines.synthetic: photographs bundled with
scikit-image), so nothing is downloaded. With random weights the masks are meaningless; with converted official
weights (`--weights`, anything `gsfm_jax.convert` reads) they are the network's real predictions.
"""

import os
import statistics
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image

from data_pipelines.synthetic import render_video
from gsfm_jax import weights
from gsfm_jax.losses import gsfm_loss, hard_mining
from gsfm_jax.models import build_model, init_variables
from gsfm_jax.models.normalisation import normalise
from gsfm_jax.visualize import overlay

MODEL_CONFIG = os.path.join(os.path.dirname(__file__), '..', '..', 'configs', 'model.py')


def builtin_clip(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Three frames (3, S, S, 3) uint8 of a built-in-dataset video and two object masks (3, S, S, 2)."""
  rng = np.random.default_rng(seed)
  while True:
    images, labels = render_video(rng, 3, size, size)
    ids = sorted(set(np.unique(labels[0]).tolist()) - {0})[:2]
    if len(ids) == 2:
      return np.stack(images), np.stack([np.stack([l == i for i in ids], -1) for l in labels]).astype(np.float32)


def define_flags() -> None:
  """The command line's flags, defined when it runs (not on import: gsfm_jax.train has a --config too)."""
  config_flags.DEFINE_config_file('config', MODEL_CONFIG, 'model config file')
  flags.DEFINE_string('out', 'out/summary', 'output folder (summary.png)')
  flags.DEFINE_string('weights', None, 'weights to load (anything gsfm_jax.convert reads); default: random init')
  flags.DEFINE_integer('size', 384, 'clip frame size (multiple of 16); training uses 384')
  flags.DEFINE_integer('repeats', 3, 'timed forward passes after compilation')
  flags.DEFINE_integer('seed', 0, 'seed of the random init')


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  config = args.config
  model = build_model(config)
  if args.weights:
    variables = weights.load(args.weights, model)
  else:
    variables = init_variables(model, jax.random.PRNGKey(args.seed))
  print(
    f'GSFM ({"single" if config.single_object else "multi"}-object, compute {config.dtype}) on '
    f'{jax.devices()[0].platform}'
  )
  for name, tree in variables['params'].items():
    print(f'  {name:15s} {sum(int(np.size(x)) for x in jax.tree.leaves(tree)):>12,d} parameters')
  print(f'  {"total":15s} {sum(int(np.size(x)) for x in jax.tree.leaves(variables["params"])):>12,d}')

  frames_u8, masks = builtin_clip(args.size, args.seed)
  k = 1 if config.single_object else 2
  masks = masks[..., :k]
  frames = normalise(frames_u8)[None]
  selector = np.ones((1, k), np.float32)
  cls_gt = np.argmax(np.concatenate([0.5 * np.ones_like(masks[..., :1]), masks], -1), -1)[None]

  @jax.jit
  def step(variables, frames, masks, cls_gt):
    out = model.apply(variables, frames, masks[:, 0], None if config.single_object else selector)
    return out, gsfm_loss(out, masks, cls_gt, selector, *hard_mining(0, args.size**2, 3000, 15000))

  start = time.perf_counter()
  out, losses = jax.block_until_ready(step(variables, frames, masks[None], cls_gt))
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    jax.block_until_ready(step(variables, frames, masks[None], cls_gt))
    times.append(time.perf_counter() - start)
  print(
    f'clip forward + loss, 1×3×{args.size}×{args.size}: first call (with compilation) {compile_s:.2f} s, '
    f'then median {statistics.median(times):.3f} s over {len(times)}'
  )
  print('losses: ' + ', '.join(f'{k} {float(v):.4f}' for k, v in sorted(losses.items())))

  rows = [
    np.concatenate(
      [overlay(frames_u8[0], cls_gt[0, 0])]
      + [overlay(frames_u8[t], np.argmax(np.asarray(out['logits'][0, t - 1]), -1)) for t in (1, 2)],
      axis=1,
    )
  ]
  if 'boundary' in out:
    boundary = [np.zeros_like(frames_u8[0])] + [
      np.repeat((255 * jax.nn.sigmoid(out['boundary'][0, t - 1].max(-1)))[..., None], 3, -1).astype(np.uint8)
      for t in (1, 2)
    ]
    rows.append(np.concatenate(boundary, axis=1))
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, 'summary.png')
  Image.fromarray(np.concatenate(rows, axis=0)).save(path)
  print(f'wrote {path} (top: frame 0 ground truth, frames 1-2 predicted labels; bottom: boundary probability)')


if __name__ == '__main__':
  define_flags()
  app.run(main)
