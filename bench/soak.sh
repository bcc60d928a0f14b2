#!/usr/bin/env bash
# `just soak`: W2 (the async benchmark workflow) at full speed for
# SOAK_MINUTES (default 10) with `--retention 1m`, sampling the data folder's
# size and the server's RSS every 30 s. The store must level off: the size
# after the last minute at most 1.3 times the size after minute 4.
# Installs wrk (Debian) when missing. Loopback only; the load is bounded by -d.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES="${SOAK_MINUTES:-10}"
PORT=13141
source bench/lib.sh
need wrk
cargo build --release --quiet --bin hookflow

work=$(mktemp -d)
hf=
cleanup() { [ -n "$hf" ] && kill "$hf" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

RUST_LOG=warn ./target/release/hookflow serve --listen 127.0.0.1:$PORT \
    --workflows bench/workflows --data "$work/data" --retention 1m >"$work/hookflow.log" 2>&1 &
hf=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done

url="http://127.0.0.1:$PORT/api/webhook:trigger/bench-pay-async"
wrk -t2 -c64 -d"${MINUTES}m" -s bench/post.lua "$url" >"$work/wrk.out" 2>&1 &
load=$!

printf '%-8s %12s %10s\n' minute data_MB rss_MiB
samples=$((MINUTES * 2))
declare -A size
for i in $(seq 1 "$samples"); do
    sleep 30
    bytes=$(du -sb "$work/data" | cut -f1)
    rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$hf/status")
    minute=$(awk -v i="$i" 'BEGIN {printf "%.1f", i / 2}')
    size[$i]=$bytes
    printf '%-8s %12.1f %10s\n' "$minute" "$(awk -v b="$bytes" 'BEGIN {print b / 1e6}')" "$rss"
done
wait "$load" || true
grep '^RESULT' "$work/wrk.out" || true
at4=${size[8]:-0}
last=${size[$samples]:-0}
awk -v a="$at4" -v b="$last" -v m="$MINUTES" 'BEGIN {
    if (a == 0) { print "not enough samples"; exit 1 }
    r = b / a;
    printf "size after minute %d / size after minute 4 = %.2f (target <= 1.30): %s\n", m, r, (r <= 1.3 ? "met" : "NOT MET");
    exit (r <= 1.3 ? 0 : 1)
}'
