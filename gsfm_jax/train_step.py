"""The training state and the jitted, sharded train step (docs/reference.md §2, §3).

One step: the clip forward of every sample, the official loss, gradients (optionally accumulated over
micro-batches), and PyTorch-style Adam. A step whose loss or gradient is not finite is refused: the
parameters and optimiser state stay as they were and the refusal is counted (so do updates that would make
a parameter non-finite).
"""

from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gsfm_jax.losses import BOUNDARY_WEIGHT, gsfm_loss
from gsfm_jax.models import GSFM
from gsfm_jax.optim import adam_l2, multistep_schedule
from gsfm_jax.sharding import DATA_AXIS, batch_sharded, replicated

# the pipeline's keys that the step reads
BATCH_KEYS = ('frames', 'gt', 'sec_gt', 'cls_gt', 'selector')


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs; all leaves are arrays (an orbax / numpy pytree)."""

  step: jax.Array  # () int32, steps run (accepted or refused): the position in the data
  params: Any
  batch_stats: Any  # BatchNorm statistics: frozen, never updated (docs/reference.md §1.12)
  opt_state: Any
  refused: jax.Array  # () int32, non-finite steps refused in total
  refused_in_a_row: jax.Array  # () int32, non-finite steps refused since the last accepted one


def learning_rate(config: ml_collections.ConfigDict) -> optax.Schedule:
  """MultiStepLR of the reference, over accepted updates."""
  return multistep_schedule(config.lr, config.lr_milestones, config.lr_gamma)


def optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return adam_l2(learning_rate(config), config.weight_decay)


def create_state(variables: Mapping[str, Any], tx: optax.GradientTransformation) -> TrainState:
  """A step-0 state from {'params', 'batch_stats'} (placed arrays; the optimiser state follows them)."""
  zero = lambda: jnp.zeros((), jnp.int32)  # three buffers: the step donates each of them
  return TrainState(
    step=zero(),
    params=variables['params'],
    batch_stats=variables['batch_stats'],
    opt_state=tx.init(variables['params']),
    refused=zero(),
    refused_in_a_row=zero(),
  )


def place_state(variables: Mapping[str, Any], tx: optax.GradientTransformation, mesh: Mesh) -> TrainState:
  """`create_state` replicated on `mesh`, typed like the step's output state (so the step compiles once)."""
  return jax.jit(lambda v: create_state(v, tx), out_shardings=replicated(mesh))(variables)


def targets(batch: Mapping[str, jax.Array], single_object: bool) -> tuple[jax.Array, Any]:
  """Pipeline batch -> object masks (B, T, H, W, K) and selector (B, K), or None for the SO network."""
  if single_object:
    return batch['gt'][..., None], None
  return jnp.stack([batch['gt'], batch['sec_gt']], axis=-1), batch['selector']


def _overlap(prob: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Intersection and union pixel counts of prob > 0.5 and mask > 0.5."""
  pred, true = prob > 0.5, mask > 0.5
  return jnp.sum(pred & true).astype(jnp.float32), jnp.sum(pred | true).astype(jnp.float32)


def clip_loss(model: GSFM, boundary_weight: float = BOUNDARY_WEIGHT) -> Callable:
  """(params, batch_stats, batch, p, num_kept) -> (total loss, metrics) for a batch of clips.

  Metrics: loss_t, total_loss, p (means) and the IoU counts of the target and second object over frames
  1 … T-1 (`iou_i`, `iou_u`, `sec_iou_i`, `sec_iou_u`; sums, as the reference logs them).
  """

  def loss_fn(params, batch_stats, batch, p, num_kept):
    masks, selector = targets(batch, model.single_object)
    out = model.apply({'params': params, 'batch_stats': batch_stats}, batch['frames'], masks[:, 0], selector)
    metrics = gsfm_loss(out, masks, batch['cls_gt'], selector, p, num_kept, boundary_weight)
    counts = {'iou_i': 0.0, 'iou_u': 0.0, 'sec_iou_i': 0.0, 'sec_iou_u': 0.0}
    for t in range(1, masks.shape[1]):
      for name, k in (('iou', 0), ('sec_iou', 1))[: masks.shape[-1]]:
        i, u = _overlap(out['prob'][:, t - 1, ..., k], masks[:, t, ..., k])
        counts[f'{name}_i'] += i
        counts[f'{name}_u'] += u
    return metrics['total_loss'], {**metrics, **counts}

  return loss_fn


def _microbatches(batch: Mapping[str, jax.Array], count: int, mesh: Mesh) -> dict[str, jax.Array]:
  """(B, …) -> (count, B/count, …): micro-batch m holds samples m, m+count, … (no data moves between devices)."""

  def split(x):
    x = jnp.swapaxes(x.reshape(x.shape[0] // count, count, *x.shape[1:]), 0, 1)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(None, DATA_AXIS)))

  return {k: split(v) for k, v in batch.items()}


def _all_finite(tree: Any) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_train_step(model: GSFM, config: ml_collections.ConfigDict, mesh: Mesh) -> Callable:
  """The jitted step: (state, batch, p, num_kept) -> (state, metrics).

  batch: dict of global (B, …) arrays sharded over the mesh's data axis (`BATCH_KEYS`); p, num_kept from
  `losses.hard_mining`. The state is replicated and donated. With `config.grad_accum` = A > 1 the batch is
  run as A micro-batches of B/A in a `lax.scan` and their gradients and metrics are averaged (the loss is a
  per-sample mean, so this is the same objective).
  """
  tx, schedule = optimizer(config), learning_rate(config)
  loss_and_grad = jax.value_and_grad(clip_loss(model, config.boundary_weight), has_aux=True)
  accum = config.grad_accum

  def grad_fn(state, batch, p, num_kept):
    """-> (metrics, gradients) of one (micro-)batch."""
    (_, metrics), grads = loss_and_grad(state.params, state.batch_stats, batch, p, num_kept)
    return metrics, grads

  def gradients(state, batch, p, num_kept):
    if accum == 1:
      return grad_fn(state, batch, p, num_kept)

    def body(total, micro):
      return jax.tree.map(jnp.add, total, grad_fn(state, micro, p, num_kept)), None

    zeros = jax.tree.map(
      jnp.zeros_like, jax.eval_shape(lambda: grad_fn(state, jax.tree.map(lambda x: x[:1], batch), p, num_kept))
    )
    (metrics, grads), _ = jax.lax.scan(body, zeros, _microbatches(batch, accum, mesh))
    mean = lambda tree: jax.tree.map(lambda x: x / accum, tree)
    counts = {k: v for k, v in metrics.items() if k.endswith(('_i', '_u'))}
    return {**mean(metrics), **counts}, mean(grads)

  def step(state: TrainState, batch: Mapping[str, jax.Array], p: jax.Array, num_kept: jax.Array):
    metrics, grads = gradients(state, batch, p, num_kept)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(metrics['total_loss']) & _all_finite(grads) & _all_finite(params)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    accepted = state.step - state.refused
    refused = jnp.where(finite, 0, 1).astype(jnp.int32)
    new_state = state.replace(
      step=state.step + 1,
      params=keep(params, state.params),
      opt_state=keep(opt_state, state.opt_state),
      refused=state.refused + refused,
      refused_in_a_row=(state.refused_in_a_row + 1) * refused,
    )
    metrics.update(
      lr=schedule(accepted),
      grad_norm=optax.tree.norm(grads),
      finite=finite,
      refused_in_a_row=new_state.refused_in_a_row,
    )
    return new_state, metrics

  data, same = batch_sharded(mesh), replicated(mesh)
  return jax.jit(step, in_shardings=(same, data, same, same), out_shardings=(same, same), donate_argnums=0)
