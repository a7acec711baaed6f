"""Helpers for the control-layer tests: policy configurations, raw HTTP clients, the audit store and /metrics.

The fixtures that start processes live in conftest.py; this module holds plain functions and classes that the test
files import (`from gwtest import ...`).
"""
from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import time
from pathlib import Path
from typing import Callable, Iterable

ADMIN_KEY_ENV = "GATEWAY_ADMIN_KEY"
PROVIDER_KEY_ENV = "MOCK_API_KEY"

MINI = "gpt-4o-mini"
MINI_PRICE = {"input_per_mtok": 0.15, "output_per_mtok": 0.60}
# With MINI_PRICE and `x-mock-usage: 1000,500`: 1000 * 0.15 + 500 * 0.60 = 450 micro-USD.
USAGE_1000_500 = {"x-mock-usage": "1000,500"}
COST_1000_500_MICRO = 450

MESSAGES = [{"role": "user", "content": "Say hello through the gateway."}]


def default_models() -> list[dict]:
    """The models of a policy configuration: three on the OpenAI-shaped provider, one on the Anthropic one."""
    return [
        {"name": MINI, "price": dict(MINI_PRICE), "deployments": [{"provider": "mock"}]},
        {
            "name": "gpt-4o",
            "price": {"input_per_mtok": 2.50, "output_per_mtok": 10.00},
            "deployments": [{"provider": "mock", "model": "gpt-4o-2024-08-06"}],
        },
        {
            "name": "text-embedding-3-small",
            "price": {"input_per_mtok": 0.02, "output_per_mtok": 0.0},
            "deployments": [{"provider": "mock"}],
        },
        {
            "name": "claude-3-5-haiku",
            "price": {"input_per_mtok": 0.80, "output_per_mtok": 4.00},
            "deployments": [{"provider": "mock-anthropic"}],
        },
    ]


def policy_config(
    mock_port: int,
    db_path: Path | str,
    *,
    groups: list[dict],
    keys: list[dict],
    models: list[dict] | None = None,
    threads: int = 2,
    admin: bool = True,
    server: dict | None = None,
) -> dict:
    """A full gateway configuration (policy mode) in front of the gwmock on `mock_port`.

    The gateway reads YAML, and JSON is YAML: conftest writes this dict with json.dumps.
    """
    config: dict = {
        "server": {"listen": ["127.0.0.1:0"], "threads": threads, **(server or {})},
        "store": {"sqlite": str(db_path)},
        "providers": [
            {
                "name": "mock",
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{mock_port}/v1",
                "api_key_env": PROVIDER_KEY_ENV,
            },
            {"name": "mock-anthropic", "kind": "anthropic", "base_url": f"http://127.0.0.1:{mock_port}/v1"},
        ],
        "models": models if models is not None else default_models(),
        "groups": groups,
        "keys": keys,
    }
    if admin:
        config["admin"] = {"listen": "127.0.0.1:0", "key_env": ADMIN_KEY_ENV}
    return config


def chat_body(model: str = MINI, *, stream: bool = False, content: str = "hello") -> bytes:
    body: dict = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def host_port(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return host, int(port)


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def error_code(self) -> str | None:
        try:
            return self.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:300]!r}>"


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection (http.client), for many sequential requests from one thread."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.host, self.port = host_port(url)
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Response:
        """Sends one request; a connection error propagates (and the next call opens a new connection)."""
        conn = self._connection()
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        all_headers.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=all_headers)
            raw = conn.getresponse()
            data = raw.read()
        except Exception:
            self.close()
            raise
        response = Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)
        if raw.will_close:
            self.close()
        return response

    def chat(self, key: str | None, model: str = MINI, *, headers: dict | None = None, stream: bool = False,
             body: bytes | None = None) -> Response:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        return self.request("POST", "/v1/chat/completions", body or chat_body(model, stream=stream), all_headers)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def chat(url: str, key: str | None, model: str = MINI, **kwargs) -> Response:
    """One request on a fresh connection."""
    with KeepAliveClient(url) as client:
        return client.chat(key, model, **kwargs)


class RawHTTP:
    """A minimal HTTP/1.1 client on a raw socket, for floods: prebuilt request bytes, Content-Length responses."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.addr = host_port(url)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.reconnects = 0

    def _connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buffer = b""

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Sends one request and returns (status, body). Raises ConnectionError when the peer closes first."""
        sock = self._connect()
        sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._fill(sock)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise AssertionError("RawHTTP expects Content-Length responses, got a chunked one")
        while len(rest) < length:
            rest += self._recv(sock)
        body, self.buffer = rest[:length], rest[length:]
        if close:
            self.close()
        return status, body

    def _recv(self, sock: socket.socket) -> bytes:
        data = sock.recv(65536)
        if not data:
            self.close()
            raise ConnectionError("the server closed the connection")
        return data

    def _fill(self, sock: socket.socket) -> None:
        self.buffer += self._recv(sock)


def raw_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- the audit store -----------------------------------------------------------------------------------------------


def audit_rows(db_path: Path | str, where: str = "1=1", params: Iterable = ()) -> list[dict]:
    """Rows of the `audit` table, read with Python's sqlite3 while the gateway may be writing (WAL)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(f"SELECT * FROM audit WHERE {where} ORDER BY id", tuple(params))]
    finally:
        conn.close()


def audit_count(db_path: Path | str, where: str = "1=1", params: Iterable = ()) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(f"SELECT count(*) FROM audit WHERE {where}", tuple(params)).fetchone()[0]
    finally:
        conn.close()


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.05, what: str = ""):
    """Polls `predicate` until it returns a truthy value; returns that value, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (sqlite3.OperationalError, OSError) as error:  # the store may not exist yet
            last_error = error
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}"
                                 + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(interval)


def wait_for_audit(db_path: Path | str, count: int, where: str = "1=1", params: Iterable = (),
                   timeout: float = 15.0) -> list[dict]:
    """Waits until the writer thread has stored at least `count` matching records; returns them."""
    wait_until(lambda: audit_count(db_path, where, params) >= count, timeout,
               what=f"{count} audit records WHERE {where} {tuple(params)}")
    return audit_rows(db_path, where, params)


# --- /metrics ------------------------------------------------------------------------------------------------------


def scrape(admin_url: str) -> dict[str, list]:
    """Parses /metrics with prometheus_client's parser: {sample name: [(labels, value), ...]}."""
    from prometheus_client.parser import text_string_to_metric_families

    with KeepAliveClient(admin_url) as client:
        response = client.request("GET", "/metrics")
    assert response.status == 200, response
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def families(admin_url: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    with KeepAliveClient(admin_url) as client:
        response = client.request("GET", "/metrics")
    assert response.status == 200, response
    return {family.name: family for family in text_string_to_metric_families(response.body.decode())}


def sample_sum(samples: dict[str, list], name: str, **labels) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(value for sample_labels, value in samples.get(name, [])
               if all(sample_labels.get(k) == v for k, v in labels.items()))


# --- a recording upstream ------------------------------------------------------------------------------------------


class RecordingUpstream:
    """A tiny HTTP server on 127.0.0.1 that answers every POST with `body` (JSON) and records each request's path
    and headers (names lowercased): what a provider receives from the gateway."""

    def __init__(self, body: dict):
        import http.server
        import threading

        self.requests: list[tuple[str, dict]] = []
        payload = json.dumps(body).encode()
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
