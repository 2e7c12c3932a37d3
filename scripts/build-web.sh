#!/usr/bin/env bash
# Builds the browser peer into www/pkg (generated, never committed): web-peer compiled for
# wasm32, then wasm-bindgen's JavaScript bindings. scripts/setup.sh installs what it needs
# (scripts/run.sh and scripts/test.sh call both). Optional argument: the wasm32 toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain=${1:-$(bash scripts/wasm-toolchain.sh)}
cargo "+$toolchain" build --release --locked --target wasm32-unknown-unknown -p mtorrent-web-peer >&2
wasm-bindgen --target web --out-dir www/pkg \
  target/wasm32-unknown-unknown/release/mtorrent_web_peer.wasm
echo "built the browser peer into www/pkg" >&2
