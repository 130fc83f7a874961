"""GSFM: the STCN memory network with LFM on the key features and a boundary-aware decoder with HFM.

Public API (all channels-last; K objects per sample, K = 1 for the single-object network):
  encode_key(frames (N, H, W, 3))                                      -> KeyFeatures
  encode_value(frame (B, H, W, 3), key_f16 (B, h, w, 1024), masks (B, H, W, K), grids) -> (B, K, h, w, 512)
  segment(query KeyFeatures (batch B), mem_keys (B, T, h, w, 64), mem_values (B, K, T, h, w, 512),
          selector (B, K) | None, top_k)                               -> Segmentation
  decode(query KeyFeatures, memory readout (B, K, h, w, 512), selector)  -> Segmentation
  __call__(frames (B, T, H, W, 3), first_masks (B, H, W, K), selector)  -> dict of (B, T-1, …), the training
                                                                          clip pass
"""

import functools
from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsfm_jax.models.aggregate import aggregate
from gsfm_jax.models.decoder import Decoder
from gsfm_jax.models.demodulation import invert_grid
from gsfm_jax.models.encoders import ARSConfig, Grids, KeyEncoder, KeyFeatures, KeyProjection, ValueEncoder
from gsfm_jax.models.frequency import SHAPES, SpectralFilter
from gsfm_jax.models.layers import Conv, Dtype
from gsfm_jax.models.memory import affinity_logits, memory_softmax, readout
from gsfm_jax.models.resampling import STAGES


class Segmentation(NamedTuple):
  """Predictions for one query frame; float32."""

  logits: jax.Array  # (B, H, W, K+1) aggregated log-odds, background first
  prob: jax.Array  # (B, H, W, K) aggregated object probabilities
  boundary: Optional[jax.Array]  # (B, H, W, K) raw boundary logits × selector (None without the branch)


def _objects_to_batch(x: jax.Array, num_objects: int) -> jax.Array:
  """(B, ...) -> (B·K, ...), each sample repeated K times in a row."""
  return jnp.repeat(x, num_objects, axis=0)


class GSFM(nn.Module):
  """The GSFM network (docs/reference.md, "Network"). Its fields are the model config's (configs/model.py
  documents each), so `build_model(config)` is `GSFM(**config)`; the defaults are GSFM.

  single_object: 4-channel value encoder (RGB + mask), stage-0 pretraining; else RGB + mask + others.
  lfm_filter / hfm_filter: 'low', 'high', 'none' (full band) or 'off' (module absent); GSFM is low / high.
  sigma: Gaussian width of both filters, in frequency bins. spectral_form: 'exact' (official) or 'half'.
  boundary_branch: the decoder's boundary branch (off: STCN decoder). dtype: compute dtype.
  width_divisor: every channel count divided by it (1 = GSFM; 4 or 8 give a narrow network of the same depth
  and data flow, for tests and the CPU demo; official weights need 1). The shapes in the docstrings are for 1.
  SFM / FFR switches (docs/sfm_ffr.md; the defaults add no parameter): ars_*: ARS before the key encoder's
  stride-2 stages `ars_stages`, undone in the decoder; msau_refine: MSAU's relation refinement (dilations
  `msau_dilations`) where a warp is undone; lfm_shape / hfm_shape: 'gaussian' (GSFM) or 'ideal' (FFR's box)
  with lfm_cutoff / hfm_cutoff in cycles per pixel.
  """

  single_object: bool = False
  lfm_filter: str = 'low'
  hfm_filter: str = 'high'
  sigma: float = 7.0
  spectral_form: str = 'exact'
  boundary_branch: bool = True
  dtype: Dtype = jnp.float32
  width_divisor: int = 1
  ars_stages: tuple[str, ...] = ()
  ars_radius: int = 5
  ars_sigma: float = 3.0
  ars_clip: tuple[float, float] = (0.1, 100.0)
  msau_refine: bool = False
  msau_dilations: tuple[int, ...] = (1, 2, 4, 8)
  lfm_shape: str = 'gaussian'
  hfm_shape: str = 'gaussian'
  lfm_cutoff: float = 0.4
  hfm_cutoff: float = 0.4

  @property
  def key_dim(self) -> int:
    """Channels of a memory key (64 in GSFM)."""
    return 64 // self.width_divisor

  @property
  def value_dim(self) -> int:
    """Channels of a memory value (512 in GSFM)."""
    return 512 // self.width_divisor

  @property
  def ars(self) -> ARSConfig:
    """Where ARS runs, and its grid's hyper-parameters."""
    return ARSConfig(tuple(self.ars_stages), self.ars_radius, self.ars_sigma, tuple(self.ars_clip))

  def setup(self):
    if self.width_divisor not in (1, 2, 4, 8, 16):
      raise ValueError(f'width_divisor must be 1, 2, 4, 8 or 16, got {self.width_divisor}')
    unknown = set(self.ars.stages) - set(STAGES)
    if unknown or len(set(self.ars.stages)) != len(self.ars.stages):
      raise ValueError(f'ars_stages {tuple(self.ars.stages)}: expected distinct stages among {STAGES}')
    if self.msau_refine and not self.ars.stages:
      raise ValueError('msau_refine refines where an ARS warp is undone: it needs ars_stages')
    for name in ('lfm_shape', 'hfm_shape'):
      if getattr(self, name) not in SHAPES:
        raise ValueError(f'{name} {getattr(self, name)!r}: expected one of {SHAPES}')
    d = self.width_divisor
    self.key_encoder = KeyEncoder(dtype=self.dtype, width_divisor=d, ars=self.ars)
    if self.lfm_filter != 'off':
      self.lfm = SpectralFilter(
        filter=self.lfm_filter,
        sigma=self.sigma,
        form=self.spectral_form,
        dtype=self.dtype,
        shape=self.lfm_shape,
        cutoff=self.lfm_cutoff,
      )
    self.key_proj = KeyProjection(features=self.key_dim, dtype=self.dtype)
    self.key_comp = Conv(self.value_dim, dtype=self.dtype)
    self.value_encoder = ValueEncoder(dtype=self.dtype, width_divisor=d)
    self.decoder = Decoder(
      hfm_filter=self.hfm_filter,
      sigma=self.sigma,
      spectral_form=self.spectral_form,
      boundary_branch=self.boundary_branch,
      dtype=self.dtype,
      width_divisor=d,
      hfm_shape=self.hfm_shape,
      hfm_cutoff=self.hfm_cutoff,
      msau_refine=tuple(self.msau_dilations) if self.msau_refine else (),
    )

  def encode_key(self, frames: jax.Array) -> KeyFeatures:
    """frames (N, H, W, 3), ImageNet-normalised -> KeyFeatures at 1/16, 1/8 and 1/4 (+ ARS grids)."""
    f16, f8, f4, grids = self.key_encoder(frames)
    if self.lfm_filter != 'off':
      f16 = self.lfm(f16)
    return KeyFeatures(self.key_proj(f16), self.key_comp(f16), f16, f8, f4, grids or None)

  def encode_value(
    self, frame: jax.Array, key_f16: jax.Array, masks: jax.Array, grids: Optional[Grids] = None
  ) -> jax.Array:
    """frame (B, H, W, 3), key_f16 (B, h, w, 1024), masks (B, H, W, K), grids: the frame's ARS grids
    (KeyFeatures.grids) -> values (B, K, h, w, 512).

    Object i is encoded from [frame, mask_i, Σ_{j≠i} mask_j] (the last channel absent when single_object).
    """
    b, height, width, k = masks.shape
    if self.single_object and k != 1:
      raise ValueError(f'the single-object network encodes one mask per sample, got {k}')
    own = jnp.moveaxis(masks, -1, 1).reshape(b * k, height, width, 1)
    inputs = own
    if not self.single_object:
      others = jnp.sum(masks, axis=-1, keepdims=True)[:, None] - jnp.moveaxis(masks, -1, 1)[..., None]
      inputs = jnp.concatenate([own, others.reshape(b * k, height, width, 1)], axis=-1)
    per_object = lambda x: _objects_to_batch(x, k)
    values = self.value_encoder(per_object(frame), inputs, per_object(key_f16), jax.tree.map(per_object, grids))
    return values.reshape(b, k, *values.shape[1:])

  def segment(
    self,
    query: KeyFeatures,
    mem_keys: jax.Array,
    mem_values: jax.Array,
    selector: Optional[jax.Array] = None,
    top_k: Optional[int] = None,
  ) -> Segmentation:
    """Reads the memory for one query frame per sample and decodes every object.

    query: KeyFeatures of the query frames (batch B); mem_keys (B, T, h, w, 64);
    mem_values (B, K, T, h, w, 512); selector (B, K) multiplies probabilities and boundary logits.
    """
    b, t, h, w, ck = mem_keys.shape
    k, cv = mem_values.shape[1], mem_values.shape[-1]
    affinity = memory_softmax(
      affinity_logits(mem_keys.reshape(b, t * h * w, ck), query.k16.reshape(b, h * w, ck), self.dtype), top_k
    )
    memory = readout(affinity, mem_values.reshape(b, k, t * h * w, cv), self.dtype)
    return self.decode(query, memory.reshape(b, k, h, w, cv), selector)

  def decode(self, query: KeyFeatures, memory: jax.Array, selector: Optional[jax.Array] = None) -> Segmentation:
    """The decoder on a memory readout: query (batch B), memory (B, K, h, w, 512) -> Segmentation."""
    b, k, h, w, cv = memory.shape
    f16_cat = jnp.concatenate(
      [memory.reshape(b * k, h, w, cv), _objects_to_batch(query.f16_thin, k).astype(memory.dtype)], axis=-1
    )
    inverses = {name: invert_grid(grid) for name, grid in (query.grids or {}).items()}  # once per frame
    repeat = lambda x: _objects_to_batch(x, k)
    mask, boundary = self.decoder(f16_cat, query.f8, query.f4, jax.tree.map(repeat, inverses))
    per_object = lambda x: jnp.moveaxis(x.reshape(b, k, *x.shape[1:]), 1, -1)  # (B·K, H, W) -> (B, H, W, K)
    prob = jax.nn.sigmoid(per_object(mask))
    if boundary is not None:
      boundary = per_object(boundary)
    if selector is not None:
      scale = selector[:, None, None, :].astype(jnp.float32)
      prob = prob * scale
      boundary = None if boundary is None else boundary * scale
    logits = aggregate(prob)
    return Segmentation(logits, jax.nn.softmax(logits, axis=-1)[..., 1:], boundary)

  def __call__(
    self, frames: jax.Array, first_masks: jax.Array, selector: Optional[jax.Array] = None
  ) -> dict[str, jax.Array]:
    """The training pass over a clip (docs/reference.md, "Training").

    frames (B, T, H, W, 3); first_masks (B, H, W, K), the ground truth of frame 0; selector (B, K).
    Frame t ≥ 1 is segmented from the memory of frames 0 … t-1; frame t's memory value is encoded from
    the network's own soft prediction (not thresholded, not detached). Returns `k16, f16, f16_thin`
    (B, T, …) of every frame, `values` (B, T-1, K, h, w, 512) of frames 0 … T-2 (the memory), and `logits`
    (B, T-1, H, W, K+1), `prob` and `boundary` (B, T-1, H, W, K; absent without the branch) of frames
    1 … T-1.
    """
    b, num_frames = frames.shape[:2]
    keys = self.encode_key(frames.reshape(b * num_frames, *frames.shape[2:]))
    keys = jax.tree.map(lambda x: x.reshape(b, num_frames, *x.shape[1:]), keys)
    at = lambda t: jax.tree.map(lambda x: x[:, t], keys)
    values = [self.encode_value(frames[:, 0], keys.f16[:, 0], first_masks, at(0).grids)]
    segmentations = []
    for t in range(1, num_frames):
      query = at(t)
      segmentations.append(self.segment(query, keys.k16[:, :t], jnp.stack(values, axis=2), selector))
      if t < num_frames - 1:
        values.append(self.encode_value(frames[:, t], keys.f16[:, t], segmentations[-1].prob, query.grids))
    stacked = lambda xs: jnp.stack(xs, axis=1)
    out = {
      'k16': keys.k16,
      'f16': keys.f16,
      'f16_thin': keys.f16_thin,
      'values': stacked(values),
      'logits': stacked([s.logits for s in segmentations]),
      'prob': stacked([s.prob for s in segmentations]),
    }
    if self.boundary_branch:
      out['boundary'] = stacked([s.boundary for s in segmentations])
    return out


def init_variables(model: GSFM, rng: jax.Array) -> dict:
  """Fresh {'params', 'batch_stats'} for `model` (shapes do not depend on the image size).

  BatchNorm statistics start as mean 0, var 1 (the identity), as in a freshly built PyTorch model.
  """
  k = 1 if model.single_object else 2
  return _jitted_init(model)(rng, jnp.zeros((1, 2, 32, 32, 3)), jnp.zeros((1, 32, 32, k)), jnp.ones((1, k)))


@functools.lru_cache(maxsize=16)
def _jitted_init(model: GSFM):
  """One jitted `model.init` per network configuration (a fresh `jax.jit` would compile again)."""
  return jax.jit(model.init)


def compute_dtype(name: str) -> jnp.dtype:
  """'float32' | 'bfloat16' | 'auto' (bfloat16 on accelerators, float32 on CPU) -> dtype."""
  if name == 'auto':
    return jnp.dtype(jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16)
  if name not in ('float32', 'bfloat16'):
    raise ValueError(f"model.dtype {name!r}: expected 'float32', 'bfloat16' or 'auto'")
  return jnp.dtype(name)


def build_model(config) -> GSFM:
  """`GSFM(**config)` for a model ConfigDict (configs/model.py), whose fields are the module's: the dtype's name
  becomes a dtype, lists (a run's config.json) become tuples. ValueError naming a field the network lacks."""
  fields = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in config.items()}
  fields['dtype'] = compute_dtype(fields.get('dtype', 'float32'))
  unknown = sorted(set(fields) - set(GSFM.__dataclass_fields__) - {'parent', 'name'})
  if unknown:
    raise ValueError(f'model.{unknown[0]}: not a field of the network (configs/model.py lists them)')
  return GSFM(**fields)
