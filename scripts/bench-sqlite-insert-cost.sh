#!/usr/bin/env bash
# What one audit record costs SQLite to store, by table shape, in instructions (callgrind): the current audit table
# against narrower and batched ones. See scripts/bench/sqlite-insert-cost.c for the shapes.
#
# Usage: scripts/bench-sqlite-insert-cost.sh [--records N]
#   --records N   the larger run's records (default 40000; the smaller run has half). Per record = the difference
#                 of the two runs' totals over N/2, so set-up and the first pages do not count.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RECORDS=40000
while (($# > 0)); do
    case "$1" in
    --records) RECORDS="$2"; shift 2 ;;
    -h | --help) sed -n '2,7p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
[[ "$RECORDS" =~ ^[1-9][0-9]*$ && "$RECORDS" -ge 1024 ]] || gw_die "--records wants an integer of at least 1024"

gw_install_deps
for tool in valgrind cc; do command -v "$tool" >/dev/null 2>&1 || gw_die "$tool not found"; done
gw_init_tmp
cc -O2 -o "$GW_TMP/sqlite-insert-cost" "$GW_ROOT/scripts/bench/sqlite-insert-cost.c" -lsqlite3

instructions() {
    valgrind --tool=callgrind --callgrind-out-file="$GW_TMP/cg.out" "$GW_TMP/sqlite-insert-cost" "$1" "$2" \
        "$GW_TMP/audit.db" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

HALF=$((RECORDS / 2))
echo "SQLite $(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo '?'): instructions per stored record"
printf '%-12s %10s\n' shape instr/record
for shape in rows rows-noidx rows-plain narrow batch; do
    small="$(instructions "$shape" "$HALF")"
    large="$(instructions "$shape" "$RECORDS")"
    printf '%-12s %10s\n' "$shape" "$(((large - small) / (RECORDS - HALF)))"
done
