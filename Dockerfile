# syntax=docker/dockerfile:1
#
# Referee container image: `referee serve` as a non-root user on a slim Python base.
#
#   docker build -t referee:dev .                     # dependencies from PyPI
#   scripts/build-image --tag referee:dev             # hermetic: dependencies from wheelhouse/, no network
#
# BASE is the image both stages start from. Its default is the official Python slim image, pinned by digest
# so builds are reproducible. Both stages must use the same base, because the virtual environment built in
# the first stage links to the base's interpreter. Any image with `python` (3.11 or newer) and `python -m pip`
# works: scripts/build-image --base local makes a Debian bookworm one with mmdebstrap (docs/deploy.md).
# Refresh the digest when Python 3.11 or Debian publish fixes (docs/deploy.md, "Building the image"):
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS builder

# WHEELHOUSE=1: install only from the wheels in wheelhouse/ (pip --no-index), never from the network.
# scripts/build-image fills wheelhouse/ on the host (pip download) and sets it.
ARG WHEELHOUSE=0
# When set (scripts/build-image: the commit time), the wheel and the bytecode pip compiles are byte-for-byte
# reproducible (hash-based .pyc); with `podman build --timestamp` the whole image is.
ARG SOURCE_DATE_EPOCH

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY wheelhouse/ /wheelhouse/
COPY pyproject.toml README.md ./
COPY provider ./provider

# Every dependency ships manylinux wheels for CPython 3.11, so no compiler is needed even here
# (--only-binary makes a missing wheel fail the build instead of compiling from source).
RUN if [ "$WHEELHOUSE" = 1 ]; then set -- --no-index --find-links=/wheelhouse; else set --; fi \
 && python -m pip wheel "$@" --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/referee \
 && python -m pip --python /opt/referee/bin/python install "$@" --only-binary=:all: /wheels/referee-*.whl \
 && /opt/referee/bin/referee --version

FROM ${BASE}

LABEL org.opencontainers.image.title="referee" \
      org.opencontainers.image.description="Gatekeeper external-data provider that verifies OCI supply-chain evidence" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/referee-dev/referee"

ENV PATH=/opt/referee/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

COPY --from=builder /opt/referee /opt/referee

# 65532: the conventional "nonroot" UID/GID; numeric so Kubernetes can check runAsNonRoot.
USER 65532:65532
WORKDIR /tmp

# 8443: HTTPS provider (POST /verify, /mutate); 8080: plain HTTP /healthz, /readyz, /metrics.
EXPOSE 8443 8080

ENTRYPOINT ["referee"]
CMD ["serve", "--config", "/etc/referee/referee.yaml"]
