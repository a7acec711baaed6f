#!/usr/bin/env bash
# What an HTTP/2 (h2c) request costs the gateway, as deterministic figures: instructions per request (callgrind, per
# thread) and allocations per request (LD_PRELOAD malloc counter), with the HTTP/1.1 figure from the same build
# beside it. The bare proxy (open mode, no keys) in front of gwmock over HTTP/1.1. These are the figures to work
# with on a busy machine (see bench-policy-instructions.sh, which this one follows).
#
# Usage: scripts/bench-h2c-instructions.sh [--requests N] [--warmup N] [--json FILE] [--keep DIR] [--no-allocations]
#                                          [--nghttpx] [--upstream h1|h2c]
#   --requests N      counted requests per run (default 6000)
#   --warmup N        requests before counting (default 640)
#   --json FILE       also write every figure as JSON to FILE
#   --keep DIR        keep the callgrind dumps (one file per thread) in DIR/h2c and DIR/http1, for callgrind_annotate
#   --no-allocations  skip the malloc-counter runs
#   --nghttpx         also count nghttpx (1.52, --single-process, 1 worker, h2c in and HTTP/1.1 to gwmock, as in
#                     bench-h2c-peers.sh) on the same h2c load: the peer's cost per request, beside ours
#   --upstream P      the protocol to gwmock: h1 (HTTP/1.1 keep-alive, the default) or h2c (for nghttpx too:
#                     its backend gets proto=h2)
#   Environment: GW_BIN_DIR=DIR uses prebuilt binaries; GW_SKIP_APT=1.
#
# How, for each protocol in turn (the gateway pinned to CPU 0; gwmock and gwbench on CPU 1; 127.0.0.1 only):
# - h2c: `gwbench run --h2c -c 4 -m 32 -n N` (4 connections, 32 streams each); http1: `gwbench run -c 4 -n N`.
#   Both send the 300-byte chat request.
# - instructions: the gateway (a copy without debug info, which valgrind cannot read) under
#   `valgrind --tool=callgrind --separate-threads=yes`; warm-up requests; `callgrind_control --zero`; the counted
#   requests; `callgrind_control --dump`. Each thread's total, divided by N.
# - allocations: the gateway with scripts/bench/malloc-counter.c preloaded; warm-up; SIGUSR1 (reset); the counted
#   requests; SIGUSR2 (report). Every allocating call of the process, divided by N.
# The connections of the warm-up and the counted run are separate: each counted run pays for its own 4 connections
# (accept, SETTINGS, close), a few hundred instructions per request at N=6000.
# Every process is started by this script and stopped by its PID.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench/policy-configs.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench/policy-configs.sh"

COMMAND="$0 $*"
REQUESTS=6000
WARMUP=640
JSON=""
KEEP=""
ALLOCATIONS=1
NGHTTPX=0
UPSTREAM=h1
while (($# > 0)); do
    case "$1" in
    --requests) REQUESTS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --json) JSON="$2"; shift 2 ;;
    --keep) KEEP="$2"; shift 2 ;;
    --no-allocations) ALLOCATIONS=0; shift ;;
    --nghttpx) NGHTTPX=1; shift ;;
    --upstream) UPSTREAM="$2"; shift 2 ;;
    -h | --help) sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ && "$WARMUP" =~ ^[1-9][0-9]*$ ]] || gw_die "--requests and --warmup want positive integers"
[[ "$UPSTREAM" == h1 || "$UPSTREAM" == h2c ]] || gw_die "--upstream wants h1 or h2c"
BACKEND_PROTOCOL=""
if [[ "$UPSTREAM" == h2c ]]; then BACKEND_PROTOCOL=";;proto=h2"; fi
if [[ -n "$KEEP" ]]; then mkdir -p "$KEEP" && KEEP="$(cd "$KEEP" && pwd)"; fi
if [[ -n "$JSON" ]]; then JSON="$(cd "$(dirname "$JSON")" && pwd)/$(basename "$JSON")"; fi

gw_install_deps
gw_ensure_swift
for tool in valgrind callgrind_control strip cc python3; do
    command -v "$tool" >/dev/null 2>&1 || gw_die "$tool not found"
done
gw_build_release
[[ -x "$GW_BIN/gwbench" ]] || gw_die "$GW_BIN/gwbench not found"
gw_init_tmp
CPU_GATEWAY=0
CPU_LOAD=1
if ! gw_can_pin; then CPU_GATEWAY=-; CPU_LOAD=-; fi

gw_spawn "$GW_TMP/mock.log" "$CPU_LOAD" "$GW_TMP" "$GW_BIN/gwmock" --listen 127.0.0.1:0 --threads 1
MOCK_URL="$(gw_wait_listening "$GW_TMP/mock.log" "$GW_LAST_PID")"
gw_write_policy_configs "$GW_TMP" "${MOCK_URL##*:}"
if [[ "$UPSTREAM" == h2c ]]; then
    sed -i 's|max_connections: 256}|max_connections: 256, protocol: h2c}|' "$GW_TMP/bare.yaml"
    grep -q 'protocol: h2c' "$GW_TMP/bare.yaml" || gw_die "could not set protocol: h2c in bare.yaml"
fi

# valgrind reports "possibly corrupted debuginfo" for our binaries: it runs a copy without debug info (the symbol
# table stays, so functions keep their names).
cp "$GW_BIN/gateway" "$GW_TMP/gateway-nodebug"
strip --strip-debug "$GW_TMP/gateway-nodebug"
cc -O2 -shared -fPIC -o "$GW_TMP/libmalloccounter.so" "$GW_ROOT/scripts/bench/malloc-counter.c" -ldl

# load PROTOCOL URL COUNT LOG: exactly COUNT requests on 4 connections (h2c: 32 streams each); fails unless all
# COUNT got a 2xx.
load() {
    local pin=() proto=()
    [[ "$CPU_LOAD" != - ]] && pin=(--pin "$CPU_LOAD")
    [[ "$1" == h2c ]] && proto=(--h2c -m 32)
    "$GW_BIN/gwbench" run "$2" -n "$3" -c 4 "${proto[@]}" --warmup 0s --quiet "${pin[@]}" --json "$4.json" >"$4" 2>&1 ||
        gw_die "gwbench run failed: $(tail -5 "$4")"
    python3 "$GW_ROOT/scripts/bench/counts.py" all-good "$4.json" "$3" ||
        gw_die "gwbench did not get $3 good responses (see $4)"
}

# instructions PROTOCOL: one callgrind run; leaves the per-thread dumps in $GW_TMP/cg-PROTOCOL/.
instructions() {
    local proto="$1" dir="$GW_TMP/cg-$1" url pid
    mkdir -p "$dir"
    gw_spawn "$dir/gateway.log" "$CPU_GATEWAY" "$dir" valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$dir/cg.out" "$GW_TMP/gateway-nodebug" serve --config "$GW_TMP/bare.yaml"
    pid="$GW_LAST_PID"
    url="$(gw_wait_listening "$dir/gateway.log" "$pid" 120)"
    gw_log "$proto under callgrind at $url: $WARMUP warm-up requests"
    load "$proto" "$url" "$WARMUP" "$dir/warmup.txt"
    callgrind_control --zero "$pid" >/dev/null 2>&1
    gw_log "$proto: $REQUESTS counted requests"
    load "$proto" "$url" "$REQUESTS" "$dir/counted.txt"
    callgrind_control --dump "$pid" >/dev/null 2>&1
    gw_stop "$pid" 60 || gw_die "the gateway under callgrind ($proto) did not exit cleanly (log: $dir/gateway.log)"
    if [[ -n "$KEEP" ]]; then mkdir -p "$KEEP/$proto" && cp "$dir"/cg.out.1-* "$KEEP/$proto/"; fi
}

# allocations PROTOCOL: leaves the allocating calls over the counted requests in $GW_TMP/malloc-PROTOCOL/counts.txt.
allocations() {
    local proto="$1" dir="$GW_TMP/malloc-$1" url pid i
    mkdir -p "$dir"
    gw_spawn "$dir/gateway.log" "$CPU_GATEWAY" "$dir" env LD_PRELOAD="$GW_TMP/libmalloccounter.so" \
        MALLOC_COUNTER_OUT="$dir/counts.txt" "$GW_BIN/gateway" serve --config "$GW_TMP/bare.yaml"
    pid="$GW_LAST_PID"
    url="$(gw_wait_listening "$dir/gateway.log" "$pid")"
    load "$proto" "$url" "$WARMUP" "$dir/warmup.txt"
    kill -USR1 "$pid"
    load "$proto" "$url" "$REQUESTS" "$dir/counted.txt"
    rm -f "$dir/counts.txt"
    kill -USR2 "$pid"
    for ((i = 0; i < 100; i++)); do [[ -s "$dir/counts.txt" ]] && break; sleep 0.05; done
    [[ -s "$dir/counts.txt" ]] || gw_die "the malloc counter wrote nothing (log: $dir/gateway.log)"
    gw_stop "$pid" 30 || gw_die "the gateway with the malloc counter ($proto) did not exit cleanly"
}

for proto in h2c http1; do instructions "$proto"; done

# nghttpx_instructions: nghttpx under callgrind on the h2c load; leaves its dumps in $GW_TMP/cg-nghttpx/.
nghttpx_instructions() {
    local dir="$GW_TMP/cg-nghttpx" port pid i
    command -v nghttpx >/dev/null || { gw_log "apt-get install -y nghttp2-proxy"; apt-get install -y nghttp2-proxy >/dev/null; }
    mkdir -p "$dir"
    port="$(gw_free_port)"
    gw_spawn "$dir/nghttpx.log" "$CPU_GATEWAY" "$dir" valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$dir/cg.out" nghttpx --single-process --workers=1 \
        "--frontend=127.0.0.1,$port;no-tls" "--backend=127.0.0.1,${MOCK_URL##*:}$BACKEND_PROTOCOL" \
        --backend-connections-per-host=128 --frontend-http2-max-concurrent-streams=100 --no-via --no-ocsp \
        --errorlog-file="$dir/error.log"
    pid="$GW_LAST_PID"
    for ((i = 0; i < 600; i++)); do
        curl -s -m 2 --http2-prior-knowledge -o /dev/null "http://127.0.0.1:$port/v1/models" && break
        sleep 0.1
    done
    gw_log "nghttpx under callgrind: $WARMUP warm-up requests"
    load h2c "http://127.0.0.1:$port/v1/chat/completions" "$WARMUP" "$dir/warmup.txt"
    callgrind_control --zero "$pid" >/dev/null 2>&1
    gw_log "nghttpx: $REQUESTS counted requests"
    load h2c "http://127.0.0.1:$port/v1/chat/completions" "$REQUESTS" "$dir/counted.txt"
    callgrind_control --dump "$pid" >/dev/null 2>&1
    gw_stop "$pid" 60 || gw_warn "nghttpx under callgrind did not exit cleanly"
}
if ((NGHTTPX)); then nghttpx_instructions; fi
if ((ALLOCATIONS)); then for proto in h2c http1; do allocations "$proto"; done; fi

PYTHONPATH="$GW_ROOT/scripts/bench" python3 - "$GW_TMP" "$REQUESTS" "$WARMUP" "$ALLOCATIONS" "${JSON:-}" "$COMMAND" "$NGHTTPX" "$UPSTREAM" <<'PY'
import glob, json, re, sys
from counts import callgrind_total as total
tmp, requests, warmup, with_allocations, json_path, command, with_nghttpx, upstream = sys.argv[1:9]
to_mock = "HTTP/1.1 keep-alive" if upstream == "h1" else "h2c"
requests, warmup = int(requests), int(warmup)

def role(path):
    """Names a thread by the functions it ran (callgrind numbers threads, it does not name them)."""
    text = open(path, errors="replace").read()
    return "reactor" if "ClientConnection" in text else "main"

loads = {"h2c": "gwbench run --h2c -c 4 -m 32", "http1": "gwbench run -c 4"}
result = {"requests": requests, "warmup_requests": warmup, "command": command.strip(),
          "arrangement": f"gateway (bare, 1 reactor) on CPU 0, {to_mock} to gwmock; gwmock and gwbench on CPU 1",
          "upstream": upstream, "protocols": {}}
for proto in ("h2c", "http1"):
    threads = {}
    for path in sorted(glob.glob(f"{tmp}/cg-{proto}/cg.out.1-*")):
        label = role(path)
        threads[label] = threads.get(label, 0) + total(path)
    entry = {"load": loads[proto], "instructions_per_request": sum(threads.values()) / requests,
             "instructions_per_request_by_thread": {k: v / requests for k, v in sorted(threads.items())}}
    if with_allocations == "1":
        counts = dict(line.split() for line in open(f"{tmp}/malloc-{proto}/counts.txt"))
        entry["allocations_per_request"] = int(counts["total"]) / requests
        entry["frees_per_request"] = int(counts["free"]) / requests
    result["protocols"][proto] = entry

print(f"\n{requests} requests (after {warmup} warm-up), the 300-byte chat request, bare gateway, {to_mock} to gwmock")
print(f"{'':8}{'instr/req':>12}   by thread                    load")
for proto, entry in result["protocols"].items():
    parts = ", ".join(f"{k} {v:,.0f}" for k, v in entry["instructions_per_request_by_thread"].items())
    print(f"{proto:8}{entry['instructions_per_request']:>12,.0f}   {parts:28} {entry['load']}")
if with_nghttpx == "1":
    # Only the dumps taken after --zero count (callgrind numbers them: cg.out.1-NN is the first dump's thread NN).
    peer = sum(total(path) for path in glob.glob(f"{tmp}/cg-nghttpx/cg.out.1-*"))
    result["nghttpx_h2c"] = {"load": loads["h2c"], "instructions_per_request": peer / requests,
                             "arrangement": f"nghttpx 1.52 --single-process --workers=1, h2c in, {to_mock} to gwmock"}
    print(f"{'nghttpx':8}{peer / requests:>12,.0f}   {'whole process':28} {loads['h2c']} (the same h2c load)")
if with_allocations == "1":
    print(f"\n{'':8}{'allocs/req':>12}{'frees/req':>12}")
    for proto, entry in result["protocols"].items():
        print(f"{proto:8}{entry['allocations_per_request']:>12.2f}{entry['frees_per_request']:>12.2f}")
if json_path:
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
PY
