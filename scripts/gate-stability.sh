#!/usr/bin/env bash
# shellcheck disable=SC2016 # backticks in the Markdown written with printf
# Runs the CI gate several times on an unchanged tree: one release build, then N × (`gwbench suite --quick`,
# `gwbench check --baseline results/baseline.json`), and records every verdict table. A gate that fails an
# unchanged tree is too tight (or the baseline too lucky).
#
# Usage: scripts/gate-stability.sh [--runs N] [--record FILE.md]
#   --runs N          default 5
#   --record FILE.md  write the tables and a summary there (results/<date>-gate-stability.md is the one kept)
#   Environment: GW_SCRATCH_PATH, GW_BIN_DIR (prebuilt binaries), GW_SKIP_APT as in lib.sh.
# Exit 0 when every run passed.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=5
RECORD=""
while (($# > 0)); do
    case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --record) RECORD="$2"; shift 2 ;;
    -h | --help) sed -n '2,11p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || gw_die "--runs wants a positive integer"
BASELINE="$GW_ROOT/results/baseline.json"
[[ -f "$BASELINE" ]] || gw_die "no baseline at $BASELINE"
gw_install_deps
gw_ensure_swift
gw_build_release
gw_init_tmp

# One row of the summary table: the gate figures of a latest.json (and, with a second argument, scenario 1's noise).
FIGURES='import json,sys
d=json.load(open(sys.argv[1])); g=d["gate"]
cells=[("%.0f" if k=="instructions_per_request" else "%.4g") % g[k] if g.get(k) is not None else "–" for k in ["throughput_ratio","delta_p99_over_direct_p50","cpu_per_request_ratio","allocations_per_request","instructions_per_request"]]
if len(sys.argv) > 2:
    noise=[n for n in (d.get("noise") or []) if n["window"]=="scenario 1"]
    cells.append(", ".join("CPU %d %d%%" % (c["cpu"], round(c["foreign_share"]*100)) for c in noise[0]["cpus"]) if noise else "–")
print(" | ".join(cells))'
passed=0
tables=()
figures=()
for ((run = 1; run <= RUNS; run++)); do
    out="$GW_TMP/run-$run"
    gw_log "run $run/$RUNS: gwbench suite --quick"
    started=$SECONDS
    suite_status=0
    timeout --signal=TERM 600 "$GW_BIN/gwbench" suite --quick --out "$out" >"$GW_TMP/suite-$run.log" 2>&1 || suite_status=$?
    took=$((SECONDS - started))
    check_status=0
    table="$("$GW_BIN/gwbench" check --baseline "$BASELINE" --current "$out/latest.json" 2>&1)" || check_status=$?
    printf '%s\n' "$table"
    if ((suite_status == 0 && check_status == 0)); then passed=$((passed + 1)); fi
    tables+=("### Run $run: suite exit $suite_status in ${took} s, check exit $check_status"$'\n\n```\n'"$table"$'\n```')
    figures+=("$(python3 -c "$FIGURES" "$out/latest.json" noise 2>/dev/null || echo "–")")
done
gw_log "$passed of $RUNS runs passed"

if [[ -n "$RECORD" ]]; then
    {
        printf '# Gate stability: %s consecutive runs on an unchanged tree — %s\n\n' "$RUNS" "$(date +%F)"
        printf 'Command: `scripts/gate-stability.sh --runs %s --record %s`: one release build, then %s × ' "$RUNS" "$RECORD" "$RUNS"
        printf '(`gwbench suite --quick`, `gwbench check --baseline results/baseline.json`).\n\n'
        printf '**%s of %s runs passed.**\n\n' "$passed" "$RUNS"
        printf '| run | throughput_ratio | delta_p99_over_direct_p50 | cpu_per_request_ratio | allocations_per_request | instructions_per_request | other processes during scenario 1 |\n'
        printf '|---:|---:|---:|---:|---:|---:|---|\n'
        printf '| baseline | %s | |\n' "$(python3 -c "$FIGURES" "$BASELINE")"
        for ((i = 0; i < RUNS; i++)); do printf '| %s | %s |\n' "$((i + 1))" "${figures[i]}"; done
        printf '\n'
        for table in "${tables[@]}"; do printf '%s\n\n' "$table"; done
    } >"$RECORD"
    gw_log "wrote $RECORD"
fi
((passed == RUNS))
