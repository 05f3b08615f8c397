# Quick start: `make demo` runs the main job on the embedded sample set, `make test` runs the checks and the tests.
# The venv sees the base Python's packages, so a torch stack installed there once is reused by every clone; where the
# base Python has none, pip installs it into .venv. make never installs into the base Python.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-all lint bench-codec clean

$(STAMP): pyproject.toml setup.py rinr_data/format/_rans.c rinr_data/format/_rans_tables.h
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check $(TORCH_PINS)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

# Style and layer contracts first: they take seconds and name what is wrong.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not slow and not soak"

test-all: lint
	$(PY) -m pytest -q

bench-codec: $(STAMP)
	$(PY) tools/bench_codec.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
