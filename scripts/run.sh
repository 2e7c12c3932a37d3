#!/usr/bin/env bash
# Sets up what is missing, builds mtorrent in release (and the browser peer into www/pkg) and
# runs the system: tracker 1 and tracker 2, twins of each other, each serving the web page, and
# a native peer seeding the catalog in the state directory. Prints the URL to open. Ctrl-C
# stops everything.
#
# Environment: MTORRENT_PORT_1 / MTORRENT_PORT_2 (default 7001 / 7002), MTORRENT_PEER_PORT
# (default 7003), MTORRENT_HOST, the address to listen on (default 127.0.0.1; 0.0.0.0 serves
# the whole network), MTORRENT_NAME, the host name or address others use in URLs (default
# MTORRENT_HOST, or this machine's first address when that is 0.0.0.0), MTORRENT_TLS_CERT and
# MTORRENT_TLS_KEY (PEM files of a certificate for MTORRENT_NAME: https/wss everywhere),
# MTORRENT_STATE (default ${XDG_STATE_HOME:-~/.local/state}/mtorrent).
set -euo pipefail
cd "$(dirname "$0")/.."

host=${MTORRENT_HOST:-127.0.0.1}
if [[ -n ${MTORRENT_NAME:-} ]]; then
  name=$MTORRENT_NAME
elif [[ $host == 0.0.0.0 ]]; then
  name=$(hostname -I 2>/dev/null | awk '{ print $1 }')
  name=${name:-127.0.0.1}
else
  name=$host
fi
tls=()
http=http ws=ws
if [[ -n ${MTORRENT_TLS_CERT:-} || -n ${MTORRENT_TLS_KEY:-} ]]; then
  [[ -n ${MTORRENT_TLS_CERT:-} && -n ${MTORRENT_TLS_KEY:-} ]] || {
    echo "MTORRENT_TLS_CERT and MTORRENT_TLS_KEY go together" >&2
    exit 2
  }
  tls=(--tls-cert "$MTORRENT_TLS_CERT" --tls-key "$MTORRENT_TLS_KEY")
  http=https ws=wss
fi
port1=${MTORRENT_PORT_1:-7001}
port2=${MTORRENT_PORT_2:-7002}
peer_port=${MTORRENT_PEER_PORT:-7003}
state=${MTORRENT_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/mtorrent}

wasm_toolchain=$(bash scripts/setup.sh | tail -n 1)
echo "building (release)..." >&2
cargo build --release --locked -p mtorrent-tracker -p mtorrent-native-peer >&2
bash scripts/build-web.sh "$wasm_toolchain"

mkdir -p "$state/tracker-1" "$state/tracker-2" "$state/logs"
# The twins prove themselves to each other with a secret kept in the state directory; it goes
# through the environment, not the command line, so `ps` does not show it.
if [[ ! -s $state/twin-secret ]]; then
  (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$state/twin-secret")
fi
MTORRENT_TRACKER_TWIN_SECRET=$(cat "$state/twin-secret")
export MTORRENT_TRACKER_TWIN_SECRET
pids=()
stop() {
  trap - INT TERM EXIT
  ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

start_tracker() { # number, port, twin port
  local log="$state/logs/tracker-$1.log" out="$state/logs/tracker-$1.out"
  ./target/release/mtorrent-tracker --listen "$host:$2" --twin "$ws://$name:$3/ws" "${tls[@]}" \
    --data-dir "$state/tracker-$1" --www www >"$out" 2>"$log" &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q '^listening on' "$out" 2>/dev/null && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "tracker $1 did not start; its log ($log):" >&2
  tail -n 20 "$log" >&2
  exit 1
}

start_tracker 1 "$port1" "$port2"
start_tracker 2 "$port2" "$port1"

export MTORRENT_CATALOG="$state/catalog.sqlite"
# The native peer takes MTORRENT_TLS_CERT/MTORRENT_TLS_KEY from the environment as well.
./target/release/mtorrent seed --listen "$host:$peer_port" >"$state/logs/peer.out" 2>"$state/logs/peer.log" &
pids+=($!)

cat <<MSG
mtorrent is running. Open $http://$name:$port1/ in a browser to share and download files.

  tracker 1   $ws://$name:$port1/ws   page: $http://$name:$port1/   stats: $http://$name:$port1/stats
  tracker 2   $ws://$name:$port2/ws   page: $http://$name:$port2/   stats: $http://$name:$port2/stats
  native peer listening on $host:$peer_port   seeding the catalog $state/catalog.sqlite
  state and logs in $state
Share a file:     MTORRENT_CATALOG=$state/catalog.sqlite ./target/release/mtorrent share FILE --tracker $ws://$name:$port1/ws --tracker $ws://$name:$port2/ws
                  (the running native peer takes it up and seeds it)
Download a file:  ./target/release/mtorrent get FILE.mtorrent DIRECTORY
Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}"
echo "a tracker stopped; see $state/logs" >&2
exit 1
