#!/usr/bin/env bash
# `just bench-many`: W1 with 10,000 workflows loaded beside W1 with one loaded,
# in the same run. Prints each server's start-up time (spawn to /healthz
# answering; with many workflows the median of BENCH_STARTS first starts,
# default 3), W1 req/s and p99 in interleaved rounds, RSS idle and peak, and
# the ratios against the goals of issue 18 (throughput >= 0.95 x the single
# figure, RSS <= 96 MiB under load, start-up <= 0.5 s).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT="${BENCH_MANY:-10000}"
DURATION="${BENCH_DURATION:-10s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
ROUNDS="${BENCH_ROUNDS:-3}"

source bench/lib.sh
need wrk
cargo build --release --quiet --bin hookflow

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# One folder with W1 alone, one with COUNT copies of it (each its own key).
mkdir -p "$work/one" "$work/many"
cp bench/workflows/pay-sync.yaml "$work/one/"
source=$(cat bench/workflows/pay-sync.yaml)
for i in $(seq -w 1 "$COUNT"); do
    printf '%s\n' "${source//key: bench-pay-sync/key: bench-pay-sync-$i}" >"$work/many/pay-sync-$i.yaml"
done
middle=$(printf "%0${#COUNT}d" $((COUNT / 2)))
# Start-up is timed on a settled disk: the files just written, and whatever
# an earlier benchmark left to write back, would otherwise put the disk's
# writeback into the start's fsyncs (the key file). Seen: a one-workflow
# start at 0.83 s right after `just bench`, 0.02 s otherwise.
sync

rss_mib() { awk -v k="$2" '$1 == k":" {printf "%.1f", $2/1024}' "/proc/$1/status"; }

start() { # name folder port -> sets started_pid, prints the start-up seconds
    local t0 t1
    t0=$(date +%s.%N)
    RUST_LOG=warn ./target/release/hookflow serve --listen "127.0.0.1:$3" \
        --workflows "$2" --data "$work/data-$1" >"$work/$1.log" 2>&1 &
    started_pid=$!
    pids+=("$started_pid")
    for _ in $(seq 1 3000); do
        if curl -s -o /dev/null "http://127.0.0.1:$3/healthz"; then
            t1=$(date +%s.%N)
            awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}'
            return 0
        fi
        sleep 0.01
    done
    echo "server $1 did not start" >&2; cat "$work/$1.log" >&2; exit 1
}

# Start-up is the median of STARTS first starts (each on a fresh data
# folder; all but the last stopped again): one start moves by ±20 % with
# the machine's moment, as the throughput rounds do.
STARTS="${BENCH_STARTS:-3}"
starts=()
for n in $(seq 1 "$STARTS"); do
    rm -rf "$work/data-many"
    start many "$work/many" 13302 >"$work/start-$n"; starts+=("$(cat "$work/start-$n")")
    if [ "$n" -lt "$STARTS" ]; then
        kill "$started_pid"; wait "$started_pid" 2>/dev/null || true
    fi
done
many_pid=$started_pid
start one "$work/one" 13301 >"$work/one.start"; one_pid=$started_pid
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $0} END {print a[int((NR + 1) / 2)]}'; }
median "${starts[@]}" >"$work/many.start"
echo "start-up to /healthz: one workflow $(cat "$work/one.start") s, $COUNT workflows $(cat "$work/many.start") s (median of ${starts[*]})"
echo "idle RSS: one $(rss_mib "$one_pid" VmRSS) MiB, $COUNT workflows $(rss_mib "$many_pid" VmRSS) MiB"

measure() { # url
    wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s bench/post.lua "$1" >/dev/null
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/post.lua "$1" | grep '^RESULT'
}
get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2"; }

ones=(); manys=()
printf '%-6s %-8s %10s %9s\n' round case req/s p99_ms
one_round() {
    r=$(measure "http://127.0.0.1:13301/api/webhook:trigger/bench-pay-sync")
    ones+=("$(get rps "$r")")
    printf '%-6s %-8s %10s %9s\n' "$round" one "$(get rps "$r")" "$(get p99_ms "$r")"
}
many_round() {
    r=$(measure "http://127.0.0.1:13302/api/webhook:trigger/bench-pay-sync-$middle")
    manys+=("$(get rps "$r")")
    printf '%-6s %-8s %10s %9s\n' "$round" many "$(get rps "$r")" "$(get p99_ms "$r")"
}
# The order alternates from round to round, so that neither server always
# runs first (the machine's speed drifts over a run).
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then one_round; many_round; else many_round; one_round; fi
done
m1=$(median "${ones[@]}"); m2=$(median "${manys[@]}")
echo
echo "peak RSS: one $(rss_mib "$one_pid" VmHWM) MiB, $COUNT workflows $(rss_mib "$many_pid" VmHWM) MiB"
awk -v a="$m2" -v b="$m1" -v s="$(cat "$work/many.start")" -v r="$(rss_mib "$many_pid" VmHWM)" 'BEGIN {
    # Three decimals and a verdict, as in `just bench`.
    printf "many/one throughput = %.3f (target >= 0.95: %s)\n", a / b, ((a / b >= 0.95) ? "met" : "not met");
    printf "start-up with many  = %.3f s, median of first starts (target <= 0.5: %s)\n", s, ((s <= 0.5) ? "met" : "not met");
    printf "peak RSS with many  = %.1f MiB (target <= 96: %s)\n", r, ((r <= 96) ? "met" : "not met");
}'
