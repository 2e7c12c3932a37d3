#!/usr/bin/env bash
# Runs every check mtorrent has: formatting, lints, all tests (unit, property and end-to-end,
# built once in release, with the page driven in headless Chromium), the wasm32 build of the
# shared core and the browser peer, and the browser peer's tests inside Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; current_step="$*"; }
trap 'echo "FAILED at step: ${current_step:-setup}" >&2' ERR

step "setup"
wasm_toolchain=$(bash scripts/setup.sh | tail -n 1)

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build (release)"
cargo build --release --workspace --all-targets --locked

step "wasm32 build of shared and web-peer"
cargo "+$wasm_toolchain" build --release --locked --target wasm32-unknown-unknown \
  -p mtorrent-shared -p mtorrent-web-peer
cargo "+$wasm_toolchain" clippy --locked --target wasm32-unknown-unknown \
  -p mtorrent-shared -p mtorrent-web-peer -- -D warnings
python3 scripts/wasm-imports.py target/wasm32-unknown-unknown/release/mtorrent_web_peer.wasm

step "browser peer package (www/pkg)"
bash scripts/build-web.sh "$wasm_toolchain"

step "browser tests: wasm-bindgen-test in headless Chromium"
(cd web-peer && CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver} \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo "+$wasm_toolchain" test --release --locked --target wasm32-unknown-unknown)

step "tests (release)"
cargo test --release --workspace --locked

trap - ERR
echo
echo "all checks passed"
