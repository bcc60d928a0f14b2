#!/usr/bin/env bash
# `just build-pgo`: profile-guided release builds of hookflow and of the
# bench's ceiling, written to target/pgo/hookflow and target/pgo/ceiling.
#
# Each is built instrumented (rustc's -Cprofile-generate), run on a training
# load, and built again from what that run counted (-Cprofile-use): LLVM
# then lays out and inlines the code a webhook request runs, and moves the
# rest out of its way. docs/performance.md has what it measures.
#
# hookflow is trained on the example workflows in workflows/, never on
# bench/workflows, which `just bench` measures: the sync payment callback
# (Basic auth, mostly paid, some unpaid, malformed or unauthorized), the
# async order feed, and `validate` and `test` over every example. The
# ceiling has one route and is trained on the request it is measured with.
#
# Needs wrk and curl (Debian, installed when missing) and llvm-profdata of
# rustc's own LLVM version (rustup's llvm-tools component, added when
# missing). Training is loopback only and every load is bounded by -d.
# A build whose instrumented binary did not change keeps its profile, so a
# second run with unchanged sources builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/lib.sh
need wrk
need curl

host=$(rustc -vV | sed -n 's/^host: //p')
llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    echo "adding rustup's llvm-tools component (llvm-profdata for LLVM $llvm)"
    rustup component add llvm-tools >/dev/null 2>&1 || true
fi
if [ ! -x "$profdata" ]; then
    profdata=$(command -v "llvm-profdata-$llvm" || true)
fi
if [ -z "$profdata" ] || [ ! -x "$profdata" ]; then
    echo "llvm-profdata for LLVM $llvm not found: \`rustup component add llvm-tools\`," \
        "or install llvm-profdata-$llvm" >&2
    exit 1
fi

out=$PWD/target/pgo
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# --target keeps the flags off build scripts (they would write profiles too).
build() { # target-dir rustflags cargo-args...
    local dir=$1 flags=$2
    shift 2
    RUSTFLAGS="${RUSTFLAGS:-} $flags" CARGO_TARGET_DIR="$out/$dir" \
        cargo build --release --quiet --locked --target "$host" "$@"
}

# Runs a server in the background until stopped; its pid in $server.
start() { # command...
    "$@" >"$work/server.log" 2>&1 &
    server=$!
    pids+=("$server")
}
stop() { # signal: the profile is written as the process exits
    kill "-$1" "$server"
    wait "$server" || { echo "training server exited with $?" >&2; cat "$work/server.log" >&2; exit 1; }
}

train_hookflow() { # binary -> profiles in $work/raw
    local bin=$1 port=13181
    export LLVM_PROFILE_FILE="$work/raw/hookflow-%p-%m.profraw"
    start env PAY_PASSWORD=pgo-training RUST_LOG=warn "$bin" serve \
        --listen 127.0.0.1:$port --workflows workflows --data "$work/data"
    wait_for "http://127.0.0.1:$port/healthz"
    local base="http://127.0.0.1:$port/api/webhook:trigger"
    wrk -t2 -c64 -d8s -s bench/pgo/payment.lua "$base/payment-callback-demo" >/dev/null
    wrk -t2 -c64 -d8s -s bench/pgo/orders.lua "$base/order-events-demo?source=pgo" >/dev/null
    stop TERM
    # Its warnings (secrets not set here) are expected; a failure stops the build.
    "$bin" validate workflows >"$work/validate.log" 2>&1 || { cat "$work/validate.log" >&2; exit 1; }
    "$bin" test workflows >/dev/null
    unset LLVM_PROFILE_FILE
}

train_ceiling() { # binary -> profiles in $work/raw
    local bin=$1 port=13182
    export LLVM_PROFILE_FILE="$work/raw/ceiling-%p-%m.profraw"
    start "$bin" 127.0.0.1:$port
    wait_for "http://127.0.0.1:$port/"
    wrk -t2 -c64 -d8s -s bench/post.lua \
        "http://127.0.0.1:$port/api/webhook:trigger/bench-pay-sync" >/dev/null
    stop INT
    unset LLVM_PROFILE_FILE
}

echo "pgo: the instrumented build (target/pgo/generate)"
# A fixed path: the binary, and so the stamp below, must not change from run to run
# (LLVM_PROFILE_FILE names the files each training run writes).
build generate "-Cprofile-generate=$out/generate/profiles" --bin hookflow --example ceiling
gen=$out/generate/$host/release
stamp=$(sha256sum "$gen/hookflow" "$gen/examples/ceiling" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/trained-from" 2>/dev/null)" != "$stamp" ] ||
    [ ! -s "$out/hookflow.profdata" ] || [ ! -s "$out/ceiling.profdata" ]; then
    echo "pgo: training hookflow on workflows/ and the ceiling on its route"
    train_hookflow "$gen/hookflow"
    train_ceiling "$gen/examples/ceiling"
    "$profdata" merge -o "$out/hookflow.profdata" "$work"/raw/hookflow-*.profraw
    "$profdata" merge -o "$out/ceiling.profdata" "$work"/raw/ceiling-*.profraw
    echo "$stamp" >"$out/trained-from"
fi

echo "pgo: the builds from the profiles (target/pgo/use-hookflow, target/pgo/use-ceiling)"
build use-hookflow "-Cprofile-use=$out/hookflow.profdata" --bin hookflow
build use-ceiling "-Cprofile-use=$out/ceiling.profdata" --example ceiling
cp "$out/use-hookflow/$host/release/hookflow" "$out/hookflow"
cp "$out/use-ceiling/$host/release/examples/ceiling" "$out/ceiling"
echo "pgo: target/pgo/hookflow and target/pgo/ceiling"
