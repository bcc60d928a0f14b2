#!/usr/bin/env bash
# `just bench-waiting`: 100,000 runs waiting in a `delay` (WAITING_RUNS to
# change the count), and what they cost the server: RSS idle, RSS with them
# waiting, RSS after a restart with them on disk, and the data folder.
# Installs wrk (Debian) when missing. Loopback only; every load is bounded.
set -euo pipefail
[ -n "${BENCH_DEBUG:-}" ] && set -x
cd "$(dirname "$0")/.."

RUNS="${WAITING_RUNS:-100000}"
PORT=13142
source bench/lib.sh
need wrk
cargo build --release --quiet --bin hookflow

work=$(mktemp -d)
hf=
cleanup() { [ -n "$hf" ] && kill "$hf" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/workflows"
cat >"$work/workflows/wait.yaml" <<'YAML'
title: Waits an hour
enabled: true
trigger: { type: webhook, mode: async, key: bench-waits-1h }
nodes:
  - { key: pause, type: delay, duration: 1h }
YAML
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"order":{"id":"ORD-10001","amount":99.5},"status":"SUCCESS"}'
LUA

start() {
    RUST_LOG=warn ./target/release/hookflow serve --listen 127.0.0.1:$PORT \
        --workflows "$work/workflows" --data "$work/data" --admin-token t >>"$work/hookflow.log" 2>&1 &
    hf=$!
    for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
}
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$hf/status"; }

start
sleep 1
idle=$(rss)
# Load in one-second chunks until RUNS were sent (the last chunk may add a
# few thousand more; the count reported is what was sent).
sent=0
for _ in $(seq 1 600); do
    [ "$sent" -ge "$RUNS" ] && break
    n=$(wrk -t2 -c16 -d1s -s "$work/post.lua" "http://127.0.0.1:$PORT/api/webhook:trigger/bench-waits-1h" \
        | awk '/requests in/ {print $1}')
    sent=$((sent + ${n:-0}))
done
# Until every run has reached its delay (none queued or running), at most 5 min.
api() { curl -s -H "Authorization: Bearer t" "http://127.0.0.1:$PORT/api/executions?limit=1&status=$1"; }
for _ in $(seq 1 300); do
    [ "$(api queued)$(api running)" = '{"executions":[],"next_cursor":null}{"executions":[],"next_cursor":null}' ] && break
    sleep 1
done
sleep 2
loaded=$(rss)
kill "$hf"; wait "$hf" 2>/dev/null || true
start
sleep 5
restarted=$(rss)
count=$(find "$work/data" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.1f", s / 1e6}')
echo "waiting runs:               $sent (sent; $RUNS asked)"
echo "RSS idle:                   $idle MiB"
echo "RSS with them waiting:      $loaded MiB"
echo "RSS after a restart:        $restarted MiB"
echo "data folder:                $count MB"
