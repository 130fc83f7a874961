"""Flax Linen modules of the GSFM network."""

from gsfm_jax.models.encoders import KeyFeatures
from gsfm_jax.models.gsfm import GSFM, Segmentation, build_model, init_variables

__all__ = ['GSFM', 'KeyFeatures', 'Segmentation', 'build_model', 'init_variables']
