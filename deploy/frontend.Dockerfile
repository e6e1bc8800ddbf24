# syntax=docker/dockerfile:1
# LungCAD dashboard: build the static app with Node (Vite), serve it with unprivileged nginx,
# which also proxies /v1, /healthz and /readyz to the gateway (deploy/nginx.conf).
# Until services/frontend has a package.json, its files (or its prebuilt dist/) are served as-is.
# Build from the repository root: docker compose build frontend

ARG NODE_IMAGE=node:22.12.0-bookworm-slim
ARG NGINX_IMAGE=nginxinc/nginx-unprivileged:1.28.0-alpine

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY services/frontend/ ./
RUN if [ -f package.json ]; then \
        npm ci --no-audit --no-fund && npm run build; \
    elif [ ! -d dist ]; then \
        mkdir -p /tmp/dist \
        && find . -mindepth 1 -maxdepth 1 -exec cp -R {} /tmp/dist/ \; \
        && mv /tmp/dist ./dist; \
    fi \
    && test -d dist

FROM ${NGINX_IMAGE} AS runtime
COPY deploy/nginx.conf /etc/nginx/conf.d/default.conf
COPY --from=build /src/dist /usr/share/nginx/html
EXPOSE 8080
# uid 101 is the image's unprivileged `nginx` user.
USER 101
