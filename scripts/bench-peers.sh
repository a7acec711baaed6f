#!/usr/bin/env bash
# Proxy core against its peers: direct to gwmock, via the gateway, via nginx (proxy_pass, upstream keep-alive),
# measured with wrk in interleaved rounds; plus gwmock against nginx `return 200` (how fast the mock itself is).
#
# Usage: scripts/bench-peers.sh [--rounds N] [--duration S] [--warmup S] [--out DIR]
#   Defaults: 3 rounds of 5 s, each run after a 2 s warm-up; results in results/ of the repository.
#   Writes DIR/<YYYY-MM-DD>-proxy-core.json and DIR/<YYYY-MM-DD>-proxy-core.md.
#   Environment: GW_BIN_DIR=DIR uses prebuilt binaries; GW_KEEP_TMP=1 keeps logs, configs and raw wrk outputs.
#
# Arrangement on 2 CPUs: CPU 0 runs the proxy under test (the gateway or nginx, one thread or worker each); CPU 1 runs
# gwmock, nginx-return and wrk. The same for every target.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
DURATION=5
WARMUP=2
OUT="$GW_ROOT/results"
ARGS=("$@")
while (($# > 0)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="${2%s}"; shift 2 ;;
    --warmup) WARMUP="${2%s}"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || gw_die "--rounds wants a positive integer"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || gw_die "--duration wants whole seconds"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || gw_die "--warmup wants whole seconds"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

gw_install_deps
gw_ensure_swift
for tool in wrk nginx curl python3; do command -v "$tool" >/dev/null 2>&1 || gw_die "$tool not found"; done
gw_build_release
gw_init_tmp

PROXY_CPU=0
UPSTREAM_CPU=1
LOAD_CPU=1
if gw_can_pin; then
    PINNED=yes
else
    PROXY_CPU=- UPSTREAM_CPU=- LOAD_CPU=-
    PINNED="no (fewer than 2 CPUs or no taskset)"
    gw_warn "not pinning: the figures will mix the proxy's CPU with the load generator's"
fi
CLK_TCK="$(getconf CLK_TCK)"
BODY="$GW_ROOT/scripts/bench/chat-300.json"
LUA="$GW_ROOT/scripts/bench/post.lua"
PATH_UNDER_TEST=/v1/chat/completions

# --- servers ---------------------------------------------------------------------------------------------------

gw_log "starting gwmock (--threads 1)"
gw_spawn "$GW_TMP/gwmock.log" "$UPSTREAM_CPU" "$GW_TMP" "$GW_BIN/gwmock" --listen 127.0.0.1:0 --threads 1
MOCK_PID=$GW_LAST_PID
MOCK_URL="$(gw_wait_listening "$GW_TMP/gwmock.log" "$MOCK_PID" 30)"
MOCK_PORT="$(gw_url_port "$MOCK_URL")"

gw_log "starting the gateway (--threads 1)"
gw_write_minimal_config "$GW_TMP/gateway.yaml" "$MOCK_PORT"
export MOCK_API_KEY="${MOCK_API_KEY:-mock-key}"
gw_spawn "$GW_TMP/gateway.log" "$PROXY_CPU" "$GW_TMP" "$GW_BIN/gateway" serve --config "$GW_TMP/gateway.yaml" \
    --threads 1
GATEWAY_PID=$GW_LAST_PID
GATEWAY_URL="$(gw_wait_listening "$GW_TMP/gateway.log" "$GATEWAY_PID" 30)"

# What gwmock answers to the benchmark request, for nginx-return to serve byte for byte.
curl -sS --fail --max-time 10 -H 'Content-Type: application/json' --data-binary "@$BODY" \
    -o "$GW_TMP/mock-response.json" "$MOCK_URL$PATH_UNDER_TEST" || gw_die "gwmock did not answer the benchmark request"

# start_nginx NAME TEMPLATE CPU [KEY=VALUE...] [--nginx-string KEY=FILE]: sets NGINX_URL, NGINX_MASTER and
# NGINX_WORKER (the one worker process, whose CPU time is measured).
start_nginx() {
    local name="$1" template="$2" cpu="$3" port i
    shift 3
    port="$(gw_free_port)"
    mkdir -p "$GW_TMP/$name-temp"
    python3 "$GW_ROOT/scripts/bench/render.py" "$template" "$GW_TMP/$name.conf" "DIR=$GW_TMP" "PORT=$port" "$@"
    nginx -t -q -e "$GW_TMP/$name.error.log" -p "$GW_TMP" -c "$GW_TMP/$name.conf" ||
        gw_die "nginx rejected $GW_TMP/$name.conf"
    gw_spawn "$GW_TMP/$name.log" "$cpu" "$GW_TMP" nginx -e "$GW_TMP/$name.error.log" -p "$GW_TMP" \
        -c "$GW_TMP/$name.conf"
    NGINX_MASTER=$GW_LAST_PID
    NGINX_URL="http://127.0.0.1:$port"
    NGINX_WORKER=""
    for ((i = 0; i < 200; i++)); do
        kill -0 "$NGINX_MASTER" 2>/dev/null || { cat "$GW_TMP/$name.error.log" >&2; gw_die "$name exited"; }
        NGINX_WORKER="$(ps -o pid= --ppid "$NGINX_MASTER" | head -n1 | tr -d ' ' || true)"
        if [[ -n "$NGINX_WORKER" ]] && curl -s -o /dev/null --max-time 1 "$NGINX_URL/"; then break; fi
        sleep 0.05
    done
    [[ -n "$NGINX_WORKER" ]] || gw_die "$name: no worker process"
}

gw_log "starting nginx as a keep-alive reverse proxy in front of gwmock (1 worker)"
start_nginx nginx-proxy "$GW_ROOT/scripts/bench/nginx-proxy.conf.tmpl" "$PROXY_CPU" "UPSTREAM_PORT=$MOCK_PORT"
NGINX_PROXY_URL=$NGINX_URL NGINX_PROXY_WORKER=$NGINX_WORKER

gw_log "starting nginx-return: nginx answering with gwmock's response body (1 worker)"
start_nginx nginx-return "$GW_ROOT/scripts/bench/nginx-return.conf.tmpl" "$UPSTREAM_CPU" \
    --nginx-string "BODY=$GW_TMP/mock-response.json"
NGINX_RETURN_URL=$NGINX_URL NGINX_RETURN_WORKER=$NGINX_WORKER

# --- targets ---------------------------------------------------------------------------------------------------

# target_url NAME / target_procs NAME: where wrk goes, and whose CPU is measured (ROLE:NAME=PID ...).
target_url() {
    case "$1" in
    direct | mock-gwmock) echo "$MOCK_URL" ;;
    gateway) echo "$GATEWAY_URL" ;;
    nginx) echo "$NGINX_PROXY_URL" ;;
    mock-nginx-return) echo "$NGINX_RETURN_URL" ;;
    esac
}
target_procs() {
    case "$1" in
    direct | mock-gwmock) echo "upstream:gwmock=$MOCK_PID" ;;
    gateway) echo "proxy:gateway=$GATEWAY_PID upstream:gwmock=$MOCK_PID" ;;
    nginx) echo "proxy:nginx=$NGINX_PROXY_WORKER upstream:gwmock=$MOCK_PID" ;;
    mock-nginx-return) echo "upstream:nginx-return=$NGINX_RETURN_WORKER" ;;
    esac
}

for target in direct gateway nginx mock-nginx-return; do
    url="$(target_url "$target")$PATH_UNDER_TEST"
    status="$(curl -sS -o "$GW_TMP/smoke.json" -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
        --data-binary "@$BODY" "$url" || true)"
    [[ "$status" == 200 ]] || { cat "$GW_TMP/smoke.json" >&2 || true; gw_die "$target: POST $url answered ${status:-nothing}"; }
done

WRK=(wrk)
if [[ "$LOAD_CPU" != - ]]; then WRK=(taskset -c "$LOAD_CPU" wrk); fi

MANIFEST="$GW_TMP/manifest.tsv"
: >"$MANIFEST"

# measure TARGET CONNECTIONS ROUND: warm-up, then one measured wrk run with the CPU time of the target's processes.
measure() {
    local target="$1" conns="$2" round="$3" url out spec role_name pid cpu="" before after
    url="$(target_url "$target")$PATH_UNDER_TEST"
    out="$GW_TMP/wrk-$target-c$conns-r$round.txt"
    if ((WARMUP > 0)); then
        "${WRK[@]}" -t1 -c"$conns" -d"${WARMUP}s" -s "$LUA" "$url" >/dev/null 2>&1 || true
    fi
    local -A start=()
    for spec in $(target_procs "$target"); do start[$spec]="$(gw_cpu_ticks "${spec#*=}")"; done
    "${WRK[@]}" -t1 -c"$conns" -d"${DURATION}s" --latency -s "$LUA" "$url" >"$out" 2>&1 ||
        gw_warn "wrk exited non-zero: $target c=$conns round $round"
    for spec in $(target_procs "$target"); do
        role_name="${spec%=*}"
        pid="${spec#*=}"
        before="${start[$spec]}"
        after="$(gw_cpu_ticks "$pid")"
        cpu+="${cpu:+,}$role_name=$((after - before))"
    done
    printf '%s\t%s\t%s\t%s\t%s\n' "$target" "$conns" "$round" "$out" "${cpu:--}" >>"$MANIFEST"
    printf '  %-18s c=%-3s %s\n' "$target" "$conns" \
        "$(grep -E '^Requests/sec' "$out" || echo 'no result')" >&2
}

TOTAL=$((ROUNDS * 8 * (DURATION + WARMUP)))
gw_log "measuring: $ROUNDS round(s) x 8 runs of ${WARMUP}s + ${DURATION}s (about ${TOTAL}s)"
for ((round = 1; round <= ROUNDS; round++)); do
    gw_log "round $round/$ROUNDS"
    for conns in 32 1; do
        for target in direct gateway nginx; do
            measure "$target" "$conns" "$round"
        done
    done
    for target in mock-gwmock mock-nginx-return; do
        measure "$target" 32 "$round"
    done
done

# --- results ---------------------------------------------------------------------------------------------------

DATE="$(date +%F)"
WRK_VERSION="$(wrk --version 2>&1 | head -n1 | awk '{print $1, $2}' || true)"
NGINX_VERSION="$(nginx -v 2>&1 | sed 's/^nginx version: //')"
COMMAND="scripts/bench-peers.sh${ARGS[*]:+ ${ARGS[*]}}
# each measured run (after a ${WARMUP}s warm-up with the same options):
${WRK[*]} -t1 -c{32,1} -d${DURATION}s --latency -s scripts/bench/post.lua http://127.0.0.1:PORT$PATH_UNDER_TEST"

status=0
python3 "$GW_ROOT/scripts/bench/summarise.py" peers \
    --manifest "$MANIFEST" \
    --json-out "$OUT/$DATE-proxy-core.json" \
    --md-out "$OUT/$DATE-proxy-core.md" \
    --tool "$WRK_VERSION" \
    --command "$COMMAND" \
    --rounds "$ROUNDS" --duration "$DURATION" --warmup "$WARMUP" \
    --body "$BODY" --root "$GW_ROOT" \
    --clk-tck "$CLK_TCK" \
    --label "direct=direct (gwmock)" \
    --label "gateway=via gateway" \
    --label "nginx=via nginx" \
    --label "mock-gwmock=gwmock" \
    --label "mock-nginx-return=nginx-return" \
    --url "direct=$MOCK_URL" --url "gateway=$GATEWAY_URL" --url "nginx=$NGINX_PROXY_URL" \
    --url "mock-gwmock=$MOCK_URL" --url "mock-nginx-return=$NGINX_RETURN_URL" \
    --arrangement "pinned=$PINNED" \
    --arrangement "gateway=CPU $PROXY_CPU, --threads 1, minimal config (one provider, one model, no keys)" \
    --arrangement "nginx=$NGINX_VERSION, CPU $PROXY_CPU, 1 worker, upstream keepalive 64" \
    --arrangement "gwmock=CPU $UPSTREAM_CPU, --threads 1" \
    --arrangement "nginx-return=CPU $UPSTREAM_CPU, 1 worker, return 200 with gwmock's body" \
    --arrangement "wrk=CPU $LOAD_CPU, 1 thread" \
    --arrangement "order=per round: c=32 then c=1, each direct, gateway, nginx; then gwmock, nginx-return at c=32" \
    --via-direct gateway:direct --via-direct nginx:direct \
    --versus gateway:nginx --versus mock-gwmock:mock-nginx-return || status=$?

if [[ "${GW_KEEP_TMP:-0}" == 1 ]]; then gw_log "raw wrk outputs in $GW_TMP"; fi
gw_log "wrote $OUT/$DATE-proxy-core.json and $OUT/$DATE-proxy-core.md"
exit "$status"
