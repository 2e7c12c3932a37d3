#!/usr/bin/env bash
# Installs what the swarm benchmark (bench/src/bin/swarm.rs) needs besides Rust, and nothing
# else: the Debian packages iperf3, aria2, mktorrent, nodejs, npm and time (only the missing
# ones), and the npm package bittorrent-tracker, the local tracker of the aria2c runs, into
# target/bench-tools (installed with --ignore-scripts; skipped when already there).
# Needs a Debian machine; runs apt-get as root (directly, or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'bench-deps: %s\n' "$*" >&2; }

# Each command the benchmark runs, and the Debian package that brings it. A command already on
# the PATH is enough: node and npm may come from another source (NodeSource's nodejs bundles
# npm and conflicts with Debian's npm package).
commands=(iperf3 aria2c mktorrent node npm /usr/bin/time)
packages=(iperf3 aria2 mktorrent nodejs npm time)

source scripts/apt.sh

missing=()
for i in "${!commands[@]}"; do
  command -v "${commands[$i]}" >/dev/null || missing+=("${packages[$i]}")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  # iperf3 asks whether to start a daemon; noninteractive takes the default (no).
  apt_install "${missing[@]}"
else
  log "commands: all present (${commands[*]})"
fi

tools=target/bench-tools
# The benchmark imports the package's server module alone (its client needs a native module
# that --ignore-scripts leaves unbuilt).
tracker=$tools/node_modules/bittorrent-tracker/server.js
if [[ -f $tracker ]]; then
  log "npm bittorrent-tracker: already in $tools"
else
  log "installing npm bittorrent-tracker into $tools"
  mkdir -p "$tools"
  # A package.json of its own keeps npm from walking up to another project.
  [[ -f $tools/package.json ]] \
    || printf '{ "name": "mtorrent-bench-tools", "private": true }\n' >"$tools/package.json"
  (cd "$tools" && npm install --ignore-scripts --no-audit --no-fund bittorrent-tracker >&2)
  [[ -f $tracker ]] || { log "npm install did not produce $tracker"; exit 1; }
fi
(cd "$tools" && node --input-type=module -e "import 'bittorrent-tracker/server'") \
  || { log "node cannot load bittorrent-tracker/server from $tools"; exit 1; }
log "ready: iperf3, aria2c, mktorrent, node $(node --version), $tracker"
