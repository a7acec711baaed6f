#!/usr/bin/env bash
# HTTP/2 clients through the gateway against nghttpx: h2c in, HTTP/1.1 keep-alive (or h2c) to gwmock out, for both.
# One interleaved run of gwbench compare --h2c (direct to gwmock, via the gateway, via nghttpx), in throughput and in
# latency mode, then h2load against the same three targets in interleaved rounds (percentiles from its --log-file).
#
# Usage: scripts/bench-h2c-peers.sh [--rounds N] [--duration S] [--connections C] [--streams M] [--out DIR]
#                                   [--upstream h1|h2c]
#   Writes DIR/<YYYY-MM-DD>-h2c-peers.md (with --upstream h2c: DIR/<YYYY-MM-DD>-h2c-peers-h2c-upstream.md).
#   --upstream h2c: the gateway's provider gets protocol: h2c and nghttpx's backend proto=h2. Environment: GW_BIN_DIR=DIR uses prebuilt release binaries.
# Arrangement on 2 CPUs: the gateway (1 reactor thread) and nghttpx (1 worker, --single-process) on CPU 0, one
# measured at a time; gwmock and the load generator on CPU 1. Both proxies may open 128 upstream connections.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
DURATION=4
CONNECTIONS=4
STREAMS=32
OUT="$GW_ROOT/results"
UPSTREAM=h1
while (($# > 0)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="${2%s}"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --streams) STREAMS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --upstream) UPSTREAM="$2"; shift 2 ;;
    -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
[[ "$UPSTREAM" == h1 || "$UPSTREAM" == h2c ]] || gw_die "--upstream wants h1 or h2c"
PROVIDER_PROTOCOL="" BACKEND_PROTOCOL="" REPORT_SUFFIX=""
if [[ "$UPSTREAM" == h2c ]]; then
    PROVIDER_PROTOCOL=", protocol: h2c" BACKEND_PROTOCOL=";;proto=h2" REPORT_SUFFIX="-h2c-upstream"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
gw_install_deps
gw_ensure_swift
if [[ -n "${GW_BIN_DIR:-}" ]]; then
    BIN="$GW_BIN_DIR"
else
    gw_build_release
    BIN="$GW_BIN"
fi
command -v nghttpx >/dev/null || { gw_log "apt-get install -y nghttp2-proxy"; apt-get install -y nghttp2-proxy >/dev/null; }
command -v h2load >/dev/null || gw_die "h2load not found (apt-get install nghttp2-client)"
gw_init_tmp
TMP="$GW_TMP"
BODY="$GW_ROOT/scripts/bench/chat-300.json"

gw_spawn "$TMP/mock.log" 1 "$TMP" "$BIN/gwmock" --listen 127.0.0.1:0 --threads 1
MOCK_PID="$GW_LAST_PID"
MOCK_URL="$(gw_wait_listening "$TMP/mock.log" "$MOCK_PID")"
MOCK_PORT="$(gw_url_port "$MOCK_URL")"

cat >"$TMP/gateway.yaml" <<EOF
server: {listen: ["127.0.0.1:0"], threads: 1}
providers:
  - {name: mock, kind: openai, base_url: "http://127.0.0.1:$MOCK_PORT/v1", api_key_env: MOCK_API_KEY, max_connections: 128$PROVIDER_PROTOCOL}
models:
  - {name: gpt-4o-mini, deployments: [{provider: mock, model: gpt-4o-mini}]}
EOF
MOCK_API_KEY=bench gw_spawn "$TMP/gateway.log" 0 "$TMP" "$BIN/gateway" serve --config "$TMP/gateway.yaml"
GATEWAY_PID="$GW_LAST_PID"
GATEWAY_URL="$(gw_wait_listening "$TMP/gateway.log" "$GATEWAY_PID")"

NGHTTPX_PORT="$(gw_free_port)"
gw_spawn "$TMP/nghttpx.log" 0 "$TMP" nghttpx --single-process --workers=1 \
    "--frontend=127.0.0.1,$NGHTTPX_PORT;no-tls" "--backend=127.0.0.1,$MOCK_PORT$BACKEND_PROTOCOL" \
    --backend-connections-per-host=128 --frontend-http2-max-concurrent-streams=100 --no-via --no-ocsp \
    --errorlog-file="$TMP/nghttpx.error.log"
NGHTTPX_PID="$GW_LAST_PID"
NGHTTPX_URL="http://127.0.0.1:$NGHTTPX_PORT"
for _ in $(seq 1 100); do curl -s -m 2 --http2-prior-knowledge -o /dev/null "$NGHTTPX_URL/v1/models" && break; sleep 0.1; done

BENCH=(taskset -c 1 "$BIN/gwbench")
LOAD=(--h2c -c "$CONNECTIONS" -m "$STREAMS" -t 1 -d "${DURATION}s" --body "$BODY" --quiet)
COMPARE=(compare --direct "$MOCK_URL" --via "gateway=$GATEWAY_URL" --via "nghttpx=$NGHTTPX_URL" --rounds "$ROUNDS"
    "${LOAD[@]}" --pid "direct=$MOCK_PID" --pid "gateway=$GATEWAY_PID" --pid "nghttpx=$NGHTTPX_PID")
gw_log "gwbench compare --h2c --mode throughput"
"${BENCH[@]}" "${COMPARE[@]}" --mode throughput >"$TMP/throughput.txt"
gw_log "gwbench compare --h2c --mode latency --rate-fraction 0.25"
"${BENCH[@]}" "${COMPARE[@]}" --mode latency --rate-fraction 0.25 >"$TMP/latency.txt"

for round in $(seq 1 "$ROUNDS"); do
    for target in direct gateway nghttpx; do
        case "$target" in
        direct) url="$MOCK_URL" ;;
        gateway) url="$GATEWAY_URL" ;;
        nghttpx) url="$NGHTTPX_URL" ;;
        esac
        gw_log "h2load round $round/$ROUNDS: $target"
        taskset -c 1 timeout $((DURATION + 60)) h2load -c "$CONNECTIONS" -m "$STREAMS" -t 1 -D "$DURATION" -d "$BODY" \
            -H 'content-type: application/json' --log-file="$TMP/h2load-$target-$round.log" \
            "$url/v1/chat/completions" >"$TMP/h2load-$target-$round.txt" 2>&1 || gw_warn "h2load $target exited non-zero"
    done
done

DATE="$(date -u +%Y-%m-%d)"
REPORT="$OUT/$DATE-h2c-peers$REPORT_SUFFIX.md"
python3 - "$TMP" "$ROUNDS" "$REPORT" "$CONNECTIONS" "$STREAMS" "$DURATION" "$(git -C "$GW_ROOT" rev-parse --short HEAD)" "$UPSTREAM" <<'PY'
import re, statistics, sys
tmp, rounds, report, connections, streams, duration, commit, upstream = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
to_mock = "HTTP/1.1 keep-alive to gwmock, up to 128 connections" if upstream == "h1" else \
    "h2c to gwmock (the gateway: protocol: h2c; nghttpx: proto=h2)"
lines = [
    f"# h2c clients: the gateway against nghttpx — tree {commit}",
    "",
    f"Command: `scripts/bench-h2c-peers.sh --rounds {rounds} --duration {duration} --connections {connections} "
    f"--streams {streams}" + ("" if upstream == "h1" else " --upstream h2c") + "` (release build).",
    "Arrangement on 2 CPUs: the gateway (1 reactor thread) and nghttpx 1.52 (1 worker, `--single-process`) on CPU 0,",
    "one measured at a time; gwmock (1 thread) and the load generator (1 thread) on CPU 1. Both proxies take h2c",
    f"from the client and speak {to_mock}; the 300-byte chat request.",
    "",
    "## h2load (interleaved rounds; p50 and p99 from its per-request log)",
    "",
    "| target | RPS (median) | RPS min–max | p50 µs | p99 µs | errors |",
    "|---|---:|---:|---:|---:|---:|",
]
medians = {}
for target in ("direct", "gateway", "nghttpx"):
    rps, p50, p99, errors = [], [], [], 0
    for r in range(1, rounds + 1):
        text = open(f"{tmp}/h2load-{target}-{r}.txt").read()
        found = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text)
        rps.append(float(found.group(1)) if found else 0.0)
        done = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
        errors += sum(int(x) for x in done.groups()) if done else 1
        codes = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", text)
        errors += sum(int(x) for x in codes.groups()) if codes else 0
        times = sorted(int(line.split()[2]) for line in open(f"{tmp}/h2load-{target}-{r}.log") if line.strip())
        if times:
            p50.append(times[len(times) // 2])
            p99.append(times[min(len(times) - 1, int(len(times) * 0.99))])
    m = (statistics.median(rps), statistics.median(p50) if p50 else 0, statistics.median(p99) if p99 else 0)
    medians[target] = m
    lines.append(f"| {target} | {m[0]:,.0f} | {min(rps):,.0f}–{max(rps):,.0f} | {m[1]:,.0f} | {m[2]:,.0f} | {errors} |")
g, n, d = medians["gateway"], medians["nghttpx"], medians["direct"]
lines += ["", f"Gateway ÷ nghttpx RPS {g[0] / n[0]:.2f}; added p99 over direct: gateway {g[2] - d[2]:+,.0f} µs, "
          f"nghttpx {n[2] - d[2]:+,.0f} µs.", "",
          "## gwbench compare --h2c, throughput (closed loop)", "", "```"]
lines += open(f"{tmp}/throughput.txt").read().rstrip().split("\n")
lines += ["```", "", "## gwbench compare --h2c, latency (open loop at a quarter of direct's maximum)", "", "```"]
lines += open(f"{tmp}/latency.txt").read().rstrip().split("\n")
lines += ["```", ""]
open(report, "w").write("\n".join(lines))
PY
gw_log "wrote $REPORT"
