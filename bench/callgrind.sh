#!/usr/bin/env bash
# Instructions per request in `switchyard serve`, counted by callgrind: the
# same binary and inputs give the same count whatever else the machine is
# doing, so a change of a few percent shows, where timings on two shared
# cores move by 15%.
#
#   bash bench/callgrind.sh [REQUESTS] [stream]
#
# Starts the upstream double and `serve` (ledger off, nothing else
# configured) under callgrind, sends 200 warm-up requests at concurrency 1
# on one kept-alive connection, zeroes the counters, sends REQUESTS
# (default 2000) more, and prints the total per request and the top
# functions by their own count. `stream` sends streamed requests instead.
# BIN_DIR=DIR measures DIR/switchyard (another build); KEEP=FILE keeps the
# callgrind output; TOP=N prints N functions. docs/benchmarks.md has results.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
mode=${2:-unary}
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
bin=${BIN_DIR:-target/release}
test -x "$bin/switchyard" -a -x target/release/upstream-double ||
  cargo build --release -p switchyard -p switchyard-e2e
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

target/release/upstream-double >"$work/double.out" &
pids+=($!)
until grep -q "listening on" "$work/double.out" 2>/dev/null; do sleep 0.1; done
upstream=$(sed -n 's/.*listening on //p' "$work/double.out")

cat >"$work/bench.yaml" <<EOF
server:
  http_addr: 127.0.0.1:0
  grpc_addr: 127.0.0.1:0
providers:
  - name: up
    kind: openai
    base_url: $upstream
ledger:
  enabled: false
EOF
SWITCHYARD_DATA_DIR="$work/data" RUST_LOG=warn,switchyard_router=info \
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
  "$bin/switchyard" serve --config "$work/bench.yaml" >"$work/serve.out" 2>&1 &
pids+=($!)
until grep -q "router listening" "$work/serve.out" 2>/dev/null; do sleep 0.2; done
addr=$(grep -o '"http_addr":"[^"]*"' "$work/serve.out" | head -1 | cut -d'"' -f4)
url="http://$addr/v1/chat/completions"
stream=false
[ "$mode" = stream ] && stream=true
printf '{"model":"up/fast","stream":%s,"messages":[{"role":"user","content":"say something short and useful"}]}' "$stream" >"$work/body.json"

# One curl, one connection, the URL repeated: every request after the
# first reuses the connection, as SDK clients do.
send() {
  local count=$1 args=()
  for ((i = 0; i < count; i++)); do args+=("$url"); done
  curl -sS -H 'content-type: application/json' --data-binary @"$work/body.json" "${args[@]}" >/dev/null
}
send 200
callgrind_control -z >/dev/null
send "$n"
callgrind_control -d >/dev/null
kill "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true
# The dump taken right after the measured requests (cg.out.1); cg.out
# holds only the shutdown.
dump="$work/cg.out.1"
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
if [ -n "${KEEP:-}" ]; then cp "$dump" "$KEEP"; echo "callgrind output kept in $KEEP"; fi
echo "requests: $n ($mode); instructions: $total; per request: $((total / n))"
# Self cost: where the instructions are spent, not who called them.
callgrind_annotate --threshold=100 "$dump" 2>/dev/null | grep -v "clone.S\|start_thread\|thread_start\|call_once{{vtable\|blocking::pool\|task::raw::poll\|__rust_begin_short" | sed -n '/file:function/,$p' | head -${TOP:-45} || true
