#!/usr/bin/env bash
# Runs every Concord test on this machine, installing what it needs first.
#
#   ./scripts/test-all.sh            the full suite (what CI runs)
#   CONCORD_SIM_SEEDS=0..20000 ./scripts/test-all.sh   a wider simulator sweep
#
# Steps: toolchain components and targets; formatting and lints; every unit, scenario,
# simulator and doc test, and the benchmarks in test mode (each runs once, no timing);
# the no_std core for bare metal and WebAssembly; the JavaScript client (host-wasm); the
# microcontroller firmware under QEMU (installing qemu-system-arm and the thumb targets
# when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
step() { printf '\n==> %s  [%ss]\n' "$*" "$(( $(date +%s) - started ))"; }

# A clean checkout gains nothing from incremental artefacts; they double the disk used.
export CARGO_INCREMENTAL=0

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

# ----- host-wasm: Concord for JavaScript callers ----------------------------------------
# Installs what it lacks (wasm-bindgen-cli at the Cargo.lock version of wasm-bindgen, the
# package's npm dependencies: binaryen, typescript, workerd), builds the wasm, and runs the
# package's tests against a `concord dev` it starts: the Node end-to-end tests, the shared
# conformance suite from wasm in Node, the worker in workerd, and the page in headless
# Chromium (Debian's chromium and chromium-driver).
step "host-wasm: tools"
wasm_bindgen=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')" != "$wasm_bindgen" ]; then
    cargo install wasm-bindgen-cli --version "$wasm_bindgen"
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt-get update -qq && apt-get install -y -qq nodejs npm
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
(cd host-wasm/package && { test -d node_modules || npm ci --no-audit --no-fund; })

step "host-wasm: lints for wasm32, build (client and conformance builds)"
cargo clippy -p concord-wasm --target wasm32-unknown-unknown --all-targets --features conformance,replica -- -D warnings
sh host-wasm/build.sh

step "host-wasm: wasm-bindgen-test, three replicas in one module, in Node and in headless Chromium"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
cargo test -p concord-wasm --target wasm32-unknown-unknown --features replica --test replica
(cd host-wasm && WASM_BINDGEN_USE_BROWSER=1 CHROMEDRIVER=/usr/bin/chromedriver \
    cargo test -p concord-wasm --target wasm32-unknown-unknown --features replica --test replica)
unset CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER

step "host-wasm: Node end to end; conformance in Node, workerd and headless Chromium; against concord dev"
cargo build --profile test -p concord-tokio --bin concord   # the binary the tests above built
sh host-wasm/package/test/run.sh

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
    cargo clippy --release --features conformance --bin conformance -- -D warnings
    cargo build --release --features conformance --bin conformance
    for target in thumbv7m-none-eabi thumbv6m-none-eabi thumbv7em-none-eabihf; do
        cargo build --release --target "$target" --bin client
        cargo build --release --target "$target" --features mps2-an385 --bin replica
    done
    bash sizes.sh
)

step "host-embedded: client, replica and conformance firmware under qemu-system-arm through concord bridge"
# One at a time: each test runs a cluster and an emulator, which a 2-core machine runs
# at full speed only one at a time (the conformance firmware's timings need it).
cargo test -p concord-tokio --test firmware_qemu -- --ignored --test-threads=1
# The client and replica tests with the ARMv6-M (Cortex-M0) builds, which a Cortex-M3
# also runs (the conformance firmware is built for ARMv7-M only).
CONCORD_FIRMWARE_DIR="$PWD/host-embedded/firmware/target/thumbv6m-none-eabi/release" \
    cargo test -p concord-tokio --test firmware_qemu -- --ignored --test-threads=1 --skip conformance
# -----------------------------------------------------------------------------------------

step "all tests passed"
