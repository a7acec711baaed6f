# shellcheck shell=bash
# Shared helpers for scripts/*.sh: system packages, the Python venv, Swift builds and the lifecycle of the
# processes a script starts (each one tracked by PID and stopped by PID on exit).
#
# Source it from a script that runs under `set -euo pipefail`. Knobs (environment):
#   GW_SCRATCH_PATH  pass --scratch-path to every swift build/test (default: SwiftPM's own .build)
#   GW_BIN_DIR       use the binaries in this folder and skip the release build (run.sh, bench-peers.sh)
#   GW_SKIP_APT=1    do not check or install Debian packages

GW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# What the build, the tests and the benchmarks need from Debian.
GW_APT_PACKAGES=(
    libnghttp2-dev libssl-dev pkg-config curl python3-venv wrk nginx-light nghttp2-client libsqlite3-dev valgrind
)

# Every request the scripts make goes to 127.0.0.1: keep any configured HTTP proxy out of it.
export NO_PROXY="${NO_PROXY:+$NO_PROXY,}127.0.0.1,localhost"
export no_proxy="${no_proxy:+$no_proxy,}127.0.0.1,localhost"

gw_log() { printf '==> %s\n' "$*" >&2; }
gw_warn() { printf 'warning: %s\n' "$*" >&2; }
gw_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# --- system packages -------------------------------------------------------------------------------------------

# Installs the packages of GW_APT_PACKAGES that are missing: one `apt-get update`, one `apt-get install`.
gw_install_deps() {
    if [[ "${GW_SKIP_APT:-0}" == 1 ]]; then return 0; fi
    if ! command -v dpkg >/dev/null 2>&1; then
        gw_warn "dpkg not found: not a Debian system, assuming ${GW_APT_PACKAGES[*]} are present"
        return 0
    fi
    local missing=() pkg info
    for pkg in "${GW_APT_PACKAGES[@]}"; do
        info="$(dpkg -s "$pkg" 2>/dev/null || true)" # captured first: `dpkg | grep -q` can die of SIGPIPE
        if ! grep -q '^Status: install ok installed' <<<"$info"; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then return 0; fi

    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || gw_die "missing packages (${missing[*]}) and not root; install them first"
        sudo=(sudo)
    fi
    gw_log "installing missing packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
        --no-install-recommends "${missing[@]}"
}

# --- Swift -----------------------------------------------------------------------------------------------------

# Puts the toolchain in /opt/swift on PATH when `swift` is not found.
gw_ensure_swift() {
    if ! command -v swift >/dev/null 2>&1 && [[ -x /opt/swift/usr/bin/swift ]]; then
        export PATH="/opt/swift/usr/bin:$PATH"
    fi
    command -v swift >/dev/null 2>&1 || gw_die "swift not found (looked on PATH and in /opt/swift/usr/bin)"
}

# Runs `swift SUBCOMMAND [--scratch-path P] ARGS...` in the package root.
gw_swift() {
    local sub="$1"
    shift
    local scratch=()
    if [[ -n "${GW_SCRATCH_PATH:-}" ]]; then scratch=(--scratch-path "$GW_SCRATCH_PATH"); fi
    (cd "$GW_ROOT" && swift "$sub" "${scratch[@]}" "$@")
}

# Builds the release products (unless GW_BIN_DIR is set) and sets GW_BIN to their folder.
gw_build_release() {
    if [[ -n "${GW_BIN_DIR:-}" ]]; then
        GW_BIN="$(cd "$GW_BIN_DIR" && pwd)"
        gw_log "using prebuilt binaries in $GW_BIN"
    else
        gw_log "swift build -c release"
        gw_swift build -c release >&2
        GW_BIN="$(gw_swift build -c release --show-bin-path)"
    fi
    local exe
    for exe in gateway gwmock; do
        [[ -x "$GW_BIN/$exe" ]] || gw_die "$GW_BIN/$exe not found"
    done
}

# --- Python ----------------------------------------------------------------------------------------------------

# Creates .venv (if missing) and installs requirements-test.txt into it, again only when that file changed.
# A failed download is fatal only when the venv lacks pytest; otherwise the installed versions are used.
gw_ensure_venv() {
    local venv="$GW_ROOT/.venv" req="$GW_ROOT/requirements-test.txt"
    local python=python3
    if [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; fi
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        gw_log "creating $venv"
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
    local stamp="$venv/.requirements.sha256" want
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
    gw_log "pip install -r requirements-test.txt"
    if PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q --retries 5 --timeout 60 -r "$req"; then
        printf '%s\n' "$want" >"$stamp"
    elif "$venv/bin/python" -c 'import pytest, openai, httpx' >/dev/null 2>&1; then
        gw_warn "pip install failed; using the packages already in $venv"
    else
        gw_die "pip install -r $req failed"
    fi
}

# --- processes -------------------------------------------------------------------------------------------------

GW_PIDS=()
GW_TMP=""

# Makes a private temp folder (GW_TMP), removed on exit together with every process started by gw_spawn.
gw_init_tmp() {
    GW_TMP="$(mktemp -d "${TMPDIR:-/tmp}/gateway-XXXXXX")"
    chmod 755 "$GW_TMP" # nginx workers drop to nobody when started as root
    trap gw_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# True when there are at least two CPUs and taskset exists, so that processes can be pinned.
gw_can_pin() {
    [[ "$(nproc)" -ge 2 ]] && command -v taskset >/dev/null 2>&1
}

# gw_spawn LOG CPU DIR CMD...: starts CMD in DIR with stdout+stderr to LOG, pinned to CPU ("-": not pinned).
# The program replaces the subshell (exec), so GW_LAST_PID is the program's own PID.
gw_spawn() {
    local log="$1" cpu="$2" dir="$3"
    shift 3
    if [[ "$cpu" != - ]] && gw_can_pin; then
        (cd "$dir" && exec taskset -c "$cpu" "$@") >"$log" 2>&1 </dev/null &
    else
        (cd "$dir" && exec "$@") >"$log" 2>&1 </dev/null &
    fi
    GW_LAST_PID=$!
    GW_PIDS+=("$GW_LAST_PID")
}

# gw_wait_listening LOG PID [TIMEOUT_S]: prints the URL of the first `listening http://…` line in LOG.
gw_wait_listening() {
    local log="$1" pid="$2" timeout="${3:-30}" line i
    for ((i = 0; i < timeout * 20; i++)); do
        line="$(grep -m1 -oE 'listening https?://[^[:space:]]+' "$log" 2>/dev/null || true)"
        if [[ -n "$line" ]]; then
            printf '%s\n' "${line#listening }"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            gw_die "process $pid exited before printing its listening line (log: $log)"
        fi
        sleep 0.05
    done
    tail -n 20 "$log" >&2 || true
    gw_die "no listening line from process $pid within ${timeout}s (log: $log)"
}

# gw_stop PID [TIMEOUT_S]: SIGTERM, then SIGKILL after the timeout. Returns the process's exit status when it is
# a child of this shell (0 when it is already gone).
gw_stop() {
    local pid="$1" timeout="${2:-10}" i status=0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < timeout * 20; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            # a zombie child still answers kill -0; `wait` below reaps it
            [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && break
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]; then
            gw_warn "process $pid ignored SIGTERM for ${timeout}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || status=$?
    local keep=() p
    for p in "${GW_PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
    GW_PIDS=("${keep[@]}")
    return "$status"
}

# Stops what gw_spawn started, newest first, and removes GW_TMP (kept when GW_KEEP_TMP=1).
gw_cleanup() {
    local status=$? i
    for ((i = ${#GW_PIDS[@]} - 1; i >= 0; i--)); do
        gw_stop "${GW_PIDS[i]}" 5 || true
    done
    if [[ -n "$GW_TMP" && -d "$GW_TMP" ]]; then
        if [[ "${GW_KEEP_TMP:-0}" == 1 ]]; then
            gw_log "kept $GW_TMP"
        else
            rm -rf "$GW_TMP"
        fi
    fi
    return "$status"
}

# Prints a free TCP port on 127.0.0.1 (for servers such as nginx that cannot listen on port 0 and report it).
gw_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Prints the port of a URL such as http://127.0.0.1:1234 or http://127.0.0.1:1234/v1.
gw_url_port() {
    local rest="${1#*://}"
    rest="${rest%%/*}"
    printf '%s\n' "${rest##*:}"
}

# Prints utime+stime of a process in clock ticks (all its threads), from /proc/PID/stat.
gw_cpu_ticks() {
    local stat rest
    stat="$(cat "/proc/$1/stat")"
    rest="${stat##*) }" # the command name may hold spaces and parentheses
    # shellcheck disable=SC2086
    set -- $rest # $1 is field 3 (state), so utime (field 14) is $12 and stime (field 15) is $13
    printf '%s\n' "$((${12} + ${13}))"
}

# gw_write_minimal_config FILE MOCK_PORT: the smallest configuration: one provider (the mock), one model.
gw_write_minimal_config() {
    cat >"$1" <<EOF
server: {listen: ["127.0.0.1:0"], threads: 1}
providers:
  - {name: mock, kind: openai, base_url: "http://127.0.0.1:$2/v1", api_key_env: MOCK_API_KEY}
models:
  - {name: gpt-4o-mini, deployments: [{provider: mock, model: gpt-4o-mini}]}
EOF
}
