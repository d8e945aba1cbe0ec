# The front door. `make demo` and `make test` each set themselves up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GEN3D := $(VENV)/bin/gen3d
STAMP := $(VENV)/.installed-stamp
VIEWER_JS := serve/ui/static/vendor/model-viewer.min.js
OUT ?= out

.PHONY: help setup ui-assets browser front demo test test-fast lint bench cost build push run-local image-test \
        deploy-async deploy-serverless teardown clean gpu-wheels gpu-check gpu-rehearsal

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# `make demo` installs the project alone: the default backend (silhouette) needs no torch
# and no npm (the viewer is committed). `make setup` (test, lint, bench, build) adds torch
# and every extra. torch is pinned first: 2.13.0 is a CPU wheel on the machines here;
# letting pip resolve "torch" on its own would pull a multi-GB CUDA build.
DEMO_STAMP := $(VENV)/.demo-stamp

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "gen3d needs Python >= 3.11: make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --no-compile -e .
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	# The Khronos glTF validator for the textured-GLB test (the test falls back without it)
	-command -v npm >/dev/null && npm install --silent --no-audit --no-fund \
		--prefix $(VENV)/node gltf-validator@2.0.0-dev.3.10
	touch $(STAMP) $(DEMO_STAMP)

setup: $(STAMP) ## create .venv with torch, every extra and the test tools (quick when done already)

# The try-it page's 3D viewer (@google/model-viewer, pinned by version and sha512) is
# committed in serve/ui/static/vendor/; this re-fetches it from the npm registry (docs/ui.md).
ui-assets: ## re-vendor the 3D viewer from the npm registry (needs npm; the result is committed)
	bash tools/vendor-viewer.sh $(dir $(VIEWER_JS))

# Debian's chromium + chromium-driver for the browser tests (tests/ui): installed with apt when
# missing and make runs as root; elsewhere those tests skip and say why.
browser: ## install chromium + chromium-driver (apt) for the browser tests
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make browser: installing chromium + chromium-driver with apt-get (browser tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium chromium-driver; \
	else echo "browser tests will skip: apt-get install chromium chromium-driver (as root)"; fi

# nginx, the buffering front the image runs before gunicorn (gen3d.serve.process.front): installed
# with apt when missing and make runs as root; without it the server runs gunicorn alone and
# the slow-client tests skip.
front: ## install nginx-light (apt): the server's front, as in the image
	@if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make front: installing nginx-light with apt-get (the server's front, as in the image)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends nginx-light; \
	else echo "no nginx: apt-get install nginx-light (as root); slow-client tests will skip"; fi

# The demo installs no system package: with nginx on PATH the server runs behind it (as in
# the image), without it gunicorn alone, and it says which (`make front` installs nginx).
demo: $(DEMO_STAMP) ## start the server, turn the sample photo into a GLB + PNG preview, stop (no torch, no npm)
	$(GEN3D) demo --out $(OUT)/demo

# One test process per core (pytest-xdist; each test's servers still get a free port);
# TEST_WORKERS=0 runs every test in one process, as plain `pytest` does.
TEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal
# The suite starts about 200 Python processes (servers, CLIs, benchmark children): with
# bytecode caches (gitignored, never in the image) they do not each recompile the
# project, and pytest keeps its rewritten test modules. An environment that turns the
# caches off (PYTHONDONTWRITEBYTECODE=1) made `make test-fast` 6 % slower from a clean clone.
test test-fast: export PYTHONDONTWRITEBYTECODE =

test: setup browser front ## run every test
	$(PYTEST)

test-fast: setup front ## every test but the slow ones (own servers, image builds, wheel install, compiles, bench smoke)
	$(PYTEST) -m "not slow"

lint: setup ## ruff + hadolint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

bench: setup ## benchmark suite + report: CPU here (<= 10 min); DEVICE=cuda INSTANCE_TYPE=ml.g5.xlarge on a GPU (benchmarks/README.md)
	$(GEN3D) bench all --device $(or $(DEVICE),cpu) --out benchmarks/results $(if $(INSTANCE_TYPE),--instance-type $(INSTANCE_TYPE))
	$(if $(filter cuda,$(DEVICE)),,$(GEN3D) bench latency --out benchmarks/results)
	$(GEN3D) bench report

# ---------------------------------------------------------------- the GPU check (benchmarks/README.md)
# gpu-wheels (network, beforehand): the runtime wheels an offline GPU machine lacks (manylinux,
# cp$(GPU_PYTHON)) + the project's wheel, <= 40 MiB, in .gpu-wheels. gpu-check (on that machine,
# offline): installs them with pip --no-index --no-deps --target and measures, <= 8 min.
GPU_PYTHON ?= 3.12
gpu-wheels: setup ## wheels for an offline GPU machine (<= 40 MiB, .gpu-wheels) [GPU_PYTHON=3.12]
	$(PY) -m gen3d.benchmarks.gpu_wheels --dest .gpu-wheels --python-version $(GPU_PYTHON)

gpu-check: ## on an offline GPU machine: CUDA numbers in <= 8 min into OUT (needs only python3 + torch + .gpu-wheels)
	bash benchmarks/gpu_check.sh $(OUT)

gpu-rehearsal: setup ## gpu-check --device cpu --smoke in a fresh venv, offline install (< 2 min; CI)
	bash benchmarks/gpu_rehearsal.sh

cost: setup ## cost report: docs/cost.md + plot
	$(GEN3D) cost report --out docs

# ---------------------------------------------------------------- the serving image
# docs/image.md. Flavors and base images come from scripts/aws/platform.json (gen3d platform).
FLAVOR ?= gpu
IMAGE_NAME ?= gen3d-$(FLAVOR)
GIT_SHA := $(shell git describe --always --dirty --abbrev=12 2>/dev/null || echo nogit)
IMAGE ?= $(IMAGE_NAME):$(GIT_SHA)
MODEL_DIR ?= $(CURDIR)/out/model
PORT ?= 8080
# run-local publishes the port on this address only: loopback unless told otherwise
# (RUN_HOST=0.0.0.0 opens it to the network, with GEN3D_UI off or GEN3D_UI_HOSTS set).
RUN_HOST ?= 127.0.0.1

build: $(DEMO_STAMP) ## docker build FLAVOR=gpu|cpu|sam3d, tagged with the git sha and latest
	args=$$($(GEN3D) platform build-args $(FLAVOR)) && \
	docker build $$args -t $(IMAGE) -t $(IMAGE_NAME):latest .

push: $(DEMO_STAMP) ## push the git-sha tag to ECR (repo made if missing) and print the URI [REGION= DRY_RUN=1]
	$(GEN3D) push $(IMAGE) $(if $(REGION),--region $(REGION)) $(if $(DRY_RUN),--dry-run)

run-local: ## docker run the image as SageMaker does, MODEL_DIR on /opt/ml/model, 127.0.0.1:8080
	docker run --rm $(if $(filter cpu,$(FLAVOR)),,--gpus all) -p $(RUN_HOST):$(PORT):8080 \
	  -v $(MODEL_DIR):/opt/ml/model:ro $(IMAGE) serve

image-test: setup ## no Docker needed: podman-build the cpu image, serve /ping + /invocations from it (root)
	$(PY) tools/image_test.py --out $(OUT)/image-test/report.json

clean: ## remove the venv and outputs
	rm -rf $(VENV) $(OUT) *.egg-info

# ---------------------------------------------------------------- deploy (docs/deploy.md)
# NAME=deployment IMAGE_URI=ECR image URI (gen3d push prints it) ROLE=execution role ARN
# (gen3d setup prints it) [MODEL_DATA=s3://... BACKEND= REGION= DRY_RUN=1 DEPLOY_ARGS=...]
DEPLOY_COMMON = --name $(or $(NAME),gen3d) \
	--image $(or $(IMAGE_URI),$(error set IMAGE_URI=<account>.dkr.ecr.<region>.amazonaws.com/repo:tag)) \
	--role $(or $(ROLE),$(error set ROLE=<execution role ARN from gen3d setup>)) \
	$(if $(MODEL_DATA),--model-data $(MODEL_DATA)) $(if $(BACKEND),--backend $(BACKEND)) \
	$(if $(REGION),--region $(REGION)) $(if $(DRY_RUN),--dry-run) $(DEPLOY_ARGS)

deploy-async: $(DEMO_STAMP) ## async endpoint that scales to zero (ml.g4dn.xlarge; ml.g6.2xlarge for a sam3d image) [NAME IMAGE_URI ROLE MODEL_DATA]
	$(GEN3D) deploy --mode async $(DEPLOY_COMMON)

deploy-serverless: $(DEMO_STAMP) ## serverless endpoint, cpu flavor + silhouette only [NAME IMAGE_URI ROLE]
	$(GEN3D) deploy --mode serverless $(DEPLOY_COMMON)

teardown: $(DEMO_STAMP) ## delete everything tagged gen3d:deployment=NAME [NAME REGION DRY_RUN=1]
	$(GEN3D) teardown --name $(or $(NAME),gen3d) $(if $(REGION),--region $(REGION)) $(if $(DRY_RUN),--dry-run)
