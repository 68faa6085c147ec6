#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs
# (nats-server from Debian, a Python venv with the official OpenAI SDK and
# buf), builds, then runs the Rust tests, the SDK tests and the proto lint.
#
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

if ! command -v nats-server >/dev/null 2>&1; then
  step "installing nats-server"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server
fi

step "python venv (openai SDK, pytest, buf)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/sdk/requirements.txt

step "proto: buf lint + build"
(cd "$ROOT" && .venv/bin/buf lint && .venv/bin/buf build -o /dev/null)

step "cargo build"
cargo build --workspace --all-targets

step "cargo test"
cargo test --workspace --no-fail-fast

step "OpenAI SDK compatibility tests"
.venv/bin/python -m pytest tests/sdk -q -p no:cacheprovider

step "Kubernetes deployment: Helm chart, Dockerfile (tests/deploy)"
.venv/bin/python -m pytest tests/deploy -q -p no:cacheprovider
