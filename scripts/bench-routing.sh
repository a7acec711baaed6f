#!/usr/bin/env bash
# What routing costs, in one interleaved gwbench run per mode: direct to gwmock, via the gateway on its plain path,
# via a model whose first deployment answers 500 at once (every request fails over to the second), via a model served
# by an Anthropic-kind deployment (every request and response translated), and, when GW_BASE_BIN names the folder of a
# gateway built before routing existed, that build on the plain path (the untranslated path did not slow down).
#
# Usage: scripts/bench-routing.sh [--rounds N] [--duration S] [--latency-fraction F] [--out DIR]
#   The latency run is open loop at F of direct's maximum (default 0.1: higher saturates direct on 2 cores).
#   Writes DIR/<YYYY-MM-DD>-routing.{json,md}. Environment: GW_BIN_DIR=DIR uses prebuilt binaries;
#   GW_BASE_BIN=DIR adds the gateway in DIR as the target "before".
# Arrangement on 2 CPUs: every gateway on CPU 0 (one measured at a time), gwmock and gwbench on CPU 1.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
DURATION=4
FRACTION=0.1
OUT="$GW_ROOT/results"
while (($# > 0)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="${2%s}"; shift 2 ;;
    --latency-fraction) FRACTION="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

gw_install_deps
gw_ensure_swift
gw_build_release
BIN="$GW_BIN"
gw_init_tmp
TMP="$GW_TMP"

# start NAME CPU CMD...: starts CMD (stopped on exit by lib.sh), sets NAME_PID and NAME_URL from its listening line.
start() {
    local name="$1" cpu="$2"
    shift 2
    gw_spawn "$TMP/$name.log" "$cpu" "$TMP" "$@"
    printf -v "${name}_PID" '%s' "$GW_LAST_PID"
    printf -v "${name}_URL" '%s' "$(gw_wait_listening "$TMP/$name.log" "$GW_LAST_PID")"
}

start mock 1 "$BIN/gwmock" --listen 127.0.0.1:0 --threads 1 --profile fail:status=500 --profile ok
MOCK="${mock_URL#http://}"
gateway_config() { # NAME MODEL-YAML
    cat >"$TMP/$1.yaml" <<YAML
server: {listen: ["127.0.0.1:0"], threads: 1}
providers:
  - {name: ok, base_url: "http://$MOCK/ok/v1", max_connections: 256}
  - {name: fail, base_url: "http://$MOCK/fail/v1", max_connections: 256}
  - {name: anthropic, kind: anthropic, base_url: "http://$MOCK/ok/v1", max_connections: 256}
models: [$2]
YAML
}
gateway_config plain '{name: gpt-4o-mini, deployments: [{provider: ok}]}'
# The failing deployment never cools down (a million failures needed), so every request pays the failover.
gateway_config failover '{name: gpt-4o-mini, routing: ordered, deployments: [{provider: fail}, {provider: ok}], cooldown: {failures: 1000000}}'
gateway_config translated '{name: gpt-4o-mini, deployments: [{provider: anthropic, model: claude-3-5-haiku-latest}]}'
VIAS=()
PIDARGS=(--pid "direct=$mock_PID")
for name in plain failover translated; do
    start "$name" 0 "$BIN/gateway" serve --config "$TMP/$name.yaml"
    url="${name}_URL"
    pid="${name}_PID"
    VIAS+=(--via "$name=${!url}/v1/chat/completions")
    PIDARGS+=(--pid "$name=${!pid}")
done
if [[ -n "${GW_BASE_BIN:-}" ]]; then
    # The older build reads the plain configuration (no routing fields).
    start before 0 "$GW_BASE_BIN/gateway" serve --config "$TMP/plain.yaml"
    VIAS+=(--via "before=$before_URL/v1/chat/completions")
    PIDARGS+=(--pid "before=$before_PID")
fi

COMMON=(--rounds "$ROUNDS" -d "${DURATION}s" --warmup 2s -c 32 --pin 1 --quiet "${PIDARGS[@]}"
    --arrangement "gateways on CPU 0 (one measured at a time), gwmock and gwbench on CPU 1")
DIRECT="http://$MOCK/ok/v1/chat/completions"
gw_log "throughput: direct, ${VIAS[*]}"
"$BIN/gwbench" compare --direct "$DIRECT" "${VIAS[@]}" "${COMMON[@]}" --json "$TMP/throughput.json" | tee "$TMP/throughput.txt"
gw_log "latency at $FRACTION of direct's maximum"
"$BIN/gwbench" compare --direct "$DIRECT" "${VIAS[@]}" "${COMMON[@]}" --mode latency --rate-fraction "$FRACTION" \
    --json "$TMP/latency.json" | tee "$TMP/latency.txt"

DATE="$(date -u +%Y-%m-%d)"
python3 - "$TMP/throughput.json" "$TMP/latency.json" "$OUT/$DATE-routing.json" <<'PY'
import json, sys
out = {"throughput": json.load(open(sys.argv[1])), "latency": json.load(open(sys.argv[2]))}
json.dump(out, open(sys.argv[3], "w"), indent=1)
PY
{
    echo "# What routing costs — $DATE"
    echo
    echo "One release build. \`plain\`: one deployment, no failover. \`failover\`: the first deployment (a gwmock profile)"
    echo "answers 500 at once, its response is read and dropped, and the request goes to the second, every time."
    echo "\`translated\`: the model's deployment is Anthropic-kind, so each OpenAI chat request goes out as an Anthropic"
    echo "Messages request and the answer comes back translated (gwmock answers /v1/messages instead of"
    echo "/v1/chat/completions, a response of about the same size)."
    if [[ -n "${GW_BASE_BIN:-}" ]]; then
        echo "\`before\`: the gateway built before routing and translation existed ($GW_BASE_BIN), on the plain path."
    fi
    echo
    echo "## Throughput (closed loop, 32 connections)"
    echo
    echo '```'
    cat "$TMP/throughput.txt"
    echo '```'
    echo
    echo "## Latency (open loop at $FRACTION of direct's maximum)"
    echo
    echo '```'
    cat "$TMP/latency.txt"
    echo '```'
    echo
    echo "## Command"
    echo
    echo '```'
    echo "${GW_BASE_BIN:+GW_BASE_BIN=$GW_BASE_BIN }scripts/bench-routing.sh --rounds $ROUNDS --duration $DURATION --latency-fraction $FRACTION"
    echo '```'
} >"$OUT/$DATE-routing.md"
gw_log "wrote $OUT/$DATE-routing.md"
