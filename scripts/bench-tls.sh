#!/usr/bin/env bash
# TLS on the gateway's client side against nginx with the same certificate: full and resumed handshakes per second
# (gwbench handshakes, with each server's CPU per handshake), then the added latency and throughput on warm TLS
# connections (gwbench compare: gwmock direct, the gateway over plain HTTP, the gateway over TLS, nginx over TLS).
#
# Usage: scripts/bench-tls.sh [--rounds N] [--duration S] [--key rsa|ec] [--out DIR]
#   Writes DIR/<YYYY-MM-DD>-tls.md. Environment: GW_BIN_DIR=DIR uses prebuilt release binaries.
# Arrangement on 2 CPUs: the gateway and nginx on CPU 0 (one measured at a time), gwmock and gwbench on CPU 1.
# The certificate is made here, in a temp folder, by a throwaway CA: RSA 2048 by default, where signing makes the
# server the side that limits a full handshake; --key ec uses P-256.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
DURATION=3
KEY=rsa
OUT="$GW_ROOT/results"
while (($# > 0)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="${2%s}"; shift 2 ;;
    --key) KEY="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,10p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
[[ "$KEY" == rsa || "$KEY" == ec ]] || gw_die "--key must be rsa or ec"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

gw_install_deps
gw_ensure_swift
if [[ -n "${GW_BIN_DIR:-}" ]]; then
    BIN="$GW_BIN_DIR"
else
    gw_log "swift build -c release"
    gw_swift build -c release
    BIN="$(gw_swift build -c release --show-bin-path)"
fi
command -v nginx >/dev/null || gw_die "nginx is not installed (apt-get install -y nginx-light)"
gw_init_tmp

# A throwaway CA and a server certificate for 127.0.0.1 and localhost.
if [[ "$KEY" == rsa ]]; then NEWKEY=(-newkey rsa:2048); else NEWKEY=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1); fi
(
    cd "$GW_TMP"
    openssl req -x509 "${NEWKEY[@]}" -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=bench CA" 2>/dev/null
    openssl req "${NEWKEY[@]}" -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
        -extfile server.ext 2>/dev/null
)

gw_spawn "$GW_TMP/mock.log" 1 "$GW_TMP" "$BIN/gwmock" --listen 127.0.0.1:0 --threads 1
MOCK_PID="$GW_LAST_PID"
MOCK_URL="$(gw_wait_listening "$GW_TMP/mock.log" "$MOCK_PID")"
MOCK_PORT="$(gw_url_port "$MOCK_URL")"

cat >"$GW_TMP/gateway.yaml" <<EOF
server:
  listen: ["tls://127.0.0.1:0", "127.0.0.1:0"]
  threads: 1
  tls: {cert: $GW_TMP/server.pem, key: $GW_TMP/server.key}
providers:
  - {name: mock, kind: openai, base_url: "http://127.0.0.1:$MOCK_PORT/v1", api_key_env: MOCK_API_KEY}
models:
  - {name: gpt-4o-mini, deployments: [{provider: mock, model: gpt-4o-mini}]}
EOF
MOCK_API_KEY=bench gw_spawn "$GW_TMP/gateway.log" 0 "$GW_TMP" "$BIN/gateway" serve --config "$GW_TMP/gateway.yaml"
GATEWAY_PID="$GW_LAST_PID"
GATEWAY_TLS_URL="$(gw_wait_listening "$GW_TMP/gateway.log" "$GATEWAY_PID")"
GATEWAY_PLAIN_URL="$(grep -m1 -oE 'listening http://[^[:space:]]+' "$GW_TMP/gateway.log" | sed 's/^listening //')"

NGINX_PORT="$(gw_free_port)"
mkdir -p "$GW_TMP/nginx-temp"
cat >"$GW_TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $GW_TMP/nginx.pid;
error_log $GW_TMP/nginx.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $GW_TMP/nginx-temp/body;
    proxy_temp_path $GW_TMP/nginx-temp/proxy;
    fastcgi_temp_path $GW_TMP/nginx-temp/fastcgi;
    uwsgi_temp_path $GW_TMP/nginx-temp/uwsgi;
    scgi_temp_path $GW_TMP/nginx-temp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    upstream gwmock {
        server 127.0.0.1:$MOCK_PORT;
        keepalive 64;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $GW_TMP/server.pem;
        ssl_certificate_key $GW_TMP/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
        ssl_session_cache shared:TLS:10m;
        location / {
            proxy_pass http://gwmock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
# master_process off: the one process that serves is the one whose CPU is measured.
gw_spawn "$GW_TMP/nginx.log" 0 "$GW_TMP" nginx -e "$GW_TMP/nginx.error.log" -p "$GW_TMP" -c "$GW_TMP/nginx.conf" \
    -g "master_process off;"
NGINX_PID="$GW_LAST_PID"
NGINX_URL="https://127.0.0.1:$NGINX_PORT"
for _ in $(seq 1 100); do curl -sk -o /dev/null "$NGINX_URL/v1/models" && break; sleep 0.1; done

BENCH=(taskset -c 1 "$BIN/gwbench")
gw_can_pin || BENCH=("$BIN/gwbench")

# Handshakes, interleaved round by round: gateway full, nginx full, gateway resumed, nginx resumed.
HANDSHAKES="$GW_TMP/handshakes.jsonl"
for round in $(seq 1 "$ROUNDS"); do
    for kind in full resumed; do
        flag=()
        [[ "$kind" == resumed ]] && flag=(--resume)
        for target in gateway nginx; do
            if [[ "$target" == gateway ]]; then url="$GATEWAY_TLS_URL"; pid="$GATEWAY_PID"; else url="$NGINX_URL"; pid="$NGINX_PID"; fi
            "${BENCH[@]}" handshakes "$url" -c 16 -d "${DURATION}s" --insecure "${flag[@]}" --pid "server=$pid" \
                --json "$GW_TMP/one.json" >"$GW_TMP/one.txt"
            printf 'round %s/%s %-7s %-7s %s\n' "$round" "$ROUNDS" "$target" "$kind" "$(sed -n 2p "$GW_TMP/one.txt" | sed 's/^ *//')" >&2
            python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.update(target=sys.argv[2], kind=sys.argv[3]); print(json.dumps(d))' \
                "$GW_TMP/one.json" "$target" "$kind" >>"$HANDSHAKES"
        done
    done
done

# Warm connections: throughput, then latency at 20% of direct's maximum.
COMPARE=(compare --direct "$MOCK_URL" --via "gateway-http=$GATEWAY_PLAIN_URL" --via "gateway-tls=$GATEWAY_TLS_URL"
    --via "nginx-tls=$NGINX_URL" --rounds "$ROUNDS" -d "${DURATION}s" -c 32 --insecure --quiet
    --pid "direct=$MOCK_PID" --pid "gateway-http=$GATEWAY_PID"
    --pid "gateway-tls=$GATEWAY_PID" --pid "nginx-tls=$NGINX_PID")
gw_log "gwbench compare --mode throughput"
"${BENCH[@]}" "${COMPARE[@]}" --mode throughput >"$GW_TMP/throughput.txt"
gw_log "gwbench compare --mode latency --rate-fraction 0.2"
"${BENCH[@]}" "${COMPARE[@]}" --mode latency --rate-fraction 0.2 >"$GW_TMP/latency.txt"

DATE="$(date -u +%Y-%m-%d)"
REPORT="$OUT/$DATE-tls.md"
python3 - "$HANDSHAKES" "$GW_TMP/throughput.txt" "$GW_TMP/latency.txt" "$REPORT" "$ROUNDS" "$DURATION" "$KEY" \
    "$(git -C "$GW_ROOT" rev-parse --short HEAD)" "$(nginx -v 2>&1 | sed 's/.*nginx\///')" <<'PY'
import json, statistics, sys
handshakes, throughput, latency, report, rounds, duration, key, commit, nginx = sys.argv[1:]
rows = [json.loads(line) for line in open(handshakes)]
def median(target, kind, field):
    values = [r[field] if field != "server_cpu" else r["cpu_us_per_handshake"]["server"] for r in rows
              if r["target"] == target and r["kind"] == kind]
    return statistics.median(values), min(values), max(values)
key_name = "RSA 2048" if key == "rsa" else "ECDSA P-256"
lines = [
    f"# TLS: the gateway against nginx {nginx} with the same certificate ({key_name}) — tree {commit}",
    "",
    f"Command: `scripts/bench-tls.sh --rounds {rounds} --duration {duration} --key {key}` (release build).",
    "Arrangement on 2 CPUs: the gateway (1 reactor thread) and nginx (1 worker, master_process off) on CPU 0, one",
    "measured at a time; gwmock and gwbench on CPU 1. TLS 1.3 (both servers offer 1.2 and 1.3; gwbench's client",
    "settles on 1.3). Medians of the rounds, with min–max.",
    "",
    "## Handshakes per second",
    "",
    "`gwbench handshakes URL -c 16 --insecure [--resume]`: 16 clients connect, handshake and close, again and again;",
    "with `--resume` each client reads the ticket the server sends and offers it on its next handshake. Server CPU is",
    "the server process's utime+stime over the window divided by the handshakes.",
    "",
    "| server | handshake | per second | min–max | server CPU per handshake | gwbench CPU per handshake | failures |",
    "|---|---|---:|---:|---:|---:|---:|",
]
for kind in ("full", "resumed"):
    for target in ("gateway", "nginx"):
        rate = median(target, kind, "per_second")
        cpu = median(target, kind, "server_cpu")
        client = statistics.median(r["cpu_us_per_handshake"]["gwbench"] for r in rows if r["target"] == target and r["kind"] == kind)
        failures = sum(r["failures"] for r in rows if r["target"] == target and r["kind"] == kind)
        lines.append(f"| {target} | {kind} | {rate[0]:,.0f} | {rate[1]:,.0f}–{rate[2]:,.0f} | {cpu[0]:.1f} µs | {client:.1f} µs | {failures} |")
for kind in ("full", "resumed"):
    g = median("gateway", kind, "per_second")[0]
    n = median("nginx", kind, "per_second")[0]
    lines.append("")
    lines.append(f"{kind.capitalize()} handshakes: the gateway completes {g / n:.2f}× nginx's rate.")
lines += ["", "## Warm TLS connections", "",
          "`gwbench compare`, 32 connections, the 300-byte chat request; `gateway-http` and `gateway-tls` are the same",
          "gateway process on its plain and tls:// listeners.", "", "Throughput (closed loop):", "", "```"]
lines += open(throughput).read().rstrip().split("\n")
lines += ["```", "", "Latency (open loop at 20% of direct's maximum):", "", "```"]
lines += open(latency).read().rstrip().split("\n")
lines += ["```", ""]
open(report, "w").write("\n".join(lines))
PY
gw_log "wrote $REPORT"
