# Quick start: `make demo` and `make test` each create .venv when missing and install into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# SpikingJelly, the NeuroMC test oracle (tests/hwsim/test_neuromc.py), without its declared
# dependencies: they name torchvision, which would replace torch 2.13; it needs loguru only.
# Sinabs 3.1.3 pins nir<=1.0.4, for which pip would downgrade nir to 1.0.4 and nirtorch to 2.0.2
# under every test; it runs on the newer ones (tests/hwsim/test_nir_frameworks.py), so it is
# installed without its pins, plus its one other import (pbr); samna is for its chip backend only.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps spikingjelly==2.0.0 loguru 'sinabs>=3.1.3' 'pbr>=6'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/spikeforge simulate vgg11 --train

test: $(VENV)/.installed-test
	$(BIN)/pytest

clean:
	rm -rf $(VENV) build *.egg-info
