#!/usr/bin/env bash
# shellcheck disable=SC2016 # backticks in the Markdown written with printf
# Shows that the performance gate catches a regression: copies this tree (without .build*, .venv, .git) to a temp
# folder, slows ClientConnection.dispatch() there (the copy only; nothing in this tree changes), builds that copy
# in release, runs `gwbench suite --quick` and `gwbench check` against this tree's results/baseline.json, and
# expects check to exit 1.
#
# Usage: scripts/demo-regression.sh [--kind sleep|copy] [--record FILE.md] [--keep]
#   --kind sleep      (default) usleep(200) at the top of every dispatch: the noisy figures must catch it
#   --kind copy       an extra heap copy of every request body: only the deterministic figures can
#   --record FILE.md  also write the patch, the check table and the verdict there
#                     (results/<date>-gate-regression.md keeps both kinds)
#   --keep            keep the temp folder (the copy, its build and the suite's output)
# Exit 0 when the gate failed the slowed copy as it should (check exit 1); 1 otherwise.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RECORD=""
KEEP=0
KIND="sleep"
while (($# > 0)); do
    case "$1" in
    --record) RECORD="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --kind) KIND="$2"; shift 2 ;;
    -h | --help) sed -n '3,15p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) gw_die "unknown option $1 (see --help)" ;;
    esac
done
[[ "$KIND" == sleep || "$KIND" == copy ]] || gw_die "--kind wants sleep or copy"
BASELINE="$GW_ROOT/results/baseline.json"
[[ -f "$BASELINE" ]] || gw_die "no baseline at $BASELINE"
gw_ensure_swift

gw_init_tmp
if ((KEEP)); then export GW_KEEP_TMP=1; fi
TREE="$GW_TMP/tree"
gw_log "copying $GW_ROOT to $TREE"
mkdir -p "$TREE"
tar -C "$GW_ROOT" --exclude='./.build*' --exclude='./.venv' --exclude='./.git' -cf - . | tar -C "$TREE" -xf -

FILE="Sources/GatewayProxy/ClientConnection.swift"
if [[ "$KIND" == sleep ]]; then
    # Every request waits 200 µs before it is forwarded.
    ANCHOR='    private func dispatch() {'
    LINE='        usleep(200)  // demo-regression.sh: a deliberate 200 µs per request'
    TAIL=''
else
    # Every request body is copied once more, to the heap (a global keeps the copy alive, so it is not optimised away).
    ANCHOR='        let bodyBytes = UnsafeRawBufferPointer(start: bodyPointer, count: received)'
    LINE='        demoRegressionCopy = [UInt8](bodyBytes)  // demo-regression.sh: an extra copy of every body'
    TAIL='nonisolated(unsafe) var demoRegressionCopy: [UInt8] = []  // demo-regression.sh'
fi
grep -qF "$ANCHOR" "$TREE/$FILE" || gw_die "no '$ANCHOR' in $FILE: update the demo's anchor"
cp "$TREE/$FILE" "$GW_TMP/ClientConnection.swift.orig"
awk -v anchor="$ANCHOR" -v line="$LINE" -v tail="$TAIL" '
    { print }
    !done && $0 == anchor { print line; done = 1 }
    END { if (tail != "") { print ""; print tail } }
' "$GW_TMP/ClientConnection.swift.orig" >"$TREE/$FILE"
PATCH="$(cd "$GW_TMP" && { diff -u --label "a/$FILE" --label "b/$FILE" ClientConnection.swift.orig "tree/$FILE" || true; })"
[[ -n "$PATCH" ]] || gw_die "the patch did not apply"
printf '%s\n' "$PATCH" >&2

gw_log "swift build -c release (the slowed copy)"
(cd "$TREE" && swift build -c release --scratch-path "$GW_TMP/build" >&2)
BIN="$(cd "$TREE" && swift build -c release --scratch-path "$GW_TMP/build" --show-bin-path)"

started=$SECONDS
gw_log "gwbench suite --quick (the slowed copy)"
suite_status=0
timeout --signal=TERM 600 "$BIN/gwbench" suite --quick --out "$GW_TMP/out" >"$GW_TMP/suite.log" 2>&1 || suite_status=$?
tail -n 12 "$GW_TMP/suite.log" >&2
gw_log "gwbench check --baseline results/baseline.json"
check_status=0
CHECK="$("$BIN/gwbench" check --baseline "$BASELINE" --current "$GW_TMP/out/latest.json" 2>&1)" || check_status=$?
printf '%s\n' "$CHECK"
elapsed=$((SECONDS - started))

if ((check_status == 1)); then
    VERDICT="as expected: gwbench check exited 1 (the gate fails the patched build)"
    status=0
else
    VERDICT="UNEXPECTED: gwbench check exited $check_status, not 1"
    status=1
fi
gw_log "$VERDICT"

if [[ -n "$RECORD" ]]; then
    {
        printf '# The gate catches a deliberate regression (%s) — %s\n\n' "$KIND" "$(date +%F)"
        printf 'Command: `scripts/demo-regression.sh --kind %s --record FILE` (suite + check took %s s; suite exit %s).\n\n' \
            "$KIND" "$elapsed" "$suite_status"
        printf 'A copy of the tree, built in release with this one change (the copy only):\n\n```diff\n%s\n```\n\n' "$PATCH"
        printf 'then `gwbench suite --quick` and `gwbench check --baseline results/baseline.json --current latest.json`:\n\n'
        printf '```\n%s\n```\n\n' "$CHECK"
        printf '**Verdict: %s.**\n\n' "$VERDICT"
        printf 'The suite'"'"'s own summary of the slowed build:\n\n```\n%s\n```\n' "$(sed -n '/^gate figures:/,$p' "$GW_TMP/suite.log")"
    } >"$RECORD"
    gw_log "wrote $RECORD"
fi
exit "$status"
