#!/usr/bin/env bash
# Real client programs against `switchyard serve`: Codex CLI over
# /v1/responses and Claude Code over /v1/messages, each completing a task
# with one tool round trip, the upstream being the OpenAI-format double.
#
#   bash tests/compat/run.sh
#
# The two clients (about 800 MB, pinned in tests/compat/package-lock.json)
# are installed once into $SWITCHYARD_COMPAT_CACHE (default
# ~/.cache/switchyard-compat) and reused while the lock file is unchanged.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

CACHE=${SWITCHYARD_COMPAT_CACHE:-$HOME/.cache/switchyard-compat}
if ! command -v npm >/dev/null 2>&1; then
  step "installing nodejs and npm"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm
fi
mkdir -p "$CACHE"
want=$(sha256sum tests/compat/package-lock.json | cut -d' ' -f1)
have=$(cat "$CACHE/.lock-sha256" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -x "$CACHE/node_modules/.bin/codex" ] || [ ! -x "$CACHE/node_modules/.bin/claude" ]; then
  step "installing the pinned clients into $CACHE"
  cp tests/compat/package.json tests/compat/package-lock.json "$CACHE/"
  (cd "$CACHE" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$CACHE/.lock-sha256"
else
  step "clients already installed in $CACHE"
fi
export SWITCHYARD_COMPAT_BIN="$CACHE/node_modules/.bin"
"$SWITCHYARD_COMPAT_BIN/codex" --version
"$SWITCHYARD_COMPAT_BIN/claude" --version

step "python venv"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/sdk/requirements.txt

step "cargo build (gateway and upstream double)"
cargo build -p switchyard -p switchyard-e2e --bins

step "real clients: Codex CLI and Claude Code"
.venv/bin/python -m pytest tests/compat -q -p no:cacheprovider
