#!/usr/bin/env bash
# Runs every Concord test on this machine, installing what it needs first.
#
#   ./scripts/test-all.sh            the full suite (what CI runs)
#   CONCORD_SIM_SEEDS=0..20000 ./scripts/test-all.sh   a wider simulator sweep
#
# Steps: toolchain components and targets; formatting and lints; every unit, scenario,
# simulator and doc test, and the benchmarks in test mode (each runs once, no timing);
# the no_std core for bare metal and WebAssembly; the microcontroller firmware under
# QEMU (installing qemu-system-arm and the thumb targets when missing).
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

# --- host-embedded: firmware under QEMU (issue 14) -------------------------------------
# The firmware crate has its own workspace, targets and profile; its QEMU tests run a
# real cluster, the bridge, and each firmware role on an emulated Cortex-M3.
step "host-embedded: qemu-system-arm and the thumb targets"
if ! command -v qemu-system-arm >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq qemu-system-arm >/dev/null
fi
for target in thumbv6m-none-eabi thumbv7m-none-eabi thumbv7em-none-eabihf; do
    if ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
done

step "host-embedded: firmware format, lints and builds (thumbv7m for QEMU; thumbv6m and thumbv7em-eabihf)"
(
    cd host-embedded/firmware
    cargo fmt -- --check
    cargo clippy --release --bin client -- -D warnings
    cargo clippy --release --features mps2-an385 --bin replica -- -D warnings
    for target in thumbv7m-none-eabi thumbv6m-none-eabi thumbv7em-none-eabihf; do
        cargo build --release --target "$target" --bin client
        cargo build --release --target "$target" --features mps2-an385 --bin replica
    done
    bash sizes.sh
)

step "host-embedded: client and replica firmware under qemu-system-arm through concord bridge"
cargo test -p concord-tokio --test firmware_qemu -- --ignored
# The same tests with the ARMv6-M (Cortex-M0) builds, which a Cortex-M3 also runs.
CONCORD_FIRMWARE_DIR="$PWD/host-embedded/firmware/target/thumbv6m-none-eabi/release" \
    cargo test -p concord-tokio --test firmware_qemu -- --ignored
# -----------------------------------------------------------------------------------------

step "all tests passed"
