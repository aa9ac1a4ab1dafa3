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

.PHONY: setup run test bench system-packages
setup: $(VENV)/.installed

$(VENV)/.installed: setup.py csrc/* requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-build-isolation -e .
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
