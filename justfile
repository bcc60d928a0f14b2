# hookflow tasks. Install just with `pip install rust-just` or `cargo install just`.

# Serve ./workflows on 127.0.0.1:13000 (release build).
run *ARGS:
    cargo run --release -- serve {{ARGS}}

# Every test in the workspace: unit tests, end-to-end tests, and the example workflows.
test:
    cargo test --workspace --all-targets
    cargo run --quiet -- validate workflows
    cargo run --quiet -- test workflows

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Rewrite docs/workflow.schema.json and docs/test.schema.json from the Rust types.
schema:
    cargo run --quiet -- schema > docs/workflow.schema.json
    cargo run --quiet -- schema --tests > docs/test.schema.json

# The production build: profile-guided (trained on workflows/), to target/pgo/hookflow, with
# the bench's ceiling built the same way. Three release builds and a training run (~20 min).
build-pgo:
    bash bench/pgo.sh

# Throughput and latency: sync and async hookflow vs a hand-written actix-web handler
# (BENCH_PGO=1: both as profile-guided builds).
bench:
    bash bench/bench.sh

# W2 with durable acks against a local PostgreSQL (a private cluster) beside the sled figure.
bench-pg:
    bash bench/postgres.sh

# User-space instructions per request (callgrind): the repeatable measure for comparing builds.
bench-instructions:
    bash bench/instructions.sh

# CPU time and context switches per request (perf stat on the server), W1 and W2;
# OTHER=path/to/hookflow measures a second build in turns with this one.
bench-cpu:
    bash bench/cpu.sh

# The store over time: W2 at full speed for 10 minutes with --retention 1m; the data folder must level off.
soak:
    bash bench/soak.sh

# 100,000 runs waiting in a delay: what they cost in RSS (live, and after a restart) and on disk.
bench-waiting:
    bash bench/waiting.sh

# Fuzz the parsers, signature schemes, workflow loading and templates (nightly + cargo-fuzz,
# installed when missing); FUZZ_SECONDS per target (default 180). Not run by CI.
fuzz:
    bash fuzz/run.sh

# 10,000 workflows loaded: W1 on one of them beside W1 with one loaded, start-up and RSS.
bench-many:
    bash bench/many.sh

# Start-up with many workflows: instructions per file (callgrind: validate and a first serve start),
# the median first-start time to /healthz and the idle RSS.
bench-startup:
    bash bench/startup.sh
