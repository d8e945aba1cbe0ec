# The front door. `make demo` and `make test` each set themselves up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GEN3D := $(VENV)/bin/gen3d
STAMP := $(VENV)/.installed-stamp
OUT ?= out

.PHONY: help setup demo test lint bench cost build push run-local image-test \
        deploy-async deploy-serverless teardown clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# torch is pinned first: 2.13.0 is a CPU wheel on the machines here; letting pip resolve
# "torch" on its own would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv with torch and the project (quick when done already)

demo: setup ## start the server, turn the sample photo into a GLB + PNG preview, stop
	$(PY) -m scripts.demo --out $(OUT)/demo

test: setup ## run every test
	$(PY) -m pytest -q

lint: setup ## ruff + hadolint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

bench: setup ## CPU benchmark suite + report (bounded, about 10 minutes)
	$(GEN3D) bench all --device cpu --out benchmarks/results
	$(GEN3D) bench report

cost: setup ## cost report: docs/cost.md + plot
	$(GEN3D) cost report --out docs

clean: ## remove the venv and outputs
	rm -rf $(VENV) $(OUT) *.egg-info
