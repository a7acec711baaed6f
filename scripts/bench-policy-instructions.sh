#!/usr/bin/env bash
# The cost of the control layer as deterministic figures: instructions per request (callgrind, per thread) and
# allocations per request (LD_PRELOAD malloc counter), the bare proxy (open mode) against the full policy, with the
# configurations of bench-policy.sh. These are the figures to work with on a busy machine (BENCHMARKING.md).
#
# Usage: scripts/bench-policy-instructions.sh [--requests N] [--warmup N] [--json FILE] [--keep DIR] [--no-allocations]
#   --requests N      counted requests per gateway (default 6000)
#   --warmup N        requests before counting (default 300)
#   --json FILE       also write every figure as JSON to FILE
#   --keep DIR        keep the callgrind dumps (one file per thread) in DIR, for callgrind_annotate
#   --no-allocations  skip the malloc-counter runs
#   Environment: GW_BIN_DIR=DIR uses prebuilt binaries; GW_SKIP_APT=1.
#
# How, for each gateway in turn (pinned to CPU 0; gwmock and gwbench on CPU 1; 127.0.0.1 only):
# - instructions: the gateway (a copy without debug info, which valgrind cannot read) under
#   `valgrind --tool=callgrind --separate-threads=yes`; warm-up requests; `callgrind_control --zero`; the counted
#   requests (`gwbench run -n N -c 4`, the 300-byte chat request); wait until the audit writer has committed every
#   record; `callgrind_control --dump`. Each thread's total, divided by N; the threads are named by what they ran
#   (reactor, audit writer, admin, main).
# - allocations: the gateway with scripts/bench/malloc-counter.c preloaded; warm-up; SIGUSR1 (reset); the counted
#   requests; wait for the audit writer; SIGUSR2 (report). Every allocating call of the process, divided by N.
# Every process is started by this script and stopped by its PID.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench/policy-configs.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench/policy-configs.sh"

COMMAND="$0 $*"
REQUESTS=6000
WARMUP=300
JSON=""
KEEP=""
ALLOCATIONS=1
while (($# > 0)); do
    case "$1" in
    --requests) REQUESTS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --json) JSON="$2"; shift 2 ;;
    --keep) KEEP="$2"; shift 2 ;;
    --no-allocations) ALLOCATIONS=0; shift ;;
    -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ && "$WARMUP" =~ ^[1-9][0-9]*$ ]] || gw_die "--requests and --warmup want positive integers"

gw_install_deps
gw_ensure_swift
for tool in valgrind callgrind_control strip cc python3; do
    command -v "$tool" >/dev/null 2>&1 || gw_die "$tool not found"
done
gw_build_release
gw_init_tmp
CPU_GATEWAY=0
CPU_LOAD=1
if ! gw_can_pin; then CPU_GATEWAY=-; CPU_LOAD=-; fi
export BENCH_ADMIN_KEY=bench-admin

gw_spawn "$GW_TMP/mock.log" "$CPU_LOAD" "$GW_TMP" "$GW_BIN/gwmock" --listen 127.0.0.1:0 --threads 1
MOCK_URL="$(gw_wait_listening "$GW_TMP/mock.log" "$GW_LAST_PID")"
gw_write_policy_configs "$GW_TMP" "${MOCK_URL##*:}"

# valgrind reports "possibly corrupted debuginfo" for our binaries: it runs a copy without debug info (the symbol
# table stays, so functions keep their names).
cp "$GW_BIN/gateway" "$GW_TMP/gateway-nodebug"
strip --strip-debug "$GW_TMP/gateway-nodebug"
cc -O2 -shared -fPIC -o "$GW_TMP/libmalloccounter.so" "$GW_ROOT/scripts/bench/malloc-counter.c" -ldl

# load URL COUNT LOG: exactly COUNT requests on 4 connections; fails unless all COUNT got a 2xx.
load() {
    local pin=()
    [[ "$CPU_LOAD" != - ]] && pin=(--pin "$CPU_LOAD")
    "$GW_BIN/gwbench" run "$1" -n "$2" -c 4 --warmup 0s --key sk-bench --quiet "${pin[@]}" --json "$3.json" >"$3" 2>&1 ||
        gw_die "gwbench run failed: $(tail -5 "$3")"
    python3 "$GW_ROOT/scripts/bench/counts.py" all-good "$3.json" "$2" ||
        gw_die "gwbench did not get $2 good responses (see $3)"
}

# settle NAME COUNT: waits until the policy gateway's audit log holds COUNT records (the writer commits in batches);
# nothing to wait for with the bare proxy.
settle() {
    [[ "$1" == policy ]] || return 0
    local i
    for ((i = 0; i < 600; i++)); do
        if python3 - "$GW_TMP/audit.db" "$2" <<'PY'; then return 0; fi
import sqlite3, sys
try:
    n = sqlite3.connect(sys.argv[1], timeout=1).execute("SELECT count(*) FROM audit").fetchone()[0]
except sqlite3.Error:
    n = -1
sys.exit(0 if n >= int(sys.argv[2]) else 1)
PY
        sleep 0.1
    done
    gw_die "the audit log did not reach $2 records within 60 s"
}

# instructions NAME: one callgrind run; leaves the per-thread dumps in $GW_TMP/cg-NAME/.
instructions() {
    local name="$1" dir="$GW_TMP/cg-$1" url pid
    mkdir -p "$dir"
    rm -f "$GW_TMP/audit.db" "$GW_TMP/audit.db-"*
    gw_spawn "$dir/gateway.log" "$CPU_GATEWAY" "$dir" valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$dir/cg.out" "$GW_TMP/gateway-nodebug" serve --config "$GW_TMP/$name.yaml"
    pid="$GW_LAST_PID"
    url="$(gw_wait_listening "$dir/gateway.log" "$pid" 120)"
    gw_log "$name under callgrind at $url: $WARMUP warm-up requests"
    load "$url" "$WARMUP" "$dir/warmup.txt"
    settle "$name" "$WARMUP"
    callgrind_control --zero "$pid" >/dev/null 2>&1
    gw_log "$name: $REQUESTS counted requests"
    load "$url" "$REQUESTS" "$dir/counted.txt"
    settle "$name" $((WARMUP + REQUESTS))
    callgrind_control --dump "$pid" >/dev/null 2>&1
    gw_stop "$pid" 60 || gw_die "the $name gateway under callgrind did not exit cleanly (log: $dir/gateway.log)"
    if [[ -n "$KEEP" ]]; then mkdir -p "$KEEP/$name" && cp "$dir"/cg.out.1-* "$KEEP/$name/"; fi
}

# allocations NAME: prints the allocating calls over the counted requests.
allocations() {
    local name="$1" dir="$GW_TMP/malloc-$1" url pid i
    mkdir -p "$dir"
    rm -f "$GW_TMP/audit.db" "$GW_TMP/audit.db-"*
    gw_spawn "$dir/gateway.log" "$CPU_GATEWAY" "$dir" env LD_PRELOAD="$GW_TMP/libmalloccounter.so" \
        MALLOC_COUNTER_OUT="$dir/counts.txt" "$GW_BIN/gateway" serve --config "$GW_TMP/$name.yaml"
    pid="$GW_LAST_PID"
    url="$(gw_wait_listening "$dir/gateway.log" "$pid")"
    load "$url" "$WARMUP" "$dir/warmup.txt"
    settle "$name" "$WARMUP"
    kill -USR1 "$pid"
    load "$url" "$REQUESTS" "$dir/counted.txt"
    settle "$name" $((WARMUP + REQUESTS))
    rm -f "$dir/counts.txt"
    kill -USR2 "$pid"
    for ((i = 0; i < 100; i++)); do [[ -s "$dir/counts.txt" ]] && break; sleep 0.05; done
    [[ -s "$dir/counts.txt" ]] || gw_die "the malloc counter wrote nothing (log: $dir/gateway.log)"
    gw_stop "$pid" 30 || gw_die "the $name gateway with the malloc counter did not exit cleanly"
}

for name in bare policy; do instructions "$name"; done
if ((ALLOCATIONS)); then for name in bare policy; do allocations "$name"; done; fi

PYTHONPATH="$GW_ROOT/scripts/bench" python3 - "$GW_TMP" "$REQUESTS" "$WARMUP" "$ALLOCATIONS" "${JSON:-}" "$COMMAND" <<'PY'
import glob, json, os, re, sys
from counts import callgrind_total as total
tmp, requests, warmup, with_allocations, json_path, command = sys.argv[1:7]
requests, warmup = int(requests), int(warmup)

def role(path):
    """Names a thread by the functions it ran (callgrind numbers threads, it does not name them)."""
    text = open(path, errors="replace").read()
    for marker, name in (("AuditWriter", "audit writer"), ("ClientConnection", "reactor"),
                         ("AdminServer", "admin"), ("AdminConnection", "admin")):
        if marker in text:
            return name
    return "main"

result = {"requests": requests, "warmup_requests": warmup, "connections": 4, "command": command.strip(),
          "arrangement": "gateway on CPU 0; gwmock and gwbench on CPU 1", "gateways": {}}
for name in ("bare", "policy"):
    threads = {}
    for path in sorted(glob.glob(f"{tmp}/cg-{name}/cg.out.1-*")):
        label = role(path)
        threads[label] = threads.get(label, 0) + total(path)
    entry = {"instructions_per_request": sum(threads.values()) / requests,
             "instructions_per_request_by_thread": {k: v / requests for k, v in sorted(threads.items())}}
    if with_allocations == "1":
        counts = dict(line.split() for line in open(f"{tmp}/malloc-{name}/counts.txt"))
        entry["allocations_per_request"] = int(counts["total"]) / requests
        entry["frees_per_request"] = int(counts["free"]) / requests
    result["gateways"][name] = entry

print(f"\n{requests} requests (after {warmup} warm-up), 4 connections, the 300-byte chat request")
print(f"{'':10}{'instr/req':>12}   by thread")
for name, entry in result["gateways"].items():
    parts = ", ".join(f"{k} {v:,.0f}" for k, v in entry["instructions_per_request_by_thread"].items())
    print(f"{name:10}{entry['instructions_per_request']:>12,.0f}   {parts}")
bare, policy = (result["gateways"][n]["instructions_per_request"] for n in ("bare", "policy"))
print(f"{'policy-bare':10}{policy - bare:>+12,.0f}   ({policy / bare:.2f}x)")
if with_allocations == "1":
    print(f"\n{'':10}{'allocs/req':>12}{'frees/req':>12}")
    for name, entry in result["gateways"].items():
        print(f"{name:10}{entry['allocations_per_request']:>12.2f}{entry['frees_per_request']:>12.2f}")
if json_path:
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
PY
