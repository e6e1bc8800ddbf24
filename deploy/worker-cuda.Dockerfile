# syntax=docker/dockerfile:1
# LungCAD GPU inference image (`lungcad worker --queues inference`, compose profile `gpu`).
#
# The host needs an NVIDIA driver that supports CUDA_IMAGE's CUDA version and the NVIDIA
# Container Toolkit. torch is the CUDA build from the PyTorch index TORCH_CUDA (e.g. cu128) at the
# version requirements.txt pins; its wheels carry cuDNN/cuBLAS, so the base image only needs the
# CUDA user-space set-up (the `base` flavour). Keep TORCH_CUDA and CUDA_IMAGE on the same
# CUDA major.minor (tests/deploy checks it). Ubuntu ships no Python 3.11, so uv installs a
# standalone CPython build at PYTHON_VERSION.
# Build from the repository root: docker compose build inference

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9.26

FROM ${UV_IMAGE} AS uv

FROM ${CUDA_IMAGE} AS build
ARG PYTHON_VERSION=3.11.14
ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA=cu128
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /usr/local/bin/uv
RUN uv python install "${PYTHON_VERSION}" \
    && uv venv --python "${PYTHON_VERSION}" /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN uv pip install --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}" \
    "torch==${TORCH_VERSION}"
COPY deploy/requirements-worker.txt /tmp/requirements.txt
RUN uv pip install -r /tmp/requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY services/gateway/ services/gateway/
COPY services/preprocess/ services/preprocess/
COPY services/inference/ services/inference/
RUN uv pip install --no-deps . \
    && uv pip check \
    && python -c "import torch; assert torch.version.cuda, 'torch is not a CUDA build'"

FROM ${CUDA_IMAGE} AS runtime
RUN groupadd --system --gid 10001 lungcad \
    && useradd --system --uid 10001 --gid lungcad --home-dir /var/lib/lungcad \
        --no-create-home --shell /usr/sbin/nologin lungcad \
    && install -d -o lungcad -g lungcad -m 0750 /var/lib/lungcad
# The venv's interpreter is a link into /opt/python: copy both, at the same paths.
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LUNGCAD_DATA_DIR=/var/lib/lungcad \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /var/lib/lungcad
USER 10001:10001
CMD ["lungcad", "worker", "--queues", "inference", "--concurrency", "1"]
