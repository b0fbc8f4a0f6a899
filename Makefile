# bpjax: `make experiments` (the main job) and `make test`. Each target builds .venv from
# pyproject.toml on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test experiments bench lint venv clean

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

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests experiments benchmarks examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
