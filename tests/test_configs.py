"""Configs (names, overrides, the reference's stages, the paper's ablations) and the initial weights they
ask for (scratch init, a stage-0 workdir with the fifth channel added)."""

import os
import sys

import jax
import numpy as np
import pytest
from runs import run

from configs import ablation, demo, main, pretrain
from gsfm_jax import cli


def test_config_names_resolve_to_files_and_overrides_apply(capsys):
  argv = cli.resolve_configs(['train', '--config=main', '--workdir=w', '--config', 'ablation:t5_lfm/pretrain'])
  assert argv[1] == '--config=' + os.path.join(cli.config_dir(), 'main.py')
  assert argv[4] == os.path.join(cli.config_dir(), 'ablation.py') + ':t5_lfm/pretrain'
  assert cli.resolve_configs(['--config=my/own.py'])[0] == '--config=my/own.py'
  with pytest.raises(SystemExit) as exited:
    cli.resolve_configs(['--config=mian'])
  assert exited.value.code == 2
  assert capsys.readouterr().err == (
    'error: --config=mian: no configs/mian.py (known: ablation, data, demo, main, model, pretrain)\n'
  )
  result = run([sys.executable, '-m', 'gsfm_jax.train', '--helpfull'], devices=1, timeout=120)
  assert '--config' in result.stdout and '--workdir' in result.stdout


def test_stage_configs_follow_the_reference():
  stage0, stage3 = pretrain.get_config(), main.get_config()
  assert (stage0.model.single_object, stage0.data.kind, stage0.global_batch, stage0.steps) == (
    True,
    'static',
    128,
    40_000,
  )
  assert (stage0.lr, tuple(stage0.lr_milestones), stage0.start_warm, stage0.end_warm) == (
    4e-5,
    (20_000,),
    3_000,
    10_000,
  )
  assert (stage3.model.single_object, stage3.data.kind, stage3.global_batch, stage3.steps) == (False, 'vos', 64, 30_000)
  assert (stage3.lr, tuple(stage3.lr_milestones), stage3.start_warm, stage3.end_warm) == (
    4e-5,
    (25_000,),
    3_000,
    15_000,
  )
  assert (stage3.weight_decay, stage3.boundary_weight, stage3.top_p) == (1e-7, 0.05, 0.15)
  assert (stage0.init.kind, stage3.init.kind, stage3.init.stem_fill) == ('imagenet', 'checkpoint', 'orthogonal')


def test_ablation_configs_switch_the_right_components():
  table = {name: ablation.get_config(name).model for name in ablation.variants()}
  assert len(table) == 5 + 8 + 5 + 4 + 5
  assert (table['t5_none'].lfm_filter, table['t5_none'].hfm_filter, table['t5_none'].boundary_branch) == (
    'off',
    'off',
    False,
  )
  assert (table['t5_lfm_boundary'].lfm_filter, table['t5_lfm_boundary'].hfm_filter) == ('low', 'off')
  assert table['t5_lfm_boundary'].boundary_branch
  assert (table['t3_full_high'].lfm_filter, table['t3_low_full'].hfm_filter) == ('none', 'none')
  assert [table[f'sigma{s}'].sigma for s in (3, 5, 7, 10, 15)] == [3, 5, 7, 10, 15]
  assert tuple(table['sfm_ars'].ars_stages) == ('layer2', 'layer3') and not table['sfm_ars'].msau_refine
  assert tuple(table['sfm_ars_layer3'].ars_stages) == ('layer3',) and table['sfm_ars_msau'].msau_refine
  ffr = table['ffr_ideal']
  assert (ffr.lfm_shape, ffr.hfm_shape, ffr.lfm_cutoff, ffr.hfm_cutoff) == ('ideal', 'ideal', 0.4, 0.4)
  assert [table[f'ffr_mu{mu}'].lfm_cutoff for mu in (0.1, 0.2, 0.3, 0.4)] == [0.1, 0.2, 0.3, 0.4]
  assert ablation.get_config('sfm_ars').init.checkpoint == 'runs/sfm_ars_pretrain'
  gsfm = main.get_config().model
  for same in ('t5_all', 't3_low_high', 'sigma7'):
    assert table[same] == gsfm
  assert ablation.get_config('t5_hfm').init.checkpoint == 'runs/t5_hfm_pretrain'
  assert ablation.get_config('t5_hfm/pretrain').model.single_object
  with pytest.raises(ValueError, match='t5_bogus'):
    ablation.get_config('t5_bogus')


# ---------------------------------------------------------------- initial weights


def test_scratch_init_keeps_the_signal_and_starts_heads_and_residual_branches_at_zero():
  from gsfm_jax.models import GSFM, build_model, init_variables
  from gsfm_jax.models.scratch import scratch_params

  model = build_model(demo.get_config().model)  # the demo's network, which trains from scratch
  shapes = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0)))
  ones = jax.tree.map(lambda x: np.ones(x.shape, x.dtype), shapes['params'])
  out = scratch_params(ones, np.random.default_rng(0))
  he = lambda kernel: np.sqrt(2 / np.prod(kernel.shape[:3]))
  for kernel in (
    out['key_encoder']['conv1']['kernel'],
    out['value_encoder']['layer3_0']['conv1']['kernel'],
    out['decoder']['compress']['conv1']['kernel'],
    out['lfm']['conv1']['kernel'],
  ):
    assert kernel.std() == pytest.approx(he(kernel), rel=0.05) and abs(kernel.mean()) < 0.1 * he(kernel)
  for bias in (out['key_encoder']['layer2_0']['conv1']['bias'], out['decoder']['up_8_4']['skip_conv']['bias']):
    assert not bias.any()
  for zero in (
    out['key_encoder']['layer2_0']['bn3']['scale'],
    out['key_encoder']['res2_1']['bn3']['scale'],
    out['value_encoder']['layer1_0']['bn2']['scale'],
    out['decoder']['pred']['kernel'],
    out['decoder']['predict_boundary_2']['bias'],
  ):
    assert not zero.any()
  for kept in (
    out['key_encoder']['layer2_0']['bn2']['scale'],
    out['key_encoder']['layer2_0']['downsample_1']['scale'],
    out['key_proj']['key_proj']['kernel'],
    out['value_encoder']['fuser']['attention']['ChannelGate']['mlp_1']['kernel'],
  ):
    assert np.all(kept == 1)
  # the point of it: the key encoder's features keep a usable scale (PyTorch's default init: std ≈ 0.05)
  from gsfm_jax.weights.start import initial_variables

  variables = initial_variables(demo.get_config().init, model, seed=0)  # init.kind 'scratch'
  frame = np.random.default_rng(1).standard_normal((1, 64, 64, 3)).astype(np.float32)
  keys = jax.jit(lambda v, x: model.apply(v, x, method=GSFM.encode_key))(variables, frame)
  for name in ('f16', 'f8', 'f4'):
    assert 0.3 < float(np.std(getattr(keys, name))) < 5, name


def test_main_starts_from_a_pretrain_workdir_with_the_fifth_channel_added(tmp_path):
  """A stage-0 (single-object) training workdir as `init.checkpoint` of the two-object network: every weight
  is carried over and the value encoder's stem gains its 5th input channel, orthogonal like the reference's."""
  from conftest import converted_variables

  from gsfm_jax import checkpoint
  from gsfm_jax.models import GSFM
  from gsfm_jax.weights.start import initial_variables

  stage0 = converted_variables(0, single_object=True)
  store = checkpoint.Checkpoints(str(tmp_path / 'pretrain'), every=1, keep=1, asynchronous=False)
  store.save(40, {'step': np.int32(40), **stage0}, {'step': 40}, force=True)
  init = main.get_config().init
  init.checkpoint = str(tmp_path / 'pretrain')
  variables = initial_variables(init, GSFM(), seed=0)
  before, after = (flatten_params(v) for v in (stage0, variables))
  stem = 'params/value_encoder/conv1/kernel'
  assert before[stem].shape == (7, 7, 4, 64) and after[stem].shape == (7, 7, 5, 64)
  assert np.array_equal(after[stem][:, :, :4], before[stem])
  fifth = after[stem][:, :, 4].reshape(-1, 64)
  assert np.allclose(fifth @ fifth.T, np.eye(49), atol=1e-4)  # orthonormal columns of the (64, 49) OIHW matrix
  assert all(np.array_equal(after[k], v) for k, v in before.items() if k != stem)


def flatten_params(variables) -> dict[str, np.ndarray]:
  from gsfm_jax.weights.files import flatten

  return flatten({k: variables[k] for k in ('params', 'batch_stats')})
