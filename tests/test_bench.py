"""The benchmarks' own logic: the memory search, op attribution and the profiler summary (no timing)."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench'))

from common import largest_within  # noqa: E402
from profile_ops import COLLECTIVE_PART, NO_SOURCE, Op, OpTimes, hlo_ops, kind, part, profile, transposing_ops  # noqa: E402

from gsfm_jax import sharding  # noqa: E402


@pytest.mark.parametrize(
  'cost, budget, limit, expected',
  [
    (lambda n: 10 + 3 * n, 100, 1000, 30),  # affine: the first guess is right
    (lambda n: 10 + n * n, 100, 1000, 9),  # convex: the guess overshoots, bisection corrects
    (lambda n: 10 + 200 * np.sqrt(n), 1000, 1000, 24),  # concave: the guess undershoots, galloping corrects
    (lambda n: 10 + 3 * n, 100, 20, 20),  # capped by the limit
    (lambda n: 200 + n, 100, 1000, 0),  # nothing fits
  ],
)
def test_largest_within_finds_the_last_n_under_budget(cost, budget, limit, expected):
  calls = []
  found = largest_within(lambda n: calls.append(n) or cost(n), budget, limit)
  assert found == expected
  assert cost(found) <= budget if found else cost(1) > budget
  assert len(calls) <= 16 and len(set(calls)) == len(calls)  # each size compiled at most once


def test_part_names_the_module_and_the_pass():
  forward = 'jit(step)/jvp(GSFM)/GSFM.segment/GSFM.decode/decoder/up_8_4/out_conv/conv_general_dilated'
  backward = "jit(step)/transpose(jvp(GSFM))/GSFM.encode_key/key_encoder/layer3_1/conv2['kernel']/dot_general"
  read = 'jit(scan_chunk)/while/body/cond/branch_1_fun/GSFM.segment/dot_general'
  assert part(forward, 1) == 'forward: decoder' and part(forward, 2) == 'forward: decoder/up_8_4'
  assert part(backward, 2) == 'backward: key_encoder/layer3_1'
  assert part(read, 2) == 'forward: GSFM.segment'
  assert part('jit(step)/jit(_where)/select_n', 1) == 'outside the network'
  assert part('jit(step)/jit(_where)/select_n', 2) == 'outside the network: select_n'
  assert part('', 2) == NO_SOURCE
  times = OpTimes(
    {'a': 1.0, 'b': 3.0, 'c': 0.5, 'd': 0.25},
    {
      'a': Op(forward, 'convolution'),
      'b': Op(backward, 'matmul'),
      'c': Op('jit(step)/add', 'fft'),
      'd': Op(forward, 'collective'),
    },
  )
  assert times.by_part(1) == {
    'backward: key_encoder': 3.0,
    'forward: decoder': 1.0,
    'outside the network': 0.5,
    COLLECTIVE_PART: 0.25,
  }
  assert times.by_kind() == {'matmul': 3.0, 'convolution': 1.0, 'fft': 0.5, 'collective': 0.25}


@pytest.mark.parametrize(
  'opcode, inner, target, expected',
  [
    ('fusion', {'parameter', 'transpose', 'bitcast'}, '', 'layout: transpose / copy'),
    ('copy', set(), '', 'layout: transpose / copy'),
    ('fusion', {'parameter', 'pad', 'transpose'}, '', 'data movement: pad / slice / concatenate / gather'),
    ('fusion', {'parameter', 'add', 'transpose'}, '', 'elementwise / reduction with a transpose'),
    ('fusion', {'parameter', 'multiply', 'reduce'}, '', 'elementwise / reduction'),
    ('fusion', {'parameter', 'convolution', 'add', 'transpose'}, '', 'convolution'),
    ('custom-call', set(), '__cudnn$convForward', 'convolution'),
    ('custom-call', set(), '__cublas$gemm', 'matmul'),
    ('fft', set(), '', 'fft'),
    ('all-reduce-start', set(), '', 'collective'),
  ],
)
def test_kind_names_what_an_op_does(opcode, inner, target, expected):
  assert kind(opcode, inner, target) == expected


def test_hlo_ops_reads_kinds_through_nested_fusions_and_the_sources():
  lowered = jax.jit(lambda a, b: jnp.fft.rfft2(jnp.transpose(a @ b) + 1.0).real.T).lower(
    jnp.ones((8, 16)), jnp.ones((16, 8))
  )
  text = lowered.compile().as_text()
  ops = hlo_ops([text])
  top = {o.kind for n, o in ops.items() if n in text.split('ENTRY')[1]}
  assert {'matmul', 'fft'} <= top
  assert all(o.source.startswith('jit(') for o in ops.values() if o.kind in ('matmul', 'fft'))
  compiled = lambda fn: jax.jit(fn).lower(jnp.ones((64, 32))).compile().as_text()
  assert transposing_ops(compiled(lambda a: jnp.exp(a).T * 2.0)) >= 1
  assert transposing_ops(compiled(lambda a: jnp.exp(a) * 2.0)) == 0


def test_profile_sums_the_ops_of_a_sharded_program_and_finds_its_all_reduce(tmp_path):
  mesh = sharding.make_mesh(jax.devices()[:2])
  x = jax.device_put(jnp.ones((2, 256, 256)), NamedSharding(mesh, P(sharding.DATA_AXIS)))
  step = jax.jit(lambda a: jnp.sum(jnp.tanh(a @ a), axis=0), out_shardings=sharding.replicated(mesh))
  compiled = step.lower(x).compile()
  times = profile(lambda: compiled(x), [compiled.as_text()], 2, str(tmp_path))
  assert times.by_part(1)[COLLECTIVE_PART] > 0  # the sum over the data axis
  assert times.by_kind()['collective'] == times.by_part(1)[COLLECTIVE_PART]
  assert times.by_kind()['matmul'] > 0  # the a @ a
  assert list(tmp_path.glob('**/*.xplane.pb'))  # the trace is kept for viewers
