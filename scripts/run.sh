#!/usr/bin/env bash
# The main job: build everything (release), start gwmock and the gateway on free ports, and compare a direct call
# to gwmock with the same call through the gateway (gwbench compare, or wrk when gwbench has no `compare` yet).
#
# Usage: scripts/run.sh [--rounds N] [--duration S] [--connections C]
#   Defaults: 3 interleaved rounds of 5 s at 32 connections.
#   Environment: GW_BIN_DIR=DIR uses prebuilt binaries; GW_KEEP_TMP=1 keeps the logs and generated config.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
DURATION=5
CONNECTIONS=32
while (($# > 0)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="${2%s}"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done

gw_install_deps
gw_ensure_swift
gw_build_release
gw_init_tmp

# Pinning on 2 cores: the gateway alone on CPU 0; gwmock and the load generator on CPU 1.
GW_CPU=0
MOCK_CPU=1
LOAD_CPU=1
if gw_can_pin; then
    PINNING="gateway (--threads 1) on CPU $GW_CPU; gwmock and the load generator on CPU $MOCK_CPU"
else
    GW_CPU=- MOCK_CPU=- LOAD_CPU=-
    PINNING="not pinned (fewer than 2 CPUs or no taskset)"
fi

gw_log "starting gwmock"
gw_spawn "$GW_TMP/gwmock.log" "$MOCK_CPU" "$GW_TMP" "$GW_BIN/gwmock" --listen 127.0.0.1:0 --threads 1
MOCK_PID=$GW_LAST_PID
MOCK_URL="$(gw_wait_listening "$GW_TMP/gwmock.log" "$MOCK_PID" 30)"
MOCK_PORT="$(gw_url_port "$MOCK_URL")"

# The example configuration, pointed at this gwmock and at free ports; the minimal one if there is no example.
CONFIG="$GW_TMP/gateway.yaml"
if [[ -f "$GW_ROOT/gateway.example.yaml" ]]; then
    sed -e "s/127\.0\.0\.1:9000/127.0.0.1:$MOCK_PORT/g" \
        -e 's/127\.0\.0\.1:808[0-9]/127.0.0.1:0/g' \
        "$GW_ROOT/gateway.example.yaml" >"$CONFIG"
    CONFIG_FROM="gateway.example.yaml (gwmock port $MOCK_PORT, listeners on port 0)"
else
    gw_write_minimal_config "$CONFIG" "$MOCK_PORT"
    CONFIG_FROM="a minimal configuration (no gateway.example.yaml)"
fi
export MOCK_API_KEY="${MOCK_API_KEY:-mock-key}"

gw_log "gateway check --config ($CONFIG_FROM)"
(cd "$GW_TMP" && "$GW_BIN/gateway" check --config "$CONFIG") >&2 || gw_die "gateway check rejected $CONFIG"

gw_log "starting the gateway"
THREADS=()
if [[ "$GW_CPU" != - ]]; then THREADS=(--threads 1); fi # one reactor thread for its one core
gw_spawn "$GW_TMP/gateway.log" "$GW_CPU" "$GW_TMP" "$GW_BIN/gateway" serve --config "$CONFIG" "${THREADS[@]}"
GATEWAY_PID=$GW_LAST_PID
GATEWAY_URL="$(gw_wait_listening "$GW_TMP/gateway.log" "$GATEWAY_PID" 30)"

BODY="$GW_ROOT/scripts/bench/chat-300.json"
AUTH=()
if [[ -n "${GATEWAY_KEY:-}" ]]; then AUTH=(-H "Authorization: Bearer $GATEWAY_KEY"); fi

# One request each way first: a benchmark of error responses would be meaningless.
for url in "$MOCK_URL" "$GATEWAY_URL"; do
    status="$(curl -sS -o "$GW_TMP/smoke.json" -w '%{http_code}' --max-time 10 "${AUTH[@]}" \
        -H 'Content-Type: application/json' --data-binary "@$BODY" "$url/v1/chat/completions" || true)"
    if [[ "$status" != 200 ]]; then
        cat "$GW_TMP/smoke.json" >&2 2>/dev/null || true
        gw_die "POST $url/v1/chat/completions answered ${status:-nothing}, not 200 (set GATEWAY_KEY if the config needs a key)"
    fi
done

cat <<EOF

direct:  $MOCK_URL  (gwmock, pid $MOCK_PID)
via:     $GATEWAY_URL  (gateway, pid $GATEWAY_PID, config from $CONFIG_FROM)
pinning: $PINNING
load:    $ROUNDS interleaved rounds of ${DURATION}s, $CONNECTIONS connections, POST of scripts/bench/chat-300.json

EOF

pin=()
if [[ "$LOAD_CPU" != - ]]; then pin=(taskset -c "$LOAD_CPU"); fi

# gwbench is used when its `compare` exists (exit 0) and takes --direct (a placeholder main would exit 0 too).
compare_help=""
if [[ -x "$GW_BIN/gwbench" ]]; then compare_help="$("$GW_BIN/gwbench" compare --help 2>&1)" || compare_help=""; fi
if [[ "$compare_help" == *--direct* ]]; then
    gw_log "gwbench compare"
    # bounded even if gwbench hangs: its own time plus a generous margin
    timeout "$((ROUNDS * 2 * (DURATION + 10) + 60))" "${pin[@]}" "$GW_BIN/gwbench" compare \
        --direct "$MOCK_URL" --via "gateway=$GATEWAY_URL" --rounds "$ROUNDS" -d "${DURATION}s" -c "$CONNECTIONS"
else
    gw_log "gwbench has no 'compare' yet; measuring with wrk"
    command -v wrk >/dev/null 2>&1 || gw_die "wrk not found"
    export WRK_AUTH="${GATEWAY_KEY:-}"
    MANIFEST="$GW_TMP/manifest.tsv"
    : >"$MANIFEST"
    for ((round = 1; round <= ROUNDS; round++)); do
        for target in direct gateway; do
            if [[ "$target" == direct ]]; then url="$MOCK_URL"; else url="$GATEWAY_URL"; fi
            out="$GW_TMP/wrk-$target-$round.txt"
            gw_log "round $round/$ROUNDS: $target"
            "${pin[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$GW_ROOT/scripts/bench/post.lua" \
                "$url/v1/chat/completions" >"$out" 2>&1 || gw_warn "wrk exited non-zero against $target"
            printf '%s\t%s\t%s\t%s\t-\n' "$target" "$CONNECTIONS" "$round" "$out" >>"$MANIFEST"
        done
    done
    echo
    python3 "$GW_ROOT/scripts/bench/summarise.py" table --manifest "$MANIFEST" --base direct
fi

# Stop the gateway the way an operator would, and report how it went.
status=0
gw_stop "$GATEWAY_PID" 15 || status=$?
if ((status != 0)); then
    tail -n 20 "$GW_TMP/gateway.log" >&2 || true
    gw_die "the gateway exited with status $status after SIGTERM"
fi
gw_log "the gateway drained and exited 0 after SIGTERM"
