"""Inference: the memory bank on the device, video propagation with `lax.scan`, streaming."""
from gsfm_jax.inference.engine import Propagator, Protocol, VideoResult

__all__ = ['Propagator', 'Protocol', 'VideoResult']
