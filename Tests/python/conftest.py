"""Fixtures: a real gwmock and a real gateway in front of it, on free ports, for the whole session.

The binaries come from $GATEWAY_BIN_DIR (scripts/test.sh sets it to `swift build --show-bin-path`), else from
.build/debug of the repository.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Everything here talks to 127.0.0.1: never through a proxy that the environment may configure.
for _var in ("NO_PROXY", "no_proxy"):
    _current = os.environ.get(_var, "")
    if "127.0.0.1" not in _current:
        os.environ[_var] = ",".join(filter(None, [_current, "127.0.0.1", "localhost"]))
LISTEN_TIMEOUT_S = 30
STOP_TIMEOUT_S = 20


def bin_dir() -> Path:
    configured = os.environ.get("GATEWAY_BIN_DIR")
    return Path(configured) if configured else REPO / ".build" / "debug"


def executable(name: str) -> Path:
    path = bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} not found: build first (swift build) or set GATEWAY_BIN_DIR", pytrace=False)
    return path


class Process:
    """A child process whose stdout is drained by a thread, so that it never blocks on a full pipe."""

    def __init__(self, name: str, args: list[str], cwd: Path, env: dict | None = None):
        self.name = name
        self.log_path = cwd / f"{name}.stderr.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log
        )
        self.lines: list[str] = []
        self._listening = threading.Event()
        self._admin = threading.Event()
        self.url: str | None = None
        self.admin_url: str | None = None
        threading.Thread(target=self._drain, name=f"{name}-stdout", daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            match = re.match(r"listening (https?://\S+)", line)
            if match and self.url is None:
                self.url = match.group(1)
                self._listening.set()
            match = re.match(r"admin (https?://\S+)", line)
            if match and self.admin_url is None:
                self.admin_url = match.group(1)
                self._admin.set()
        self._listening.set()  # EOF: the process closed stdout or died
        self._admin.set()

    def wait_listening(self, timeout: float = LISTEN_TIMEOUT_S) -> str:
        if not self._listening.wait(timeout) or self.url is None:
            self.kill()
            pytest.fail(
                f"{self.name} printed no 'listening http://…' line within {timeout:.0f}s "
                f"(exit status {self.proc.poll()}).\nstdout: {self.lines}\nstderr: {self.stderr_tail()}",
                pytrace=False,
            )
        return self.url

    def wait_admin(self, timeout: float = LISTEN_TIMEOUT_S) -> str:
        """The URL of the `admin http://…` line (a gateway whose config has an admin block)."""
        if not self._admin.wait(timeout) or self.admin_url is None:
            self.kill()
            pytest.fail(
                f"{self.name} printed no 'admin http://…' line within {timeout:.0f}s "
                f"(exit status {self.proc.poll()}).\nstdout: {self.lines}\nstderr: {self.stderr_tail()}",
                pytrace=False,
            )
        return self.admin_url

    def stderr_tail(self, limit: int = 4000) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM to this process's PID; returns its exit status, or None if SIGKILL was needed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture(scope="session")
def mock_url(workdir: Path):
    """The base URL (no /v1) of a gwmock on a free port."""
    mock = Process("gwmock", [str(executable("gwmock")), "--listen", "127.0.0.1:0"], cwd=workdir)
    url = mock.wait_listening()
    yield url
    mock.terminate()


@pytest.fixture(scope="session")
def gateway_url(workdir: Path, mock_url: str):
    """The base URL (no /v1) of a gateway whose one provider is the session's gwmock.

    At teardown the gateway gets SIGTERM and must drain and exit 0.
    """
    port = mock_url.rsplit(":", 1)[1].rstrip("/")
    config = workdir / "gateway.yaml"
    config.write_text(
        "server: {listen: [\"127.0.0.1:0\"], threads: 1}\n"
        "providers:\n"
        f"  - {{name: mock, kind: openai, base_url: \"http://127.0.0.1:{port}/v1\", api_key_env: MOCK_API_KEY}}\n"
        "models:\n"
        "  - {name: gpt-4o-mini, deployments: [{provider: mock, model: gpt-4o-mini}]}\n"
    )
    env = {**os.environ, "MOCK_API_KEY": "mock-key"}
    gateway = Process(
        "gateway", [str(executable("gateway")), "serve", "--config", str(config)], cwd=workdir, env=env
    )
    url = gateway.wait_listening()
    yield url
    status = gateway.terminate()
    assert status == 0, (
        f"the gateway should drain and exit 0 after SIGTERM, got "
        f"{'no exit within %ds (killed)' % STOP_TIMEOUT_S if status is None else status}.\n"
        f"stderr: {gateway.stderr_tail()}"
    )


@pytest.fixture(scope="session")
def openai_client(gateway_url: str):
    import openai

    return openai.OpenAI(base_url=gateway_url + "/v1", api_key="sk-test", max_retries=0, timeout=30.0)


# --- the control layer: a fresh gwmock and gateways started from a configuration, per test ---------------------


class Mock:
    """A gwmock of one test; `stats()` is its GET /mock/stats."""

    def __init__(self, process: Process, url: str):
        self.process = process
        self.url = url
        self.port = int(url.rsplit(":", 1)[1].rstrip("/"))

    def stats(self) -> dict:
        import json
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/mock/stats", timeout=10) as response:
            return json.load(response)


class Gateway:
    """A `gateway serve` started by the `start_gateway` fixture."""

    def __init__(self, process: Process, config_path: Path, config: dict, env: dict):
        self.process = process
        self.config_path = config_path
        self.config = config
        self.env = env
        self.url = process.wait_listening()
        self.admin_url = process.wait_admin() if "admin" in config else None
        self.exit_status: int | None = None
        self.stopped = False

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    @property
    def db_path(self) -> Path:
        return Path(self.config["store"]["sqlite"])

    @property
    def admin_key(self) -> str:
        return self.env[self.config["admin"]["key_env"]]

    def write_config(self, config: dict) -> None:
        """Rewrites the config file (atomically: a reload never sees half a file)."""
        import json

        staging = self.config_path.with_suffix(".tmp")
        staging.write_text(json.dumps(config, indent=1))
        os.replace(staging, self.config_path)
        self.config = config

    def sighup(self) -> None:
        os.kill(self.pid, signal.SIGHUP)

    def admin(self, method: str, path: str, json_body=None, key: str | None = "default"):
        """An admin API call with httpx; `key=None` sends no Authorization header."""
        import httpx

        headers = {}
        if key == "default":
            key = self.admin_key
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.request(method, f"{self.admin_url}{path}", json=json_body, headers=headers, timeout=30)

    def stop(self) -> int | None:
        """SIGTERM (by PID) and wait: the exit status, or None if it had to be killed."""
        if not self.stopped:
            self.exit_status = self.process.terminate()
            self.stopped = True
        return self.exit_status

    def stderr(self) -> str:
        return self.process.stderr_tail()


@pytest.fixture
def gwmock(tmp_path: Path):
    """A fresh gwmock for one test (its /mock/stats start at zero)."""
    mock = Process("gwmock", [str(executable("gwmock")), "--listen", "127.0.0.1:0"], cwd=tmp_path)
    url = mock.wait_listening()
    yield Mock(mock, url)
    mock.terminate()


@pytest.fixture
def admin_key() -> str:
    import secrets

    return "adm-" + secrets.token_hex(16)


@pytest.fixture
def start_gateway(tmp_path: Path, admin_key: str):
    """A factory: start_gateway(config_dict) starts `gateway serve` on it and returns a Gateway.

    The config is written as JSON (a subset of YAML). The admin key is in GATEWAY_ADMIN_KEY and the provider secret
    in MOCK_API_KEY. At teardown every gateway still running gets SIGTERM and must exit 0.
    """
    import json
    import secrets

    started: list[Gateway] = []

    def start(config: dict, *, extra_env: dict | None = None) -> Gateway:
        index = len(started) + 1
        config_path = tmp_path / f"gateway-{index}.yaml"
        config_path.write_text(json.dumps(config, indent=1))
        env = {
            **os.environ,
            "GATEWAY_ADMIN_KEY": admin_key,
            "MOCK_API_KEY": "provider-secret-" + secrets.token_hex(8),
            **(extra_env or {}),
        }
        process = Process(
            f"gateway-{index}", [str(executable("gateway")), "serve", "--config", str(config_path)],
            cwd=tmp_path, env=env,
        )
        gateway = Gateway(process, config_path, config, env)
        started.append(gateway)
        return gateway

    yield start

    failures = []
    for gateway in started:
        if gateway.stopped:
            continue
        status = gateway.stop()
        if status != 0:
            failures.append(f"{gateway.process.name} (pid {gateway.pid}): "
                            f"{'killed after %ds' % STOP_TIMEOUT_S if status is None else 'exit %s' % status}\n"
                            f"{gateway.stderr()}")
    assert not failures, "a gateway did not drain and exit 0 after SIGTERM:\n" + "\n".join(failures)
