# Two commands on a fresh machine (Python 3.10+):
#   make run    set everything up, then run the default experiment
#   make test   set everything up, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is pinned and installed first, on its own: a bare `torch` requirement would pull a
# multi-GB CUDA build. An existing torch in the venv (CPU or CUDA) is kept.
TORCH_SPEC ?= torch==2.13.0
# bash with pipefail: a failing step fails even when its output is filtered for progress lines
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: setup run test bench system-packages
setup: $(VENV)/.installed

# The first set-up takes a few minutes (torch, then the other packages, then the C++ build);
# each step says what it does and pip shows its progress.
$(VENV)/.installed: setup.py csrc/* requirements.txt
	@echo "[setup 1/4] virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "[setup 2/4] torch ($(TORCH_SPEC); kept if the venv already has one)"
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install --progress-bar on "$(TORCH_SPEC)"
	@echo "[setup 3/4] the other Python packages (requirements.txt)"
	$(PIP) install --progress-bar on -r requirements.txt
	@echo "[setup 4/4] building the native kernels (C++, about 2 minutes on 2 cores)"
	$(PIP) install --no-build-isolation -v -e . 2>&1 | \
	  grep -E --line-buffered "^\[[0-9]+/[0-9]+\]|[Ee]rror|Successfully installed"
	$(PY) -c "import robustagg, torch; print('robustagg kernels on cpu:', robustagg.kernels.backend(torch.device('cpu')))"
	touch $@

system-packages:
	@bash .ci/system-packages

run: setup system-packages
	$(PY) -m experiments.train

test: setup system-packages
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pytest tests/bench --benchmark-enable -q
