#!/usr/bin/env bash
# Runs every Concord test on this machine, installing what it needs first.
#
#   ./scripts/test-all.sh            the full suite (what CI runs)
#   CONCORD_SIM_SEEDS=0..20000 ./scripts/test-all.sh   a wider simulator sweep
#
# Steps: toolchain components and targets; formatting and lints; every unit, scenario,
# simulator and doc test, and the benchmarks in test mode (each runs once, no timing);
# the no_std core for bare metal and WebAssembly.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: components and targets"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
for target in thumbv7em-none-eabihf wasm32-unknown-unknown; do
    if ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
done

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "tests: unit, Raft scenarios, simulator seeds, checker self-tests, benchmarks in test mode"
cargo test --workspace --all-targets

step "doc tests"
cargo test --workspace --doc

step "concord-core for bare metal (thumbv7em-none-eabihf) and the browser (wasm32-unknown-unknown)"
cargo build -p concord-core --target thumbv7em-none-eabihf
cargo build -p concord-core --target wasm32-unknown-unknown

step "all tests passed"
