"""SFM's switches in GSFM (docs/sfm_ffr.md, "Tests"): adaptive resampling (ARS), its
demodulation and MSAU's relation refinement, alone and in the network, its train step and its engine."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import converted_variables, parity_cases, per_frame

from configs import model as model_config
from gsfm_jax.analysis.aliasing import aliasing_ratios, energy_attention
from gsfm_jax.models import GSFM, build_model, init_variables
from gsfm_jax.models.demodulation import RelationRefinement, invert_grid, sampling_map
from gsfm_jax.models.layers import Conv, upsample_bilinear
from gsfm_jax.models.resampling import AdaptiveResampling, bilinear_sample, pixel_grid, saliency_grid

H, W = 24, 32


def identity_grid(n: int, h: int, w: int) -> jnp.ndarray:
  return jnp.broadcast_to(pixel_grid(h, w), (n, h, w, 2))


def monotone_grid(seed: int, std: float = 2.0, h: int = H, w: int = W) -> jnp.ndarray:
  """An ARS grid from log-normal random attention, clipped like ARS's (N = 2)."""
  a = np.clip(np.exp(std * np.random.default_rng(seed).standard_normal((2, h, w, 1))), *AdaptiveResampling.clip)
  return saliency_grid(jnp.asarray(a, jnp.float32))


# ---------------------------------------------------------------- ARS (spec tests 1-5)


def test_uniform_attention_is_the_identity():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, H, W, 8)), jnp.float32)
  u = saliency_grid(jnp.full((2, H, W, 1), 3.7))
  assert float(jnp.max(jnp.abs(u - identity_grid(2, H, W)))) <= 1e-4
  ars = AdaptiveResampling(channels=4)
  variables = ars.init(jax.random.PRNGKey(0), x)
  y, grid = ars.apply(variables, x)
  assert float(jnp.max(jnp.abs(grid - identity_grid(2, H, W)))) <= 1e-4
  assert float(jnp.linalg.norm(y - x) / jnp.linalg.norm(x)) <= 1e-5
  conv = Conv(6, kernel_size=3, stride=2)
  params = flax.linen.Module.init(conv, jax.random.PRNGKey(1), x)  # Conv.init is its initialiser field
  np.testing.assert_allclose(conv.apply(params, y), conv.apply(params, x), atol=1e-4)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_grids_never_fold_and_stay_on_the_map(seed):
  u = np.asarray(monotone_grid(seed))
  assert np.diff(u[..., 1], axis=2).min() >= -1e-5
  assert np.diff(u[..., 0], axis=1).min() >= -1e-5
  assert u[..., 0].min() >= 0 and u[..., 0].max() <= H - 1 and u[..., 1].min() >= 0 and u[..., 1].max() <= W - 1
  assert np.abs(u - np.asarray(identity_grid(2, H, W))).max() <= 5 + 1e-4  # within R of p
  assert np.diff(u[..., 1], axis=2).min() < 0.9  # and it does move: not the identity


def test_high_attention_densifies_the_grid():
  """A stripe of A = 20, narrower than the window (R = 5, σ = 3): sampled at about 0.2 px instead of 1."""
  a = np.ones((1, H, 64, 1), np.float32)
  a[:, :, 30:34] = 20.0
  spacing = np.diff(np.asarray(saliency_grid(jnp.asarray(a)))[0, H // 2, :, 1])
  inside, outside = spacing[30:33].mean(), spacing[:8].mean()
  assert inside < 0.5 * outside, (inside, outside)
  assert outside == pytest.approx(1.0, abs=1e-3)


def test_the_warp_is_trainable_from_the_identity():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, H, W, 8)), jnp.float32)
  ars = AdaptiveResampling(channels=4)
  variables = ars.init(jax.random.PRNGKey(0), x)
  assert not np.any(variables['params']['att_out']['kernel'])
  target = jnp.roll(x, 1, axis=2)
  grads = jax.grad(lambda v: jnp.sum((ars.apply(v, x)[0] - target) ** 2))(variables)
  g = np.asarray(grads['params']['att_out']['kernel'])
  assert np.all(np.isfinite(g)) and np.abs(g).max() > 0


def test_resampling_by_high_frequency_energy_lowers_the_aliasing_ratio():
  """A smooth map with 16 small patches of the finest texture (a 4×4 checkerboard, 0.5 cycles/px): the grid
  magnifies each patch, which lowers its frequency below the stride-2 Nyquist 0.25 (SFM's claim)."""
  yy, xx = np.mgrid[:64, :64]
  x = np.cos(2 * np.pi * 2 * yy / 64) + np.sin(2 * np.pi * 3 * xx / 64)
  for cy in range(8, 64, 16):
    for cx in range(8, 64, 16):
      x[cy : cy + 4, cx : cx + 4] += 0.5 * np.cos(np.pi * (yy + xx))[cy : cy + 4, cx : cx + 4]
  x = x[None, :, :, None].astype(np.float32)
  resampled = bilinear_sample(jnp.asarray(x), saliency_grid(energy_attention(x)))
  before, after = aliasing_ratios(x)['ratio'], aliasing_ratios(np.asarray(resampled))['ratio']
  assert after < 0.6 * before, (before, after)


# ---------------------------------------------------------------- demodulation and MSAU (tests 6-9)


def test_demodulating_the_identity_warp_is_the_bilinear_upsampling():
  z = jnp.asarray(np.random.default_rng(0).standard_normal((2, H // 2, W // 2, 5)), jnp.float32)
  inverse = invert_grid(identity_grid(2, H, W))
  np.testing.assert_allclose(bilinear_sample(z, inverse.q), upsample_bilinear(z, 2), atol=1e-5)
  np.testing.assert_allclose(inverse.rho, 0.25, rtol=1e-5)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_newton_inverts_a_monotone_warp(seed):
  grid = monotone_grid(seed)
  inverse = invert_grid(grid)
  g = sampling_map(grid)
  residual = np.abs(np.asarray(bilinear_sample(g, inverse.q)) - np.asarray(identity_grid(2, H, W)))
  # the interior: points the warped map covers (the outermost rows and columns are edge extrapolation)
  assert residual[:, 3:-3, 3:-3].max() <= 1e-3
  assert np.all(np.asarray(inverse.rho) > 0) and np.all(np.isfinite(inverse.rho))


def test_demodulation_undoes_resampling_of_a_smooth_field():
  """demod(ARS(f)) ≈ f; inside the map (the border is an extrapolation) as close as GSFM's bilinear round trip."""
  yy, xx = np.mgrid[:H, :W] / np.array([H, W])[:, None, None]
  f = np.stack([np.sin(np.pi / 2 * yy) * np.cos(np.pi / 2 * xx), yy * xx + 0.5], -1)[None].repeat(2, 0)
  f = f.astype(np.float32)

  def round_trip(grid):
    z = bilinear_sample(jnp.asarray(f), sampling_map(grid))  # what a stride-2 stage after ARS samples
    return np.asarray(bilinear_sample(z, invert_grid(grid).q))

  error = lambda g, region=np.s_[:, :, :]: np.linalg.norm((g - f)[region]) / np.linalg.norm(f[region])
  warped, uniform = round_trip(monotone_grid(3, std=1.0)), round_trip(identity_grid(2, H, W))
  inside = np.s_[:, 2:-2, 2:-2]
  assert error(warped) < 2e-2
  assert error(warped, inside) < 2 * error(uniform, inside), (error(warped, inside), error(uniform, inside))


def test_refinement_starts_as_stage_a_and_mixes_with_weights_that_sum_to_one():
  rng = np.random.default_rng(0)
  y, skip = (jnp.asarray(rng.standard_normal((2, H, W, c)), jnp.float32) for c in (6, 10))
  rho = jnp.asarray(rng.uniform(0.1, 2, (2, H, W, 1)), jnp.float32)
  refine = RelationRefinement(features=6, channels=8)
  variables = refine.init(jax.random.PRNGKey(0), y, skip, rho)
  assert np.array_equal(refine.apply(variables, y, skip, rho), y)
  weights = refine.apply(variables, skip, rho, method=RelationRefinement.weights)
  assert weights.shape == (2, H, W, 33)
  np.testing.assert_allclose(jnp.sum(weights, -1), 1.0, atol=1e-6)
  opened = flax.core.unfreeze(variables)
  opened['params']['gamma'] = jnp.ones_like(opened['params']['gamma'])
  assert float(jnp.max(jnp.abs(refine.apply(opened, y, skip, rho) - y))) > 1e-2


# ---------------------------------------------------------------- the network (system tests)


def every_switch(**overrides) -> GSFM:
  config = model_config.get_config()
  config.update(
    {'ars_stages': ('layer2', 'layer3'), 'msau_refine': True, 'lfm_shape': 'ideal', 'hfm_shape': 'ideal', **overrides}
  )
  return build_model(config)


def test_defaults_build_gsfm_with_the_official_parameter_tree():
  from conftest import official_state_dict

  from gsfm_jax.weights.official import variables_to_state_dict

  model = build_model(model_config.get_config())
  assert model == GSFM()
  names = set(variables_to_state_dict(jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0)))))
  official = {k for k in official_state_dict(0) if not k.endswith('num_batches_tracked')}
  assert names - {k for k in names if k.endswith('num_batches_tracked')} == official


def with_new_parameters(model: GSFM, variables: dict) -> dict:
  """`variables` of GSFM, plus `model`'s extra parameters at their initial values."""
  fresh = flax.traverse_util.flatten_dict(jax.device_get(init_variables(model, jax.random.PRNGKey(0))))
  fresh.update(flax.traverse_util.flatten_dict(variables))
  return flax.traverse_util.unflatten_dict(fresh)


@pytest.mark.parametrize('path', parity_cases())
def test_sfm_switches_at_init_give_gsfm_outputs_on_the_parity_case(path):
  """ARS (A ≡ 1) + demodulation (the identity) + MSAU (γ = 0) on GSFM's weights: GSFM's outputs within 1e-4."""
  with np.load(path) as data:
    case = {k: data[k] for k in data.files if k.startswith(('train/', 'meta/'))}
  variables = converted_variables(int(case['meta/weights_seed']))
  k = case['train/selector'].shape[1]
  masks = np.stack([case['train/gt'][:, 0], case['train/sec_gt'][:, 0]][:k], axis=-1)
  args = (case['train/frames'], masks, case['train/selector'])
  from test_parity import _clip_forward, logits_agree

  gsfm = per_frame(jax.device_get(_clip_forward()(variables, *args)))
  model = every_switch(lfm_shape='gaussian', hfm_shape='gaussian')
  sfm = per_frame(jax.device_get(jax.jit(model.apply)(with_new_parameters(model, variables), *args)))
  assert set(sfm) == set(gsfm)
  for key, ref in gsfm.items():
    if key.startswith('logits_'):  # aggregated log-odds: the parity rule (float32 resolves large ones coarsely)
      assert logits_agree(sfm[key], ref), key
    elif key.startswith('prob_'):  # and the probabilities derived from them, by the same README's rule
      diff = np.abs(sfm[key] - ref)
      assert diff.max() <= 1e-2 and np.mean(diff <= 1e-4) >= 0.999, key
    else:
      assert np.abs(sfm[key] - ref).max() <= 1e-4 * max(float(np.abs(ref).max()), 1.0), key


def test_every_switch_trains_through_the_train_step_compiling_once():
  from test_train_step import SIZE, clip_batch, config

  from gsfm_jax import sharding
  from gsfm_jax.train_step import make_train_step, optimizer, place_state
  from gsfm_jax.weights.files import flatten

  c = config()
  c.model.update(
    ars_stages=('layer2', 'layer3'), msau_refine=True, lfm_shape='ideal', hfm_shape='ideal', width_divisor=8
  )
  mesh = sharding.make_mesh(jax.devices()[:2])
  model = build_model(c.model)
  step = make_train_step(model, c, mesh)
  variables = jax.device_get(init_variables(model, jax.random.PRNGKey(0)))
  state = place_state(sharding.put_replicated(variables, mesh), optimizer(c), mesh)
  scalars = sharding.put_replicated((np.float32(0.5), np.int32(SIZE * SIZE // 2)), mesh)
  for seed in (0, 1):
    state, metrics = step(state, sharding.global_batch(clip_batch(seed), mesh), *scalars)
    assert bool(metrics['finite'])
  assert step._cache_size() == 1
  moved = flatten({'p': jax.device_get(state.params)})
  for name in (
    'p/key_encoder/ars_layer2/att_out/kernel',
    'p/key_encoder/ars_layer3/att_out/kernel',
    'p/decoder/up_8_4/refine/gamma',
  ):
    assert np.abs(moved[name]).max() > 0, f'{name} did not train'


def test_bfloat16_keeps_grids_inverses_and_densities_in_float32():
  model = every_switch(width_divisor=8, dtype='bfloat16')
  variables = init_variables(model, jax.random.PRNGKey(0))
  frames = jnp.asarray(np.random.default_rng(0).standard_normal((1, 2, 32, 32, 3)), jnp.float32)
  keys = jax.jit(lambda v, f: model.apply(v, f, method=GSFM.encode_key))(variables, frames[:, 0])
  assert keys.f4.dtype == jnp.bfloat16
  assert {name: g.dtype for name, g in keys.grids.items()} == {'layer2': jnp.float32, 'layer3': jnp.float32}
  inverse = invert_grid(keys.grids['layer3'])
  assert inverse.q.dtype == jnp.float32 and inverse.rho.dtype == jnp.float32
  out = jax.jit(model.apply)(variables, frames, jnp.ones((1, 32, 32, 2)) * 0.5, jnp.ones((1, 2)))
  assert out['prob'].dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out['logits'])))


def test_the_engine_segments_through_ars_and_msau_like_gsfm_at_init():
  """The engine carries the query's grids to the value encoder and the decoder; at init (identity warps,
  γ = 0) its probabilities are GSFM's, with the same memory bank (it stores keys and values only)."""
  from gsfm_jax.inference import Propagator, Protocol

  model, base = every_switch(width_divisor=8, lfm_shape='gaussian', hfm_shape='gaussian'), GSFM(width_divisor=8)
  base_variables = jax.device_get(init_variables(base, jax.random.PRNGKey(3)))
  variables = with_new_parameters(model, base_variables)
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 255, (5, 48, 64, 3), np.uint8)
  first = np.zeros((48, 64), np.uint8)
  first[10:30, 8:30], first[20:40, 36:60] = 1, 2
  sfm, gsfm = (
    Propagator(m, v, Protocol(mem_every=2)).segment(frames, {0: first}, keep_prob=True)
    for m, v in ((model, variables), (base, base_variables))
  )
  np.testing.assert_array_equal(sfm.labels[0], first)
  assert np.abs(sfm.prob - gsfm.prob).max() <= 1e-4
  assert (model.key_dim, model.value_dim) == (base.key_dim, base.value_dim)


def test_bad_switches_are_refused_with_the_field_named():
  with pytest.raises(ValueError, match='ars_stages'):
    GSFM(width_divisor=8, ars_stages=('layer4',)).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 2, 32, 32, 3)), jnp.zeros((1, 32, 32, 2))
    )
  with pytest.raises(ValueError, match='msau_refine'):
    init_variables(GSFM(width_divisor=8, msau_refine=True, msau_dilations=(1, 2)), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match='lfm_shape'):
    init_variables(GSFM(width_divisor=8, lfm_shape='box'), jax.random.PRNGKey(0))


def test_training_from_scratch_starts_the_switches_as_gsfm():
  """The scratch init (the demo's) re-draws every convolution but keeps ARS's att_out and MSAU's gate at 0."""
  from gsfm_jax.models.scratch import scratch_params

  model = every_switch(width_divisor=8)
  params = scratch_params(
    jax.device_get(init_variables(model, jax.random.PRNGKey(0)))['params'], np.random.default_rng(0)
  )
  for stage in ('layer2', 'layer3'):
    assert not np.any(params['key_encoder'][f'ars_{stage}']['att_out']['kernel'])
    assert np.any(params['key_encoder'][f'ars_{stage}']['att_reduce']['kernel'])
  assert not np.any(params['decoder']['up_16_8']['refine']['gamma'])


def test_switch_parameters_travel_through_the_official_names():
  """Checkpoints of SFM networks convert like GSFM's: Flax variables -> state_dict names -> the same variables."""
  from gsfm_jax.weights.official import state_dict_to_variables, variables_to_state_dict

  model = every_switch(width_divisor=8)
  variables = jax.device_get(init_variables(model, jax.random.PRNGKey(0)))
  state_dict = variables_to_state_dict(variables)
  assert 'key_encoder.ars_layer3.att_out.weight' in state_dict and 'decoder.up_8_4.refine.gamma' in state_dict
  back = flax.traverse_util.flatten_dict(state_dict_to_variables(state_dict, model, 'test'))
  flat = flax.traverse_util.flatten_dict(variables)
  assert set(back) == set(flat) and all(np.array_equal(back[k], flat[k]) for k in flat)
