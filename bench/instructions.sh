#!/usr/bin/env bash
# `just bench-instructions`: user-space instructions per request, counted by
# valgrind's callgrind. Wall-clock req/s on a shared 2-core machine moves by
# ±20 % between runs; instruction counts repeat within ~1 %, so this is the
# measure to compare two builds by. Kernel time (sockets, page faults) is not
# counted. Installs valgrind and wrk (Debian) when missing. Loopback only;
# every load run is bounded by -d.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/lib.sh
need valgrind
need wrk
cargo build --release --quiet --bin hookflow

work=$(mktemp -d)
vp=
cleanup() { [ -n "$vp" ] && kill "$vp" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

count() { # case -> "case requests instructions/request"
    local case=$1 port=13191
    RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$work/$case.cg" ./target/release/hookflow serve \
        --listen 127.0.0.1:$port --workflows bench/workflows --data "$work/data-$case" \
        >"$work/$case.log" 2>&1 &
    vp=$!
    for _ in $(seq 1 300); do
        curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
        sleep 0.2
    done
    local url="http://127.0.0.1:$port/api/webhook:trigger/bench-pay-$case"
    wrk -t1 -c16 -d3s -s bench/post.lua "$url" >/dev/null
    callgrind_control -i on "$vp" >/dev/null 2>&1
    local n
    n=$(wrk -t1 -c16 -d10s -s bench/post.lua "$url" | awk '/requests in/ {print $1}')
    sleep 1
    callgrind_control -i off "$vp" >/dev/null 2>&1
    callgrind_control -d "$vp" >/dev/null 2>&1
    sleep 1
    kill "$vp"; wait "$vp" 2>/dev/null || true; vp=
    local total
    total=$(cat "$work/$case".cg.* | awk '/^totals:/ {s += $2} END {print s}')
    printf '%-6s %9s requests %9s instructions/request\n' "$case" "$n" "$((total / n))"
}

count sync
count async
