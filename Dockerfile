# syntax=docker/dockerfile:1
# One image for every mlgrid service: `python -m services.<name>` (ENTRYPOINT + the Deployment's args),
# `mlgrid db upgrade` for the migration Job (command: ["mlgrid"]). Build: `make images`.
# It installs only mlgrid's own wheel and the versions pinned in deploy/docker/requirements.lock.

ARG PYTHON_IMAGE=python:3.11-slim

# Build stage: mlgrid's wheel and the wheels of its pinned dependencies.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY client ./client
COPY services ./services
COPY deploy/docker/requirements.lock /requirements.lock
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip wheel --wheel-dir /wheels --constraint /requirements.lock "$(ls /wheels/mlgrid-*.whl)[server,serving]"

# Final stage: no compilers, no sources, no build wheels left in a layer; runs as uid 10001.
# nginx (Debian's nginx-light) is the gateway's gRPC data plane (services/gateway/nginx.py).
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx-light \
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=deploy/docker/requirements.lock,target=/requirements.lock \
    pip install --no-index --find-links /wheels --constraint /requirements.lock \
        "$(ls /wheels/mlgrid-*.whl)[server,serving]" \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin mlgrid
USER 10001:10001
WORKDIR /tmp
# tracking 50051, artifacts 50052, registry 50053, serving 8081 (gRPC) and 8080 (HTTP),
# gateway 50051 (gRPC) and 5000 (HTTP); Prometheus /metrics on 9090 (serving: on 8080).
EXPOSE 50051 50052 50053 8080 8081 5000 9090
ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]
