#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs
# (nats-server and redis-server from Debian, a Python venv with the official
# OpenAI and Anthropic SDKs, buf and the Helm SDK), builds, then runs the
# Rust tests, the SDK tests, the deployment tests and the proto lint.
#
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
missing=""
command -v nats-server >/dev/null 2>&1 || missing="$missing nats-server"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
if [ -n "$missing" ]; then
  step "installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

# The shared-cache tests use Redis at 127.0.0.1:6379 (keys under a per-test
# prefix, deleted afterwards). Machines of this kind run one; on a bare
# machine start a throwaway one that keeps nothing on disk.
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  step "starting redis-server on 127.0.0.1:6379"
  redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes
fi

# The ledger's PostgreSQL tests make a fresh database on the server at
# SWITCHYARD_TEST_POSTGRES (default 127.0.0.1:5432, user postgres) and drop
# it after; without a server they are skipped, and this says so up front.
PG_HOST=127.0.0.1; PG_PORT=5432
if (exec 3<>/dev/tcp/$PG_HOST/$PG_PORT) 2>/dev/null; then
  step "PostgreSQL at $PG_HOST:$PG_PORT: the ledger's PostgreSQL tests run"
else
  step "SKIPPED: no PostgreSQL at $PG_HOST:$PG_PORT: the ledger's PostgreSQL tests (crates/ledger/tests/postgres.rs, tests/tests/ledger_writer.rs) will skip"
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
