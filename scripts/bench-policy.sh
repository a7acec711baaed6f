#!/usr/bin/env bash
# The cost of the control layer: the bare proxy (open mode) against the full policy (auth, RBAC, rate
# limits, budget, audit log to SQLite, metrics), with gwbench compare in one interleaved run.
#
# Usage: scripts/bench-policy.sh [--rounds N] [--duration S] [--rate-fraction F] [--out DIR]
#   --rate-fraction F  the latency run's open-loop rate as a fraction of direct's maximum (default 0.5)
#   Writes DIR/<YYYY-MM-DD>-policy-overhead.{json,md}. Environment: GW_BIN_DIR=DIR uses prebuilt binaries.
# Arrangement on 2 CPUs: both gateways on CPU 0 (one measured at a time), gwmock and gwbench on CPU 1.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench/policy-configs.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench/policy-configs.sh"

ROUNDS=3
DURATION=5
RATE_FRACTION=0.5
OUT="$GW_ROOT/results"
while (($# > 0)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="${2%s}"; shift 2 ;;
    --rate-fraction) RATE_FRACTION="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
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
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

# Starts "$@" in the background with its stdout in $TMP/$NAME.out and waits for its listening line.
start() {
    local name="$1"; shift
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PIDS+=("$!")
    eval "${name}_PID=$!"
    for _ in $(seq 1 100); do grep -q '^listening ' "$TMP/$name.out" && return 0; sleep 0.1; done
    gw_die "$name did not start: $(cat "$TMP/$name.err")"
}
port_of() { sed -n 's/^listening http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$TMP/$1.out" | head -1; }

start mock taskset -c 1 "$BIN/gwmock" --listen 127.0.0.1:0 --threads 1
MOCK_PORT="$(port_of mock)"
gw_write_policy_configs "$TMP" "$MOCK_PORT"
start bare taskset -c 0 "$BIN/gateway" serve --config "$TMP/bare.yaml"
BENCH_ADMIN_KEY=bench-admin start policy taskset -c 0 "$BIN/gateway" serve --config "$TMP/policy.yaml"
BARE="http://127.0.0.1:$(port_of bare)"
POLICY="http://127.0.0.1:$(port_of policy)"
DIRECT="http://127.0.0.1:$MOCK_PORT"

COMMON=(--rounds "$ROUNDS" -d "${DURATION}s" --warmup 2s -c 32 --key sk-bench --pin 1 --quiet
    --pid "direct=$mock_PID" --pid "bare=$bare_PID" --pid "policy=$policy_PID"
    --arrangement "gateways on CPU 0 (one measured at a time), gwmock and gwbench on CPU 1")
gw_log "throughput: direct, bare, policy"
"$BIN/gwbench" compare --direct "$DIRECT" --via "bare=$BARE" --via "policy=$POLICY" "${COMMON[@]}" \
    --json "$TMP/throughput.json" | tee "$TMP/throughput.txt"
gw_log "latency at $RATE_FRACTION of direct's maximum"
"$BIN/gwbench" compare --direct "$DIRECT" --via "bare=$BARE" --via "policy=$POLICY" "${COMMON[@]}" \
    --mode latency --rate-fraction "$RATE_FRACTION" --json "$TMP/latency.json" | tee "$TMP/latency.txt"

RECORDS="$(sqlite3 "$TMP/audit.db" 'SELECT count(*) FROM audit' 2>/dev/null || echo '?')"
DATE="$(date -u +%Y-%m-%d)"
python3 - "$TMP/throughput.json" "$TMP/latency.json" "$OUT/$DATE-policy-overhead.json" <<'PY'
import json, sys
out = {"throughput": json.load(open(sys.argv[1])), "latency": json.load(open(sys.argv[2]))}
json.dump(out, open(sys.argv[3], "w"), indent=1)
PY
{
    echo "# Full policy against the bare proxy — $DATE"
    echo
    echo "Both gateways are the same release build; \`policy\` authenticates a key, checks its group's model patterns, admits"
    echo "against key and group RPM/TPM/concurrency limits and budgets, reads usage from every response, writes an audit"
    echo "record per request to SQLite (writer thread) and records metrics. \`bare\` is open mode (no keys, no store)."
    echo "The policy gateway wrote $RECORDS audit records during the run."
    echo
    echo "## Throughput (closed loop, 32 connections)"
    echo
    echo '```'
    cat "$TMP/throughput.txt"
    echo '```'
    echo
    echo "## Latency (open loop at $RATE_FRACTION of direct's maximum)"
    echo
    echo '```'
    cat "$TMP/latency.txt"
    echo '```'
    echo
    echo "## Command"
    echo
    echo '```'
    echo "scripts/bench-policy.sh --rounds $ROUNDS --duration $DURATION --rate-fraction $RATE_FRACTION"
    echo '```'
} >"$OUT/$DATE-policy-overhead.md"
gw_log "wrote $OUT/$DATE-policy-overhead.md"
