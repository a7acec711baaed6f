"""HTTP/2 over cleartext with prior knowledge (h2c) on gwmock's port, against real processes on 127.0.0.1.

Clients: curl --http2-prior-knowledge, h2load, httpx with http2=True, the `h2` library (frame by frame), and
gwbench --h2c. Each stream must get the answer an HTTP/1.1 request gets, and count the same in /mock/stats.
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import executable

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello over HTTP/2."}]}
STREAM = {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}, "messages": []}


def curl(url: str, *args: str, http2: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    """curl with the response head on stdout (-i), the HTTP version last (-w)."""
    version = "--http2-prior-knowledge" if http2 else "--http1.1"
    return subprocess.run(
        ["curl", "-sS", "-i", version, "--max-time", str(timeout), *args, "-w", "\n%{http_version}", url],
        capture_output=True, timeout=timeout + 10,
    )


def split(result: subprocess.CompletedProcess) -> tuple[int, dict[str, str], bytes, str]:
    """(status, headers, body, HTTP version) of a curl -i -w run."""
    out = result.stdout
    head, _, rest = out.partition(b"\r\n\r\n")
    body, _, version = rest.rpartition(b"\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body, version.decode()


def normalised(body: bytes) -> str:
    """A body with what differs between two requests (the response id number, the creation second) blanked."""
    text = re.sub(r'"(chatcmpl-|cmpl-|msg_|call_|toolu_)mock\d+"', r'"\1mockN"', body.decode())
    return re.sub(r'"created":\d+', '"created":T', text)


def sse_events(body: bytes) -> list[str]:
    return [event for event in body.decode().split("\n\n") if event]


def post(mock_url: str, path: str, body: dict, *headers: str, http2: bool = True) -> subprocess.CompletedProcess:
    extra = []
    for header in ("content-type: application/json",) + headers:
        extra += ["-H", header]
    return curl(mock_url + path, "-d", json.dumps(body), *extra, http2=http2)


def test_health_answers_over_both_protocols(gwmock):
    for http2 in (True, False):
        result = curl(gwmock.url + "/health", http2=http2, timeout=5)
        assert result.returncode == 0, result.stderr
        status, _, body, version = split(result)
        assert status == 200 and json.loads(body) == {"status": "ok"}, (version, body)


def test_curl_chat_completion_matches_http1(gwmock):
    h2 = post(gwmock.url, "/v1/chat/completions", CHAT)
    h1 = post(gwmock.url, "/v1/chat/completions", CHAT, http2=False)
    assert h2.returncode == 0, h2.stderr
    status, headers, body, version = split(h2)
    status1, headers1, body1, version1 = split(h1)
    assert (version, version1) == ("2", "1.1")
    assert status == status1 == 200
    assert headers["content-type"] == headers1["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body) == len(body1)
    assert int(headers["x-mock-received-ns"]) > 0
    assert normalised(body) == normalised(body1)
    answer = json.loads(body)
    assert answer["object"] == "chat.completion" and answer["model"] == "gpt-4o-mini"
    assert answer["usage"]["prompt_tokens"] == (len(json.dumps(CHAT)) + 3) // 4
    assert answer["usage"]["completion_tokens"] == 16
    stats = gwmock.stats()
    assert stats["by_path"]["/v1/chat/completions"] == 2
    assert stats["by_model"] == {"gpt-4o-mini": 2}


def test_curl_streamed_chat_completion_matches_http1(gwmock):
    h2 = post(gwmock.url, "/v1/chat/completions", STREAM, "x-mock-chunks: 5")
    h1 = post(gwmock.url, "/v1/chat/completions", STREAM, "x-mock-chunks: 5", http2=False)
    assert h2.returncode == 0, h2.stderr
    status, headers, body, version = split(h2)
    _, _, body1, _ = split(h1)
    assert (status, version) == (200, "2")
    assert headers["content-type"] == "text/event-stream"
    assert "transfer-encoding" not in headers and "content-length" not in headers
    events = sse_events(body)
    # 5 content chunks, the finish chunk, the usage chunk, [DONE].
    assert len(events) == 8
    assert events[-1] == "data: [DONE]"
    usage = json.loads(events[-2][len("data: "):])["usage"]
    assert usage["completion_tokens"] == 5
    assert normalised(body) == normalised(body1)


@pytest.mark.parametrize("path,body", [
    ("/v1/completions", {"model": "davinci", "prompt": "hi"}),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b", "c"]}),
    ("/v1/messages", {"model": "claude-3-5-haiku", "max_tokens": 10, "messages": []}),
    ("/v1/messages", {"model": "claude-3-5-haiku", "stream": True, "messages": []}),
    ("/v1/completions", {"model": "davinci", "prompt": "hi", "stream": True}),
])
def test_every_endpoint_answers_as_over_http1(gwmock, path, body):
    status, headers, h2_body, _ = split(post(gwmock.url, path, body))
    status1, headers1, h1_body, _ = split(post(gwmock.url, path, body, http2=False))
    assert status == status1 == 200
    assert headers["content-type"] == headers1["content-type"]
    assert normalised(h2_body) == normalised(h1_body)


def test_local_answers_and_errors_match_http1(gwmock):
    for args in (["-X", "GET"], ["-d", "{}"]):  # GET /v1/models, and POST to it (405)
        status, headers, body, _ = split(curl(gwmock.url + "/v1/models", *args))
        status1, _, body1, _ = split(curl(gwmock.url + "/v1/models", *args, http2=False))
        assert status == status1 and body == body1
    status, _, body, _ = split(curl(gwmock.url + "/nowhere"))
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    status, headers, body, _ = split(post(gwmock.url, "/v1/messages", CHAT, "x-mock-status: 429"))
    assert status == 429 and json.loads(body)["type"] == "error"
    # A profile set over HTTP/2 applies to HTTP/1.1 too, retry-after included.
    status, _, body, _ = split(curl(gwmock.url + "/mock/profiles/slow?status=503&retry-after=2", "-X", "POST"))
    assert status == 200 and json.loads(body) == {"profile": "slow", "status": 503}
    for http2 in (True, False):
        status, headers, _, _ = split(post(gwmock.url, "/slow/v1/chat/completions", CHAT, http2=http2))
        assert status == 503 and headers["retry-after"] == "2"
    stats = gwmock.stats()
    assert stats["by_profile"] == {"slow": 2}
    assert stats["by_path"]["other"] == 2  # /nowhere and the profile update, as over HTTP/1.1


def test_latency_is_injected_per_stream(gwmock):
    started = time.monotonic()
    status, headers, _, _ = split(post(gwmock.url, "/v1/chat/completions", CHAT, "x-mock-latency-ms: 300"))
    elapsed = time.monotonic() - started
    assert status == 200
    assert elapsed >= 0.3


def test_faults_map_to_streams(gwmock):
    for fault in ("reset", "close-mid-body"):
        result = post(gwmock.url, "/v1/chat/completions", CHAT, f"x-mock-fault: {fault}")
        assert result.returncode == 92, (fault, result.stderr)  # curl: HTTP/2 stream error
        assert b"INTERNAL_ERROR" in result.stderr
    stalled = curl(gwmock.url + "/v1/chat/completions", "-d", json.dumps(CHAT), "-H", "x-mock-fault: stall", timeout=1)
    assert stalled.returncode == 28  # timed out, nothing answered
    # The connection-level faults of HTTP/1.1 hurt one stream only: the same connection keeps serving.
    import h2.errors
    with H2Client(gwmock.port) as client:
        bad = client.request("/v1/chat/completions", CHAT, {"x-mock-fault": "reset"})
        good = client.request("/v1/chat/completions", CHAT)
        events = client.run_until_closed([bad, good])
        assert events[bad]["reset"] == h2.errors.ErrorCodes.INTERNAL_ERROR
        assert events[good]["status"] == 200 and json.loads(events[good]["body"])["object"] == "chat.completion"
    assert gwmock.stats()["by_path"]["/v1/chat/completions"] == 5


class H2Client:
    """A raw HTTP/2 client on the `h2` library: frames as they arrive, with the time each came."""

    def __init__(self, port: int):
        import h2.config
        import h2.connection

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.goaway = None

    def __enter__(self) -> "H2Client":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, body: dict | None, headers: dict | None = None, end: bool = True) -> int:
        stream = self.conn.get_next_available_stream_id()
        fields = [(":method", "POST" if body is not None else "GET"), (":scheme", "http"),
                  (":authority", "127.0.0.1"), (":path", path)]
        fields += list((headers or {}).items())
        raw = json.dumps(body).encode() if body is not None else b""
        if raw:
            fields.append(("content-type", "application/json"))
        self.conn.send_headers(stream, fields, end_stream=not raw and end)
        if raw:
            self.conn.send_data(stream, raw, end_stream=end)
        self.flush()
        return stream

    def run_until_closed(self, streams: list[int], timeout: float = 10) -> dict[int, dict]:
        """Reads until every stream in `streams` ended or was reset: status, body, DATA frames (time, bytes)."""
        import h2.events

        state = {s: {"status": None, "body": b"", "frames": [], "reset": None, "ended": False} for s in streams}
        deadline = time.monotonic() + timeout
        while not all(s["ended"] or s["reset"] is not None for s in state.values()) and self.goaway is None:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                break
            now = time.monotonic()
            for event in self.conn.receive_data(data):
                stream = getattr(event, "stream_id", None)
                if isinstance(event, h2.events.ResponseReceived) and stream in state:
                    state[stream]["status"] = int(dict(event.headers)[":status"])
                    state[stream]["headers"] = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, stream)
                    if stream in state:
                        state[stream]["body"] += event.data
                        state[stream]["frames"].append((now, event.data))
                elif isinstance(event, h2.events.StreamEnded) and stream in state:
                    state[stream]["ended"] = True
                elif isinstance(event, h2.events.StreamReset) and stream in state:
                    state[stream]["reset"] = event.error_code
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.goaway = event
            self.flush()
        return state


def test_each_sse_event_is_its_own_data_frame_sent_as_it_is_produced(gwmock):
    with H2Client(gwmock.port) as client:
        stream = client.request("/v1/chat/completions", STREAM, {"x-mock-chunks": "4", "x-mock-itl-ms": "80"})
        state = client.run_until_closed([stream])[stream]
    assert state["ended"] and state["status"] == 200
    events = sse_events(state["body"])
    assert len(events) == 4 + 3
    frames = [data for _, data in state["frames"] if data]
    assert [data.decode() for data in frames] == [event + "\n\n" for event in events]
    # The four content groups arrive 80 ms apart, not all at the end.
    times = [at for at, data in state["frames"] if data]
    assert times[3] - times[0] >= 0.2


def test_many_streams_on_one_connection(gwmock):
    with H2Client(gwmock.port) as client:
        streams = [client.request("/v1/chat/completions", CHAT, {"x-mock-latency-ms": "100"}) for _ in range(50)]
        started = time.monotonic()
        states = client.run_until_closed(streams)
        elapsed = time.monotonic() - started
    assert all(s["status"] == 200 and json.loads(s["body"])["object"] == "chat.completion" for s in states.values())
    assert elapsed < 1.0, "the 50 latencies overlapped"
    ids = {json.loads(s["body"])["id"] for s in states.values()}
    assert len(ids) == 50
    assert gwmock.stats()["by_path"]["/v1/chat/completions"] == 50


def test_rapid_reset_gets_goaway_and_the_mock_keeps_serving(gwmock):
    import h2.errors

    with H2Client(gwmock.port) as client:
        closed = False
        try:
            for _ in range(1500):
                stream = client.request("/v1/models", None)
                client.conn.reset_stream(stream)
                client.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # gwmock shut its side after the GOAWAY
        client.sock.settimeout(5)
        while not closed:
            try:
                data = client.sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                closed = True
                break
            for event in client.conn.receive_data(data):
                if type(event).__name__ == "ConnectionTerminated":
                    client.goaway = event
        assert client.goaway is not None, "no GOAWAY after 1500 rapid resets"
        assert client.goaway.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
        assert closed, "gwmock kept the connection open after its GOAWAY"
    status, _, _, _ = split(post(gwmock.url, "/v1/chat/completions", CHAT))
    assert status == 200


def test_h2load(gwmock, tmp_path):
    if shutil.which("h2load") is None:
        pytest.skip("h2load not installed (apt-get install nghttp2-client)")
    body = tmp_path / "chat.json"
    body.write_text(json.dumps(CHAT))
    result = subprocess.run(
        ["h2load", "-n", "2000", "-c", "4", "-m", "10", "-d", str(body), "-H", "content-type: application/json",
         gwmock.url + "/v1/chat/completions"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout",
                     result.stdout), result.stdout
    assert "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx" in result.stdout
    stats = gwmock.stats()
    assert stats["by_path"]["/v1/chat/completions"] == 2000
    assert stats["requests"] == 2000 + 1  # and this /mock/stats request
    assert stats["connections"] == 4 + 1
    assert stats["by_model"] == {"gpt-4o-mini": 2000}


def test_httpx_http2_prior_knowledge(gwmock):
    pytest.importorskip("h2")
    import httpx

    with httpx.Client(http1=False, http2=True, base_url=gwmock.url, timeout=30) as client:
        response = client.post("/v1/chat/completions", json=CHAT)
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200 and response.json()["object"] == "chat.completion"
        with client.stream("POST", "/v1/chat/completions", json=STREAM, headers={"x-mock-chunks": "3"}) as streamed:
            assert streamed.http_version == "HTTP/2"
            assert streamed.headers["content-type"] == "text/event-stream"
            lines = [line for line in streamed.iter_lines() if line]
        assert lines[-1] == "data: [DONE]" and len(lines) == 3 + 3
        models = client.get("/v1/models")
        assert [m["id"] for m in models.json()["data"]][0] == "gpt-4o-mini"
    stats = gwmock.stats()
    assert stats["by_path"]["/v1/chat/completions"] == 2 and stats["by_path"]["/v1/models"] == 1
    assert stats["connections"] == 1 + 1


def counters(report: dict) -> dict[str, int]:
    return {c["name"]: c["value"] for c in report["results"][0]["counters"]}


def test_gwbench_h2c_counts_what_gwmock_counts(gwmock, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [str(executable("gwbench")), "run", gwmock.url, "--h2c", "-c", "2", "-m", "8", "-n", "2000", "--warmup", "0s",
         "--quiet", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    c = counters(report)
    stats = gwmock.stats()
    assert c["responses"] == c["responses_total"] == 2000, c
    assert stats["by_path"]["/v1/chat/completions"] == c["responses_total"]
    assert c["status_2xx"] == 2000
    for failure in ("failures_total", "connect_errors", "resets", "timeouts", "bad_responses"):
        assert c[failure] == 0, (failure, c)
    assert c["connections_opened"] == 2 and stats["connections"] == 2 + 1
    assert report["options"]["streams_per_connection"] == 8
    assert report["options"]["protocol"] == "h2c"
    # x-mock-received-ns came back on every stream: both legs are measured.
    ids = {s["id"]: s for s in report["results"][0]["statistics"]}
    assert ids["leg_to_upstream"]["count"] == 2000


def test_gwbench_h2c_streams_count_events_and_resets(gwmock, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [str(executable("gwbench")), "run", gwmock.url, "--h2c", "-c", "1", "-m", "4", "-n", "40", "--warmup", "0s",
         "--stream", "--header", "x-mock-chunks: 5", "--quiet", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    c = counters(json.loads(out.read_text()))
    assert c["responses"] == 40 and c["events"] == 40 * (5 + 2), c
    # x-mock-fault: reset answers with RST_STREAM: counted as resets, and the connection carries on.
    result = subprocess.run(
        [str(executable("gwbench")), "run", gwmock.url, "--h2c", "-c", "1", "-m", "4", "-n", "20", "--warmup", "0s",
         "--header", "x-mock-fault: reset", "--quiet", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    c = counters(json.loads(out.read_text()))
    assert c["resets"] == 20 and c["responses"] == 0 and c["connections_opened"] == 1, c


def test_gwbench_h2_needs_an_https_url(gwmock):
    result = subprocess.run([str(executable("gwbench")), "run", gwmock.url, "--h2", "-n", "1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "--h2 is HTTP/2 over TLS and needs an https:// URL (use --h2c for cleartext HTTP/2)" in result.stderr


def test_gwbench_h2c_open_loop_counts_requests_without_a_free_stream_as_over_http1(gwmock, tmp_path):
    """Open loop at 200 req/s for 1 s on 2 streams that each take 100 ms: about 20 requests a second fit. Due requests
    wait for a free stream (backlogged); what never finds one before the run ends is missed, exactly as 2 HTTP/1.1
    connections count it."""
    def run(*protocol: str) -> dict[str, int]:
        out = tmp_path / "open.json"
        result = subprocess.run(
            [str(executable("gwbench")), "run", gwmock.url, *protocol, "--rate", "200", "-d", "1s", "--warmup", "0s",
             "--timeout", "1s", "--header", "x-mock-latency-ms: 100", "--quiet", "--json", str(out)],
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return counters(json.loads(out.read_text()))

    h2 = run("--h2c", "-c", "1", "-m", "2")
    h1 = run("-c", "2")
    for c in (h2, h1):
        assert c["requests_sent"] + c["missed"] == 200, c
        assert c["missed"] > 100 and c["backlogged"] > 0, c
        assert c["resets"] == 0 and c["bad_responses"] == 0, c
    assert abs(h2["requests_sent"] - h1["requests_sent"]) <= 8, (h2, h1)
    assert h2["connections_opened"] == 1
