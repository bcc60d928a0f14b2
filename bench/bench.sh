#!/usr/bin/env bash
# `just bench`: sync and async hookflow against a hand-written actix-web handler.
# Installs wrk (Debian) when missing, builds release, prints req/s, p50/p99,
# peak RSS and the ratios. Loopback only; every run is bounded by -d.
#
# The three cases are measured in ROUNDS interleaved rounds (sync, async,
# ceiling, sync, ...) and each case's median round is reported: on a shared
# 2-core machine throughput drifts by 10-20 % within a minute, and one
# sequential pass per case turns that drift into the ratio. Every round is
# printed too. Each measured run is the issue's (issue 18): wrk -t2 -c64 for
# 15 s after a 5 s warm-up.
#
# Both servers are plain release builds (the same profile). BENCH_PGO=1
# measures the profile-guided builds of bench/pgo.sh (`just build-pgo`)
# instead: hookflow trained on workflows/, not on the bench's workflows;
# the ceiling on its one route.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${BENCH_DURATION:-15s}"
WARMUP="${BENCH_WARMUP:-5s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
ROUNDS="${BENCH_ROUNDS:-3}"

source bench/lib.sh
need wrk
if [ "${BENCH_PGO:-0}" = 1 ]; then
    bash bench/pgo.sh
    hookflow=./target/pgo/hookflow ceiling_bin=./target/pgo/ceiling
    echo "builds: profile-guided, both (bench/pgo.sh)"
else
    cargo build --release --quiet --bin hookflow --example ceiling
    hookflow=./target/release/hookflow ceiling_bin=./target/release/examples/ceiling
    echo "builds: plain release, both (BENCH_PGO=1 for the profile-guided builds)"
fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

peak_rss_mib() { # pid
    awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"
}

measure() { # name url pid
    # A warm-up, then the measured run.
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s bench/post.lua "$2" >/dev/null
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/post.lua "$2")
    local line
    line=$(grep '^RESULT' <<<"$out")
    echo "$1 $line rss_mib=$(peak_rss_mib "$3")"
}

RUST_LOG=warn "$hookflow" serve --listen 127.0.0.1:13101 \
    --workflows bench/workflows --data "$work/data" >"$work/hookflow.log" 2>&1 &
pids+=($!); hf=$!
"$ceiling_bin" 127.0.0.1:13100 >"$work/ceiling.log" 2>&1 &
pids+=($!); ceiling=$!
wait_for http://127.0.0.1:13101/healthz
wait_for http://127.0.0.1:13100/

rows=()
for round in $(seq 1 "$ROUNDS"); do
    for case in sync async ceiling; do
        case $case in
            sync) row=$(measure sync http://127.0.0.1:13101/api/webhook:trigger/bench-pay-sync "$hf") ;;
            async) row=$(measure async http://127.0.0.1:13101/api/webhook:trigger/bench-pay-async "$hf") ;;
            ceiling) row=$(measure ceiling http://127.0.0.1:13100/api/webhook:trigger/bench-pay-sync "$ceiling") ;;
        esac
        rows+=("$round $row")
    done
done

get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2"; }
table() { # rows...
    printf '%-6s %-8s %10s %9s %9s %8s %9s\n' round case req/s p50_ms p99_ms errors rss_MiB
    for row in "$@"; do
        read -r round name _ <<<"$row"
        printf '%-6s %-8s %10s %9s %9s %8s %9s\n' "$round" "$name" "$(get rps "$row")" \
            "$(get p50_ms "$row")" "$(get p99_ms "$row")" "$(get errors "$row")" "$(get rss_mib "$row")"
    done
}
# The round whose req/s is the median of a case's rounds.
median_row() { # case
    for row in "${rows[@]}"; do
        read -r _ name _ <<<"$row"
        if [ "$name" = "$1" ]; then echo "$(get rps "$row") $row"; fi
    done | sort -n | awk '{a[NR] = $0} END {print a[int((NR + 1) / 2)]}' | cut -d' ' -f2-
}

echo
echo "every round:"
table "${rows[@]}"
a=$(median_row sync); b=$(median_row async); c=$(median_row ceiling)
echo
echo "median round of each case (peak RSS is the process's, over all rounds):"
table "$a" "$b" "$c"
echo
echo "per round: $(for r in $(seq 1 "$ROUNDS"); do
    s=""
    for row in "${rows[@]}"; do
        read -r round name _ <<<"$row"
        if [ "$round" = "$r" ]; then s="$s $name=$(get rps "$row")"; fi
    done
    awk -v s="$s" 'BEGIN { n = split(s, kv, " "); for (i = 1; i <= n; i++) { split(kv[i], p, "="); v[p[1]] = p[2] }
        printf "%.2f/%.2f ", v["sync"] / v["ceiling"], v["async"] / v["ceiling"] }'
done)(sync/async ratios of each round)"
# A round with errors (a 503 while the store is overloaded, a reset) is
# not comparable: errors are answered fast and count as requests.
bad=0
for row in "${rows[@]}"; do [ "$(get errors "$row")" = 0 ] || bad=$((bad + 1)); done
[ "$bad" = 0 ] || echo "warning: $bad round(s) had errors; their req/s are not comparable"
awk -v a="$(get rps "$a")" -v b="$(get rps "$b")" -v c="$(get rps "$c")" 'BEGIN {
    # Three decimals and a verdict: 0.597 printed as 0.60 read as met.
    printf "sync/ceiling  = %.3f (target >= 0.60, issue 18: %s)\n", a / c, ((a / c >= 0.6) ? "met" : "not met");
    printf "async/ceiling = %.3f (target >= 0.40, issue 18: %s)\n", b / c, ((b / c >= 0.4) ? "met" : "not met");
}'
