# syntax=docker/dockerfile:1
# LungCAD CPU worker image: preprocessing (`lungcad worker --queues preprocess`) and CPU-only
# inference (`lungcad worker --queues inference`, compose profile `cpu`).
# torch comes from the PyTorch CPU index (no CUDA libraries), at the version requirements.txt pins.
# Build from the repository root: docker compose build preprocess

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY deploy/requirements-worker.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY services/gateway/ services/gateway/
COPY services/preprocess/ services/preprocess/
COPY services/inference/ services/inference/
RUN pip install --no-deps . \
    && pip check \
    && python -c "import torch; assert torch.__version__.split('+')[0] == '${TORCH_VERSION}', torch.__version__"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 lungcad \
    && useradd --system --uid 10001 --gid lungcad --home-dir /var/lib/lungcad \
        --no-create-home --shell /usr/sbin/nologin lungcad \
    && install -d -o lungcad -g lungcad -m 0750 /var/lib/lungcad
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LUNGCAD_DATA_DIR=/var/lib/lungcad
WORKDIR /var/lib/lungcad
USER 10001:10001
CMD ["lungcad", "worker", "--queues", "preprocess"]
