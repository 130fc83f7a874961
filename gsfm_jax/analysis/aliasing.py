"""The aliasing ratio of feature maps (SFM; docs/sfm_ffr.md, "The aliasing probe") and a probe of GSFM's
stride-2 inputs.

  python -m gsfm_jax.analysis.aliasing --checkpoint runs/demo --video frames/ --out out/aliasing
      [--mask first.png] [--frames 4] [--overwrite]

For x (N, H, W, C) entering a layer of stride s, with P = |fft2(x)|² on the unshifted grid:

  ratio   = Σ P outside the square |ν_row| < ν_N, |ν_col| < ν_N  /  Σ P,   ν_N = 1/(2s) (0.25 for s = 2)

pooled over the batch and channels (x not mean-removed, no window). Its variants: `ratio_esr` (ν_N = √2/(2s),
the equivalent sampling rate √2/2), `channel_mean` (the mean of the per-channel ratios) and `no_dc` (the DC
bin left out). The Chebyshev radial spectrum (power summed over max(|ν_row|, |ν_col|) ∈ [r, r + Δ)) is the
plot that goes with it: the ratio is its share beyond r = ν_N.

The probe runs the checkpoint's encoders on the first frames of a video and measures every stride-2 input:
the image, the stem's ReLU (max-pool input), the inputs of layer2 and layer3, in the key encoder and in the
value encoder (on frame 0 with --mask, or with empty masks). At the ARS sites it also measures the map after
resampling: by the network's own ARS (a checkpoint trained with `ars_stages`) and by a parameter-free ARS
whose attention is the map's local high-frequency energy (`energy_attention`), so any checkpoint shows what
SFM's resampling does to its maps. Writes OUT/aliasing.json, OUT/radial_spectra.png and OUT/ratios.png.
"""

import json
import os
import sys
from typing import Optional

import numpy as np

from gsfm_jax import cli

RADIAL_BINS = 50


def _power(x: np.ndarray, window: bool = False) -> np.ndarray:
  """|fft2|² of x (N, H, W, C) over (H, W), float64, unshifted; optionally Hann-windowed first."""
  x = np.asarray(x, np.float64)
  if window:
    x = x * np.hanning(x.shape[1])[None, :, None, None] * np.hanning(x.shape[2])[None, None, :, None]
  return np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2


def passband(h: int, w: int, nyquist: float) -> np.ndarray:
  """The bins that a stride keeps without folding: |ν_row| < ν_N and |ν_col| < ν_N, bool (h, w)."""
  inside = lambda n: np.abs(np.fft.fftfreq(n)) < nyquist
  return inside(h)[:, None] & inside(w)[None, :]


def _share_outside(power: np.ndarray, keep: np.ndarray, axis=(0, 1, 2, 3)) -> np.ndarray:
  total = power.sum(axis=axis)
  return np.where(keep[None, :, :, None], 0.0, power).sum(axis=axis) / np.where(total > 0, total, np.nan)


def aliasing_ratios(x: np.ndarray, stride: int = 2, window: bool = False) -> dict[str, float]:
  """The aliasing ratio of x (N, H, W, C) before a stride and its variants (module docstring)."""
  power = _power(x, window)
  _, h, w, _ = power.shape
  keep, keep_esr = passband(h, w, 1.0 / (2 * stride)), passband(h, w, np.sqrt(2.0) / (2 * stride))
  no_dc = power.copy()
  no_dc[:, 0, 0, :] = 0.0
  return {
    'ratio': float(_share_outside(power, keep)),
    'ratio_esr': float(_share_outside(power, keep_esr)),
    'channel_mean': float(np.nanmean(_share_outside(power, keep, axis=(0, 1, 2)))),
    'no_dc': float(_share_outside(no_dc, keep)),
  }


def radial_bins(h: int, w: int) -> int:
  """Bins of the radial spectrum of an (h, w) map: even (0.25 is a bin edge), at most RADIAL_BINS, and no
  finer than the map's frequency spacing."""
  return max(2, min(RADIAL_BINS, 2 * (max(h, w) // 4)))


def radial_spectrum(x: np.ndarray, bins: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
  """Chebyshev radial spectrum of x (N, H, W, C): bin left edges (bins,) over [0, ½] and each bin's share
  of the power (bins,), summing to 1 (`radial_bins` bins by default)."""
  power = _power(x).sum(axis=(0, 3))
  h, w = power.shape
  bins = bins or radial_bins(h, w)
  radius = np.maximum(np.abs(np.fft.fftfreq(h))[:, None], np.abs(np.fft.fftfreq(w))[None, :])
  index = np.minimum((radius * 2 * bins + 1e-9).astype(int), bins - 1)  # r = ½ joins the last bin
  share = np.bincount(index.ravel(), weights=power.ravel(), minlength=bins)
  return np.arange(bins) / (2 * bins), share / share.sum()


def energy_attention(x, strength: float = 19.0, radius: int = 2):
  """A parameter-free ARS attention: 1 + strength · (local high-frequency energy of x) / its maximum.

  x (N, H, W, C) -> (N, H, W, 1) float32 in [1, 1 + strength]; the high frequencies are x minus its 3×3
  box mean, their energy is averaged over channels and over a (2·radius + 1)² box.
  """
  import jax.numpy as jnp

  x = jnp.asarray(x, jnp.float32)
  box = lambda a, r: (
    sum(
      jnp.pad(a, ((0, 0), (r, r), (r, r), (0, 0)), mode='edge')[
        :, r + dy : r + dy + a.shape[1], r + dx : r + dx + a.shape[2]
      ]
      for dy in range(-r, r + 1)
      for dx in range(-r, r + 1)
    )
    / (2 * r + 1) ** 2
  )
  energy = box(jnp.mean((x - box(x, 1)) ** 2, axis=-1, keepdims=True), radius)
  return 1.0 + strength * energy / jnp.maximum(jnp.max(energy, axis=(1, 2, 3), keepdims=True), 1e-12)


def energy_resample(x, radius: int = 5, sigma: float = 3.0):
  """x (N, H, W, C) resampled by ARS's grid under `energy_attention(x)` -> (N, H, W, C) float32."""
  import jax.numpy as jnp

  from gsfm_jax.models.resampling import bilinear_sample, saliency_grid

  x = jnp.asarray(x, jnp.float32)
  return bilinear_sample(x, saliency_grid(energy_attention(x), radius, sigma))


# probe name -> (encoder, captured module, what the map is); the value encoder's maps are taken likewise
PROBES = {
  'key.image': ('key', None, 'image (input of the stem conv, stride 2)'),
  'key.stem': ('key', 'bn1', 'stem ReLU (input of the max-pool, stride 2)'),
  'key.layer2_in': ('key', 'res2_2', 'f4 (input of layer2, stride 2)'),
  'key.layer3_in': ('key', 'layer2_3', 'f8 (input of layer3, stride 2)'),
  'value.image': ('value', None, 'image + masks (input of the stem conv, stride 2)'),
  'value.stem': ('value', 'bn1', 'stem ReLU (input of the max-pool, stride 2)'),
  'value.layer2_in': ('value', 'layer1_1', 'layer1 output (input of layer2, stride 2)'),
  'value.layer3_in': ('value', 'layer2_1', 'layer2 output (input of layer3, stride 2)'),
}
ARS_SITE = {
  'key.layer2_in': 'layer2',
  'key.layer3_in': 'layer3',
  'value.layer2_in': 'layer2',
  'value.layer3_in': 'layer3',
}


def _captured(intermediates: dict, encoder: str, module: str) -> np.ndarray:
  out = intermediates[f'{encoder}_encoder'][module]['__call__'][0]
  return np.asarray(np.maximum(out, 0) if module == 'bn1' else out, np.float32)


def probe_maps(model, variables, frames: np.ndarray, masks: np.ndarray) -> tuple[dict, dict]:
  """The stride-2 inputs of both encoders: frames (F, H, W, 3) normalised, masks (H, W, K) of frame 0 ->
  (name -> map (N, h, w, C), name -> the map after the network's own ARS, where it has one)."""
  import jax
  import jax.numpy as jnp

  from gsfm_jax.models import GSFM
  from gsfm_jax.models.encoders import warp

  wanted = {('key_encoder', m) for _, m, _ in PROBES.values()} | {('value_encoder', m) for _, m, _ in PROBES.values()}
  wanted |= {('key_encoder', f'ars_{s}') for s in ('layer2', 'layer3')}
  capture = lambda mdl, method: method == '__call__' and tuple(mdl.path) in wanted

  def key(v, f):
    return model.apply(v, f, method=GSFM.encode_key, capture_intermediates=capture, mutable=['intermediates'])

  def value(v, f, k16, m, grids):
    return model.apply(
      v, f, k16, m, grids, method=GSFM.encode_value, capture_intermediates=capture, mutable=['intermediates']
    )

  keys, key_state = jax.jit(key)(variables, jnp.asarray(frames))
  first = jax.tree.map(lambda a: a[:1], keys)
  _, value_state = jax.jit(value)(variables, jnp.asarray(frames[:1]), first.f16, jnp.asarray(masks[None]), first.grids)
  captured = {'key': key_state['intermediates'], 'value': value_state['intermediates']}
  others = masks.sum(-1, keepdims=True) - masks
  value_input = np.concatenate(
    [
      np.repeat(frames[:1], masks.shape[-1], 0),
      np.moveaxis(masks, -1, 0)[..., None],
      np.moveaxis(others, -1, 0)[..., None],
    ],
    axis=-1,
  )
  maps = {}
  for name, (encoder, module, _) in PROBES.items():
    if module is None:
      maps[name] = frames if encoder == 'key' else value_input
    else:
      maps[name] = _captured(captured[encoder], encoder, module)
  learned = {}
  for name, stage in ARS_SITE.items():
    if keys.grids and stage in keys.grids:
      grids = (
        keys.grids
        if name.startswith('key')
        else jax.tree.map(lambda g: jnp.repeat(g[:1], masks.shape[-1], 0), keys.grids)
      )
      learned[name] = np.asarray(warp(jnp.asarray(maps[name]), grids, stage), np.float32)
  return maps, learned


def measure(maps: dict, learned: dict) -> dict:
  """name -> {'map', 'shape', 'stride', 'before': ratios, 'learned_ars'?: ratios, 'energy_ars'?: ratios,
  'spectrum_edges': left edges of the radial bins, 'spectra': {variant: share per radial bin}}."""
  report = {}
  for name, x in maps.items():
    edges, share = radial_spectrum(x)
    entry = {
      'map': PROBES[name][2],
      'shape': list(x.shape),
      'stride': 2,
      'before': aliasing_ratios(x),
      'spectrum_edges': edges.tolist(),
      'spectra': {'before': share.tolist()},
    }
    variants = {}
    if name in learned:
      variants['learned_ars'] = learned[name]
    if name in ARS_SITE:
      variants['energy_ars'] = np.asarray(energy_resample(x), np.float32)
    for variant, y in variants.items():
      entry[variant] = aliasing_ratios(y)
      entry['spectra'][variant] = radial_spectrum(y)[1].tolist()
    report[name] = entry
  return report


def measured_variants(report: dict) -> list[str]:
  """The variants of `report` measured for some probe, in the plot's order (no ARS: no learned_ars)."""
  return [v for v in ('before', 'learned_ars', 'energy_ars') if any(v in entry for entry in report.values())]


def plot(report: dict, folder: str) -> None:
  """radial_spectra.png (one panel per probe, Nyquist 0.25 and ESR 0.354 marked) and ratios.png (bars)."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  names = list(report)
  fig, axes = plt.subplots(2, len(names) // 2, figsize=(4 * len(names) // 2, 7), sharex=True)
  for ax, name in zip(axes.ravel(), names):
    edges = np.asarray(report[name]['spectrum_edges'])
    for variant, share in report[name]['spectra'].items():
      ax.semilogy(edges + edges[1] / 2, np.maximum(share, 1e-12), label=variant)
    ax.axvline(0.25, color='k', lw=0.8)
    ax.axvline(np.sqrt(2) / 4, color='k', lw=0.8, ls=':')
    ax.set_title(f'{name}\nratio {report[name]["before"]["ratio"]:.3f}', fontsize=9)
    ax.set_xlabel('max(|ν_row|, |ν_col|), cycles/px')
  axes[0, 0].set_ylabel('share of power')
  axes[0, -1].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(folder, 'radial_spectra.png'), dpi=100)
  plt.close(fig)
  variants = measured_variants(report)
  fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 4))
  width = 0.8 / len(variants)
  for i, variant in enumerate(variants):  # only the variants measured: a network without ARS has no learned_ars
    values = [report[n][variant]['ratio'] if variant in report[n] else np.nan for n in names]
    ax.bar(np.arange(len(names)) + (i - (len(variants) - 1) / 2) * width, values, width, label=variant)
  ax.set_xticks(np.arange(len(names)), names, rotation=30, ha='right', fontsize=8)
  ax.set_ylabel('aliasing ratio (ν_N = 0.25)')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(folder, 'ratios.png'), dpi=100)
  plt.close(fig)


def read_frames(video: str, count: int, mask_paths: Optional[list[str]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """The first `count` frames, cropped to multiples of 16 (top-left; cropping adds no spectrum of its own) and
  normalised (F, H, W, 3), the frame-0 masks (H, W, K) (one empty object without --mask) and notes."""
  from gsfm_jax.inference import media
  from gsfm_jax.models.normalisation import normalise

  reader = media.VideoReader(video)
  h, w = (s - s % 16 for s in reader.size)
  if min(h, w) < 32:
    raise media.InputError(f'{video}: frames of {reader.size[1]}×{reader.size[0]} are too small (at least 32×32)')
  frames = normalise(reader[0 : min(count, len(reader))][:, :h, :w])
  notes = [] if (h, w) == tuple(reader.size) else [f'frames cropped to {w}×{h} (multiples of 16)']
  if not mask_paths:
    return frames, np.zeros((h, w, 1), np.float32), notes + ['no --mask: the value encoder sees an empty mask']
  mask = media.read_mask(mask_paths, reader.size)
  labels = mask.labels[:h, :w]
  ids = [i for i in np.unique(labels) if i > 0] or [1]
  return frames, np.stack([labels == i for i in ids], -1).astype(np.float32), notes + mask.notes


def build_parser() -> cli.Parser:
  parser = cli.Parser(__doc__)
  parser.add_checkpoint()
  parser.add_argument('--video', required=True, help='video file or folder of frames')
  parser.add_argument('--mask', action='append', help='first-frame mask(s) for the value encoder (optional)')
  parser.add_count('frames', 4, 'frames measured by the key encoder')
  parser.add_output()
  return parser


def probe(parser: cli.Parser, args) -> int:
  """Checks the flags and files, measures, writes the report and the plots; -> 0."""
  from gsfm_jax import weights
  from gsfm_jax.inference import media

  parser.check(args)
  output = media.OutputFolder(args.out, args.overwrite)
  frames, masks, notes = read_frames(args.video, args.frames, args.mask)
  model, variables = weights.load_for_inference(args.checkpoint, model_flags=args.model)
  report = measure(*probe_maps(model, variables, frames, masks))
  with output as folder:
    with open(os.path.join(folder, 'aliasing.json'), 'w') as f:
      json.dump(
        {
          'checkpoint': args.checkpoint,
          'video': args.video,
          'frames': len(frames),
          'notes': notes,
          'ars_stages': list(model.ars.stages),
          'nyquist': 0.25,
          'probes': report,
        },
        f,
        indent=1,
      )
    plot(report, folder)
  print(f'{"probe":16s} {"ratio":>7s} {"learned ARS":>12s} {"energy ARS":>11s}')
  for name, entry in report.items():
    cell = lambda v: f'{entry[v]["ratio"]:.4f}' if v in entry else '-'
    print(f'{name:16s} {entry["before"]["ratio"]:7.4f} {cell("learned_ars"):>12s} {cell("energy_ars"):>11s}')
  print(f'wrote {args.out}/aliasing.json, radial_spectra.png, ratios.png')
  return 0


@cli.reported
def main(argv: Optional[list[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  from gsfm_jax import console

  console.show_info()
  return probe(parser, args)


if __name__ == '__main__':
  sys.exit(main())
