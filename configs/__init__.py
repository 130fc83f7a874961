"""Config-as-code (ml_collections): plain data. `--config=NAME[:ARG]` on a command line names `configs/NAME.py`
(`gsfm_jax.cli.resolve_configs`)."""
