#!/usr/bin/env bash
# Installs what Referee's demo and tests need on a fresh Debian/Ubuntu machine, then the project into .venv.
# Idempotent: skips what is already present. Sourced by scripts/test and scripts/demo.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# podman (with runc: the suite runs it with --runtime runc), slirp4netns (container networking that keeps host
# traffic on loopback) and mmdebstrap (a Debian base image when the official Python image cannot be pulled) build
# and run the container image in tests/integration/test_image.py. openssl runs the GitOps certificate commands of
# docs/deploy.md (tests/integration/test_helm_operator.py); tinyproxy is the forward proxy of the outbound-proxy tests; redis-server: the shared cache tests start
# their own (the package's service is not used).
APT_PACKAGES=(docker-registry apache2-utils prometheus gpg gpg-agent skopeo podman runc slirp4netns mmdebstrap openssl tinyproxy-bin redis-server)

need_apt=()
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need_apt+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need_apt+=(apache2-utils)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need_apt+=(prometheus)
command -v gpg >/dev/null 2>&1 || need_apt+=(gpg)
command -v gpg-agent >/dev/null 2>&1 || need_apt+=(gpg-agent)
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v tinyproxy >/dev/null 2>&1 || need_apt+=(tinyproxy-bin)
for tool in podman runc slirp4netns mmdebstrap redis-server; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${APT_PACKAGES[*]} with apt-get" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
fi

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PYTHON="$candidate"
      break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "setup: Python 3.11 or newer is required" >&2; exit 2; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PYTHON" >&2
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.referee-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Referee and its test dependencies into .venv" >&2
  log=".venv/pip-install.log"
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e '.[test]'; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: pip install failed" >&2
    exit 1
  fi
  .venv/bin/python -c 'import provider, pytest, trustme'
  touch "$stamp"
fi
# Real OPA (Go library via ctypes). Its wheel declares Python >= 3.14 but works on 3.11 (observed), so it is
# installed on its own, without dependency resolution; see docs/architecture.md.
if ! .venv/bin/python -c 'import opa_bindings' 2>/dev/null; then
  echo "setup: installing opa-golib-python-bindings (real OPA for the Rego tests)" >&2
  .venv/bin/python -m pip install -q --no-deps --ignore-requires-python opa-golib-python-bindings==0.4.4 \
    >>.venv/pip-install.log 2>&1 || { cat .venv/pip-install.log >&2; exit 1; }
fi
