# One command sets up and runs each thing; every target creates or reuses the virtual environment .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# 8 virtual CPU devices, so that sharding code paths run on a machine without accelerators
# (JAX_PLATFORMS=cpu: the tpu extra's libtpu is there for compile-only TPU targets, not to be opened as a backend);
# LLVM's optimisation level 0: the suite is mostly compilation, which it makes about 20 % faster; results move
# by float rounding only (the parity tolerances are met as at the default; bit-exact comparisons are between runs
# of the same settings); the benchmarks in bench/ keep the default
TEST_ENV := XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0" \
  TF_CPP_MIN_LOG_LEVEL=2 JAX_PLATFORMS=cpu

.PHONY: setup setup-tpu setup-app test lint format run demo-figures clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .   # the package itself: imports work from any folder
	touch $@

# test-only packages (requirements-test.txt): the CPU build of torch, pandas. An index that cannot be reached is
# retried once, then skipped (pip's default retries would wait about 10 s for each package)
$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install --quiet --retries 1 -r requirements-test.txt
	touch $@

# the tpu extra: libtpu (684 MB), to compile for TPU slices on this host (python -m gsfm_jax.aot); no TPU needed
$(VENV)/.installed-tpu: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[tpu]'
	touch $@

# the app extra: Gradio, for the web page (python -m gsfm_jax.app)
$(VENV)/.installed-app: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[app]'
	touch $@

# the page's browser test: Playwright from PyPI drives Debian's chromium (browser builds are not downloaded)
$(VENV)/.installed-browser: $(VENV)/.installed-app
	$(PY) -m pip install --quiet playwright==1.65.2
	command -v chromium >/dev/null || $(SUDO) apt-get install -y --no-install-recommends chromium \
	  || ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)
	touch $@

setup: $(VENV)/.installed

setup-tpu: $(VENV)/.installed-tpu

setup-app: $(VENV)/.installed-app

# the tests include one real compile for a TPU slice, so they install the tpu extra too, and the web page's test in
# a real browser, so the app extra, Playwright and chromium; the formatter and the
# linter (pyproject.toml) check first. Two test processes (pytest-xdist): compilation is single-threaded, so two
# use both cores of a small machine; the tests of the session's training run stay together in one of them
test: $(VENV)/.installed-test $(VENV)/.installed-tpu $(VENV)/.installed-browser lint
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadgroup tests

lint: $(VENV)/.installed-test
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

# rewrites the code in the project's format and fixes what the linter can
format: $(VENV)/.installed-test
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# the built-in demo: writes data/builtin if absent, trains on it (CPU: about 20 min), logs to runs/demo
run: setup
	$(PY) -m gsfm_jax.train --config=demo --workdir=runs/demo

# every figure the README states about the demo: trains it (or reuses a finished run), scores the held-out videos
demo-figures: setup
	$(PY) bench/demo_figures.py

clean:
	rm -rf $(VENV) out runs data/builtin .pytest_cache
