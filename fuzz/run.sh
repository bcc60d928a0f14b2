#!/usr/bin/env bash
# `just fuzz`: every cargo-fuzz target for FUZZ_SECONDS (default 180) each,
# one after the other; a crash stops the run and leaves its input under
# fuzz/artifacts/<target>/. Corpora grow in fuzz/corpus/<target>/ (not
# committed). Needs nightly (rustup) and cargo-fuzz; both installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${FUZZ_SECONDS:-180}"
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "installing the nightly toolchain (rustup toolchain install nightly)"
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi
# Workflow loading starts from the example workflows.
mkdir -p fuzz/corpus/workflow_files
cp -n workflows/*.yaml fuzz/corpus/workflow_files/ 2>/dev/null || true
targets="${FUZZ_TARGETS:-$(cd fuzz && cargo +nightly fuzz list)}"
for target in $targets; do
    echo "== $target: ${SECONDS_EACH}s"
    mkdir -p "fuzz/corpus/$target"
    (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -max_len=8192 -timeout=10 -rss_limit_mb=2048 2>&1 \
        | grep -E '^#[0-9]+.*(DONE|pulse)|ERROR|panicked|SUMMARY|Done [0-9]+ runs' || true)
    if [ -n "$(ls -A "fuzz/artifacts/$target" 2>/dev/null)" ]; then
        echo "crash inputs in fuzz/artifacts/$target:"; ls "fuzz/artifacts/$target"
        exit 1
    fi
done
echo "no crash in $targets"
