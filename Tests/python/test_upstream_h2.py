"""HTTP/2 to the provider: `protocol: h2c` (cleartext, prior knowledge) and `protocol: h2` (TLS, ALPN).

Requests share few connections: a connection carries up to the provider's SETTINGS_MAX_CONCURRENT_STREAMS at once,
and a new one opens only when all are full. A graceful GOAWAY from the provider drains its connection, and new
requests go to a new one without an error. gwmock reports its HTTP/2 connections, streams and the most streams open
at once on one connection (`/mock/stats` "h2"); `--h2-max-streams` and `--h2-goaway-after` play the provider's limits.
Clients: httpx over HTTP/1.1 and HTTP/2, the openai SDK, h2load with --h1 and with h2c.
"""
from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import httpx
import openai
import pytest

from conftest import Mock, Process, executable
from test_tls import certs  # noqa: F401  (the session CA and certificates)

MODEL = "gpt-4o-mini"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello to an HTTP/2 provider."}]}


@pytest.fixture
def h2_mock(tmp_path: Path, certs: Path):
    """A factory: h2_mock("--h2-max-streams", "4", tls=True) starts a gwmock with those flags."""
    started: list[Process] = []

    def start(*flags: str, tls: bool = False) -> Mock:
        args = [str(executable("gwmock")), "--listen", "127.0.0.1:0", *flags]
        if tls:
            args += ["--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key")]
        process = Process(f"gwmock-h2-{len(started)}", args, cwd=tmp_path)
        started.append(process)
        return Mock(process, process.wait_listening())

    yield start
    for process in started:
        process.terminate()


def mock_stats(mock: Mock, certs: Path | None = None) -> dict:
    verify = ssl.create_default_context(cafile=str(certs / "ca.pem")) if certs else True
    return httpx.get(f"{mock.url}/mock/stats", verify=verify, timeout=10).json()


def config(base_url: str, protocol: str, max_connections: int = 8, **provider) -> dict:
    return {
        "server": {"listen": ["127.0.0.1:0"], "threads": 1},
        "providers": [{"name": "mock", "base_url": f"{base_url}/v1", "api_key_env": "MOCK_API_KEY",
                       "protocol": protocol, "max_connections": max_connections, **provider}],
        "models": [{"name": MODEL, "deployments": [{"provider": "mock"}]}],
    }


def h2load(url: str, body: Path, *args: str) -> str:
    result = subprocess.run(
        ["h2load", *args, "-d", str(body), "-H", "content-type: application/json", f"{url}/v1/chat/completions"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def succeeded(output: str, total: int) -> None:
    assert f"requests: {total} total, {total} started, {total} done, {total} succeeded" in output, output
    assert f"status codes: {total} 2xx" in output, output


def test_http1_client_through_h2c_upstream(h2_mock, start_gateway):
    mock = h2_mock()
    gateway = start_gateway(config(mock.url, "h2c"))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(**CHAT)
    assert completion.choices[0].message.content and completion.usage.total_tokens > 0

    # SSE arrives event by event, re-framed as chunked for the HTTP/1.1 client, and ends with the usage chunk.
    stream = client.chat.completions.create(**CHAT, stream=True)
    chunks = list(stream)
    assert len(chunks) >= 16 and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16

    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        response = http.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 200 and response.http_version == "HTTP/1.1"
        assert response.headers["x-gateway-deployment"] == "mock/gpt-4o-mini"
        assert response.headers["content-length"] == str(len(response.content))

    stats = mock_stats(mock)
    assert stats["h2"]["connections"] == 1, stats["h2"]
    assert stats["by_path"]["/v1/chat/completions"] == 3


def test_requests_share_connections_up_to_the_stream_limit(h2_mock, start_gateway, tmp_path: Path):
    body = tmp_path / "chat.json"
    body.write_text(json.dumps(CHAT))

    # The provider's default limit (100 streams): 32 HTTP/1.1 clients at once share one connection.
    roomy = h2_mock()
    gateway = start_gateway(config(roomy.url, "h2c"))
    succeeded(h2load(gateway.url, body, "--h1", "-c", "32", "-n", "2000"), 2000)
    stats = mock_stats(roomy)
    assert stats["by_path"]["/v1/chat/completions"] == 2000 and stats["h2"]["streams"] == 2000
    assert stats["h2"]["connections"] == 1 and stats["h2"]["max_concurrent"] > 1, stats["h2"]

    # A provider that allows 4 streams: never more than 4 on a connection, so at least 8 connections for 32 clients,
    # and at most max_connections (12). Each answer takes 5 ms, so that all 32 clients are in flight at once (without
    # it a fast run had at most 28 outstanding and needed only 7 connections).
    tight = h2_mock("--h2-max-streams", "4", "--latency-ms", "5")
    gateway = start_gateway(config(tight.url, "h2c", max_connections=12))
    succeeded(h2load(gateway.url, body, "--h1", "-c", "32", "-n", "3000"), 3000)
    stats = mock_stats(tight)
    assert stats["h2"]["max_concurrent"] == 4, stats["h2"]
    assert 8 <= stats["h2"]["connections"] <= 12, stats["h2"]
    assert stats["h2"]["streams"] == 3000

    # HTTP/2 clients through the HTTP/2 upstream: 4 connections x 16 streams in, at most 12 x 4 out; the requests
    # past the upstream's capacity wait in the pool.
    succeeded(h2load(gateway.url, body, "-c", "4", "-m", "16", "-n", "3000"), 3000)
    assert mock_stats(tight)["h2"]["max_concurrent"] == 4


def test_goaway_from_the_provider_moves_new_requests_to_a_new_connection(h2_mock, start_gateway, tmp_path: Path):
    body = tmp_path / "chat.json"
    body.write_text(json.dumps(CHAT))
    mock = h2_mock("--h2-max-streams", "8", "--h2-goaway-after", "25")
    gateway = start_gateway(config(mock.url, "h2c", max_connections=4))
    succeeded(h2load(gateway.url, body, "--h1", "-c", "16", "-n", "2000"), 2000)
    stats = mock_stats(mock)
    # Each connection served at least 25 streams and then said GOAWAY; every request still got its answer.
    assert stats["h2"]["connections"] >= 2000 // 60, stats["h2"]
    assert stats["by_path"]["/v1/chat/completions"] == 2000
    assert "GOAWAY" not in gateway.stderr()  # graceful GOAWAYs are routine, not logged


def test_large_bodies_each_way_through_the_upstream_windows(h2_mock, start_gateway):
    mock = h2_mock()
    cfg = config(mock.url, "h2c")
    cfg["server"]["max_body_bytes"] = 16 * 1024 * 1024
    gateway = start_gateway(cfg)
    with httpx.Client(base_url=gateway.url, timeout=120) as http:
        # Upload: 8 MB of JSON, framed into DATA as the provider's 1 MiB stream window allows.
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * (8 * 1024 * 1024)}]}
        response = http.post("/v1/chat/completions", json=big)
        assert response.status_code == 200 and response.json()["object"] == "chat.completion"
        assert response.json()["usage"]["prompt_tokens"] > 1_000_000

        # Download: about 10 MB of SSE through the gateway's 64 KiB upstream stream window, to an HTTP/1.1 client.
        with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True},
                         headers={"x-mock-chunks": "50000"}) as stream:
            assert stream.status_code == 200
            received = b"".join(stream.iter_raw())
        assert len(received) > 10 * 1024 * 1024 and received.count(b"\n\ndata: ") >= 50000
        assert received.rstrip().endswith(b"data: [DONE]")


def test_h2_over_tls_with_alpn(h2_mock, start_gateway, certs: Path):
    mock = h2_mock(tls=True)
    gateway = start_gateway(config(mock.url, "h2", ca_file=str(certs / "ca.pem")))
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for _ in range(5):
            response = http.post("/v1/chat/completions", json=CHAT)
            assert response.status_code == 200, response.text
        streamed = http.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
    stats = mock_stats(mock, certs)
    assert stats["h2"]["connections"] == 1 and stats["h2"]["streams"] == 6, stats
    assert stats["tls"]["handshakes"] == 2  # the gateway's one connection, and this stats request


def test_h2_to_a_provider_without_http2_is_a_502_that_names_alpn(start_gateway, certs: Path):
    """A TLS server that only speaks HTTP/1.1: the handshake completes without h2, and the gateway says why."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs / "server.pem"), str(certs / "server.key"))
    context.set_alpn_protocols(["http/1.1"])
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(2)
                    tls.recv(1024)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        gateway = start_gateway(config(f"https://127.0.0.1:{port}", "h2", ca_file=str(certs / "ca.pem")))
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, timeout=30)
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["code"] == "upstream_error" and "HTTP/2 by ALPN" in error["message"], error
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_dead_h2c_upstream_is_a_502(start_gateway):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = start_gateway(config(f"http://127.0.0.1:{port}", "h2c"))
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, timeout=30)
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_error"


def test_translation_and_failover_over_h2c(h2_mock, start_gateway):
    """OpenAI-shaped requests to an Anthropic provider over h2c (translated both ways, plain and streamed), and a
    deployment answering 500 over h2c that fails over to the next, whose usage is what the client sees."""
    mock = h2_mock("--profile", "broken:status=500")
    gateway = start_gateway({
        "server": {"listen": ["127.0.0.1:0"], "threads": 1},
        "providers": [
            {"name": "ant", "kind": "anthropic", "base_url": f"{mock.url}/v1", "api_key_env": "MOCK_API_KEY",
             "protocol": "h2c"},
            {"name": "broken", "base_url": f"{mock.url}/broken/v1", "api_key_env": "MOCK_API_KEY", "protocol": "h2c"},
            {"name": "good", "base_url": f"{mock.url}/v1", "api_key_env": "MOCK_API_KEY", "protocol": "h2c"},
        ],
        "models": [
            {"name": "claude", "deployments": [{"provider": "ant", "model": "claude-3-5-haiku"}]},
            {"name": MODEL, "routing": "ordered", "deployments": [{"provider": "broken"}, {"provider": "good"}]},
        ],
    })
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        translated = http.post("/v1/chat/completions", json={**CHAT, "model": "claude"})
        assert translated.status_code == 200, translated.text
        assert translated.json()["object"] == "chat.completion"
        with http.stream("POST", "/v1/chat/completions", json={**CHAT, "model": "claude", "stream": True}) as stream:
            assert stream.status_code == 200
            events = [line for line in stream.iter_lines() if line.startswith("data: ")]
        assert len(events) > 3 and events[-1] == "data: [DONE]"

        failed_over = http.post("/v1/chat/completions", json=CHAT)
        assert failed_over.status_code == 200, failed_over.text
        assert failed_over.headers["x-gateway-attempts"] == "2"
        assert failed_over.headers["x-gateway-deployment"] == "good/gpt-4o-mini"
    stats = mock_stats(mock)
    assert stats["by_path"]["/v1/messages"] == 2 and stats["by_profile"]["broken"] == 1
    assert stats["h2"]["connections"] == 3  # one per provider (each pool is its own)


def test_client_gone_mid_stream_resets_only_its_stream(h2_mock, start_gateway):
    """A client that leaves during a long SSE stream: the gateway resets that stream (RST_STREAM), and the shared
    connection goes on serving the other requests."""
    mock = h2_mock()
    gateway = start_gateway(config(mock.url, "h2c"))
    port = int(gateway.url.rsplit(":", 1)[1])
    for _ in range(3):
        body = json.dumps({**CHAT, "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                        b"x-mock-chunks: 200000\r\nx-mock-itl-ms: 0\r\ncontent-length: " + str(len(body)).encode()
                        + b"\r\n\r\n" + body)
            first = raw.recv(65536)
            assert first.startswith(b"HTTP/1.1 200"), first[:200]
        # Closed after the first bytes of a response of about 40 MB.
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for _ in range(10):
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    stats = mock_stats(mock)
    assert stats["h2"]["connections"] == 1 and stats["h2"]["streams"] == 13, stats["h2"]
    assert gateway.stop() == 0


def test_slow_h2_provider_times_out_with_504_and_the_connection_serves_on(h2_mock, start_gateway):
    mock = h2_mock()
    cfg = config(mock.url, "h2c")
    cfg["server"]["timeouts"] = {"upstream_response_ms": 300}
    gateway = start_gateway(cfg)
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        slow = http.post("/v1/chat/completions", json=CHAT, headers={"x-mock-latency-ms": "3000"})
        assert slow.status_code == 504 and slow.json()["error"]["code"] == "upstream_timeout", slow.text
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert mock_stats(mock)["h2"]["connections"] == 1


def test_reload_moves_new_requests_to_new_connections_and_old_ones_close(h2_mock, start_gateway):
    """SIGHUP: the old pool's HTTP/2 connection takes no new streams (it closes once idle); the new configuration's
    requests go over a new connection, and only one."""
    import time

    mock = h2_mock()
    gateway = start_gateway(config(mock.url, "h2c"))
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        gateway.write_config(config(mock.url, "h2c", max_connections=2))
        gateway.sighup()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and mock_stats(mock)["h2"]["connections"] < 2:
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
            time.sleep(0.05)
        assert mock_stats(mock)["h2"]["connections"] == 2
        for _ in range(5):
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert mock_stats(mock)["h2"]["connections"] == 2
    assert gateway.stop() == 0


class HPACKRecordingProvider:
    """An h2c provider on the `h2` library that answers every chat request and keeps its HPACK decoder, so a test
    can read which request fields the gateway put into the dynamic table, and the values that arrived."""

    BODY = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()

    def __init__(self) -> None:
        import h2.config
        import h2.connection

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        self.request_ids: list[str] = []
        self.shapes: dict[int, str] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        import h2.events

        sock, _ = self.listener.accept()
        sock.settimeout(30)
        with self.lock:
            self.conn.initiate_connection()
            sock.sendall(self.conn.data_to_send())
        while data := sock.recv(65536):
            with self.lock:
                for event in self.conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers = dict(event.headers)
                        self.request_ids.append(headers[b"x-request-id"].decode())
                        self.shapes[event.stream_id] = headers.get(b"x-test-shape", b"").decode()
                    elif isinstance(event, h2.events.DataReceived):
                        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        self.answer(event.stream_id, self.shapes.pop(event.stream_id, ""))
                sock.sendall(self.conn.data_to_send())

    def answer(self, stream: int, shape: str) -> None:
        """The usual JSON answer with its length, or (x-test-shape) one without a length in two DATA frames, an
        empty 200 ended by its HEADERS frame, or a 204."""
        if shape == "no-length":
            self.conn.send_headers(stream, [(":status", "200"), ("content-type", "application/json")])
            self.conn.send_data(stream, self.BODY[:40])
            self.conn.send_data(stream, self.BODY[40:], end_stream=True)
        elif shape == "empty":
            self.conn.send_headers(stream, [(":status", "200"), ("x-shape", "empty")], end_stream=True)
        elif shape == "204":
            self.conn.send_headers(stream, [(":status", "204"), ("x-shape", "no-content")], end_stream=True)
        else:
            self.conn.send_headers(stream, [(":status", "200"), ("content-type", "application/json"),
                                            ("content-length", str(len(self.BODY)))])
            self.conn.send_data(stream, self.BODY, end_stream=True)

    def indexed(self) -> list[tuple[bytes, bytes]]:
        with self.lock:
            return list(self.conn.decoder.header_table.dynamic_entries)


def test_request_fields_that_change_every_time_stay_out_of_the_providers_hpack_table(start_gateway):
    # nghttp2 indexes every field unless told not to: a fresh x-request-id per request would fill the table with
    # entries never used again, and cost both ends an insert and a longer search per request.
    provider = HPACKRecordingProvider()
    gateway = start_gateway(config(provider.url, "h2c", max_connections=1))
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for _ in range(40):
            response = http.post("/v1/chat/completions", json=CHAT, headers={"x-team": "search"})
            assert response.status_code == 200 and response.json()["usage"]["total_tokens"] == 6
    # Every request's id arrived intact, each a different one.
    assert len(provider.request_ids) == 40 and len(set(provider.request_ids)) == 40
    entries = provider.indexed()
    names = [name for name, _ in entries]
    # The first id is indexed (nothing yet says it changes); no later one is.
    assert names.count(b"x-request-id") <= 1, entries
    # Fields with the same value each time stay indexed, so they cost a byte or two per request.
    assert (b"x-team", b"search") in entries and (b"content-type", b"application/json") in entries, entries
    assert len(entries) < 20, entries


def test_response_framings_from_an_h2_provider_reach_http1_clients_intact(start_gateway):
    # The head of each HTTP/2 response is rendered for the exchange with the framing HTTP/1.1 needs: the provider's
    # content-length, chunked when it sent none, content-length 0 for a body ended by the HEADERS frame, none for 204.
    provider = HPACKRecordingProvider()
    gateway = start_gateway(config(provider.url, "h2c", max_connections=1))
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        def post(shape: str) -> httpx.Response:
            return http.post("/v1/chat/completions", json=CHAT, headers={"x-test-shape": shape})

        plain = post("")
        assert plain.status_code == 200 and plain.content == provider.BODY
        assert plain.headers["content-length"] == str(len(provider.BODY))
        unsized = post("no-length")
        assert unsized.status_code == 200 and unsized.content == provider.BODY
        assert unsized.headers.get("transfer-encoding") == "chunked" and "content-length" not in unsized.headers
        empty = post("empty")
        assert empty.status_code == 200 and empty.content == b"" and empty.headers["x-shape"] == "empty"
        assert empty.headers["content-length"] == "0"
        no_content = post("204")
        assert no_content.status_code == 204 and no_content.content == b""
        assert no_content.headers["x-shape"] == "no-content"
        # The connection to the gateway serves on after each.
        assert post("").content == provider.BODY

