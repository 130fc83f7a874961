"""gsfm_jax: GSFM video object segmentation in JAX/Flax."""
