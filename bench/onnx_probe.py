"""Can ONNX express the inference engine? `jax2onnx` on the exported program's chunk step and on its parts,
and onnxruntime against JAX on whatever converts. A probe, not a feature: ONNX is not shipped while this
fails (docs/performance.md, "Exported program").

  python -m venv /tmp/onnx && /tmp/onnx/bin/pip install -r requirements.txt jax2onnx onnxruntime
  /tmp/onnx/bin/python bench/onnx_probe.py               # as the network is
  /tmp/onnx/bin/python bench/onnx_probe.py --decompose   # what a port would rewrite: each 2-D FFT as 1-D
                                                          # complex FFTs, the stem's max-pool as reduce_window

The demo-width network (width divisor 4, random weights) on 64×96 frames, 2 objects, a 2-frame chunk: the
operations are those of GSFM at any size. Prints OK / FAIL per part with the converter's or the runtime's
message (jax2onnx and onnxruntime are not project requirements: they pin other orbax versions).
"""

import os
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gsfm_jax import cli  # noqa: E402
from gsfm_jax.inference import memory_bank  # noqa: E402
from gsfm_jax.inference.engine import Propagator, geometry  # noqa: E402
from gsfm_jax.inference.program import chunk_step, step_arguments  # noqa: E402
from gsfm_jax.inference.schedule import Protocol  # noqa: E402
from gsfm_jax.models import GSFM, init_variables, resnet  # noqa: E402


def decompose() -> None:
  """2-D real FFTs as 1-D complex ones, and the stem's pooling as a plain reduce_window (in this process)."""
  half = lambda x, a: jax.lax.slice_in_dim(jnp.fft.fft(x.astype(jnp.complex64), axis=a), 0, x.shape[a] // 2 + 1, axis=a)
  jnp.fft.rfft2 = lambda x, axes: jnp.fft.fft(half(x, axes[1]), axis=axes[0])
  jnp.fft.irfft2 = lambda y, s, axes: jnp.fft.irfft(jnp.fft.ifft(y, axis=axes[0]), n=s[1], axis=axes[1])
  pool = lambda x, window_shape, strides, padding: jax.lax.reduce_window(
    x, -jnp.inf, jax.lax.max, (1, *window_shape, 1), (1, *strides, 1), ((0, 0), *padding, (0, 0))
  )
  resnet.nn = types.SimpleNamespace(
    **{**{k: getattr(nn, k) for k in dir(nn) if not k.startswith('_')}, 'max_pool': pool}
  )


def parts() -> dict:
  """{name: (function of arrays -> arrays, example inputs)}: the chunk step and three of its parts."""
  model = GSFM(width_divisor=4)
  variables = init_variables(model, jax.random.PRNGKey(0))
  protocol = Protocol(capacity=4, chunk=2)
  geo, k = geometry((64, 96)), 2
  consts, carry, xs = step_arguments(Propagator(model, variables, protocol), geo, k)
  weights, treedef = jax.tree.flatten(variables)
  step = chunk_step(model, protocol.top_k, treedef)
  leaves, in_tree = jax.tree.flatten((consts, carry, xs))
  frame = jnp.zeros((1,) + geo.padded + (3,))
  keys = model.apply(variables, frame, method=GSFM.encode_key)
  full = memory_bank.MemoryBank(carry[0], carry[1], jnp.ones_like(carry[2]), carry[3], carry[4])
  return {
    'encode_key (ResNet-50 + LFM: rfft2/irfft2)': (
      lambda f: jax.tree.leaves(model.apply(variables, f, method=GSFM.encode_key)),
      [frame],
    ),
    'encode_value (ResNet-18)': (
      lambda f, m: model.apply(variables, f, keys.f16, m, None, method=GSFM.encode_value),
      [frame, jnp.zeros((1,) + geo.padded + (k,))],
    ),
    'memory read (affinity, top-k, readout)': (
      lambda keys_, query: memory_bank.read(full._replace(keys=keys_), query, 50, True),
      [carry[0], keys.k16[0]],
    ),
    'chunk step (scan, cond, all of the above; weights as constants)': (
      lambda *flat: jax.tree.leaves(step(weights, *jax.tree.unflatten(in_tree, flat))),
      leaves,
    ),
  }


def main() -> None:
  parser = cli.Parser(__doc__)
  parser.add_argument('--decompose', action='store_true', help='rewrite the 2-D FFTs and the max-pool first')
  args = parser.parse_args()
  from importlib.metadata import version

  import jax2onnx
  import onnxruntime
  from jax2onnx import to_onnx

  print(
    f'jax {jax.__version__}, jax2onnx {version("jax2onnx")}, onnxruntime {onnxruntime.__version__}'
    f'{", decomposed" if args.decompose else ""}'
  )
  del jax2onnx
  if args.decompose:
    decompose()
  for name, (fn, inputs) in parts().items():
    spec = [jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype) for a in inputs]
    start = time.perf_counter()
    try:
      proto = to_onnx(fn, spec, model_name='gsfm_part')
      print(f'OK   {name}: converted in {time.perf_counter() - start:.1f} s, {len(proto.graph.node)} nodes', flush=True)
      session = onnxruntime.InferenceSession(proto.SerializeToString())
      out = session.run(None, {i.name: np.asarray(a) for i, a in zip(session.get_inputs(), inputs)})
      ref = [np.asarray(r, np.float64) for r in jax.tree.leaves(fn(*inputs))]
      diff = max(float(np.abs(o.astype(np.float64) - r).max()) for o, r in zip(out, ref))
      print(f'     onnxruntime runs it: max |ONNX - JAX| {diff:.2e}', flush=True)
    except Exception as error:  # noqa: BLE001 - the probe reports every failure and goes on
      message = (str(error).strip().splitlines() or [''])[0]
      print(f'FAIL {name}: {type(error).__name__}: {message[:400]}', flush=True)


if __name__ == '__main__':
  main()
