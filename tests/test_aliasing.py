"""The aliasing ratio (docs/sfm_ffr.md, "The aliasing probe") and the probe's command line on a
built-in video, with a checkpoint trained with ARS (its own resampling measured) and its mistakes."""

import json
import os

import flax
import jax
import numpy as np
import pytest
from PIL import Image

from configs import model as model_config
from gsfm_jax.analysis import aliasing
from gsfm_jax.analysis.aliasing import aliasing_ratios, passband, radial_spectrum


def test_white_noise_sits_in_its_three_sigma_band():
  x = np.random.default_rng(0).standard_normal((1, 64, 64, 64))
  n = 64 * 64 * 64
  n_in = passband(64, 64, 0.25).sum() * 64
  expected = 1 - n_in / n
  assert expected == pytest.approx(1 - (31 / 64) ** 2)
  sigma = np.sqrt(2 * n_in * (n - n_in) / n**3)  # bins of a real map come in conjugate pairs
  assert abs(aliasing_ratios(x)['ratio'] - expected) <= 3 * sigma


def cosine(frequency: float, n: int = 64, axis: int = 1) -> np.ndarray:
  t = np.arange(n)
  wave = np.cos(2 * np.pi * frequency * t)
  return (wave[:, None] if axis == 0 else wave[None, :]) * np.ones((n, n))


def test_on_bin_cosines_are_kept_or_aliased_and_the_variants():
  below, between, above = (cosine(k / 64)[None, :, :, None] for k in (12, 20, 28))  # 0.19, 0.31, 0.44
  assert aliasing_ratios(below)['ratio'] == pytest.approx(0, abs=1e-12)
  assert aliasing_ratios(above)['ratio'] == pytest.approx(1, abs=1e-12)
  assert aliasing_ratios(cosine(20 / 64, axis=0)[None, :, :, None])['ratio'] == pytest.approx(1, abs=1e-12)
  ratios = aliasing_ratios(between)  # beyond 0.25, inside the ESR's √2/4 = 0.354
  assert ratios['ratio'] == pytest.approx(1, abs=1e-12) and ratios['ratio_esr'] == pytest.approx(0, abs=1e-12)
  # DC: a constant offset lowers the ratio unless it is left out
  offset = aliasing_ratios(above + 1.0)
  assert offset['ratio'] == pytest.approx(1 / 3) and offset['no_dc'] == pytest.approx(1)
  # per channel: one aliased channel of tiny energy next to a clean one
  mixed = np.concatenate([below, 1e-3 * above], axis=-1)
  assert aliasing_ratios(mixed)['channel_mean'] == pytest.approx(0.5)
  assert aliasing_ratios(mixed)['ratio'] == pytest.approx(1e-6 / (1 + 1e-6))


def test_scale_invariance_pooling_and_the_radial_spectrum():
  x = np.random.default_rng(1).standard_normal((3, 40, 48, 5)) * np.linspace(0.1, 2, 5)
  ratios = aliasing_ratios(x)
  assert aliasing_ratios(7.5 * x)['ratio'] == pytest.approx(ratios['ratio'], rel=1e-12)
  power = np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2
  outside = ~passband(40, 48, 0.25)
  assert ratios['ratio'] == pytest.approx(power[:, outside].sum() / power.sum(), rel=1e-12)
  edges, share = radial_spectrum(x)
  assert share.sum() == pytest.approx(1) and 0.25 in edges
  assert share[edges >= 0.25].sum() == pytest.approx(ratios['ratio'], rel=1e-9)


@pytest.fixture(scope='module')
def ars_checkpoint(tmp_path_factory) -> str:
  """A 1/8-width network with ARS at both stages, its attention perturbed (as if trained), as an .npz."""
  from gsfm_jax.models import build_model, init_variables
  from gsfm_jax.weights import record
  from gsfm_jax.weights.files import save_npz

  folder = tmp_path_factory.mktemp('ars')
  config = model_config.get_config()
  config.update(width_divisor=8, ars_stages=('layer2', 'layer3'))
  variables = jax.device_get(init_variables(build_model(config), jax.random.PRNGKey(0)))
  flat = flax.traverse_util.flatten_dict(variables)
  rng = np.random.default_rng(0)
  for path in flat:
    if 'att_out' in path and path[-1] == 'kernel':
      flat[path] = rng.normal(0, 0.5, flat[path].shape).astype(np.float32)
  save_npz(flax.traverse_util.unflatten_dict(flat), str(folder / 'weights.npz'), network=record.of(config))
  return str(folder / 'weights.npz')


def test_the_probe_writes_ratios_and_plots_for_both_encoders(ars_checkpoint, data_root, tmp_path, capsys):
  davis = os.path.join(data_root, 'DAVIS', '2017', 'trainval')
  name = open(os.path.join(davis, 'ImageSets', '2017', 'val.txt')).read().split()[0]
  video = os.path.join(davis, 'JPEGImages', '480p', name)
  mask = os.path.join(davis, 'Annotations', '480p', name, '00000.png')
  out = tmp_path / 'probe'
  assert (
    aliasing.main(
      ['--checkpoint', ars_checkpoint, '--video', video, '--mask', mask, '--frames', '2', '--out', str(out)]
    )
    == 0
  )
  report = json.load(open(out / 'aliasing.json'))
  assert report['ars_stages'] == ['layer2', 'layer3'] and set(report['probes']) == set(aliasing.PROBES)
  for name, entry in report['probes'].items():
    assert 0 < entry['before']['ratio'] < 1 and entry['before']['ratio_esr'] <= entry['before']['ratio']
    assert len(entry['spectra']['before']) == len(entry['spectrum_edges'])
    at_ars = name in aliasing.ARS_SITE
    assert ('learned_ars' in entry) == at_ars and ('energy_ars' in entry) == at_ars
  assert (
    report['probes']['key.layer2_in']['learned_ars']['ratio'] != report['probes']['key.layer2_in']['before']['ratio']
  )
  for plot in ('radial_spectra.png', 'ratios.png'):
    image = np.asarray(Image.open(out / plot))
    assert image.shape[0] > 200 and image.std() > 10
  assert 'key.layer3_in' in capsys.readouterr().out


@pytest.mark.parametrize(
  'mistake, message',
  [
    ('video', 'no such video file or frame folder'),
    ('out', 'is a file; give a folder'),
    ('frames', '--frames 0: must be at least 1'),
    ('checkpoint', 'no such file or directory'),
  ],
)
def test_probe_mistakes_get_one_line(mistake, message, ars_checkpoint, data_root, tmp_path, capsys):
  davis = os.path.join(data_root, 'DAVIS', '2017', 'trainval')
  name = open(os.path.join(davis, 'ImageSets', '2017', 'val.txt')).read().split()[0]
  args = {
    '--checkpoint': ars_checkpoint,
    '--video': os.path.join(davis, 'JPEGImages', '480p', name),
    '--out': str(tmp_path / 'o'),
    '--frames': '1',
  }
  if mistake == 'video':
    args['--video'] = str(tmp_path / 'missing')
  elif mistake == 'out':
    (tmp_path / 'file').write_text('x')
    args['--out'] = str(tmp_path / 'file')
  elif mistake == 'frames':
    args['--frames'] = '0'
  else:
    args['--checkpoint'] = str(tmp_path / 'nothing.npz')
  assert aliasing.main([a for pair in args.items() for a in pair]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0] and err[0].startswith('error: ')


def test_the_ratio_plot_shows_only_the_variants_measured():
  """A network without ARS has no learned_ars bars, so its legend has no such entry."""
  without_ars = {'key.layer2_in': {'before': {}, 'energy_ars': {}}, 'key.conv1_out': {'before': {}}}
  assert aliasing.measured_variants(without_ars) == ['before', 'energy_ars']
  with_ars = {'key.layer2_in': {'before': {}, 'learned_ars': {}, 'energy_ars': {}}}
  assert aliasing.measured_variants(with_ars) == ['before', 'learned_ars', 'energy_ars']
