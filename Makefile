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

bench: $(STAMP)
	$(PY) benchmarks/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests experiments benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
