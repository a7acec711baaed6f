#!/usr/bin/env bash
# gwbench's own ceiling: the same closed-loop load on gwmock from gwbench, wrk and h2load (HTTP/1.1), in
# interleaved rounds, so that a gateway figure measured with gwbench is known not to be the load generator's limit.
# Each tool gets 1 thread and the same connections and 300-byte chat body; gwmock runs alone on CPU 0, the tool on
# CPU 1. Compared: RPS, p50 and p99 (h2load's from its per-request --log-file, so a third tool referees gwbench
# against wrk), and each tool's own CPU per request (user + sys from /proc). Then the same open-loop loads, a quarter
# and a half of gwbench's closed-loop median RPS, from gwbench (--rate) and h2load (--rps per connection): closed-loop
# latencies of two tools differ when their RPS differ, so the open loop is where their percentiles can be compared.
#
# Usage: scripts/bench-gwbench-ceiling.sh [--rounds N] [--duration S] [--connections C] [--out DIR]
#   Writes DIR/<YYYY-MM-DD>-gwbench-ceiling.md. Environment: GW_BIN_DIR=DIR uses prebuilt binaries.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=3
DURATION=5
CONNECTIONS=32
OUT="$GW_ROOT/results"
while (($# > 0)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="${2%s}"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
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
for tool in wrk h2load; do command -v "$tool" >/dev/null 2>&1 || gw_die "$tool not found"; done
gw_init_tmp
TMP="$GW_TMP"
gw_spawn "$TMP/mock.log" 0 "$TMP" "$BIN/gwmock" --listen 127.0.0.1:0 --threads 1
URL="$(gw_wait_listening "$TMP/mock.log" "$GW_LAST_PID")/v1/chat/completions"
BODY="$GW_ROOT/scripts/bench/chat-300.json"

# run_tool NAME OUTFILE CMD...: runs the tool in the background on CPU 1 and records its CPU ticks at exit.
run_tool() {
    local out="$1"; shift
    taskset -c 1 "$@" >"$out" 2>&1 &
    local pid=$! ticks=0
    while kill -0 "$pid" 2>/dev/null; do
        ticks="$(gw_cpu_ticks "$pid" 2>/dev/null || echo "$ticks")"
        sleep 0.2
    done
    wait "$pid" || gw_warn "$* exited non-zero"
    echo "$ticks" >"$out.cpu"
}

# Warm gwmock up once.
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -s "$GW_ROOT/scripts/bench/post.lua" "$URL" >/dev/null
for round in $(seq 1 "$ROUNDS"); do
    gw_log "round $round/$ROUNDS: wrk, gwbench, h2load"
    run_tool "$TMP/wrk-$round.txt" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$GW_ROOT/scripts/bench/post.lua" "$URL"
    run_tool "$TMP/gwbench-$round.txt" "$BIN/gwbench" run "$URL" -c "$CONNECTIONS" -t 1 -d "${DURATION}s" --warmup 0s \
        --body "$BODY" --quiet --json "$TMP/gwbench-$round.json"
    run_tool "$TMP/h2load-$round.txt" h2load --h1 -c "$CONNECTIONS" -t 1 -D "$DURATION" -d "$BODY" \
        -H 'content-type: application/json' --log-file="$TMP/h2load-$round.log" "$URL"
done

# The open loop: the same rates from both tools, multiples of the connections so that h2load's per-connection rate
# is whole.
RATES="$(python3 - "$TMP" "$ROUNDS" "$CONNECTIONS" <<'PY'
import json, statistics, sys
tmp, rounds, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rps = statistics.median(json.load(open(f"{tmp}/gwbench-{r}.json"))["results"][0]["rps"] for r in range(1, rounds + 1))
print(" ".join(str(max(conns, int(rps * f) // conns * conns)) for f in (0.25, 0.5)))
PY
)"
for round in $(seq 1 "$ROUNDS"); do
    for rate in $RATES; do
        gw_log "open-loop round $round/$ROUNDS at $rate requests/s: gwbench, h2load"
        run_tool "$TMP/open-gwbench-$rate-$round.txt" "$BIN/gwbench" run "$URL" -c "$CONNECTIONS" -t 1 \
            -d "${DURATION}s" --warmup 0s --rate "$rate" --body "$BODY" --quiet --json "$TMP/open-gwbench-$rate-$round.json"
        run_tool "$TMP/open-h2load-$rate-$round.txt" h2load --h1 -c "$CONNECTIONS" -t 1 -D "$DURATION" \
            --rps "$((rate / CONNECTIONS))" -d "$BODY" -H 'content-type: application/json' \
            --log-file="$TMP/open-h2load-$rate-$round.log" "$URL"
    done
done

DATE="$(date -u +%Y-%m-%d)"
python3 - "$TMP" "$ROUNDS" "$CONNECTIONS" "$DURATION" "$(getconf CLK_TCK)" "$RATES" >"$TMP/summary.md" <<'PY'
import json, re, statistics, sys
tmp, rounds, conns, duration, hz = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
rates = [int(x) for x in sys.argv[6].split()]
def us(text):  # wrk's "1.23ms" / "456.00us" / "1.2s"
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
rows = {"wrk": [], "gwbench": [], "h2load": []}
for r in range(1, rounds + 1):
    ticks = lambda name: float(open(f"{tmp}/{name}-{r}.txt.cpu").read() or 0)
    w = open(f"{tmp}/wrk-{r}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", w).group(1))
    # The --latency distribution lines ("     50%  331.00us"), not a percentage inside the thread stats.
    p50 = us(re.search(r"^\s+50%\s+(\S+)", w, re.M).group(1)); p99 = us(re.search(r"^\s+99%\s+(\S+)", w, re.M).group(1))
    mean = us(re.search(r"^\s+Latency\s+(\S+)", w, re.M).group(1))  # Thread Stats: Avg
    rows["wrk"].append((rps, p50, p99, ticks("wrk") / hz / (rps * duration) * 1e6, mean))
    g = json.load(open(f"{tmp}/gwbench-{r}.json"))
    stats = {s["id"]: s for s in g["results"][0]["statistics"]}
    lat = stats.get("latency") or next(iter(stats.values()))
    scale = {"ns": 1e-3, "us": 1, "ms": 1e3, "s": 1e6}[lat["unit"]]
    pct = {round(p["percentile"] * 100, 3): p["value"] * scale for p in lat["percentiles"]}
    grps = g["results"][0]["rps"]
    rows["gwbench"].append((grps, pct.get(50.0), pct.get(99.0), ticks("gwbench") / hz / (grps * duration) * 1e6,
                            lat["mean"] * scale))
    h = open(f"{tmp}/h2load-{r}.txt").read()
    hrps = float(re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", h).group(1))
    # --log-file: start time (µs since the epoch), status, µs until the end of the response; one line per request.
    times = sorted(int(line.split()[2]) for line in open(f"{tmp}/h2load-{r}.log") if line.strip())
    hp50, hp99 = (times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]) if times else (None, None)
    rows["h2load"].append((hrps, hp50, hp99, ticks("h2load") / hz / (hrps * duration) * 1e6,
                           statistics.mean(times) if times else None))
med = lambda xs: statistics.median([x for x in xs if x is not None]) if any(x is not None for x in xs) else None
fmt = lambda x, f="%.0f": "–" if x is None else f % x
# Little's law: a closed loop keeps C requests in flight, so the true mean latency is C / RPS. A tool whose reported
# mean falls short of it leaves part of each request's time out of its latency (wrk starts timing when the socket
# turns writable, not when the previous response ended).
print(f"| tool | RPS (median) | RPS min–max | p50 µs | p99 µs | mean µs | C ÷ RPS µs (Little) | tool CPU µs/request |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
medians = {}
for tool, rs in rows.items():
    medians[tool] = [med([r[i] for r in rs]) for i in range(5)]
    m = medians[tool]
    little = med([int(conns) / r[0] * 1e6 for r in rs])
    print(f"| {tool} | {fmt(m[0])} | {fmt(min(r[0] for r in rs))}–{fmt(max(r[0] for r in rs))} | {fmt(m[1])} | {fmt(m[2])} "
          f"| {fmt(m[4])} | {fmt(little)} | {fmt(m[3], '%.2f')} |")
g, w, h = medians["gwbench"], medians["wrk"], medians["h2load"]
print()
print(f"Ratios of the medians: gwbench ÷ wrk RPS {g[0] / w[0]:.3f}, p50 {g[1] / w[1]:.3f}, p99 {g[2] / w[2]:.3f}; "
      f"gwbench ÷ h2load RPS {g[0] / h[0]:.3f}.")
paired = lambda i, other: statistics.median(rows["gwbench"][r][i] / rows[other][r][i] for r in range(rounds)
                                            if rows[other][r][i])
print()
print(f"Medians of the per-round ratios (each round's runs are back to back): gwbench ÷ wrk RPS {paired(0, 'wrk'):.3f}, "
      f"p50 {paired(1, 'wrk'):.3f}, p99 {paired(2, 'wrk'):.3f}; gwbench ÷ h2load RPS {paired(0, 'h2load'):.3f}, "
      f"p50 {paired(1, 'h2load'):.3f}, p99 {paired(2, 'h2load'):.3f}.")
print()
print("Per round (RPS, p50 µs, p99 µs, CPU µs/request):")
print()
for r in range(rounds):
    print(f"- round {r + 1}: " + "; ".join(f"{t} {fmt(rows[t][r][0])}, {fmt(rows[t][r][1])}, {fmt(rows[t][r][2])}, {fmt(rows[t][r][3], '%.2f')}" for t in rows))

def gw_percentiles(stat):
    scale = {"ns": 1e-3, "us": 1, "ms": 1e3, "s": 1e6}[stat["unit"]]
    pct = {round(p["percentile"] * 100, 3): p["value"] * scale for p in stat["percentiles"]}
    return pct.get(50.0), pct.get(99.0)
def h2_percentiles(path):
    times = sorted(int(line.split()[2]) for line in open(path) if line.strip())
    return (times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))], len(times)) if times else (None, None, 0)
for rate in rates:
    open_rows = []
    for r in range(1, rounds + 1):
        g = json.load(open(f"{tmp}/open-gwbench-{rate}-{r}.json"))["results"][0]
        stats = {s["id"]: s for s in g["statistics"]}
        corrected = gw_percentiles(stats["latency"])
        uncorrected = gw_percentiles(stats.get("latency_uncorrected", stats["latency"]))
        h = h2_percentiles(f"{tmp}/open-h2load-{rate}-{r}.log")
        open_rows.append((g["rps"], corrected, uncorrected, h[2] / duration, h[:2]))
    print()
    print(f"## The same open-loop load: {rate} requests/s on {conns} connections")
    print()
    print("gwbench `--rate` (its corrected latency counts from each request's intended send time, the uncorrected from")
    print("the actual send) against h2load `--rps` per connection (from the actual send).")
    print()
    print("| round | gwbench RPS | p50 µs | p99 µs | uncorrected p50 | uncorrected p99 | h2load RPS | p50 µs | p99 µs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, (grps, c, u, hrps, h) in enumerate(open_rows):
        print(f"| {i + 1} | {fmt(grps)} | {fmt(c[0])} | {fmt(c[1])} | {fmt(u[0])} | {fmt(u[1])} | {fmt(hrps)} | {fmt(h[0])} | {fmt(h[1])} |")
    ratio = lambda pick: med([pick(row) for row in open_rows])
    print()
    print(f"Medians of the per-round ratios, gwbench ÷ h2load: p50 {ratio(lambda r: r[1][0] / r[4][0]):.3f}, "
          f"p99 {ratio(lambda r: r[1][1] / r[4][1]):.3f} (corrected); p50 {ratio(lambda r: r[2][0] / r[4][0]):.3f}, "
          f"p99 {ratio(lambda r: r[2][1] / r[4][1]):.3f} (uncorrected).")
PY
{
    echo "# gwbench's own ceiling — $DATE"
    echo
    echo "The same load on gwmock (1 thread, alone on CPU 0) from three load generators, each with 1 thread on CPU 1,"
    echo "$CONNECTIONS keep-alive connections, the 300-byte chat body (scripts/bench/chat-300.json), ${DURATION} s per run,"
    echo "$ROUNDS interleaved rounds (wrk, gwbench, h2load) after a 2 s warm-up. wrk's percentiles are its --latency"
    echo "figures; gwbench's are its closed-loop percentiles (HdrHistogram); h2load's are computed from its per-request log."
    echo
    cat "$TMP/summary.md"
    echo
    echo "Command: \`scripts/bench-gwbench-ceiling.sh --rounds $ROUNDS --duration $DURATION --connections $CONNECTIONS\`"
} >"$OUT/$DATE-gwbench-ceiling.md"
cat "$OUT/$DATE-gwbench-ceiling.md"
