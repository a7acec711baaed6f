"""HTTP/2 clients of the gateway: h2c with prior knowledge on a plain listener, h2 by ALPN on a tls:// one.

Every stream must be served like an HTTP/1.1 request (policy, routing, accounting), through the HTTP/1.1 upstream
pool to gwmock. Clients: curl, h2load, httpx with http2=True (and the openai SDK over it), and the `h2` library
frame by frame for flow control, rapid resets and GOAWAY.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import httpx
import pytest

from test_tls import certs  # noqa: F401  (the session CA and certificates)

MODEL = "gpt-4o-mini"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello over HTTP/2."}]}


def config(mock_url: str, **server) -> dict:
    return {
        "server": {"listen": ["127.0.0.1:0"], **server},
        "providers": [{"name": "mock", "base_url": f"{mock_url}/v1", "api_key_env": "MOCK_API_KEY"}],
        "models": [{"name": MODEL, "deployments": [{"provider": "mock"}]}],
    }


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class RawH2:
    """An HTTP/2 client on the `h2` library: frames in, events out."""

    def __init__(self, port: int, window: int | None = None, lenient: bool = False):
        """`lenient`: send headers as given, unchecked (to play a broken client)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=not lenient, normalize_outbound_headers=not lenient))
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, body: dict | bytes, headers: dict | None = None, end: bool = True, length: bool = True) -> int:
        stream = self.conn.get_next_available_stream_id()
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        fields = [(":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "http"),
                  (":authority", "127.0.0.1"), ("content-type", "application/json")]
        if length:
            fields.append(("content-length", str(len(payload))))
        fields += list((headers or {}).items())
        self.conn.send_headers(stream, fields)
        if end:
            self.send_body(stream, payload)
        self.flush()
        return stream

    def send_body(self, stream: int, payload: bytes) -> None:
        """Sends as the windows allow, reading (and acknowledging) frames while it waits."""
        offset = 0
        while offset < len(payload):
            window = min(self.conn.local_flow_control_window(stream), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.flush()
                self.events()
                continue
            piece = payload[offset:offset + window]
            self.conn.send_data(stream, piece)
            offset += len(piece)
            self.flush()
        self.conn.end_stream(stream)
        self.flush()

    def events(self) -> list:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        events = self.conn.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.flush()
        return events

    def responses(self, streams: set[int], timeout: float = 30) -> dict[int, dict]:
        """Reads until every stream in `streams` ended or was reset: status, body and how it ended."""
        results = {s: {"status": None, "body": b"", "ended": False, "reset": None} for s in streams}
        deadline = time.monotonic() + timeout
        pending = set(streams)
        while pending and time.monotonic() < deadline:
            for event in self.events():
                result = results.get(getattr(event, "stream_id", None))
                if result is None:
                    continue
                if isinstance(event, h2.events.ResponseReceived):
                    result["status"] = int(dict(event.headers)[b":status"])
                    result["headers"] = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    result["body"] += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    result["ended"] = True
                    pending.discard(event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    result["reset"] = event.error_code
                    pending.discard(event.stream_id)
        return results

    def close(self) -> None:
        self.sock.close()


def test_h2c_prior_knowledge_with_curl(gwmock, start_gateway):
    gateway = start_gateway(config(gwmock.url))
    result = subprocess.run(
        ["curl", "-sS", "-i", "--http2-prior-knowledge", f"{gateway.url}/v1/chat/completions",
         "-H", "content-type: application/json", "-d", json.dumps(CHAT)],
        check=True, capture_output=True, timeout=30,
    ).stdout.decode()
    head, _, body = result.partition("\r\n\r\n")
    assert head.startswith("HTTP/2 200"), head
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in head.split("\r\n")[1:]}
    assert fields["x-gateway-deployment"] == f"mock/{MODEL}"
    assert fields["x-request-id"].startswith("gw-")
    assert "connection" not in fields and "transfer-encoding" not in fields
    assert json.loads(body)["usage"]["completion_tokens"] == 16

    streamed = subprocess.run(
        ["curl", "-sSN", "--http2-prior-knowledge", f"{gateway.url}/v1/chat/completions",
         "-H", "content-type: application/json", "-d", json.dumps({**CHAT, "stream": True})],
        check=True, capture_output=True, timeout=30,
    ).stdout.decode()
    events = [line for line in streamed.split("\n") if line.startswith("data: ")]
    assert len(events) >= 17 and events[-1] == "data: [DONE]"
    # The usage chunk the gateway asks for (stream_options.include_usage) arrives over HTTP/2 too.
    assert any('"usage":{"prompt_tokens"' in event for event in events)
    # HTTP/1.1 on the same listener is unaffected.
    assert httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT).status_code == 200
    assert gwmock.stats()["by_path"]["/v1/chat/completions"] == 3


def test_h2_by_alpn_with_the_openai_sdk(gwmock, start_gateway, certs: Path):  # noqa: F811
    import openai

    gateway = start_gateway({
        **config(gwmock.url, listen=["tls://127.0.0.1:0"]),
        "server": {"listen": ["tls://127.0.0.1:0"],
                   "tls": {"cert": str(certs / "server.pem"), "key": str(certs / "server.key")}},
    })
    verify = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with httpx.Client(http2=True, verify=verify) as http:
        response = http.post(f"{gateway.url}/v1/chat/completions", json=CHAT)
        assert response.http_version == "HTTP/2" and response.status_code == 200
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", http_client=http, max_retries=0)
        completion = client.chat.completions.create(**CHAT)
        assert completion.usage.completion_tokens == 16
        pieces = [c.choices[0].delta.content for c in client.chat.completions.create(**CHAT, stream=True)
                  if c.choices and c.choices[0].delta.content]
        assert len(pieces) == 16
    result = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "--http2",
         "--cacert", str(certs / "ca.pem"), f"{gateway.url}/v1/models"],
        check=True, capture_output=True, timeout=30,
    ).stdout.decode()
    assert result == "2 200"


def test_h2load_many_streams(gwmock, start_gateway, tmp_path: Path):
    gateway = start_gateway(config(gwmock.url))
    body = tmp_path / "chat.json"
    body.write_text(json.dumps(CHAT))
    runs = [("-n", "3000", "-c", "4", "-m", "10"), ("-n", "2000", "-c", "1", "-m", "200")]
    for args in runs:
        out = subprocess.run(
            ["h2load", *args, "-d", str(body), "-H", "content-type: application/json",
             f"{gateway.url}/v1/chat/completions"],
            check=True, capture_output=True, timeout=120, text=True,
        ).stdout
        requests = int(args[1])
        assert f"{requests} succeeded, 0 failed, 0 errored, 0 timeout" in out, out
        assert f"status codes: {requests} 2xx" in out, out
    assert gwmock.stats()["by_path"]["/v1/chat/completions"] == 5000


def test_h2_streams_go_through_the_policy(gwmock, start_gateway):
    gateway = start_gateway({
        **config(gwmock.url),
        "groups": [{"name": "team", "models": [MODEL]}],
        "keys": [{"name": "alice", "key": "sk-alice-h2", "groups": ["team"]}],
    })
    # httpx speaks h2c with prior knowledge when HTTP/1.1 is off.
    transport = httpx.HTTPTransport(http1=False, http2=True)
    with httpx.Client(transport=transport, base_url=gateway.url) as client:
        denied = client.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer wrong"})
        assert denied.http_version == "HTTP/2"
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
        allowed = client.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-alice-h2"})
        assert allowed.status_code == 200 and allowed.http_version == "HTTP/2"
        other = client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4o"},
                            headers={"authorization": "Bearer sk-alice-h2"})
        assert other.status_code == 403 and other.json()["error"]["code"] == "model_not_allowed"
    assert gwmock.stats()["by_path"]["/v1/chat/completions"] == 1


def test_ten_megabytes_each_way_with_small_windows(gwmock, start_gateway):
    gateway = start_gateway(config(gwmock.url))
    client = RawH2(port_of(gateway.url), window=16_384)
    try:
        # Upload: 10 MB of JSON through the gateway's 64 KiB stream window, consumed as the exchange reads it.
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024)}]}
        up = client.request(big, end=False)
        client.send_body(up, json.dumps(big).encode())
        result = client.responses({up}, timeout=120)[up]
        assert result["status"] == 200 and result["ended"], result["status"]
        assert json.loads(result["body"])["object"] == "chat.completion"

        # Download: about 10 MB of SSE events through a 16 KiB client window.
        down = client.request({**CHAT, "stream": True}, headers={"x-mock-chunks": "50000"})
        result = client.responses({down}, timeout=180)[down]
        assert result["status"] == 200 and result["ended"]
        assert len(result["body"]) > 10 * 1024 * 1024
        assert result["body"].rstrip().endswith(b"data: [DONE]")
        assert result["body"].count(b"\n\ndata: ") >= 50000
    finally:
        client.close()


def test_rapid_resets_are_limited(gwmock, start_gateway):
    gateway = start_gateway(config(gwmock.url))
    client = RawH2(port_of(gateway.url))
    terminated = None
    sent = 0
    cut_off = False
    try:
        for sent in range(1, 5001):
            stream = client.request(CHAT, end=False)
            client.conn.reset_stream(stream)
            client.flush()
        client.sock.settimeout(5)
        deadline = time.monotonic() + 10
        while terminated is None and time.monotonic() < deadline:
            for event in client.events():
                if isinstance(event, h2.events.ConnectionTerminated):
                    terminated = event
    except (ConnectionError, OSError, h2.exceptions.ProtocolError):
        cut_off = True
    finally:
        client.close()
    # nghttp2's reset rate limit (a burst of 1000) answers the flood with GOAWAY ENHANCE_YOUR_CALM and the
    # connection closes: the client is stopped well before its 5,000th open-and-reset.
    assert cut_off or terminated is not None
    if terminated is not None:
        assert terminated.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert sent < 5000
    # The gateway is alive and serves others; the reset streams released their exchanges (the drain at stop
    # would wait for any that leaked).
    assert gateway.process.proc.poll() is None
    assert httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT).status_code == 200
    assert gateway.stop() == 0


def test_goaway_on_sigterm_lets_streams_finish(gwmock, start_gateway, tmp_path: Path):
    gateway = start_gateway(config(gwmock.url))
    body = tmp_path / "chat.json"
    body.write_text(json.dumps(CHAT))
    # nghttp (nghttp2's client) prints every frame; three streams on one connection, each 1.5 s upstream.
    client = subprocess.Popen(
        ["nghttp", "-nv", "-m", "3", "-d", str(body), "-H", "x-mock-latency-ms: 1500",
         "-H", "content-type: application/json", f"{gateway.url}/v1/chat/completions"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    time.sleep(0.5)
    os.kill(gateway.pid, signal.SIGTERM)
    out, _ = client.communicate(timeout=30)
    assert client.returncode == 0, out
    # The GOAWAY came first, graceful, naming the last stream the gateway took; the streams then finished.
    assert "recv GOAWAY frame" in out, out
    requests = [int(n) for n in re.findall(r"send HEADERS frame <[^>]*stream_id=(\d+)>", out)]
    assert len(requests) == 3
    goaway = re.search(r"\(last_stream_id=(\d+), error_code=(\w+)", out)
    assert goaway and int(goaway.group(1)) == max(requests) and goaway.group(2) == "NO_ERROR", out
    assert out.count(":status: 200") == 3, out
    assert out.index("recv GOAWAY frame") < out.index(":status: 200")
    assert gateway.stop() == 0
    assert gwmock.stats()["by_path"]["/v1/chat/completions"] == 3


def test_h2_upstream_failures_and_translation(gwmock, start_gateway):
    """A stream gets the same 502 JSON error as HTTP/1.1 when the upstream is down, and an OpenAI request against an
    Anthropic-shaped deployment is translated both ways, streamed included."""
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there now
    gateway = start_gateway({
        "server": {"listen": ["127.0.0.1:0"]},
        "providers": [
            {"name": "down", "base_url": f"http://127.0.0.1:{dead_port}/v1", "api_key_env": "MOCK_API_KEY"},
            {"name": "ant", "kind": "anthropic", "base_url": f"{gwmock.url}/v1", "api_key_env": "MOCK_API_KEY"},
        ],
        "models": [
            {"name": "down-model", "retry": {"attempts": 1}, "deployments": [{"provider": "down"}]},
            {"name": "claude", "deployments": [{"provider": "ant", "model": "claude-3-5-haiku"}]},
        ],
    })
    transport = httpx.HTTPTransport(http1=False, http2=True)
    with httpx.Client(transport=transport, base_url=gateway.url, timeout=30) as client:
        failed = client.post("/v1/chat/completions", json={**CHAT, "model": "down-model"})
        assert failed.http_version == "HTTP/2" and failed.status_code == 502
        assert failed.json()["error"]["code"] == "upstream_error"
        assert failed.headers["x-gateway-attempts"] == "1"

        translated = client.post("/v1/chat/completions", json={**CHAT, "model": "claude"})
        assert translated.status_code == 200, translated.text
        body = translated.json()
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
        with client.stream("POST", "/v1/chat/completions", json={**CHAT, "model": "claude", "stream": True}) as stream:
            assert stream.status_code == 200
            events = [line for line in stream.iter_lines() if line.startswith("data: ")]
        assert len(events) > 3 and events[-1] == "data: [DONE]"
        assert any('"delta":{"content":' in event for event in events)
    assert gwmock.stats()["by_path"]["/v1/messages"] == 2


def test_h2_body_without_content_length(gwmock, start_gateway):
    """HTTP/2 needs no content-length: the body arrives in DATA frames until END_STREAM, and is re-framed as chunked."""
    gateway = start_gateway(config(gwmock.url))
    client = RawH2(port_of(gateway.url))
    try:
        payload = json.dumps(CHAT).encode()
        stream = client.request(payload, end=False, length=False)
        for start in range(0, len(payload), 20):
            client.conn.send_data(stream, payload[start:start + 20])
            client.flush()
        client.conn.end_stream(stream)
        client.flush()
        result = client.responses({stream})[stream]
        assert result["status"] == 200 and result["ended"], result
        assert json.loads(result["body"])["usage"]["prompt_tokens"] > 0
    finally:
        client.close()
    assert gwmock.stats()["by_model"] == {MODEL: 1}


def test_h2_malformed_requests(gwmock, start_gateway):
    """A request the HTTP/1.1 side would refuse is refused on its stream (a 4xx or a reset), a header list over the
    64 KiB limit gets 431, and the connection and the gateway carry on."""
    gateway = start_gateway(config(gwmock.url))
    client = RawH2(port_of(gateway.url), lenient=True)
    try:
        payload = json.dumps(CHAT).encode()
        bad_path = client.conn.get_next_available_stream_id()
        client.conn.send_headers(bad_path, [(":method", "POST"), (":path", "/v1/chat completions"), (":scheme", "http"),
                                            (":authority", "127.0.0.1"), ("content-length", str(len(payload)))])
        client.conn.send_data(bad_path, payload, end_stream=True)
        huge = client.conn.get_next_available_stream_id()
        client.conn.send_headers(huge, [(":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "http"),
                                        (":authority", "127.0.0.1")]
                                + [(f"x-big-{i}", "v" * 8_000) for i in range(10)], end_stream=True)
        good = client.conn.get_next_available_stream_id()
        client.conn.send_headers(good, [(":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "http"),
                                        (":authority", "127.0.0.1"), ("content-length", str(len(payload)))])
        client.conn.send_data(good, payload, end_stream=True)
        client.flush()
        results = client.responses({bad_path, huge, good})
    finally:
        client.close()
    bad = results[bad_path]
    assert bad["reset"] is not None or (400 <= bad["status"] < 500 and b'"error"' in bad["body"]), bad
    assert results[huge]["status"] == 431 or results[huge]["reset"] is not None, results[huge]
    assert results[good]["status"] == 200 and results[good]["ended"]
    assert gateway.process.proc.poll() is None
    assert gwmock.stats()["by_path"]["/v1/chat/completions"] == 1


def test_sequential_streams_on_one_connection_stay_independent(gwmock, start_gateway):
    """One stream after another on one connection, so that each reuses what the last one left (the gateway keeps
    its stream and exchange objects for the next stream): every response is its own, and no header, status or
    body of one stream shows in the next."""
    gateway = start_gateway(config(gwmock.url))
    client = RawH2(port_of(gateway.url))
    try:
        for i in range(60):
            kind = i % 6
            if kind == 0:  # the client's own request id comes back
                stream = client.request({**CHAT, "user": f"u{i}"}, headers={"x-request-id": f"client-id-{i}"})
            elif kind == 1:  # usage chosen by the mock's header
                stream = client.request(CHAT, headers={"x-mock-usage": f"{i},{i + 1}"})
            elif kind == 2:  # streamed
                stream = client.request({**CHAT, "stream": True}, headers={"x-mock-chunks": "3"})
            elif kind == 3:  # an unknown model: the gateway's own 404
                stream = client.request({**CHAT, "model": f"no-such-model-{i}"})
            elif kind == 4:  # a body without content-length (re-framed as chunked)
                stream = client.request(CHAT, end=False, length=False)
                client.send_body(stream, json.dumps({**CHAT, "user": f"u{i}"}).encode())
            else:  # a local endpoint with GET
                stream = client.conn.get_next_available_stream_id()
                client.conn.send_headers(stream, [(":method", "GET"), (":path", "/v1/models"), (":scheme", "http"),
                                                  (":authority", "127.0.0.1")], end_stream=True)
                client.flush()
            result = client.responses({stream})[stream]
            assert result["ended"] and result["reset"] is None, (i, result)
            headers = result["headers"]
            request_id = headers.get(b"x-request-id", b"").decode()
            if kind == 0:
                assert request_id == f"client-id-{i}"
            else:
                assert request_id.startswith("gw-"), (i, headers)
            if kind == 3:
                assert result["status"] == 404, (i, result)
                assert json.loads(result["body"])["error"]["code"] == "model_not_found"
                assert b"x-gateway-deployment" not in headers
                continue
            assert result["status"] == 200, (i, result)
            if kind == 5:
                assert json.loads(result["body"])["object"] == "list"
                assert b"x-gateway-deployment" not in headers
                continue
            assert headers[b"x-gateway-deployment"] == f"mock/{MODEL}".encode()
            assert headers[b"x-gateway-attempts"] == b"1"
            if kind == 2:
                assert headers[b"content-type"].startswith(b"text/event-stream")
                assert result["body"].rstrip().endswith(b"data: [DONE]")
                continue
            assert headers[b"content-type"].startswith(b"application/json")
            assert int(headers[b"content-length"]) == len(result["body"])
            usage = json.loads(result["body"])["usage"]
            if kind == 1:
                assert (usage["prompt_tokens"], usage["completion_tokens"]) == (i, i + 1)
            else:
                assert usage["prompt_tokens"] != i or usage["completion_tokens"] != i + 1
    finally:
        client.close()
    assert gwmock.stats()["by_path"]["/v1/chat/completions"] == 40


def test_h2_response_headers_match_http1(gwmock, start_gateway):
    """A stream's response head carries what the same request gets over HTTP/1.1, hop-by-hop fields aside: the
    upstream's fields, the rate-limit fields of a key with limits, a 429's retry-after, and the gateway's own."""
    gateway = start_gateway({
        **config(gwmock.url),
        "models": [{"name": MODEL, "retry": {"attempts": 1}, "deployments": [{"provider": "mock"}]}],
        "groups": [{"name": "team", "models": [MODEL], "limits": {"rpm": 1000, "tpm": 1000000}}],
        "keys": [{"name": "alice", "key": "sk-alice-h2", "groups": ["team"], "limits": {"rpm": 500}}],
    })
    auth = {"authorization": "Bearer sk-alice-h2"}
    varying = {"x-request-id", "x-mock-received-ns", "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
               "date"}
    h2 = httpx.Client(transport=httpx.HTTPTransport(http1=False, http2=True), base_url=gateway.url, timeout=30)
    h1 = httpx.Client(base_url=gateway.url, timeout=30)
    try:
        for extra in ({}, {"x-mock-status": "429"}, {"x-mock-status": "503"}):
            headers = {**auth, **extra}
            one = h1.post("/v1/chat/completions", json=CHAT, headers=headers)
            two = h2.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert two.http_version == "HTTP/2" and one.http_version == "HTTP/1.1"
            assert one.status_code == two.status_code, (extra, one.status_code, two.status_code)
            first = {k: v for k, v in one.headers.items() if k not in ("connection", "transfer-encoding")}
            second = dict(two.headers.items())
            assert sorted(first) == sorted(second), (extra, sorted(first), sorted(second))
            assert {k: v for k, v in first.items() if k not in varying} == \
                   {k: v for k, v in second.items() if k not in varying}, extra
            assert "x-ratelimit-limit-requests" in second and "x-ratelimit-remaining-requests" in second
            assert second["x-request-id"].startswith("gw-")
            if one.status_code == 429:
                assert second["retry-after"]
    finally:
        h1.close()
        h2.close()
