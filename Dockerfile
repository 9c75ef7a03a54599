# syntax=docker/dockerfile:1
#
# Referee container image: `referee serve` as a non-root user on a slim Python base.
#
#   docker build -t referee:dev .
#
# Both stages use the same base image, pinned by digest so builds are reproducible and the virtual
# environment built in the first stage finds the same interpreter (/usr/local/bin/python3.11) in the second.
# Refresh the digest when Python 3.11 or Debian publish fixes (docs/deploy.md, "Building the image"):
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'

FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91 AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY provider ./provider

# Every dependency ships manylinux wheels for CPython 3.11, so no compiler is needed even here
# (--only-binary makes a missing wheel fail the build instead of compiling from source).
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/referee \
 && python -m pip --python /opt/referee/bin/python install --only-binary=:all: /wheels/referee-*.whl \
 && /opt/referee/bin/referee --version

FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

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
