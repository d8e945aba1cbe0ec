# Gen3D serving image: SageMaker bring-your-own-container (`docker run IMAGE serve`).
#
# One Dockerfile, three flavors; scripts/aws/platform.json holds each flavor's base images,
# CUDA version and InferenceAmiVersion, and `make build FLAVOR=...` passes them in
# (`gen3d platform build-args FLAVOR`). The defaults below are the gpu
# flavor's, so a plain `docker build .` gives the gpu image.
#   cpu    silhouette backend on debian:bookworm-slim, no torch (fits SageMaker Serverless)
#   gpu    + torch 2.13.0 (CUDA 13.0 from pip) for proxy and optimised models
#   sam3d  + SAM 3D Objects with upstream's pins (torch 2.5.1, PyPI's CUDA 12.4 build; a
#          hash-pinned lock); CUDA extensions are
#          compiled in the devel builder, only their results reach the final stage
ARG FLAVOR=gpu
ARG BASE_IMAGE=nvidia/cuda:13.0.2-base-ubuntu22.04
ARG BUILDER_IMAGE=${BASE_IMAGE}

# ---------------------------------------------------------------- builder: the venv
FROM ${BUILDER_IMAGE} AS builder
ARG FLAVOR
ARG DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# python3.11 is Debian bookworm's python and is in Ubuntu 22.04's archive under the same
# package names. Versions come from the base image's release, pinned by its tag.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3.11 python3.11-venv \
    && if [ "$FLAVOR" = sam3d ]; then \
         apt-get install -y --no-install-recommends build-essential git ninja-build python3.11-dev; \
       fi \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python3.11 -m venv /opt/venv

# Where the build downloads from, each a build arg so a mirror can stand in (docs/image.md
# lists every host): PyPI (pip reads PIP_INDEX_URL), kaolin's wheel index, GitHub for the
# git checkouts and their submodules (git's url.<mirror>.insteadOf), and flash-attn's
# prebuilt wheel on GitHub's release pages (FLASH_ATTENTION_FORCE_BUILD=TRUE compiles it
# from PyPI's sdist instead).
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG KAOLIN_FIND_LINKS=https://nvidia-kaolin.s3.us-east-2.amazonaws.com/torch-2.5.1_cu121.html
ARG GITHUB_MIRROR=https://github.com/
ARG FLASH_ATTENTION_FORCE_BUILD=FALSE

WORKDIR /build
COPY container/requirements-*.txt container/
COPY container/patches/ container/patches/
# cpu / gpu: exact pins. sam3d: a hash-pinned lock of the whole closure (its input and
# refresh command: container/requirements-sam3d.in), installed without resolving: pip's
# resolver backtracked for 20+ minutes over the unlocked set. The lock also brings the
# build tools that step 2's --no-build-isolation installs need.
RUN if [ "$FLAVOR" = sam3d ]; then \
      pip install --require-hashes --no-deps -r container/requirements-sam3d.txt; \
    else \
      pip install -r "container/requirements-${FLAVOR}.txt"; \
    fi

# sam3d only: first fail fast if a build tool is missing (flash_attn's setup.py imports
# wheel and packaging; upstream builds with hatchling), then the CUDA extensions built
# against step 1's torch, then SAM 3D Objects itself
# (its source stays in the venv: the adapter imports notebook/inference.py from it), then
# upstream's hydra patch from the repository (its patching/hydra would download a file).
ARG SAM3D_OBJECTS_COMMIT=cf066761706cd02b07e2fc6274570ec8cdafb683
ARG TORCH_CUDA_ARCH_LIST="7.5;8.0;8.6;8.9;9.0"
# the patch applies in site-packages, a path only Python knows at build time: a subshell's
# cd, not WORKDIR
# hadolint ignore=DL3003
RUN if [ "$FLAVOR" = sam3d ]; then \
      python -c "import wheel, setuptools, packaging, psutil, ninja, hatchling" \
      && if [ "$GITHUB_MIRROR" != https://github.com/ ]; then \
           git config --global url."$GITHUB_MIRROR".insteadOf https://github.com/; \
         fi \
      && FORCE_CUDA=1 MAX_JOBS=4 TORCH_CUDA_ARCH_LIST="$TORCH_CUDA_ARCH_LIST" \
        pip install --no-build-isolation --no-deps --find-links "$KAOLIN_FIND_LINKS" \
          -r container/requirements-sam3d-ext.txt \
      && git clone --quiet https://github.com/facebookresearch/sam-3d-objects.git \
           /opt/venv/src/sam-3d-objects \
      && git -C /opt/venv/src/sam-3d-objects checkout --quiet "$SAM3D_OBJECTS_COMMIT" \
      && rm -rf /opt/venv/src/sam-3d-objects/.git \
      && pip install --no-build-isolation --no-deps -e /opt/venv/src/sam-3d-objects \
      && (cd "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
          && git apply /build/container/patches/hydra-core-1.3.2-utils.patch); \
    fi

# The project itself, without dependencies: each flavor's requirements file is the
# dependency set (the cpu flavor deliberately has no torch).
# (.dockerignore lets only pyproject.toml, README.md and the package folders through)
COPY . .
RUN pip install --no-deps . \
    && python -c "import gen3d.serve.http.app, gen3d.serve.backends, gen3d.cli.main"

# ---------------------------------------------------------------- final: runtime only
FROM ${BASE_IMAGE}
ARG FLAVOR
ARG DEBIAN_FRONTEND=noninteractive
ARG CONDA_PREFIX=""
ARG GEN3D_BACKEND=silhouette

LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      org.opencontainers.image.title="gen3d" \
      org.opencontainers.image.description="Gen3D image-to-3D SageMaker serving image" \
      org.opencontainers.image.licenses="Apache-2.0"

# The interpreter the venv points at; nginx-light, the buffering front `serve` runs before
# gunicorn (gen3d.serve.process.front: slow and idle clients never hold a request thread); plus the
# GL/GLib/OpenMP libraries the sam3d stack's wheels (opencv, open3d, pyrender) load; no
# compilers, no -dev packages, no apt lists.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 nginx-light \
    && if [ "$FLAVOR" = sam3d ]; then \
         apt-get install -y --no-install-recommends libegl1 libgl1 libglib2.0-0 libgomp1; \
       fi \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /opt/ml/model

COPY --from=builder /opt/venv /opt/venv
COPY container /opt/program/container

# HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE: nothing is downloaded at serving time; the model
# artifact carries every cache. CONDA_PREFIX: SAM 3D's notebook/inference.py sets
# CUDA_HOME from it at import (empty in the cpu and gpu flavors).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    GEN3D_BACKEND=${GEN3D_BACKEND} \
    CONDA_PREFIX=${CONDA_PREFIX}

WORKDIR /opt/program
# Root, as SageMaker expects: "SageMaker AI expects all containers to run with root users
# ... users that do not have root-level access can cause permissions issues" (Custom
# Inference Code with Hosting Services, docs: your-algorithms-inference-code.html). The
# platform mounts /opt/ml/model and writes where it likes; isolation comes from the
# container and the execution role, not from the uid. (hadolint's DL3002 says the
# opposite for images in general; SageMaker's contract wins here.)
# hadolint ignore=DL3002
USER 0:0
EXPOSE 8080
ENTRYPOINT ["/opt/program/container/serve"]
CMD ["serve"]
