#!/usr/bin/env bash
# gwbench's own ceiling over HTTP/2: the same closed-loop h2c load on gwmock from gwbench --h2c and from h2load, in
# interleaved rounds, so that an HTTP/2 figure measured with gwbench is known not to be the load generator's limit.
# Each tool gets 1 thread, the same connections and streams per connection, and the 300-byte chat body; gwmock runs
# alone on CPU 0 (1 thread), the tool on CPU 1. Compared: RPS, p50 and p99 (h2load's computed from its per-request
# --log-file), and each tool's own CPU per request (user + sys from /proc). Everything is on 127.0.0.1.
#
# Usage: scripts/bench-h2c-ceiling.sh [--rounds N] [--duration S] [--connections C] [--streams M] [--out DIR]
#   Writes DIR/<YYYY-MM-DD>-h2c-ceiling.md. Environment: GW_BIN_DIR=DIR uses prebuilt binaries.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
DURATION=5
CONNECTIONS=4
STREAMS=32
OUT="$GW_ROOT/results"
while (($# > 0)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="${2%s}"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --streams) STREAMS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
gw_install_deps
gw_ensure_swift
gw_build_release
BIN="$GW_BIN"
[[ -x "$BIN/gwbench" ]] || gw_die "$BIN/gwbench not found"
command -v h2load >/dev/null 2>&1 || gw_die "h2load not found (apt-get install nghttp2-client)"
gw_can_pin || gw_die "needs 2 CPUs and taskset: gwmock and the load generator each get one"
gw_init_tmp
TMP="$GW_TMP"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
gw_spawn "$TMP/mock.log" 0 "$TMP" "$BIN/gwmock" --listen 127.0.0.1:0 --threads 1
MOCK_PID="$GW_LAST_PID"
URL="$(gw_wait_listening "$TMP/mock.log" "$MOCK_PID")/v1/chat/completions"
BODY="$GW_ROOT/scripts/bench/chat-300.json"

# run_tool OUTFILE CMD...: runs the tool on CPU 1 and records its CPU ticks at exit. Bounded: a tool still running a
# minute past its duration is stopped (by its PID).
run_tool() {
    local out="$1"; shift
    taskset -c 1 "$@" >"$out" 2>&1 &
    local pid=$! ticks=0 waited=0
    while kill -0 "$pid" 2>/dev/null; do
        ticks="$(gw_cpu_ticks "$pid" 2>/dev/null || echo "$ticks")"
        sleep 0.2
        waited=$((waited + 1))
        if ((waited > (DURATION + 60) * 5)); then
            gw_warn "$1 still running after $((DURATION + 60)) s: stopping it"
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    wait "$pid" || gw_warn "$* exited non-zero"
    echo "$ticks" >"$out.cpu"
}

# Warm gwmock up once.
taskset -c 1 timeout 30 h2load -c "$CONNECTIONS" -m "$STREAMS" -t 1 -D 2 -d "$BODY" -H 'content-type: application/json' \
    "$URL" >/dev/null
for round in $(seq 1 "$ROUNDS"); do
    gw_log "round $round/$ROUNDS: gwbench --h2c, h2load"
    run_tool "$TMP/gwbench-$round.txt" "$BIN/gwbench" run "$URL" --h2c -c "$CONNECTIONS" -m "$STREAMS" -t 1 \
        -d "${DURATION}s" --warmup 0s --body "$BODY" --quiet --json "$TMP/gwbench-$round.json"
    run_tool "$TMP/h2load-$round.txt" h2load -c "$CONNECTIONS" -m "$STREAMS" -t 1 -D "$DURATION" -d "$BODY" \
        -H 'content-type: application/json' --log-file="$TMP/h2load-$round.log" "$URL"
done
MOCK_REQUESTS="$(curl -s --max-time 10 "${URL%/v1/chat/completions}/mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["by_path"]["/v1/chat/completions"])')"
gw_stop "$MOCK_PID" || true
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

DATE="$(date -u +%Y-%m-%d)"
python3 - "$TMP" "$ROUNDS" "$DURATION" "$(getconf CLK_TCK)" >"$TMP/summary.md" <<'PY'
import json, re, statistics, sys
tmp, rounds, duration, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rows = {"gwbench": [], "h2load": []}
errors = {"gwbench": 0, "h2load": 0}
for r in range(1, rounds + 1):
    ticks = lambda name: float(open(f"{tmp}/{name}-{r}.txt.cpu").read() or 0)
    g = json.load(open(f"{tmp}/gwbench-{r}.json"))
    result = g["results"][0]
    stats = {s["id"]: s for s in result["statistics"]}
    lat = stats.get("latency") or next(iter(stats.values()))
    scale = {"ns": 1e-3, "us": 1, "ms": 1e3, "s": 1e6}[lat["unit"]]
    pct = {round(p["percentile"] * 100, 3): p["value"] * scale for p in lat["percentiles"]}
    counters = {c["name"]: c["value"] for c in result["counters"]}
    errors["gwbench"] += counters["failures_total"] + counters.get("status_4xx", 0) + counters.get("status_5xx", 0)
    grps = result["rps"]
    rows["gwbench"].append((grps, pct.get(50.0), pct.get(99.0), ticks("gwbench") / hz / (grps * duration) * 1e6))
    h = open(f"{tmp}/h2load-{r}.txt").read()
    hrps = float(re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", h).group(1))
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", h)
    errors["h2load"] += sum(int(x) for x in done.groups())
    # --log-file: start time (µs since the epoch), status, µs until the end of the response; one line per request.
    times = sorted(int(line.split()[2]) for line in open(f"{tmp}/h2load-{r}.log") if line.strip())
    hp50, hp99 = (times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]) if times else (None, None)
    rows["h2load"].append((hrps, hp50, hp99, ticks("h2load") / hz / (hrps * duration) * 1e6))
med = lambda xs: statistics.median([x for x in xs if x is not None]) if any(x is not None for x in xs) else None
fmt = lambda x, f="%.0f": "–" if x is None else f % x
print("| tool | RPS (median) | RPS min–max | p50 µs | p99 µs | tool CPU µs/request | errors |")
print("|---|---:|---:|---:|---:|---:|---:|")
medians = {}
for tool, rs in rows.items():
    medians[tool] = [med([r[i] for r in rs]) for i in range(4)]
    m = medians[tool]
    print(f"| {tool} | {fmt(m[0])} | {fmt(min(r[0] for r in rs))}–{fmt(max(r[0] for r in rs))} | {fmt(m[1])} | "
          f"{fmt(m[2])} | {fmt(m[3], '%.2f')} | {errors[tool]} |")
g, h = medians["gwbench"], medians["h2load"]
print()
print(f"Ratios of the medians, gwbench ÷ h2load: RPS {g[0] / h[0]:.3f}, p50 {g[1] / h[1]:.3f}, p99 {g[2] / h[2]:.3f}, "
      f"CPU per request {g[3] / h[3]:.3f}.")
print()
print("Per round (RPS, p50 µs, p99 µs, CPU µs/request):")
print()
for r in range(rounds):
    print(f"- round {r + 1}: " + "; ".join(f"{t} {fmt(rows[t][r][0])}, {fmt(rows[t][r][1])}, {fmt(rows[t][r][2])}, "
                                           f"{fmt(rows[t][r][3], '%.2f')}" for t in rows))
PY
{
    echo "# gwbench's ceiling over h2c — $DATE"
    echo
    echo "The same closed-loop HTTP/2 (h2c, prior knowledge) load on gwmock (1 thread, alone on CPU 0) from gwbench --h2c"
    echo "and h2load, each with 1 thread on CPU 1: $CONNECTIONS connections × $STREAMS streams, the 300-byte chat body"
    echo "(scripts/bench/chat-300.json), ${DURATION} s per run, $ROUNDS interleaved rounds (gwbench, h2load) after a 2 s"
    echo "h2load warm-up. gwbench's percentiles are its closed-loop latency (HdrHistogram; a request is timed from the"
    echo "writev that carries its HEADERS frame); h2load's are computed from its per-request --log-file. Errors: gwbench's"
    echo "failures and 4xx/5xx, h2load's failed + errored + timeout requests, summed over the rounds."
    echo
    cat "$TMP/summary.md"
    echo
    echo "gwmock counted $MOCK_REQUESTS chat completions over the warm-up and all runs."
    echo "Load average (1, 5, 15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER."
    echo
    echo "Command: \`scripts/bench-h2c-ceiling.sh --rounds $ROUNDS --duration $DURATION --connections $CONNECTIONS --streams $STREAMS\`"
} >"$OUT/$DATE-h2c-ceiling.md"
cat "$OUT/$DATE-h2c-ceiling.md"
