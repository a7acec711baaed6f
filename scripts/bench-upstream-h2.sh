#!/usr/bin/env bash
# The gateway's upstream protocols side by side: one interleaved gwbench compare (HTTP/1.1 clients, closed loop) of
# direct to gwmock, via a gateway speaking HTTP/1.1 keep-alive to it (`protocol: h1`, up to 128 connections) and via
# a gateway multiplexing over HTTP/2 (`protocol: h2c`, up to 4 connections of 100 streams). Then gwmock's counters say
# how many upstream connections each gateway used.
#
# Usage: scripts/bench-upstream-h2.sh [--rounds N] [--duration S] [--connections C] [--out DIR]
#   Writes DIR/<YYYY-MM-DD>-upstream-h2.md. Environment: GW_BIN_DIR=DIR uses prebuilt release binaries.
# Arrangement on 2 CPUs: the gateways (1 reactor thread each, one measured at a time) on CPU 0; gwmock and gwbench on
# CPU 1. Everything is on 127.0.0.1 and stopped by PID.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
DURATION=4
CONNECTIONS=32
OUT="$GW_ROOT/results"
while (($# > 0)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="${2%s}"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,10p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
gw_install_deps
gw_ensure_swift
gw_build_release
BIN="$GW_BIN"
gw_can_pin || gw_die "needs 2 CPUs and taskset"
gw_init_tmp
TMP="$GW_TMP"
BODY="$GW_ROOT/scripts/bench/chat-300.json"

gw_spawn "$TMP/mock.log" 1 "$TMP" "$BIN/gwmock" --listen 127.0.0.1:0 --threads 1
MOCK_PID="$GW_LAST_PID"
MOCK_URL="$(gw_wait_listening "$TMP/mock.log" "$MOCK_PID")"
MOCK_PORT="$(gw_url_port "$MOCK_URL")"

# start_gateway NAME PROTOCOL MAX_CONNECTIONS: sets GATEWAY_PID and GATEWAY_URL.
start_gateway() {
    cat >"$TMP/$1.yaml" <<YAML
server: {listen: ["127.0.0.1:0"], threads: 1}
providers:
  - {name: mock, kind: openai, base_url: "http://127.0.0.1:$MOCK_PORT/v1", api_key_env: MOCK_API_KEY, protocol: $2, max_connections: $3}
models:
  - {name: gpt-4o-mini, deployments: [{provider: mock, model: gpt-4o-mini}]}
YAML
    MOCK_API_KEY=bench gw_spawn "$TMP/$1.log" 0 "$TMP" "$BIN/gateway" serve --config "$TMP/$1.yaml"
    GATEWAY_PID="$GW_LAST_PID"
    GATEWAY_URL="$(gw_wait_listening "$TMP/$1.log" "$GATEWAY_PID")"
}
start_gateway h1 h1 128
H1_PID="$GATEWAY_PID"
H1_URL="$GATEWAY_URL"
start_gateway h2c h2c 4
H2C_PID="$GATEWAY_PID"
H2C_URL="$GATEWAY_URL"

mock_h2() { curl -s --max-time 10 "$MOCK_URL/mock/stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["h2"]["connections"], d["connections"])'; }

gw_log "gwbench compare --mode throughput ($ROUNDS rounds, $CONNECTIONS connections)"
taskset -c 1 "$BIN/gwbench" compare --direct "$MOCK_URL" --via "h1-upstream=$H1_URL" --via "h2c-upstream=$H2C_URL" \
    --rounds "$ROUNDS" -c "$CONNECTIONS" -t 1 -d "${DURATION}s" --body "$BODY" --quiet --mode throughput \
    --pid "direct=$MOCK_PID" --pid "h1-upstream=$H1_PID" --pid "h2c-upstream=$H2C_PID" >"$TMP/throughput.txt"
read -r H2_CONNECTIONS ALL_CONNECTIONS <<<"$(mock_h2)"
for pid in "$H1_PID" "$H2C_PID" "$MOCK_PID"; do gw_stop "$pid" || true; done

DATE="$(date -u +%Y-%m-%d)"
{
    echo "# Upstream HTTP/1.1 against upstream HTTP/2 (h2c) — $DATE, tree $(git -C "$GW_ROOT" rev-parse --short HEAD)"
    echo
    echo "HTTP/1.1 clients ($CONNECTIONS connections, closed loop, the 300-byte chat body), one interleaved gwbench compare of"
    echo "direct to gwmock, via a gateway with \`protocol: h1\` (max_connections 128) and via one with \`protocol: h2c\`"
    echo "(max_connections 4, gwmock's limit of 100 streams each). Gateways on CPU 0 (1 thread), gwmock and gwbench on CPU 1."
    echo
    echo '```'
    cat "$TMP/throughput.txt"
    echo '```'
    echo
    echo "gwmock accepted $ALL_CONNECTIONS connections in all (gwbench's direct ones included), $H2_CONNECTIONS of them HTTP/2:"
    echo "the h2c gateway's whole upstream traffic went over those."
    echo
    echo "Command: \`scripts/bench-upstream-h2.sh --rounds $ROUNDS --duration $DURATION --connections $CONNECTIONS\`"
} >"$OUT/$DATE-upstream-h2.md"
cat "$OUT/$DATE-upstream-h2.md"
