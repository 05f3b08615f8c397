# Quick start: `make demo` runs the main job on the embedded sample set, `make test` runs the tests.
# The venv sees the base Python's packages so a torch stack installed there once is reused by every clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-all bench-codec clean base-torch

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import torch, torchvision" 2>/dev/null || $(MAKE) --no-print-directory base-torch
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# Best effort: put torch into the base Python once; if that is not allowed, pip installs it into .venv instead.
base-torch:
	-$(PYTHON) -m pip install --quiet --disable-pip-version-check $(TORCH_PINS)

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

bench-codec: $(STAMP)
	$(PY) tools/bench_codec.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
