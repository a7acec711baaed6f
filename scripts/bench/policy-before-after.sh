#!/usr/bin/env bash
# The full-policy gateway of an earlier revision against this tree's, with the bare proxy and direct beside them, in
# one interleaved gwbench compare run (closed loop, then open loop at a fixed rate). For changes whose effect is
# below the noise between separate runs of bench-policy.sh.
#
# Usage: scripts/bench/policy-before-after.sh REV [--rounds N] [--duration S] [--rate R]
#   REV is built in a temporary git worktree (release, its own scratch folder). Configurations as in
#   bench-policy.sh (scripts/bench/policy-configs.sh); arrangement: gateways on CPU 0 (one measured at a time),
#   gwmock and gwbench on CPU 1. Every process is started here and stopped by its PID.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=scripts/bench/policy-configs.sh
source "$(dirname "${BASH_SOURCE[0]}")/policy-configs.sh"

(($# >= 1)) || gw_die "usage: $0 REV [--rounds N] [--duration S] [--rate R]"
REV="$1"; shift
ROUNDS=5; DURATION=4; RATE=15000
while (($# > 0)); do
    case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="${2%s}"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    *) gw_die "unknown option $1" ;;
    esac
done

gw_install_deps
gw_ensure_swift
gw_build_release
gw_init_tmp
git -C "$GW_ROOT" worktree add --detach "$GW_TMP/before-tree" "$REV" >/dev/null
gw_log "swift build -c release of $REV"
(cd "$GW_TMP/before-tree" && swift build -c release --scratch-path "$GW_TMP/before-build" >"$GW_TMP/before-build.log" 2>&1) ||
    gw_die "building $REV failed (see $GW_TMP/before-build.log)"
git -C "$GW_ROOT" worktree remove --force "$GW_TMP/before-tree"
BEFORE_BIN="$GW_TMP/before-build/release"

gw_spawn "$GW_TMP/mock.log" 1 "$GW_TMP" "$GW_BIN/gwmock" --listen 127.0.0.1:0 --threads 1
MOCK_PID="$GW_LAST_PID"
MOCK_URL="$(gw_wait_listening "$GW_TMP/mock.log" "$MOCK_PID")"
gw_write_policy_configs "$GW_TMP" "${MOCK_URL##*:}"
sed "s#$GW_TMP/audit.db#$GW_TMP/audit-after.db#" "$GW_TMP/policy.yaml" >"$GW_TMP/policy-after.yaml"
export BENCH_ADMIN_KEY=bench-admin
gw_spawn "$GW_TMP/bare.log" 0 "$GW_TMP" "$GW_BIN/gateway" serve --config "$GW_TMP/bare.yaml"
BARE_PID="$GW_LAST_PID"; BARE_URL="$(gw_wait_listening "$GW_TMP/bare.log" "$BARE_PID")"
gw_spawn "$GW_TMP/before.log" 0 "$GW_TMP" "$BEFORE_BIN/gateway" serve --config "$GW_TMP/policy.yaml"
BEFORE_PID="$GW_LAST_PID"; BEFORE_URL="$(gw_wait_listening "$GW_TMP/before.log" "$BEFORE_PID")"
gw_spawn "$GW_TMP/after.log" 0 "$GW_TMP" "$GW_BIN/gateway" serve --config "$GW_TMP/policy-after.yaml"
AFTER_PID="$GW_LAST_PID"; AFTER_URL="$(gw_wait_listening "$GW_TMP/after.log" "$AFTER_PID")"

COMMON=(--direct "$MOCK_URL" --via "bare=$BARE_URL" --via "before=$BEFORE_URL" --via "after=$AFTER_URL"
    --rounds "$ROUNDS" -d "${DURATION}s" --warmup 2s -c 32 --key sk-bench --pin 1 --quiet
    --pid "direct=$MOCK_PID" --pid "bare=$BARE_PID" --pid "before=$BEFORE_PID" --pid "after=$AFTER_PID")
echo "before: $REV; after: the working tree ($(git -C "$GW_ROOT" rev-parse --short HEAD) plus any changes)"
echo "## throughput (closed loop, 32 connections)"
"$GW_BIN/gwbench" compare "${COMMON[@]}"
echo "## latency (open loop at $RATE req/s)"
"$GW_BIN/gwbench" compare "${COMMON[@]}" --mode latency --rate "$RATE"
