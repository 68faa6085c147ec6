#!/usr/bin/env bash
# The benchmark, one command: release build, then `switchyard-bench`, which
# starts the upstream double, the gateway in each mode and the load itself.
#   bash bench/run.sh [switchyard-bench flags, e.g. --modes serve --step-secs 3]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nats-server >/dev/null || { apt-get update -qq && apt-get install -y -qq nats-server; }
command -v taskset >/dev/null || echo "bench: taskset missing (util-linux): processes will not be pinned" >&2
# 10,000 open streams need more descriptors than the usual 1,024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -p switchyard -p switchyard-e2e -p switchyard-bench
exec target/release/switchyard-bench "$@"
