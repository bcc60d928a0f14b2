#!/usr/bin/env bash
# `just bench-pg`: W2 (the async benchmark workflow: durable acknowledgements)
# against a local PostgreSQL, beside the sled figure in the same run.
# Starts a private PostgreSQL cluster (Debian's package, installed when
# missing) in a temporary folder on a free port, as the postgres user when
# run as root; fsync and synchronous_commit stay on (an acknowledgement is
# a commit on disk). Installs wrk when missing. Loopback only; every load is
# bounded by -d; the cluster is stopped and its folder removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${BENCH_DURATION:-10s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
ROUNDS="${BENCH_ROUNDS:-3}"
PG_PORT="${BENCH_PG_PORT:-15432}"

source bench/lib.sh
need wrk
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing postgresql (apt-get install postgresql)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
cargo build --release --quiet --bin hookflow

work=$(mktemp -d)
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); chown postgres: "$work"; fi
hf=
cleanup() {
    [ -n "$hf" ] && kill "$hf" 2>/dev/null || true
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$work/pg" -m fast -t 30 stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# The database's settings (written into docs/performance.md with the figures).
PG_SETTINGS="-c listen_addresses=127.0.0.1 -c max_connections=100 -c shared_buffers=256MB \
-c synchronous_commit=on -c fsync=on -c wal_buffers=16MB -c checkpoint_timeout=15min \
-c max_wal_size=2GB"
"${as_pg[@]}" "$PG_BIN/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
mkdir -p "$work/sock" && { [ "${#as_pg[@]}" = 0 ] || chown postgres: "$work/sock"; }
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w -t 60 \
    -o "-k $work/sock -p $PG_PORT $PG_SETTINGS" start >/dev/null
"$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc 'CREATE DATABASE hookflow'
STORE="postgres://postgres@127.0.0.1:$PG_PORT/hookflow?sslmode=disable"

measure() { # name port
    local url="http://127.0.0.1:$2/api/webhook:trigger/bench-pay-async"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s bench/post.lua "$url" >/dev/null
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/post.lua "$url")
    echo "$1 $(grep '^RESULT' <<<"$out")"
}

serve() { # port store-args...
    local port=$1; shift
    RUST_LOG=warn ./target/release/hookflow serve --listen "127.0.0.1:$port" \
        --workflows bench/workflows --data "$work/data-$port" "$@" >"$work/hookflow-$port.log" 2>&1 &
    hf=$!
    wait_for "http://127.0.0.1:$port/healthz"
}

rows=()
for round in $(seq 1 "$ROUNDS"); do
    serve 13151
    rows+=("$round $(measure sled 13151)")
    kill "$hf"; wait "$hf" 2>/dev/null || true; hf=
    serve 13152 --store "$STORE"
    rows+=("$round $(measure postgres 13152)")
    kill "$hf"; wait "$hf" 2>/dev/null || true; hf=
done

get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2"; }
printf '%-6s %-9s %10s %9s %9s %8s\n' round store acks/s p50_ms p99_ms errors
for row in "${rows[@]}"; do
    read -r round name _ <<<"$row"
    printf '%-6s %-9s %10s %9s %9s %8s\n' "$round" "$name" "$(get rps "$row")" \
        "$(get p50_ms "$row")" "$(get p99_ms "$row")" "$(get errors "$row")"
done
echo
echo "goal (issue 17): postgres >= 5000 durable acks/s with p99 <= 50 ms on 2 cores"
echo "database: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), $PG_SETTINGS"
