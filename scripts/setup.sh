#!/usr/bin/env bash
# Installs whatever this machine lacks to build, run and test mtorrent, and nothing else:
# Debian packages (only the missing ones) and the wasm32 Rust target.
# Needs a Debian machine with rustup; runs apt-get as root (directly, or through sudo).
# Prints the name of the Rust toolchain that builds wasm32 as its last line on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

# Debian packages the project uses: `time` and `openssl`/`coreutils` for the hashing benchmark,
# python3 for the wasm import check, pkg-config and a C compiler for -sys crates, Chromium and
# its WebDriver for the browser tests; iproute2 and nftables for the tests that make hosts out of
# network namespaces, and NSS's certutil so that a test's Chromium trusts the test's own CA.
packages=(time openssl coreutils python3 ca-certificates gcc pkg-config chromium chromium-driver
  iproute2 nftables libnss3-tools)

source scripts/apt.sh

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
else
  log "Debian packages: all present"
fi

command -v cargo >/dev/null || {
  log "cargo is missing: install Rust with rustup (https://rustup.rs) and run this again"
  exit 1
}
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" \
    || { log "adding rustup component $component"; rustup component add "$component" >&2; }
done

toolchain=$(bash scripts/wasm-toolchain.sh)
log "wasm32 toolchain: $toolchain"

# wasm-bindgen's command-line tool must be exactly the version of the library in Cargo.lock.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if [[ $(wasm-bindgen --version 2>/dev/null) != "wasm-bindgen $bindgen_version" ]]; then
  log "installing wasm-bindgen-cli $bindgen_version (a few minutes, once)"
  cargo install wasm-bindgen-cli --version "$bindgen_version" --locked >&2 \
    || cargo install wasm-bindgen-cli --version "$bindgen_version" >&2
else
  log "wasm-bindgen-cli $bindgen_version: present"
fi
echo "$toolchain"
