# syntax=docker/dockerfile:1
# LungCAD gateway image: the API (`lungcad serve`), the outbox relay (`lungcad relay`) and the
# prestart migration (`lungcad migrate`). No torch, SimpleITK or worker code in it.
# Build from the repository root: docker compose build gateway

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY deploy/requirements-gateway.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY services/gateway/ services/gateway/
# pyproject looks for packages under every service folder; the worker ones stay empty here,
# so the gateway cannot import worker code even by accident.
RUN mkdir -p services/preprocess services/inference \
    && pip install --no-deps . \
    && pip check

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
# Working directory without a .env file: settings come from the environment only.
WORKDIR /var/lib/lungcad
EXPOSE 8000
USER 10001:10001
CMD ["lungcad", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-workers"]
