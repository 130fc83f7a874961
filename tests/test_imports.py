"""The model, loss, conversion, train-step, checkpoint, inference (engine, many videos, predict, evaluate, J&F, the
exported program and its loader), ahead-of-time compilation and analysis code
import without TensorFlow (the GPU machine has none) and without starting a JAX backend (multi-host runs
must call jax.distributed.initialize first)."""

import subprocess
import sys

CHECK = """
import sys
from jax._src import xla_bridge
import gsfm_jax.convert, gsfm_jax.weights, gsfm_jax.losses, gsfm_jax.models, gsfm_jax.cli
import gsfm_jax.checkpoint, gsfm_jax.optim, gsfm_jax.sharding, gsfm_jax.train_step, gsfm_jax.visualize
import gsfm_jax.inference.stream, gsfm_jax.inference.media, gsfm_jax.predict, gsfm_jax.evaluate
import gsfm_jax.evaluation.davis
import gsfm_jax.analysis.aliasing, configs.ablation
import gsfm_jax.inference.parallel, gsfm_jax.inference.loader, gsfm_jax.inference.program
import gsfm_jax.aot, gsfm_jax.tpu_topologies
assert 'tensorflow' not in sys.modules, 'tensorflow was imported'
assert not xla_bridge._backends, 'a JAX backend was started at import time'
print('ok')
"""


def test_package_imports_without_tensorflow_or_a_backend():
  result = subprocess.run([sys.executable, '-c', CHECK], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-2000:]
