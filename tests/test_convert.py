"""Weights in and out: official state_dict ⇄ Flax variables ⇄ flat numpy ⇄ orbax, the CLI, stage-0
widening, torchvision backbones, and clear errors that leave earlier files untouched."""

import os
import sys

import ml_collections
import numpy as np
import pytest
import torch
from conftest import converted_variables, official_state_dict
from runs import final_params

from gsfm_jax import convert, weights
from gsfm_jax.models import GSFM
from gsfm_jax.weights import files as export
from gsfm_jax.weights import imagenet, official, record
from gsfm_jax.weights.start import initial_variables


def _assert_same_state_dict(got: dict, want: dict) -> None:
  assert set(got) == set(want)
  for k in want:
    assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k


def _assert_same_variables(got: dict, want: dict) -> None:
  got, want = export.flatten(got), export.flatten(want)
  assert set(got) == set(want)
  for k in want:
    assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k


def test_official_names_round_trip_bit_exact():
  state_dict = official_state_dict(0)
  variables = converted_variables(0)
  assert set(variables) == {'params', 'batch_stats'}
  kernel = variables['params']['key_encoder']['res2_0']['conv2']['kernel']
  np.testing.assert_array_equal(kernel, state_dict['key_encoder.res2.0.conv2.weight'].transpose(2, 3, 1, 0))
  _assert_same_state_dict(official.variables_to_state_dict(variables), state_dict)


def test_flat_npz_round_trip_bit_exact(tmp_path):
  variables = converted_variables(0)
  path = str(tmp_path / 'weights.npz')
  export.save_npz(variables, path)
  with np.load(path) as data:
    assert 'params/key_encoder/res2_0/conv1/kernel' in data.files
    assert 'batch_stats/value_encoder/layer3_1/bn2/var' in data.files
  _assert_same_variables(export.load_npz(path), variables)


def test_cli_official_to_orbax_to_npz_to_official(tmp_path, capsys):
  source = str(tmp_path / 'official.npz')
  np.savez(source, **official_state_dict(0))
  assert convert.main([source, str(tmp_path / 'ckpt')]) == 0
  assert convert.main([str(tmp_path / 'ckpt'), str(tmp_path / 'flat.npz')]) == 0
  assert convert.main([str(tmp_path / 'flat.npz'), str(tmp_path / 'back.npz'), '--to', 'official']) == 0
  assert '67,041,861 parameters' in capsys.readouterr().out
  _assert_same_variables(export.load_native(str(tmp_path / 'ckpt')), converted_variables(0))
  _assert_same_state_dict(export.read_npz(str(tmp_path / 'back.npz')), official_state_dict(0))


def test_full_checkpoint_form_and_ddp_prefix(tmp_path):
  wrapped = {f'network.module.{k}': v for k, v in official_state_dict(0).items()}
  # an .npz can hold the training checkpoint only flattened; the reader unwraps both layers
  unwrapped = official.strip_wrappers({'network': {k.split('.', 1)[1]: v for k, v in wrapped.items()}, 'it': 5})
  _assert_same_state_dict(unwrapped, official_state_dict(0))


def test_stage0_checkpoint_widens_to_five_channels():
  state_dict = dict(official_state_dict(0))
  four = state_dict['value_encoder.conv1.weight'][:, :4]
  state_dict['value_encoder.conv1.weight'] = four
  for fill in ('zeros', 'orthogonal'):
    kernel = official.state_dict_to_variables(state_dict, GSFM(), 'stage0', stem_fill=fill)['params']['value_encoder'][
      'conv1'
    ]['kernel']  # (7, 7, 5, 64)
    np.testing.assert_array_equal(kernel[:, :, :4], four.transpose(2, 3, 1, 0))
    extra = kernel[:, :, 4].reshape(49, 64).T  # official (64, 1·7·7)
    if fill == 'zeros':
      assert not extra.any()
    else:  # torch orthogonal_: 64 rows > 49 columns, so the columns are orthonormal
      np.testing.assert_allclose(extra.T @ extra, np.eye(49), atol=1e-5)


def _torchvision_resnet(encoder: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """A torchvision-named ResNet state_dict (no conv biases, with layer4 and fc), random values."""
  stages = imagenet.STAGES[encoder]
  reference = official_state_dict(0)
  is_conv_bias = lambda key: key.endswith('.bias') and reference.get(key[:-4] + 'weight', np.zeros(())).ndim == 4
  out = {}
  for key, value in reference.items():
    if not key.startswith(encoder + '.') or '.fuser.' in key or is_conv_bias(key):
      continue
    name = key[len(encoder) + 1 :]
    for i, stage in enumerate(stages):
      if name.startswith(stage + '.'):
        name = f'layer{i + 1}' + name[len(stage) :]
    out[name] = rng.standard_normal(value.shape).astype(value.dtype) if value.ndim else value
  out['conv1.weight'] = out['conv1.weight'][:, :3]
  out['layer4.0.conv1.weight'] = np.zeros((1, 1, 1, 1), np.float32)
  out['fc.weight'] = np.zeros((1000, 2048 if encoder == 'key_encoder' else 512), np.float32)
  return out


def test_torchvision_imagenet_backbones(tmp_path):
  rng = np.random.default_rng(7)
  r50, r18 = _torchvision_resnet('key_encoder', rng), _torchvision_resnet('value_encoder', rng)
  np.savez(tmp_path / 'r50.npz', **r50)
  np.savez(tmp_path / 'r18.npz', **r18)
  assert (
    convert.main(
      ['--resnet50', str(tmp_path / 'r50.npz'), '--resnet18', str(tmp_path / 'r18.npz'), str(tmp_path / 'init.npz')]
    )
    == 0
  )
  sd = official.variables_to_state_dict(export.load_npz(str(tmp_path / 'init.npz')))
  np.testing.assert_array_equal(sd['key_encoder.res2.1.conv2.weight'], r50['layer1.1.conv2.weight'])
  np.testing.assert_array_equal(sd['key_encoder.layer3.5.bn3.running_var'], r50['layer3.5.bn3.running_var'])
  np.testing.assert_array_equal(sd['value_encoder.layer2.0.downsample.0.weight'], r18['layer2.0.downsample.0.weight'])
  assert not sd['key_encoder.layer2.0.conv2.bias'].any() and not sd['value_encoder.conv1.bias'].any()
  stem = sd['value_encoder.conv1.weight']  # (64, 5, 7, 7): RGB from ImageNet, 2 orthogonal channels after
  np.testing.assert_array_equal(stem[:, :3], r18['conv1.weight'])
  extra = stem[:, 3:].reshape(64, -1)  # 64 rows < 98 columns: torch orthogonal_ makes the rows orthonormal
  np.testing.assert_allclose(extra @ extra.T, np.eye(64), atol=1e-5)
  # everything outside the trunks is the fresh initialisation: PyTorch-default bounds, orthogonal key_proj
  bound = 1 / np.sqrt(2048)
  assert np.abs(sd['lfm.conv1.weight']).max() <= bound and np.abs(sd['lfm.conv1.weight']).max() > 0.9 * bound
  kp = sd['key_proj.key_proj.weight'].reshape(64, -1)
  np.testing.assert_allclose(kp @ kp.T, np.eye(64), atol=1e-4)


def _write_bad(path, mutate) -> str:
  state_dict = dict(official_state_dict(0))
  mutate(state_dict)
  np.savez(path, **state_dict)
  return str(path)


@pytest.mark.parametrize(
  'mutate, expected',
  [
    (lambda sd: sd.pop('decoder.hfm.conv2.bias'), 'missing key(s): decoder.hfm.conv2.bias'),
    (
      lambda sd: sd.update({'decoder.extra.weight': np.zeros((3, 3, 1, 1), np.float32)}),
      'unexpected key(s): decoder.extra.weight',
    ),
    (
      lambda sd: sd.update({'key_comp.weight': np.zeros((512, 1024, 1, 1), np.float32)}),
      'key_comp.weight: expected shape [512, 1024, 3, 3], found [512, 1024, 1, 1]',
    ),
  ],
)
def test_bad_state_dict_names_file_and_problem_and_writes_nothing(tmp_path, capsys, mutate, expected):
  source = _write_bad(tmp_path / 'bad.npz', mutate)
  out = tmp_path / 'out.npz'
  assert convert.main([source, str(out)]) == 2
  err = capsys.readouterr().err
  assert source in err and expected in err
  assert not out.exists() and sorted(os.listdir(tmp_path)) == ['bad.npz']


def test_unreadable_file_and_existing_output_are_reported_and_kept(tmp_path, capsys):
  garbage = tmp_path / 'garbage.npz'
  garbage.write_bytes(b'not a zip file at all')
  existing = tmp_path / 'existing.npz'
  existing.write_bytes(b'earlier work')
  assert convert.main([str(garbage), str(existing), '--overwrite']) == 2
  assert f'{garbage}: cannot read as a numpy .npz file' in capsys.readouterr().err
  assert convert.main([str(tmp_path / 'absent.npz'), str(tmp_path / 'o.npz')]) == 2
  assert 'absent.npz: no such file' in capsys.readouterr().err
  good = tmp_path / 'good.npz'
  np.savez(good, **official_state_dict(0))
  assert convert.main([str(good), str(existing)]) == 2
  assert 'already exists (pass --overwrite' in capsys.readouterr().err
  assert existing.read_bytes() == b'earlier work'
  assert sorted(os.listdir(tmp_path)) == ['existing.npz', 'garbage.npz', 'good.npz']


def _torch_tensors(state_dict: dict, prefix: str = '') -> dict:
  """numpy state_dict (with its int64 BatchNorm counters) -> torch tensors, names prefixed."""
  return {prefix + k: torch.from_numpy(np.array(v, order='C')) for k, v in state_dict.items()}


def test_official_training_checkpoint_pth(tmp_path):
  """The official trainer's save: {'it', 'network', 'optimizer', 'scheduler'} written by torch.save."""
  state_dict = official_state_dict(0)
  network = torch.nn.Linear(2, 2)
  optimizer = torch.optim.Adam(network.parameters(), lr=4e-5, weight_decay=1e-7)
  torch.save(
    {
      'it': 30000,
      'network': _torch_tensors(state_dict),
      'optimizer': optimizer.state_dict(),
      'scheduler': torch.optim.lr_scheduler.MultiStepLR(optimizer, [25000]).state_dict(),
    },
    tmp_path / 'checkpoint.pth',
  )
  assert convert.main([str(tmp_path / 'checkpoint.pth'), str(tmp_path / 'ckpt')]) == 0
  _assert_same_variables(export.load_native(str(tmp_path / 'ckpt')), converted_variables(0))
  model, variables = weights.load_for_inference(str(tmp_path / 'checkpoint.pth'))  # what predict/evaluate read
  assert not model.single_object
  _assert_same_variables(variables, converted_variables(0))


def test_ddp_prefixed_pth_and_pth_output(tmp_path):
  """A DistributedDataParallel state_dict ('module.' names) in, an official .pth out that torch reads back."""
  state_dict = official_state_dict(0)
  torch.save(_torch_tensors(state_dict, 'module.'), tmp_path / 'ddp.pth')
  assert convert.main([str(tmp_path / 'ddp.pth'), str(tmp_path / 'w.npz')]) == 0
  assert convert.main([str(tmp_path / 'w.npz'), str(tmp_path / 'back.pth'), '--to', 'official']) == 0
  back = torch.load(tmp_path / 'back.pth', map_location='cpu', weights_only=True)
  assert set(back) == set(state_dict) and all(isinstance(v, torch.Tensor) for v in back.values())
  _assert_same_state_dict({k: v.numpy() for k, v in back.items()}, state_dict)
  bn = torch.nn.BatchNorm2d(64)  # a real module takes its slice strictly (0-d counter, float32 tensors)
  bn.load_state_dict({k.split('.')[-1]: v for k, v in back.items() if k.startswith('key_encoder.bn1.')})
  np.testing.assert_array_equal(bn.running_var.numpy(), state_dict['key_encoder.bn1.running_var'])


def test_stage0_pth_into_both_networks(tmp_path):
  """A stage-0 (single-object, 4-channel value encoder) .pth: as is for --model single_object=true, widened for the
  two-object network (zeros as the official eval scripts, orthogonal as its trainer), and as a training start."""
  state_dict = dict(official_state_dict(0))
  four = state_dict['value_encoder.conv1.weight'][:, :4]
  state_dict['value_encoder.conv1.weight'] = four
  torch.save({'network': _torch_tensors(state_dict)}, tmp_path / 'stage0.pth')
  assert convert.main([str(tmp_path / 'stage0.pth'), str(tmp_path / 'so.npz'), '--model', 'single_object=true']) == 0
  assert export.load_npz(str(tmp_path / 'so.npz'))['params']['value_encoder']['conv1']['kernel'].shape == (7, 7, 4, 64)
  assert convert.main([str(tmp_path / 'stage0.pth'), str(tmp_path / 'mo.npz'), '--stem_fill', 'zeros']) == 0
  kernel = export.load_npz(str(tmp_path / 'mo.npz'))['params']['value_encoder']['conv1']['kernel']
  np.testing.assert_array_equal(kernel[:, :, :4], four.transpose(2, 3, 1, 0))
  assert not kernel[:, :, 4].any()
  init = ml_collections.ConfigDict(
    {'kind': 'checkpoint', 'checkpoint': str(tmp_path / 'stage0.pth'), 'stem_fill': 'orthogonal'}
  )
  extra = initial_variables(init, GSFM(), 0)['params']['value_encoder']['conv1']['kernel'][:, :, 4]
  columns = extra.reshape(49, 64)  # official (64, 1·7·7) transposed: 64 rows > 49 columns, orthonormal columns
  np.testing.assert_allclose(columns @ columns.T, np.eye(49), atol=1e-5)


def test_torchvision_pth_files(tmp_path):
  """The ImageNet start from .pth files as torchvision ships them (tensors, layer4 and fc included)."""
  rng = np.random.default_rng(8)
  r50, r18 = _torchvision_resnet('key_encoder', rng), _torchvision_resnet('value_encoder', rng)
  torch.save(_torch_tensors(r50), tmp_path / 'resnet50.pth')
  torch.save(_torch_tensors(r18), tmp_path / 'resnet18.pth')
  assert (
    convert.main(
      [
        '--resnet50',
        str(tmp_path / 'resnet50.pth'),
        '--resnet18',
        str(tmp_path / 'resnet18.pth'),
        str(tmp_path / 'init.npz'),
      ]
    )
    == 0
  )
  sd = official.variables_to_state_dict(export.load_npz(str(tmp_path / 'init.npz')))
  np.testing.assert_array_equal(sd['key_encoder.layer2.3.conv3.weight'], r50['layer2.3.conv3.weight'])
  np.testing.assert_array_equal(sd['value_encoder.layer3.1.bn2.weight'], r18['layer3.1.bn2.weight'])


def test_bad_pth_files_name_the_file(tmp_path, capsys):
  (tmp_path / 'broken.pth').write_bytes(b'\x80\x02 not a torch file')
  torch.save(torch.zeros(3), tmp_path / 'tensor.pth')
  for name, expected in (
    ('broken.pth', 'cannot read as a PyTorch checkpoint'),
    ('tensor.pth', 'holds a Tensor, not a state_dict'),
  ):
    assert convert.main([str(tmp_path / name), str(tmp_path / 'o.npz')]) == 2
    assert f'{tmp_path / name}: {expected}' in capsys.readouterr().err
  assert not (tmp_path / 'o.npz').exists()


def test_pth_without_torch_says_how_to_proceed(tmp_path, capsys, monkeypatch):
  monkeypatch.setitem(sys.modules, 'torch', None)  # what a machine without torch sees: import torch fails
  pth = tmp_path / 'GSFM.pth'
  pth.write_bytes(b'\x80\x02')
  assert convert.main([str(pth), str(tmp_path / 'o.npz')]) == 2
  err = capsys.readouterr().err
  assert f'{pth}: reading PyTorch files needs torch' in err and 'np.savez' in err
  np.savez(tmp_path / 'official.npz', **official_state_dict(0))
  assert convert.main([str(tmp_path / 'official.npz'), str(tmp_path / 'x.pth'), '--to', 'official']) == 2
  assert 'writing PyTorch files needs torch' in capsys.readouterr().err
  assert not (tmp_path / 'o.npz').exists() and not (tmp_path / 'x.pth').exists()


def test_convert_takes_what_predict_takes(reference, tmp_path, capsys):
  """A training workdir of the narrow demo network, its checkpoints/ folder and a step folder: the newest (or
  that) step, at the run's width; a .pth output without --to official is refused before any work."""
  workdir = reference[0]
  expected = official.variables_to_state_dict(export.unflatten(final_params(workdir)))
  for source, name in (
    (workdir, 'w.npz'),
    (os.path.join(workdir, 'checkpoints'), 'c.npz'),
    (os.path.join(workdir, 'checkpoints', '4'), 's.npz'),
  ):
    assert convert.main([source, str(tmp_path / name), '--to', 'official']) == 0, capsys.readouterr().err
    got = export.read_npz(str(tmp_path / name))
    assert got['decoder.pred.weight'].shape == (1, 64, 3, 3)  # 256 / 4 channels
    assert record.read(str(tmp_path / name))['width_divisor'] == 4  # the run's network, recorded
    np.testing.assert_array_equal(got['decoder.pred.weight'], expected['decoder.pred.weight'])
  assert convert.main([str(tmp_path / 'w.npz'), str(tmp_path / 'x.pth')]) == 2
  assert 'x.pth: a .pth output holds the official names; add --to official' in capsys.readouterr().err
  assert not (tmp_path / 'x.pth').exists()
