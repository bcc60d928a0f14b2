#!/usr/bin/env bash
# `just bench`: sync and async hookflow against a hand-written actix-web handler.
# Installs wrk (Debian) when missing, builds release, prints req/s, p50/p99,
# peak RSS and the ratios. Loopback only; every run is bounded by -d.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${BENCH_DURATION:-10s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk (apt-get install wrk)"
    (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
cargo build --release --quiet --bin hookflow --example ceiling

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_for() { # url
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "server at $1 did not start" >&2; exit 1
}

peak_rss_mib() { # pid
    awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"
}

measure() { # name url pid
    # A short warm-up, then the measured run.
    wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s bench/post.lua "$2" >/dev/null
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/post.lua "$2")
    local line
    line=$(grep '^RESULT' <<<"$out")
    echo "$1 $line rss_mib=$(peak_rss_mib "$3")"
}

RUST_LOG=warn ./target/release/hookflow serve --listen 127.0.0.1:13101 \
    --workflows bench/workflows --data "$work/data" >"$work/hookflow.log" 2>&1 &
pids+=($!); hf=$!
./target/release/examples/ceiling 127.0.0.1:13100 >"$work/ceiling.log" 2>&1 &
pids+=($!); ceiling=$!
wait_for http://127.0.0.1:13101/healthz
wait_for http://127.0.0.1:13100/

a=$(measure sync  http://127.0.0.1:13101/api/webhook:trigger/bench-pay-sync "$hf")
b=$(measure async http://127.0.0.1:13101/api/webhook:trigger/bench-pay-async "$hf")
c=$(measure ceiling http://127.0.0.1:13100/api/webhook:trigger/bench-pay-sync "$ceiling")

echo
printf '%-8s %10s %9s %9s %8s %9s\n' case req/s p50_ms p99_ms errors rss_MiB
for row in "$a" "$b" "$c"; do
    name=${row%% *}
    get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$row"; }
    printf '%-8s %10s %9s %9s %8s %9s\n' "$name" "$(get rps)" "$(get p50_ms)" "$(get p99_ms)" "$(get errors)" "$(get rss_mib)"
done
rps() { sed -n 's/.*rps=\([^ ]*\).*/\1/p' <<<"$1"; }
echo
awk -v a="$(rps "$a")" -v b="$(rps "$b")" -v c="$(rps "$c")" 'BEGIN {
    printf "sync/ceiling  = %.2f (target >= 0.50)\n", a / c;
    printf "async/ceiling = %.2f (target >= 0.30)\n", b / c;
}'
