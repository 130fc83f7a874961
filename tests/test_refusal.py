"""A run whose every step is non-finite: the steps are refused and counted, nothing reaches the parameters,
and the run stops with a clear message naming its last good checkpoint."""

import os

import numpy as np
from runs import cli_args, demo_config, final_params, metrics_rows, run


def test_non_finite_steps_are_refused_and_the_run_stops(data_root, tmp_path):
  """Starting weights with a NaN make every loss non-finite: nothing reaches the parameters, the refusals
  are counted, and after 2 in a row the run stops with exit status 1, naming its last good checkpoint.
  (Same compiled step as the other runs: only the weights differ.)"""
  from gsfm_jax.models import build_model
  from gsfm_jax.weights.files import flatten, save_npz
  from gsfm_jax.weights.start import initial_variables

  config = demo_config(data_root)
  variables = initial_variables(config.init, build_model(config.model), config.seed)
  bias = np.array(variables['params']['key_comp']['bias'])
  bias[7] = np.nan
  variables['params']['key_comp']['bias'] = bias
  save_npz(variables, str(tmp_path / 'nan.npz'))
  workdir = str(tmp_path / 'run')
  result = run(
    cli_args(
      workdir, data_root, max_refused_steps=2, **{'init.kind': 'checkpoint', 'init.checkpoint': tmp_path / 'nan.npz'}
    )
  )
  output = result.stdout + result.stderr
  assert result.returncode == 1, output[-3000:]
  assert '2 steps in a row had a non-finite loss or gradient' in output
  assert f'Last good checkpoint: {os.path.join(workdir, "checkpoints")}/2.' in output
  rows = metrics_rows(workdir)
  assert all(r['refused'] == 1 for r in rows) and len(rows) >= 2
  start_params = flatten({'params': variables['params']})
  found = final_params(workdir)
  assert found.keys() == start_params.keys()
  assert all(np.array_equal(found[k], v, equal_nan=True) for k, v in start_params.items())
