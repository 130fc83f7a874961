"""Shared fixtures: the reference folder, official weights of the parity seed, and their conversion."""

import functools
import os
import sys

import numpy as np
import pytest

REFERENCE_DIR = os.environ.get(
  'GSFM_REFERENCE_DIR', os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'reference')
)
PARITY_DIR = os.path.join(REFERENCE_DIR, 'parity')


def parity_cases() -> list[str]:
  """Case files from GSFM_PARITY_CASES (comma-separated), default the shared case0.npz."""
  default = os.path.join(PARITY_DIR, 'case0.npz')
  return [p for p in os.environ.get('GSFM_PARITY_CASES', default).split(',') if p]


@functools.lru_cache(maxsize=4)
def official_state_dict(seed: int) -> dict[str, np.ndarray]:
  """The official-layout weights the reference cases were computed with (make_weights.py)."""
  if not os.path.exists(os.path.join(PARITY_DIR, 'make_weights.py')):
    pytest.fail(f'reference folder not found at {PARITY_DIR}; set GSFM_REFERENCE_DIR')
  sys.path.insert(0, PARITY_DIR)
  try:
    from make_weights import make_state_dict
  finally:
    sys.path.remove(PARITY_DIR)
  return make_state_dict(seed)


@functools.lru_cache(maxsize=4)
def converted_variables(seed: int, single_object: bool = False) -> dict:
  """`official_state_dict(seed)` through the project's converter (4-channel stem for single-object)."""
  from gsfm_jax.models import GSFM
  from gsfm_jax.weights.official import state_dict_to_variables

  state_dict = dict(official_state_dict(seed))
  if single_object:
    state_dict['value_encoder.conv1.weight'] = state_dict['value_encoder.conv1.weight'][:, :4]
  return state_dict_to_variables(state_dict, GSFM(single_object=single_object), f'make_state_dict({seed})')


NARROW = 4  # the width divisor of the plumbing tests' network (numbers compared with the official code: 1)


@functools.lru_cache(maxsize=4)
def narrow_variables(seed: int = 0, single_object: bool = False) -> dict:
  """Weights of the narrow network (`GSFM(width_divisor=NARROW)`) whose outputs depend on the input: He-normal
  convolutions (`models.scratch`), and random mask and boundary heads (which that init starts at zero), small
  enough that the probabilities are not saturated (a prediction then changes smoothly with the features)."""
  import flax.traverse_util
  import jax

  from gsfm_jax.models import GSFM, init_variables
  from gsfm_jax.models.scratch import HEADS, scratch_params
  from gsfm_jax.weights.stem import STEM

  rng = np.random.default_rng(seed)
  if single_object:  # the stage-0 value encoder's stem has no channel for the other objects
    variables = narrow_variables(seed)
    params = flax.traverse_util.flatten_dict(variables['params'])
    params[STEM[1:]] = params[STEM[1:]][:, :, :4]
    return {'params': flax.traverse_util.unflatten_dict(params), 'batch_stats': variables['batch_stats']}
  variables = jax.device_get(init_variables(GSFM(width_divisor=NARROW), jax.random.PRNGKey(seed)))
  flat = flax.traverse_util.flatten_dict(scratch_params(variables['params'], rng))
  for head in HEADS:
    kernel = flat[head + ('kernel',)]
    flat[head + ('kernel',)] = (0.3 * rng.standard_normal(kernel.shape) / np.sqrt(np.prod(kernel.shape[:3]))).astype(
      np.float32
    )
  return {'params': flax.traverse_util.unflatten_dict(flat), 'batch_stats': variables['batch_stats']}


def per_frame(out: dict) -> dict:
  """The clip forward's stacked outputs under the reference's per-frame names (a parity case's `train/…`):
  k16, f16, f16_thin, ref_values, frame{t}_values, logits_t, prob_t, boundary_t."""
  named = {k: out[k] for k in ('k16', 'f16', 'f16_thin')}
  named['ref_values'] = out['values'][:, 0]
  named.update({f'frame{t}_values': out['values'][:, t] for t in range(1, out['values'].shape[1])})
  for name in ('logits', 'prob', 'boundary'):
    if name in out:
      named.update({f'{name}_{t}': out[name][:, t - 1] for t in range(1, out[name].shape[1] + 1)})
  return named


def pytest_configure(config):
  """One persistent XLA compilation cache for the session and its child processes: the training tests
  start several processes that compile the same train step."""
  del config
  import tempfile

  os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='gsfm-jax-xla-cache-'))
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '1')  # not the many tiny programs


def pytest_collection_modifyitems(items):
  """With two test processes (pytest-xdist, `--dist loadgroup`), every test of the session's training run
  (the `reference` fixture) runs in the same process, so that run happens once."""
  for item in items:
    if 'reference' in getattr(item, 'fixturenames', ()):
      item.add_marker(pytest.mark.xdist_group('training'))


@pytest.fixture(scope='session')
def data_root(tmp_path_factory) -> str:
  """A small built-in dataset (`runs.DATASET`) for the training and video runs."""
  from runs import DATASET

  from data_pipelines import synthetic

  path = str(tmp_path_factory.mktemp('builtin'))
  synthetic.generate(path, seed=3, **DATASET)
  return path


@pytest.fixture(scope='session')
def reference(tmp_path_factory, data_root) -> tuple[str, str]:
  """An uninterrupted 4-step run (`runs.TINY`) on one process with 2 devices, a preview at step 4:
  (workdir, its console output). test_train.py and test_multihost.py compare with it."""
  from runs import cli_args, run

  workdir = str(tmp_path_factory.mktemp('reference'))
  result = run(cli_args(workdir, data_root, image_every=4))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  return workdir, result.stdout + result.stderr


@pytest.fixture(scope='session')
def weights(tmp_path_factory) -> str:
  """`narrow_variables(0)` as an exported .npz that records its network (width NARROW): the checkpoint of the
  command-line tests."""
  from gsfm_jax.models import GSFM
  from gsfm_jax.weights import record
  from gsfm_jax.weights.files import save_npz

  folder = tmp_path_factory.mktemp('weights')
  save_npz(narrow_variables(0), str(folder / 'gsfm.npz'), network=record.of(GSFM(width_divisor=NARROW)))
  return str(folder / 'gsfm.npz')


@pytest.fixture(scope='session')
def clip(data_root) -> tuple[str, str]:
  """(frame folder, first mask) of the built-in dataset's first validation video."""
  davis = os.path.join(data_root, 'DAVIS', '2017', 'trainval')
  name = open(os.path.join(davis, 'ImageSets', '2017', 'val.txt')).read().split()[0]
  return (
    os.path.join(davis, 'JPEGImages', '480p', name),
    os.path.join(davis, 'Annotations', '480p', name, '00000.png'),
  )
