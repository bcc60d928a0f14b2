#!/usr/bin/env bash
# `just bench-cpu`: the server's CPU time and context switches per request,
# W1 (sync) and W2 (async, durable acknowledgements), counted by `perf stat`
# on the server process alone (user and kernel time, every thread: HTTP
# workers, run workers, the store's writer and sled's threads). Wall-clock
# req/s follows the machine and, for W2, the disk's sync latency; these two
# counts follow the work done per request. Kernel time is counted here, which
# `just bench-instructions` leaves out.
#
# OTHER=path/to/another/hookflow puts a second build beside this one, the two
# measured in turns. BENCH_ROUNDS (default 3) rounds of BENCH_DURATION (in seconds,
# written as `8s`, the default) per case and build. Installs wrk and perf
# (Debian: linux-perf) when missing.
# Loopback only; every load run is bounded by -d.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${BENCH_DURATION:-8s}"
ROUNDS="${BENCH_ROUNDS:-3}"
source bench/lib.sh
need wrk
need perf linux-perf
cargo build --release --quiet --bin hookflow

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

seconds() { sed 's/s$//' <<<"$DURATION"; }

measure() { # label binary case
    local port=13192 url out n
    RUST_LOG=warn "$2" serve --listen 127.0.0.1:$port --workflows bench/workflows \
        --data "$work/data-$RANDOM" >"$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
        sleep 0.1
    done
    url="http://127.0.0.1:$port/api/webhook:trigger/bench-pay-$3"
    wrk -t2 -c64 -d2s -s bench/post.lua "$url" >/dev/null
    perf stat -e task-clock,context-switches -p "$pid" -o "$work/stat" -- \
        sleep "$(awk -v s="$(seconds)" 'BEGIN {print s + 0.5}')" &
    local stat=$!
    out=$(wrk -t2 -c64 -d"$DURATION" -s bench/post.lua "$url" | grep '^RESULT')
    wait "$stat"
    n=$(sed -n 's/.*rps=\([0-9]*\).*/\1/p' <<<"$out")
    awk -v n="$n" -v s="$(seconds)" -v label="$1" -v c="$3" '
        /task-clock/ {gsub(",", "", $1); ms = $1}
        /context-switches/ {gsub(",", "", $1); cs = $1}
        END {printf "%-6s %-6s %9d %12.1f %10.2f\n", label, c, n, ms * 1000 / (n * s), cs / (n * s)}' "$work/stat"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

printf '%-6s %-6s %9s %12s %10s\n' build case req/s cpu_us/req cs/req
for round in $(seq 1 "$ROUNDS"); do
    for case in sync async; do
        measure this ./target/release/hookflow "$case"
        if [ -n "${OTHER:-}" ]; then measure other "$OTHER" "$case"; fi
    done
done
