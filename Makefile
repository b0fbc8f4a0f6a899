# bpjax: `make experiments` (the main job) and `make test`. Each target builds .venv from
# pyproject.toml on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-oldest experiments bench bench-gpu lint docs wheel-check venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,experiments,lint]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

experiments: $(STAMP)
	$(PY) experiments/run_all.py

# The benchmark's competitors (scikit-learn from the `bench` extra; PyTorch, a bench-only
# dependency pinned to the local CPU build) are installed once, on the first `make bench`.
# BENCH_ARGS passes options through, e.g. `make bench BENCH_ARGS=--quick`.
TORCH_VERSION := 2.13.0
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)')" 2>/dev/null \
	  || $(PY) -m pip install --quiet 'torch==$(TORCH_VERSION)'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

# On a GPU machine with JAX and its CUDA plugin preinstalled and no network: the tests that
# matter there and the accelerator workloads, in at most 8 minutes, written to
# benchmarks/results/results-gpu-<date>.md. Installs nothing: the machine's Python and JAX,
# bpjax from src/. On a CPU, `make bench-gpu GPU_PYTHON=.venv/bin/python BENCH_GPU_ARGS=--cpu`
# rehearses it with small sizes (results under a temporary directory).
GPU_PYTHON ?= python3

bench-gpu:
	$(GPU_PYTHON) benchmarks/gpu.py $(BENCH_GPU_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests experiments benchmarks examples docs

# The test suite on the oldest supported versions: jax, jaxlib, optax and numpy pinned to the
# lower bounds of pyproject.toml's dependencies (">=" read as "=="), in a venv of their own.
OLDEST       := .venv-oldest
OLDEST_STAMP := $(OLDEST)/.installed

$(OLDEST_STAMP): pyproject.toml
	test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet --upgrade pip
	$(PYTHON) -c 'import re, tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; print("\n".join(re.sub(r"\s*>=\s*", "==", d) for d in deps))' > $(OLDEST)/oldest.txt
	$(OLDEST)/bin/python -m pip install --quiet -r $(OLDEST)/oldest.txt
	$(OLDEST)/bin/python -m pip install --quiet -c $(OLDEST)/oldest.txt -e '.[test,experiments]'
	touch $(OLDEST_STAMP)

test-oldest: $(OLDEST_STAMP)
	$(OLDEST)/bin/python -c "import jax, jaxlib, optax, numpy; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'optax', optax.__version__, 'numpy', numpy.__version__)"
	$(OLDEST)/bin/python -m pytest -q -n 2 --dist loadfile

# The documentation site, from the docstrings and docs/, warnings as errors.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) -m sphinx -W --keep-going -E -q -b html docs docs/_build/html
	@echo "docs/_build/html/index.html"

# pip wheel . -> a clean venv -> install the wheel (and its dependencies) -> import it.
WHEEL_VENV := .venv-wheel

wheel-check:
	rm -rf $(WHEEL_VENV) dist
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(WHEEL_VENV)/bin/python -m pip wheel --quiet --no-deps --wheel-dir dist .
	$(WHEEL_VENV)/bin/python -m pip install --quiet dist/bpjax-*.whl
	cd $(WHEEL_VENV) && bin/python -W error::DeprecationWarning ../tests/wheel_check.py

clean:
	rm -rf $(VENV) $(OLDEST) $(WHEEL_VENV) dist docs/_build docs/_generated .pytest_cache .ruff_cache .hypothesis
