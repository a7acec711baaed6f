#!/usr/bin/env bash
# The CI regression gate: build release, run `gwbench suite --quick`, then `gwbench check` against the baseline.
#
# Usage: scripts/ci-gate.sh [--out DIR] [--baseline FILE]
#   --out DIR       where the suite writes latest.json and the rest (default: a new temp folder, kept and printed)
#   --baseline FILE the gate's baseline (default: results/baseline.json)
#   Environment: GW_SCRATCH_PATH=DIR builds in DIR; GW_BIN_DIR=DIR uses prebuilt binaries (gateway, gwmock and
#   gwbench); GW_SKIP_APT=1 skips the package check (valgrind comes from there).
# Exit 0 when the suite ran cleanly and no gate figure is worse than the baseline beyond its tolerance; non-zero
# otherwise (the suite's or check's status). `gwbench check --help` explains the figures and tolerances.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT=""
BASELINE="$GW_ROOT/results/baseline.json"
while (($# > 0)); do
    case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --baseline) BASELINE="$2"; shift 2 ;;
    -h | --help) sed -n '2,11p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
[[ -f "$BASELINE" ]] || gw_die "no baseline at $BASELINE"

gw_install_deps
gw_ensure_swift
command -v valgrind >/dev/null 2>&1 || gw_warn "valgrind not found: instructions_per_request will be missing and the gate will fail"
gw_build_release
[[ -x "$GW_BIN/gwbench" ]] || gw_die "$GW_BIN/gwbench not found"

if [[ -z "$OUT" ]]; then OUT="$(mktemp -d "${TMPDIR:-/tmp}/gwbench-gate-XXXXXX")"; fi
mkdir -p "$OUT"
gw_log "gwbench suite --quick --out $OUT"
suite_status=0
# Bounded: --quick takes under 3 minutes; the suite stops its children by PID on SIGTERM.
timeout --signal=TERM 600 "$GW_BIN/gwbench" suite --quick --out "$OUT" || suite_status=$?

check_status=0
if [[ -f "$OUT/latest.json" ]]; then
    gw_log "gwbench check --baseline $BASELINE --current $OUT/latest.json"
    "$GW_BIN/gwbench" check --baseline "$BASELINE" --current "$OUT/latest.json" || check_status=$?
else
    gw_warn "the suite wrote no $OUT/latest.json"
    check_status=2
fi

gw_log "results in $OUT"
if ((suite_status != 0)); then printf 'FAILED: gwbench suite (exit %s)\n' "$suite_status" >&2; fi
if ((check_status != 0)); then printf 'FAILED: gwbench check (exit %s)\n' "$check_status" >&2; fi
if ((suite_status != 0)); then exit "$suite_status"; fi
exit "$check_status"
