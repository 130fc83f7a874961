"""Inference: the memory bank on the device, video propagation with `lax.scan`, streaming, many videos over
many devices, and the exported program's loader. The names below load the engine (and Flax) when first
used, so that `inference.loader` and `inference.schedule` run without the model code."""

__all__ = ['Propagator', 'Protocol', 'VideoResult']


def __getattr__(name: str):
  if name in __all__:
    from gsfm_jax.inference import engine

    return getattr(engine, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
