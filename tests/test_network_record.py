"""Weights carry their network: every form `gsfm_jax.convert` writes records the model switches (width,
single/multi-object, SFM/FFR) and every command that reads weights builds that network; a file without the
record (an official .pth) is GSFM unless `--model` says otherwise, and a mismatch names the option."""

import os

import numpy as np
import pytest
from PIL import Image

from configs import model as model_config
from gsfm_jax import convert, predict, weights
from gsfm_jax.models import build_model
from gsfm_jax.weights import files, record
from gsfm_jax.weights.structure import abstract_variables

CASES = {
  'GSFM': {},
  'narrow with ARS and ideal LFM': {'width_divisor': 4, 'ars_stages': ('layer3',), 'lfm_shape': 'ideal'},
}


def network(switches: dict):
  config = model_config.get_config()
  config.update(switches)
  return config


def assert_same(got: dict, want: dict) -> None:
  got, want = files.flatten(got), files.flatten(want)
  assert set(got) == set(want)
  for k in want:
    assert np.array_equal(got[k], want[k]), k


@pytest.mark.parametrize('case', list(CASES))
def test_every_form_round_trips_with_its_network(case, tmp_path, capsys):
  """.npz → orbax folder → official .npz → .npz, each recording the network and reading back bit-exact; an
  official .pth (no record) needs --model for anything but GSFM, and says so."""
  config = network(CASES[case])
  rng = np.random.default_rng(1)  # random arrays of the network's shapes (initialising GSFM would compile)
  shapes = abstract_variables(build_model(config))
  variables = files.unflatten({'/'.join(p): rng.standard_normal(s.shape).astype(np.float32) for p, s in shapes.items()})
  source = str(tmp_path / 'source.npz')
  weights.save(variables, source, config)
  chain = [(source, 'folder', []), ('folder', 'official.npz', ['--to', 'official']), ('official.npz', 'back.npz', [])]
  for before, after, flags in chain if CASES[case] else chain[:2]:  # GSFM's 270 MB: the two new forms only
    assert convert.main([str(tmp_path / before), str(tmp_path / after), *flags]) == 0, capsys.readouterr().err
    assert record.read(str(tmp_path / after)) == record.of(config), after
    assert weights.network(str(tmp_path / after)).width_divisor == config.width_divisor
    assert_same(weights.load(str(tmp_path / after), weights.network(str(tmp_path / after))), variables)
  assert np.load(tmp_path / 'official.npz').files[0].startswith(('key_encoder.', 'value_encoder.', 'decoder.'))

  if not CASES[case]:
    return  # official names back to Flax names, and GSFM's own .pth: tests/test_convert.py
  assert convert.main([str(tmp_path / 'back.npz'), str(tmp_path / 'o.pth'), '--to', 'official']) == 0
  assert record.read(str(tmp_path / 'o.pth')) is None  # a .pth has no place for it
  flags = [f'--model={k}={",".join(v) if isinstance(v, tuple) else v}' for k, v in CASES[case].items()]
  assert convert.main([str(tmp_path / 'o.pth'), str(tmp_path / 'bad.npz')]) == 2
  err = capsys.readouterr().err
  assert 'o.pth: weights of the network at width_divisor 4' in err and 'add --model width_divisor=4' in err
  assert len(err.splitlines()) == 1 and not (tmp_path / 'bad.npz').exists()
  assert convert.main([str(tmp_path / 'o.pth'), str(tmp_path / 'bad.npz'), '--model', 'width_divisor=4']) == 2
  err = capsys.readouterr().err  # the width fixed, the ARS parameters are still unexpected for plain GSFM
  assert 'unexpected key' in err and 'no network record' in err and '--model FIELD=VALUE' in err
  assert convert.main([str(tmp_path / 'o.pth'), str(tmp_path / 'again.npz'), *flags]) == 0
  assert record.read(str(tmp_path / 'again.npz')) == record.of(config)
  assert_same(files.load_npz(str(tmp_path / 'again.npz')), variables)


def test_model_flags_are_checked_by_name_and_type(tmp_path, capsys):
  assert record.parse_overrides(['width_divisor=4', 'ars_stages=layer2,layer3', 'msau_refine=true']) == {
    'width_divisor': 4,
    'ars_stages': ('layer2', 'layer3'),
    'msau_refine': True,
  }
  for item, message in (
    ('widht_divisor=4', "no field 'widht_divisor'; did you mean width_divisor?"),
    ('width_divisor', 'expected FIELD=VALUE'),
    ('width_divisor=four', 'width_divisor=four: expected a int like 1'),
    ('dtype=bfloat16', "no field 'dtype'"),  # the compute dtype is --dtype's
  ):
    with pytest.raises(ValueError, match=message):
      record.parse_overrides([item])
  assert convert.main([str(tmp_path / 'x.npz'), str(tmp_path / 'y.npz'), '--model', 'widht_divisor=4']) == 2
  assert capsys.readouterr().err.strip().endswith('did you mean width_divisor?')


def test_predict_reads_every_form(weights, clip, tmp_path, capsys):
  """Narrow weights converted to every form: predict builds the narrow network from each file's record (an
  official .pth with --model) and writes the same masks. (A training workdir's forms: test_convert.py.)"""
  frames_dir, first_mask = clip
  video = tmp_path / 'video'
  video.mkdir()
  for name in sorted(os.listdir(frames_dir))[:6]:
    os.link(os.path.join(frames_dir, name), video / name)
  sources = {'npz': [weights]}
  for name, flags in (('official.npz', ['--to', 'official']), ('folder', []), ('o.pth', ['--to', 'official'])):
    assert convert.main([weights, str(tmp_path / name), *flags]) == 0, capsys.readouterr().err
    sources[name] = [str(tmp_path / name)]
  sources['o.pth'] += ['--model', 'width_divisor=4']
  masks = {}
  for name, (source, *model) in sources.items():
    out = tmp_path / f'out_{name}'
    args = ['--checkpoint', source, *model, '--video', str(video), '--mask', first_mask, '--out', str(out)]
    assert predict.main(args) == 0, capsys.readouterr().err
    masks[name] = np.stack([np.asarray(Image.open(out / 'masks' / f)) for f in sorted(os.listdir(out / 'masks'))])
  for name in sources:
    np.testing.assert_array_equal(masks[name], masks['npz'], err_msg=name)


def test_a_training_start_of_another_width_names_the_config_field(weights):
  import ml_collections

  from gsfm_jax.models import GSFM
  from gsfm_jax.weights.start import initial_variables

  init = ml_collections.ConfigDict({'kind': 'checkpoint', 'checkpoint': weights, 'stem_fill': 'orthogonal'})
  with pytest.raises(ValueError, match='add --config.model.width_divisor=4$'):
    initial_variables(init, GSFM(), 0)
