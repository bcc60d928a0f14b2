#!/usr/bin/env bash
# `just bench-startup`: what many small workflows cost at start-up, in the
# measures that repeat on a shared machine. Copies of W1, as `just bench-many`
# makes them:
#   - user-space instructions (valgrind callgrind, every thread) of
#     `hookflow validate` and of a first `serve` start (keys generated,
#     versions stored; spawn to /healthz, then SIGTERM) over INSTR_COUNT
#     files and over one file: the difference per file is what one more
#     workflow costs;
#   - for COUNT files: start-up wall time to /healthz, the median of STARTS
#     first starts (noisy on a shared machine), then a restart; the RSS
#     right after /healthz answers.
# Loopback only; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT="${BENCH_MANY:-10000}"
STARTS="${BENCH_STARTS:-5}"
INSTR_COUNT="${BENCH_INSTR_COUNT:-1000}"
PORT="${BENCH_PORT:-13311}"
BIN="${BENCH_BIN:-./target/release/hookflow}"
[ -n "${BENCH_BIN:-}" ] || cargo build --release --quiet --bin hookflow

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

copies() { # folder count
    mkdir -p "$1"
    local source i
    source=$(cat bench/workflows/pay-sync.yaml)
    for i in $(seq -w 1 "$2"); do
        printf '%s\n' "${source//key: bench-pay-sync/key: bench-pay-sync-$i}" >"$1/pay-sync-$i.yaml"
    done
}
copies "$work/many" "$COUNT"
copies "$work/instr" "$INSTR_COUNT"
copies "$work/single" 1

callgrind() { # output command... -> runs it under callgrind
    local out=$1
    shift
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" "$@" \
        >"$work/callgrind.log" 2>&1
}
total() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }

callgrind "$work/v1.cg" "$BIN" validate "$work/single"
callgrind "$work/vn.cg" "$BIN" validate "$work/instr"
v1=$(total "$work/v1.cg"); vn=$(total "$work/vn.cg")
echo "validate: 1 file $v1, $INSTR_COUNT files $vn instructions: $(((vn - v1) / (INSTR_COUNT - 1))) per file"

serve_instructions() { # folder -> total instructions of a first start to /healthz
    rm -rf "$work/data-cg"
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/serve.cg" \
        "$BIN" serve --listen "127.0.0.1:$PORT" --workflows "$1" --data "$work/data-cg" \
        >"$work/serve-cg.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 1200); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
        sleep 0.25
    done
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    total "$work/serve.cg"
}
s1=$(serve_instructions "$work/single"); sn=$(serve_instructions "$work/instr")
echo "serve first start: 1 file $s1, $INSTR_COUNT files $sn instructions: $(((sn - s1) / (INSTR_COUNT - 1))) per file"

serve() { # data-folder -> prints "seconds rss_mib"
    local t0 t1 rss
    t0=$(date +%s.%N)
    RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$PORT" --workflows "$work/many" --data "$1" \
        >"$work/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 3000); do
        if curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz"; then
            t1=$(date +%s.%N)
            rss=$(awk '$1 == "VmRSS:" {printf "%.1f", $2/1024}' "/proc/$pid/status")
            kill -TERM "$pid"
            wait "$pid" 2>/dev/null || true
            pid=
            awk -v a="$t0" -v b="$t1" -v r="$rss" 'BEGIN {printf "%.3f %s\n", b - a, r}'
            return 0
        fi
        sleep 0.01
    done
    echo "the server did not start" >&2; cat "$work/serve.log" >&2; exit 1
}

times=()
for s in $(seq 1 "$STARTS"); do
    rm -rf "$work/data"
    read -r t rss < <(serve "$work/data")
    times+=("$t")
    echo "$COUNT workflows, first start $s: $t s to /healthz, idle RSS $rss MiB"
done
read -r t rss < <(serve "$work/data")
echo "$COUNT workflows, restart: $t s to /healthz, idle RSS $rss MiB"
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR] = $0} END {print a[int((NR + 1) / 2)]}')
echo "first start, median of $STARTS: $median s (target <= 0.5)"
