#!/usr/bin/env bash
# gwbench's own cost as deterministic figures: user-space instructions per request (callgrind) and syscalls per
# request (strace -c) of `gwbench run URL -c C -t 1 -n N` against gwmock, the HTTP/1.1 closed loop of
# bench-gwbench-ceiling.sh; and, for reference, wrk's instructions per request on the same load. On a busy machine
# these are the figures to work with (BENCHMARKING.md), not wall-clock RPS.
#
# Usage: scripts/bench-gwbench-instructions.sh [--requests N] [--connections C] [--wrk-duration S] [--keep DIR]
#                                              [--no-strace] [--no-wrk] [--json FILE]
#   --requests N        requests gwbench sends under callgrind (default 100000)
#   --connections C     keep-alive connections (default 32)
#   --wrk-duration S    seconds wrk runs under callgrind (default 10)
#   --keep DIR          keep the callgrind dumps (gwbench: one file per thread; wrk) in DIR, for callgrind_annotate
#   --no-strace         skip the syscall count
#   --no-wrk            skip wrk
#   --json FILE         also write the figures as JSON to FILE
#   Environment: GW_BIN_DIR=DIR uses prebuilt binaries; GW_SKIP_APT=1.
#
# How: gwmock (release, --threads 1) on CPU 0; the load generator on CPU 1; 127.0.0.1 only; the 300-byte chat body
# (scripts/bench/chat-300.json).
# - gwbench: a copy without debug info (valgrind cannot read Swift's) under `valgrind --tool=callgrind
#   --separate-threads=yes`, `run URL -c C -t 1 -n N --warmup 0s`. Every instruction of the process (start-up, the
#   connects and the report included) divided by N, and the load thread's alone divided by N (the headline: the
#   main thread's work is fixed, not per request). The run must get N 2xx.
# - syscalls: the same gwbench run (not under valgrind) under `strace -c -f`; calls divided by N, by syscall.
# - wrk: `wrk -t1 -cC -dS -s scripts/bench/post.lua` under callgrind; every instruction divided by the requests wrk
#   reports (wrk runs for a time, not a count; its start-up is a small share).
# Every process is started by this script and stopped by its PID.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

COMMAND="$0 $*"
REQUESTS=100000
CONNECTIONS=32
WRK_DURATION=10
KEEP=""
JSON=""
STRACE=1
WRK=1
while (($# > 0)); do
    case "$1" in
    --requests) REQUESTS="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --wrk-duration) WRK_DURATION="${2%s}"; shift 2 ;;
    --keep) KEEP="$2"; shift 2 ;;
    --json) JSON="$2"; shift 2 ;;
    --no-strace) STRACE=0; shift ;;
    --no-wrk) WRK=0; shift ;;
    -h | --help) sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ && "$CONNECTIONS" =~ ^[1-9][0-9]*$ && "$WRK_DURATION" =~ ^[1-9][0-9]*$ ]] ||
    gw_die "--requests, --connections and --wrk-duration want positive integers"

gw_install_deps
gw_ensure_swift
tools=(valgrind strip python3)
((STRACE)) && tools+=(strace)
((WRK)) && tools+=(wrk)
for tool in "${tools[@]}"; do command -v "$tool" >/dev/null 2>&1 || gw_die "$tool not found"; done
gw_build_release
[[ -x "$GW_BIN/gwbench" ]] || gw_die "$GW_BIN/gwbench not found"
gw_init_tmp
CPU_MOCK=0
CPU_LOAD=1
if ! gw_can_pin; then CPU_MOCK=-; CPU_LOAD=-; fi
PIN=()
[[ "$CPU_LOAD" != - ]] && PIN=(taskset -c "$CPU_LOAD")
BODY="$GW_ROOT/scripts/bench/chat-300.json"

gw_spawn "$GW_TMP/mock.log" "$CPU_MOCK" "$GW_TMP" "$GW_BIN/gwmock" --listen 127.0.0.1:0 --threads 1
URL="$(gw_wait_listening "$GW_TMP/mock.log" "$GW_LAST_PID")/v1/chat/completions"

# valgrind reports "possibly corrupted debuginfo" for our binaries: it runs a copy without debug info (the symbol
# table stays, so functions keep their names).
cp "$GW_BIN/gwbench" "$GW_TMP/gwbench-nodebug"
strip --strip-debug "$GW_TMP/gwbench-nodebug"

# check_json FILE: fails unless the run got exactly REQUESTS responses, all 2xx.
check_json() {
    python3 "$GW_ROOT/scripts/bench/counts.py" all-good "$1" "$REQUESTS" ||
        gw_die "gwbench did not get $REQUESTS good responses (see $1)"
}

GWBENCH_ARGS=(run "$URL" -c "$CONNECTIONS" -t 1 -n "$REQUESTS" --warmup 0s --body "$BODY" --quiet)

# A short native run first, so that gwmock is warm (and the load works) before anything is counted.
"${PIN[@]}" "$GW_BIN/gwbench" run "$URL" -c "$CONNECTIONS" -t 1 -d 1s --warmup 0s --body "$BODY" --quiet \
    >"$GW_TMP/warm.txt" 2>&1 || gw_die "the warm-up run failed: $(tail -5 "$GW_TMP/warm.txt")"

gw_log "gwbench under callgrind: $REQUESTS requests on $CONNECTIONS connections"
mkdir -p "$GW_TMP/cg-gwbench"
"${PIN[@]}" valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$GW_TMP/cg-gwbench/cg.out" \
    "$GW_TMP/gwbench-nodebug" "${GWBENCH_ARGS[@]}" --json "$GW_TMP/cg-gwbench/run.json" \
    >"$GW_TMP/cg-gwbench/out.txt" 2>&1 || gw_die "gwbench under callgrind failed: $(tail -5 "$GW_TMP/cg-gwbench/out.txt")"
check_json "$GW_TMP/cg-gwbench/run.json"

if ((STRACE)); then
    gw_log "gwbench under strace -c -f: $REQUESTS requests"
    "${PIN[@]}" strace -c -f -o "$GW_TMP/strace.txt" "$GW_BIN/gwbench" "${GWBENCH_ARGS[@]}" --json "$GW_TMP/strace.json" \
        >"$GW_TMP/strace-out.txt" 2>&1 || gw_die "gwbench under strace failed: $(tail -5 "$GW_TMP/strace-out.txt")"
    check_json "$GW_TMP/strace.json"
fi

if ((WRK)); then
    gw_log "wrk under callgrind: ${WRK_DURATION}s on $CONNECTIONS connections"
    mkdir -p "$GW_TMP/cg-wrk"
    "${PIN[@]}" valgrind --tool=callgrind --callgrind-out-file="$GW_TMP/cg-wrk/cg.out" \
        wrk -t1 -c"$CONNECTIONS" -d"${WRK_DURATION}s" -s "$GW_ROOT/scripts/bench/post.lua" "$URL" \
        >"$GW_TMP/cg-wrk/out.txt" 2>"$GW_TMP/cg-wrk/valgrind.txt" || gw_die "wrk under callgrind failed"
fi

if [[ -n "$KEEP" ]]; then
    mkdir -p "$KEEP/gwbench"
    cp "$GW_TMP"/cg-gwbench/cg.out-* "$KEEP/gwbench/"
    if ((WRK)); then mkdir -p "$KEEP/wrk" && cp "$GW_TMP/cg-wrk/cg.out" "$KEEP/wrk/"; fi
    gw_log "callgrind dumps kept in $KEEP (callgrind_annotate --inclusive=yes FILE)"
fi

PYTHONPATH="$GW_ROOT/scripts/bench" python3 - "$GW_TMP" "$REQUESTS" "$CONNECTIONS" "$STRACE" "$WRK" "${JSON:-}" "$COMMAND" <<'PY'
import glob, json, re, sys
from counts import callgrind_total as total
tmp, requests, connections, with_strace, with_wrk, json_path, command = sys.argv[1:8]
requests = int(requests)

def role(path):
    """Names a thread by what it ran (callgrind numbers threads, it does not name them)."""
    text = open(path, errors="replace").read()
    return "load thread" if "readAvailable" in text or "handleEvent" in text else "main thread"

threads = {}
for path in sorted(glob.glob(f"{tmp}/cg-gwbench/cg.out-*")):
    label = role(path)
    threads[label] = threads.get(label, 0) + total(path)
result = {"command": command.strip(), "requests": requests, "connections": connections,
          "arrangement": "gwmock (--threads 1) on CPU 0; the load generator (1 thread) on CPU 1",
          # The load thread's instructions are the per-request cost. The main thread's are fixed (start-up, the
          # connects, and the report's percentile walk over the histograms after the run), spread over N here.
          "gwbench": {"load_thread_instructions_per_request": threads.get("load thread", 0) / requests,
                      "whole_process_instructions_per_request": sum(threads.values()) / requests,
                      "main_thread_instructions_total": threads.get("main thread", 0)}}
g = result["gwbench"]
print(f"\ngwbench run -c {connections} -t 1 -n {requests}, the 300-byte chat request, gwmock --threads 1")
print(f"  load thread: {g['load_thread_instructions_per_request']:,.0f} instructions per request")
print(f"  whole process: {g['whole_process_instructions_per_request']:,.0f} per request "
      f"(the main thread's fixed {g['main_thread_instructions_total']:,} for start-up and the report, spread over N)")

if with_strace == "1":
    calls = {}
    for line in open(f"{tmp}/strace.txt"):
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            calls[parts[-1]] = int(parts[3])
    per = {k: v / requests for k, v in sorted(calls.items(), key=lambda kv: -kv[1])}
    result["gwbench"]["syscalls_per_request"] = sum(calls.values()) / requests
    result["gwbench"]["syscalls_per_request_by_call"] = {k: round(v, 4) for k, v in per.items() if v >= 0.001}
    print(f"  syscalls per request: {result['gwbench']['syscalls_per_request']:.3f} (" +
          ", ".join(f"{k} {v:.3f}" for k, v in per.items() if v >= 0.01) + ")")

if with_wrk == "1":
    out = open(f"{tmp}/cg-wrk/out.txt").read()
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise SystemExit("no request count in wrk's output:\n" + out)
    wrk_requests = int(m.group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    instructions = total(f"{tmp}/cg-wrk/cg.out")
    result["wrk"] = {"requests": wrk_requests, "instructions_per_request": instructions / wrk_requests,
                     "non_2xx": int(errors.group(1)) if errors else 0}
    print(f"wrk -t1 -c{connections} (under callgrind, {wrk_requests} requests): "
          f"{instructions / wrk_requests:,.0f} instructions per request")
if json_path:
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
PY
