"""Behaviour of the GSFM modules beyond the parity case: odd sizes, single-object mode, spectral
filter forms, top-k memory read, bf16 compute, and gradients through the frame-1 prediction."""

import functools

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import NARROW, narrow_variables

from gsfm_jax.models import GSFM, init_variables
from gsfm_jax.models.aggregate import aggregate
from gsfm_jax.models.frequency import SpectralFilter, frequency_filter
from gsfm_jax.models.memory import memory_softmax, readout, top_k_read


def _param_count(model: GSFM) -> int:
  shapes = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0)))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes['params']))


def test_parameter_counts_match_the_official_network():
  assert _param_count(GSFM()) == 67_041_861
  assert _param_count(GSFM(single_object=True)) == 67_038_725


def test_width_divisor_narrows_every_layer_but_keeps_the_layout():
  """The narrow network of the tests and the demo: same parameter names and depth, every channel count /4."""
  shapes = lambda m: flax.traverse_util.flatten_dict(
    jax.eval_shape(lambda: init_variables(m, jax.random.PRNGKey(0)))['params']
  )
  wide, narrow = shapes(GSFM()), shapes(GSFM(width_divisor=4))
  assert wide.keys() == narrow.keys()
  assert narrow[('key_proj', 'key_proj', 'kernel')].shape == (3, 3, 256, 16)
  assert narrow[('value_encoder', 'fuser', 'block2', 'conv2', 'kernel')].shape == (3, 3, 128, 128)
  assert narrow[('decoder', 'pred', 'kernel')].shape == (3, 3, 64, 1)
  assert narrow[('lfm', 'conv1', 'kernel')].shape == (1, 1, 512, 512)
  assert GSFM(width_divisor=4).key_dim == 16 and GSFM(width_divisor=4).value_dim == 128
  assert 4_000_000 < _param_count(GSFM(width_divisor=4)) < 67_041_861 // 15
  with pytest.raises(ValueError, match='width_divisor must be 1, 2, 4, 8 or 16, got 3'):
    _param_count(GSFM(width_divisor=3))


def _official_spectral_filter(x: np.ndarray, params: dict, kind: str, sigma: float = 7.0) -> np.ndarray:
  """The official module literally, in float64: x + Re(ifft2(F(f · fft2(x)))), NHWC."""
  n, h, w, c = x.shape
  spectrum = np.fft.fft2(x.astype(np.float64), axes=(1, 2)) * frequency_filter(h, w, kind, sigma)[None, :, :, None]
  z = np.concatenate([spectrum.real, spectrum.imag], axis=-1)
  conv = lambda v, p: v @ np.asarray(p['kernel'], np.float64)[0, 0] + np.asarray(p['bias'], np.float64)
  z = conv(np.maximum(conv(z, params['conv1']), 0.0), params['conv2'])
  return x + np.real(np.fft.ifft2(z[..., :c] + 1j * z[..., c:], axes=(1, 2)))


@pytest.mark.parametrize('kind', ['low', 'high', 'none'])
@pytest.mark.parametrize('size', [(12, 12), (15, 25), (13, 27), (30, 54), (7, 8)])
def test_exact_spectral_form_equals_the_official_function(kind, size):
  x = np.random.default_rng(1).standard_normal((2, *size, 8)).astype(np.float32)
  module = SpectralFilter(kind, form='exact')
  params = module.init(jax.random.PRNGKey(0), x)['params']
  got = np.asarray(module.apply({'params': params}, x), np.float64)
  want = _official_spectral_filter(x, params, kind)
  assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_half_spectral_form_is_a_different_cheaper_function():
  x = np.random.default_rng(2).standard_normal((1, 12, 12, 8)).astype(np.float32)
  params = SpectralFilter('low').init(jax.random.PRNGKey(0), x)
  exact = SpectralFilter('low', form='exact').apply(params, x)
  half = SpectralFilter('low', form='half').apply(params, x)
  assert half.shape == exact.shape and np.isfinite(half).all()
  assert np.abs(half - exact).max() > 1e-3  # not the official function, as documented


def test_filter_values_follow_the_unshifted_gaussian():
  low = frequency_filter(24, 24, 'low', 7.0)
  assert low[0, 0] == pytest.approx(1 - np.exp(-288 / 98), rel=1e-6)  # keeps ≈ 0.947 of DC
  assert low[12, 12] == 0.0  # Nyquist corner removed
  assert frequency_filter(24, 24, 'high', 7.0)[12, 12] == 1.0
  with pytest.raises(ValueError, match='unknown frequency filter'):
    frequency_filter(4, 4, 'band', 7.0)


@pytest.mark.parametrize(
  'kernel,stride,size', [(3, 1, (2, 3)), (3, 2, (5, 4)), (1, 2, (7, 6)), (7, 2, (8, 9)), (3, 1, (8, 8))]
)
def test_small_maps_convolve_as_a_matmul_with_the_same_result(kernel, stride, size):
  """`conv_as_matmul` (used for maps of ≤ 64 output pixels) equals the padded strided convolution."""
  from gsfm_jax.models.layers import conv_as_matmul

  rng = np.random.default_rng(kernel * 10 + stride)
  x = jnp.asarray(rng.standard_normal((2, *size, 5)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((kernel, kernel, 5, 4)), jnp.float32)
  pad = kernel // 2
  expected = jax.lax.conv_general_dilated(
    x, w, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )
  found = conv_as_matmul(x, w, stride)
  assert found.shape == expected.shape == (2, -(-size[0] // stride), -(-size[1] // stride), 4)
  np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-5)


def test_a_strided_1x1_conv_is_a_matmul_on_every_stride_th_pixel_with_xlas_values_and_gradients():
  """`Conv` runs a 1×1 stride-2 layer (ResNet's downsampling shortcut) on a CPU as a matmul on x[:, ::2, ::2]
  (a TPU keeps XLA's strided convolution): the padding-0 convolution's function, odd sizes included (ceil(H/2)
  outputs)."""
  from gsfm_jax.models.layers import Conv, xla_conv

  rng = np.random.default_rng(12)
  x = jnp.asarray(rng.standard_normal((2, 7, 10, 6)), jnp.float32)
  conv = Conv(5, kernel_size=1, stride=2)
  kernel = jnp.asarray(rng.standard_normal((1, 1, 6, 5)), jnp.float32)
  bias = jnp.asarray(rng.standard_normal(5), jnp.float32)
  variables = {'params': {'kernel': kernel, 'bias': bias}}
  g = jnp.asarray(rng.standard_normal((2, 4, 5, 5)), jnp.float32)
  ours = jax.grad(lambda a, v: jnp.sum(conv.apply(v, a) * g), argnums=(0, 1))(x, variables)
  xlas = jax.grad(lambda a, w: jnp.sum((xla_conv(a, w, 2) + bias) * g), argnums=(0, 1))(x, kernel)
  np.testing.assert_allclose(conv.apply(variables, x), xla_conv(x, kernel, 2) + bias, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(ours[0], xlas[0], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(ours[1]['params']['kernel'], xlas[1], rtol=1e-5, atol=1e-5)
  forward = lambda v, a: conv.apply(v, a)
  assert 'stablehlo.convolution' not in _exported_ops(forward, 'cpu', variables, x)
  assert _exported_ops(forward, 'tpu', variables, x).count('stablehlo.convolution') == 1


@pytest.mark.parametrize('size', [(15, 25), (30, 54), (7, 8)])
def test_dft_matmuls_are_the_fft_pair_with_its_gradient(size):
  """The TPU's spectral transform (dense DFTs) computes the FFT pair's function, values and VJPs."""
  from gsfm_jax.models.frequency import irfft2_as_matmuls, rfft2_as_matmuls

  rng = np.random.default_rng(size[0])
  x = jnp.asarray(rng.standard_normal((2, *size, 3)), jnp.float32)
  spectrum = jnp.fft.rfft2(x, axes=(1, 2))
  close = lambda a, b, tol: float(jnp.max(jnp.abs(a - b))) <= tol * float(jnp.max(jnp.abs(b)))
  assert close(jax.lax.complex(*rfft2_as_matmuls(x)), spectrum, 1e-6)
  # a half spectrum that is not Hermitian at DC / Nyquist: both read it the same way
  skewed = spectrum * (1 + 0.3j) + 0.1j
  want = jnp.fft.irfft2(skewed, s=size, axes=(1, 2))
  assert close(irfft2_as_matmuls(skewed.real, skewed.imag, size[1]), want, 1e-6)
  cotangent = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
  rotate = lambda re, im: (re - 0.5 * im, im + 0.5 * re)  # × (1 + 0.5i)
  loss = lambda y: jnp.sum(y * cotangent)
  matmuls = jax.grad(lambda a: loss(irfft2_as_matmuls(*rotate(*rfft2_as_matmuls(a)), size[1])))(x)
  ffts = jax.grad(lambda a: loss(jnp.fft.irfft2(jnp.fft.rfft2(a, axes=(1, 2)) * (1 + 0.5j), s=size, axes=(1, 2))))(x)
  assert close(matmuls, ffts, 1e-5)


def _exported_ops(fn, platform: str, *args) -> str:
  """The StableHLO text of fn lowered for `platform` (no such device needed)."""
  return jax.export.export(jax.jit(fn), platforms=[platform])(*args).mlir_module()


def test_each_backend_lowers_its_own_spectral_transform_and_kernel_gradient():
  """TPU programs run the spectral filters as DFT matmuls and keep XLA's convolution gradients; CPU programs
  run XLA's FFT and compute a stride-1 kernel gradient as k² matmuls (for layers wider than 64 channels)."""
  from gsfm_jax.models.layers import MATMUL_GRADIENT_MAX_NARROW, conv_stride_1

  x = jnp.ones((1, 8, 8, 4), jnp.float32)
  module = SpectralFilter('high')
  variables = module.init(jax.random.PRNGKey(0), x)
  spectral = lambda v, a: module.apply(v, a)
  assert 'stablehlo.fft' not in _exported_ops(spectral, 'tpu', variables, x)
  assert _exported_ops(spectral, 'cpu', variables, x).count('stablehlo.fft') == 2
  gradient = jax.grad(lambda a, w: jnp.sum(conv_stride_1(a, w) ** 2), argnums=(0, 1))
  wide = jnp.ones((3, 3, 4, MATMUL_GRADIENT_MAX_NARROW + 1), jnp.float32)
  tpu, cpu = (_exported_ops(gradient, p, x, wide) for p in ('tpu', 'cpu'))
  assert tpu.count('stablehlo.convolution') == 3 and 'stablehlo.dot_general' not in tpu  # forward, dx, dk
  assert cpu.count('stablehlo.convolution') == 2 and cpu.count('stablehlo.dot_general') == 9
  narrow = jnp.ones((3, 3, 4, MATMUL_GRADIENT_MAX_NARROW), jnp.float32)  # XLA's kernel gradient is faster there
  cpu = _exported_ops(gradient, 'cpu', x, narrow)
  assert cpu.count('stablehlo.convolution') == 3 and 'stablehlo.dot_general' not in cpu


@pytest.mark.parametrize('kernel,size,channels', [(3, (9, 7), (66, 5)), (7, (8, 8), (3, 70)), (3, (4, 4), (80, 1))])
def test_stride_1_kernel_gradient_as_matmuls_is_xlas(kernel, size, channels):
  from gsfm_jax.models.layers import conv_stride_1, xla_conv

  rng = np.random.default_rng(kernel)
  x = jnp.asarray(rng.standard_normal((2, *size, channels[0])), jnp.float32)
  w = jnp.asarray(rng.standard_normal((kernel, kernel, *channels)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((2, *size, channels[1])), jnp.float32)
  ours = jax.grad(lambda a, b: jnp.sum(conv_stride_1(a, b) * g), argnums=(0, 1))(x, w)
  xlas = jax.grad(lambda a, b: jnp.sum(xla_conv(a, b, 1) * g), argnums=(0, 1))(x, w)
  np.testing.assert_array_equal(conv_stride_1(x, w), xla_conv(x, w, 1))
  for a, b in zip(ours, xlas):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_top_k_softmax_keeps_only_the_k_best_memory_entries():
  logits = np.random.default_rng(3).standard_normal((2, 40, 6)).astype(np.float32) * 5
  got = np.asarray(memory_softmax(jnp.asarray(logits), top_k=7))
  want = np.zeros_like(logits)
  for b in range(2):
    for m in range(6):
      best = np.argsort(-logits[b, :, m])[:7]
      e = np.exp(logits[b, best, m] - logits[b, best, m].max())
      want[b, best, m] = e / e.sum()
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_allclose(np.asarray(memory_softmax(jnp.asarray(logits))).sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize('top_k', [7, 60])
def test_gathered_top_k_read_equals_the_dense_read(top_k):
  rng = np.random.default_rng(4)
  logits = jnp.asarray(rng.standard_normal((2, 40, 6)) * 5, jnp.float32)
  valid = jnp.asarray(rng.random((2, 40)) > 0.3)
  values = jnp.asarray(rng.standard_normal((2, 3, 40, 5)), jnp.float32)
  dense = readout(memory_softmax(logits, top_k, valid), values)
  gathered = top_k_read(jnp.swapaxes(logits, 1, 2), valid, values, top_k)
  assert gathered.shape == (2, 3, 6, 5)
  np.testing.assert_allclose(np.asarray(gathered), np.asarray(dense), atol=1e-5)


def test_aggregation_with_one_object_squares_the_odds():
  p = jnp.array([0.1, 0.5, 0.8, 0.99])[:, None]
  prob = jax.nn.softmax(aggregate(p), axis=-1)[:, 1]
  expected = p[:, 0] ** 2 / (p[:, 0] ** 2 + (1 - p[:, 0]) ** 2)
  np.testing.assert_allclose(prob, expected, rtol=1e-5)


def _clip_inputs(b: int, h: int, w: int, k: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  frames = rng.standard_normal((b, 3, h, w, 3)).astype(np.float32)
  yy, xx = np.mgrid[:h, :w]
  masks = np.stack([((yy - h * (0.3 + 0.3 * i)) ** 2 + (xx - w / 2) ** 2 < (h / 5) ** 2) for i in range(k)], -1).astype(
    np.float32
  )
  return frames, np.broadcast_to(masks, (b, h, w, k)).copy(), np.ones((b, k), np.float32)


@functools.lru_cache(maxsize=None)
def _forward(single_object: bool = False, dtype=jnp.float32):
  """The narrow network's jitted clip forward (these behaviours do not depend on the width)."""
  return jax.jit(GSFM(single_object=single_object, dtype=dtype, width_divisor=NARROW).apply)


def test_odd_feature_sizes():
  frames, masks, selector = _clip_inputs(1, 176, 208, 2)  # f16 11×13, f8 22×26, f4 44×52
  out = jax.device_get(_forward()(narrow_variables(0), frames, masks, selector))
  assert out['k16'].shape == (1, 3, 11, 13, 64 // NARROW)
  assert out['f16'].shape == (1, 3, 11, 13, 1024 // NARROW)
  assert out['logits'].shape == (1, 2, 176, 208, 3)
  assert out['prob'].shape == out['boundary'].shape == (1, 2, 176, 208, 2)
  assert out['values'].shape == (1, 2, 2, 11, 13, 512 // NARROW)
  assert np.isfinite(out['logits']).all() and np.isfinite(out['boundary']).all()
  assert (out['prob'].sum(-1) <= 1 + 1e-6).all()


def test_single_object_network():
  frames, masks, _ = _clip_inputs(2, 64, 96, 1)
  variables = narrow_variables(0, single_object=True)
  assert variables['params']['value_encoder']['conv1']['kernel'].shape == (7, 7, 4, 64 // NARROW)
  out = jax.device_get(_forward(single_object=True)(variables, frames, masks))
  assert out['values'][:, 0].shape == (2, 1, 4, 6, 512 // NARROW) and 'boundary' in out
  assert out['logits'][:, 1].shape == (2, 64, 96, 2) and out['prob'][:, 1].shape == (2, 64, 96, 1)
  # one object: background = 1 - p, so its log-odds are the negated object log-odds (checked where
  # float32 still resolves 1 - p, i.e. |log-odds| < 8)
  bg, fg = out['logits'][:, 1, ..., 0], out['logits'][:, 1, ..., 1]
  moderate = np.abs(fg) < 8
  assert moderate.mean() > 0.2
  np.testing.assert_allclose(bg[moderate], -fg[moderate], atol=2e-3)
  with pytest.raises(ValueError, match='one mask per sample'):
    GSFM(single_object=True, width_divisor=NARROW).apply(variables, frames, np.concatenate([masks, masks], -1))


def test_bfloat16_compute_is_finite_and_close_to_float32():
  frames, masks, selector = _clip_inputs(1, 64, 64, 2, seed=4)
  variables = narrow_variables(0)
  f32 = jax.device_get(_forward()(variables, frames, masks, selector))
  bf16 = jax.device_get(_forward(dtype=jnp.bfloat16)(variables, frames, masks, selector))
  for t in (1, 2):
    assert bf16['prob'].dtype == np.float32 and np.isfinite(bf16['prob'][:, t - 1]).all()
    diff = np.abs(bf16['prob'][:, t - 1] - f32['prob'][:, t - 1])
    print(f'bf16 vs f32 prob of frame {t}: max {diff.max():.3e}, mean {diff.mean():.3e}')
    assert diff.mean() <= 0.02 and np.mean(diff <= 0.1) >= 0.98


def test_gradients_flow_through_the_frame1_prediction_into_memory():
  frames, masks, selector = _clip_inputs(1, 64, 64, 2, seed=5)
  variables = narrow_variables(0)
  model = GSFM(width_divisor=NARROW)

  def frame1_memory(decoder_params, variables, frames, masks, selector):
    params = {**variables['params'], 'decoder': decoder_params}
    return jnp.sum(model.apply({**variables, 'params': params}, frames, masks, selector)['values'][:, 1])

  grads = jax.jit(jax.grad(frame1_memory))(variables['params']['decoder'], variables, frames, masks, selector)
  norms = {'/'.join(k): float(jnp.linalg.norm(v)) for k, v in flax.traverse_util.flatten_dict(grads).items()}
  assert all(np.isfinite(v) for v in norms.values())
  # frame 1's memory value depends on the decoder only through frame 1's soft prediction
  assert norms['pred/kernel'] > 0 and norms['hfm/conv2/kernel'] > 0


def test_hard_mining_keeps_the_official_number_of_pixels_eagerly_and_under_jit():
  from gsfm_jax.losses import bootstrapped_ce, hard_mining

  rng = np.random.default_rng(6)
  logits = rng.standard_normal((2, 40, 40, 3)).astype(np.float32)
  labels = rng.integers(0, 3, (2, 40, 40))
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ranked = np.sort(-np.take_along_axis(log_p, labels[..., None], -1).reshape(2, -1), -1)[:, ::-1]
  jitted = jax.jit(bootstrapped_ce)
  # at it 9000, p = 0.575 and 0.575 · 1600 is 919.9999999999999 in float64: the official code keeps 919
  # pixels, where float32 (0.575 · 1600 = 920.0) would keep 920
  assert hard_mining(9000, 1600, 3000, 15000) == (0.575, 919)
  for it, p in ((0, 1.0), (3000, 1.0), (9000, 0.575), (15000, 0.15), (20000, 0.15)):
    got_p, k = hard_mining(it, 1600, 3000, 15000)
    assert got_p == pytest.approx(p) and k == int(1600 * p)
    want = ranked[:, :k].mean(-1)
    np.testing.assert_allclose(bootstrapped_ce(logits, labels, k), want, rtol=1e-5)
    np.testing.assert_allclose(jitted(logits, labels, np.int32(k)), want, rtol=1e-5)


def test_stride_1_kernel_gradient_holds_no_copies_of_the_input_through_the_forward_pass():
  """Each layer of a chain of stride-1 convolutions adds no more temporary memory to the compiled gradient
  than with XLA's own kernel gradient (views of the input, made as soon as it exists, would add k² copies)."""
  from gsfm_jax.models.layers import conv_stride_1, xla_conv

  def temp_bytes(conv, layers: int) -> int:
    def loss(kernels, x):
      for kernel in kernels:
        x = jax.nn.relu(conv(x, kernel))
      return jnp.sum(x * x)

    kernels = [jnp.ones((3, 3, 80, 80), jnp.float32)] * layers  # wider than MATMUL_GRADIENT_MAX_NARROW
    compiled = jax.jit(jax.grad(loss)).lower(kernels, jnp.ones((2, 48, 48, 80), jnp.float32)).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  per_layer = {
    name: (temp_bytes(conv, 6) - temp_bytes(conv, 2)) / 4
    for name, conv in (('ours', conv_stride_1), ('xla', lambda x, k: xla_conv(x, k, 1)))
  }
  activation = 2 * 48 * 48 * 80 * 4
  assert per_layer['ours'] <= per_layer['xla'] + 0.5 * activation, (per_layer, activation)
