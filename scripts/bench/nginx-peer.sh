#!/usr/bin/env bash
# nginx as a peer of `gwbench suite`: renders nginx-proxy.conf.tmpl for PORT in front of gwmock on UPSTREAM_PORT,
# in a new temp folder, and execs nginx in the foreground (one worker), so that the suite owns its PID.
#
# Usage: gwbench suite --peer 'nginx=scripts/bench/nginx-peer.sh {port} {upstream_port}'
set -euo pipefail
PORT="$1"
UPSTREAM_PORT="$2"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/nginx-peer-XXXXXX")"
mkdir -p "$DIR/nginx-proxy-temp"
python3 "$HERE/render.py" "$HERE/nginx-proxy.conf.tmpl" "$DIR/nginx.conf" "DIR=$DIR" "PORT=$PORT" "UPSTREAM_PORT=$UPSTREAM_PORT"
# master_process off: one process serves, so the PID the suite measures is the one doing the work.
exec nginx -e "$DIR/nginx.error.log" -p "$DIR" -c "$DIR/nginx.conf" -g "master_process off;"
