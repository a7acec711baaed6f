"""HTTP/2 over TLS (h2, chosen by ALPN) on gwmock's https port, against real processes on 127.0.0.1.

gwmock offers ALPN h2 then http/1.1: curl --http2, h2load and gwbench --h2 get HTTP/2, curl --http1.1 still gets
HTTP/1.1, and every TLS handshake is counted in /mock/stats "tls" whichever protocol follows it. gwbench --h2
verifies the certificate unless --insecure, and refuses a server that does not choose h2. The CA and certificates are made
per test session by the `certs` fixture of test_tls.py (no key is committed).
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import executable
from test_h2 import CHAT, STREAM, H2Client, counters, normalised, sse_events, split
from test_tls import certs, tls_mock  # noqa: F401  (fixtures)


def curl_tls(url: str, ca: Path, *args: str, http2: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    """curl over TLS verified against `ca`, with the response head on stdout (-i), the HTTP version last (-w)."""
    version = "--http2" if http2 else "--http1.1"
    return subprocess.run(
        ["curl", "-sS", "-i", version, "--cacert", str(ca), "--max-time", str(timeout), *args, "-w", "\n%{http_version}",
         url],
        capture_output=True, timeout=timeout + 10,
    )


def post_tls(url: str, ca: Path, body: dict, *headers: str, http2: bool = True) -> subprocess.CompletedProcess:
    extra = []
    for header in ("content-type: application/json",) + headers:
        extra += ["-H", header]
    return curl_tls(url, ca, "-d", json.dumps(body), *extra, http2=http2)


def test_curl_http2_chat_completion_over_tls(tls_mock, certs: Path):
    mock = tls_mock()
    ca = certs / "ca.pem"
    status, headers, body, version = split(post_tls(mock.url + "/v1/chat/completions", ca, CHAT))
    assert (status, version) == (200, "2")
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert int(headers["x-mock-received-ns"]) > 0
    assert json.loads(body)["object"] == "chat.completion"
    # The same answer as HTTP/1.1 over TLS on the same port.
    status1, _, body1, version1 = split(post_tls(mock.url + "/v1/chat/completions", ca, CHAT, http2=False))
    assert (status1, version1) == (200, "1.1")
    assert normalised(body) == normalised(body1)
    stats = mock.stats(ca)
    assert stats["by_path"]["/v1/chat/completions"] == 2
    assert stats["tls"]["handshakes"] == 3  # both curls and this stats request
    assert stats["connections"] == 3


def test_curl_http2_streamed_chat_completion_over_tls(tls_mock, certs: Path):
    mock = tls_mock()
    ca = certs / "ca.pem"
    result = post_tls(f"https://localhost:{mock.port}/v1/chat/completions", ca, STREAM, "x-mock-chunks: 4")
    status, headers, body, version = split(result)
    assert (status, version) == (200, "2"), result.stderr
    assert headers["content-type"] == "text/event-stream"
    events = sse_events(body)
    assert events[-1] == "data: [DONE]"
    # 4 content chunks, the finish chunk, the usage chunk, [DONE].
    assert len(events) == 7
    # The same events as over HTTP/1.1.
    _, _, body1, version1 = split(post_tls(mock.url + "/v1/chat/completions", ca, STREAM, "x-mock-chunks: 4", http2=False))
    assert version1 == "1.1"
    assert normalised(body) == normalised(body1)


def test_http11_over_tls_still_answered(tls_mock, certs: Path):
    mock = tls_mock()
    status, _, body, version = split(curl_tls(mock.url + "/v1/models", certs / "ca.pem", http2=False))
    assert (status, version) == (200, "1.1")
    assert json.loads(body)["data"][0]["id"] == "gpt-4o-mini"


def test_h2load_over_tls(tls_mock, certs: Path, tmp_path: Path):
    if shutil.which("h2load") is None:
        pytest.skip("h2load not installed (apt-get install nghttp2-client)")
    mock = tls_mock()
    body = tmp_path / "chat.json"
    body.write_text(json.dumps(CHAT))
    result = subprocess.run(
        ["h2load", "-n", "2000", "-c", "4", "-m", "10", "-d", str(body), "-H", "content-type: application/json",
         mock.url + "/v1/chat/completions"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Application protocol: h2" in result.stdout, result.stdout
    assert re.search(r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout",
                     result.stdout), result.stdout
    assert "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx" in result.stdout
    stats = mock.stats(certs / "ca.pem")
    assert stats["by_path"]["/v1/chat/completions"] == 2000
    assert stats["requests"] == 2000 + 1  # and this /mock/stats request
    assert stats["connections"] == 4 + 1
    assert stats["tls"]["handshakes"] == 4 + 1
    assert stats["by_model"] == {"gpt-4o-mini": 2000}


class H2TLSClient(H2Client):
    """`H2Client` over TLS, with ALPN offering h2 only."""

    def __init__(self, port: int, ca: Path):
        import h2.config
        import h2.connection

        context = ssl.create_default_context(cafile=str(ca))
        context.set_alpn_protocols(["h2"])
        self.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                        server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.goaway = None


def test_many_streams_and_a_request_body_past_one_record(tls_mock, certs: Path):
    """50 overlapping streams on one connection, and a request body of several TLS records (each read may leave
    decrypted bytes inside OpenSSL)."""
    pytest.importorskip("h2")
    mock = tls_mock()
    big = dict(CHAT, messages=[{"role": "user", "content": "x" * 100_000}])
    with H2TLSClient(mock.port, certs / "ca.pem") as client:
        streams = [client.request("/v1/chat/completions", CHAT, {"x-mock-latency-ms": "100"}) for _ in range(50)]
        started = time.monotonic()
        states = client.run_until_closed(streams)
        elapsed = time.monotonic() - started
        large = client.conn.get_next_available_stream_id()
        client.conn.send_headers(large, [(":method", "POST"), (":scheme", "https"), (":authority", "localhost"),
                                         (":path", "/v1/chat/completions"), ("content-type", "application/json")])
        raw = json.dumps(big).encode()
        for start in range(0, len(raw), 16384):
            client.conn.send_data(large, raw[start:start + 16384], end_stream=start + 16384 >= len(raw))
        client.flush()
        large_state = client.run_until_closed([large])[large]
    assert all(s["status"] == 200 and json.loads(s["body"])["object"] == "chat.completion" for s in states.values())
    assert elapsed < 1.0, "the 50 latencies overlapped"
    assert large_state["status"] == 200 and json.loads(large_state["body"])["model"] == "gpt-4o-mini"
    stats = mock.stats(certs / "ca.pem")
    assert stats["by_path"]["/v1/chat/completions"] == 51
    assert stats["tls"]["handshakes"] == 1 + 1


def test_rapid_reset_over_tls_gets_goaway_and_the_mock_keeps_serving(tls_mock, certs: Path):
    pytest.importorskip("h2")
    import h2.errors

    mock = tls_mock()
    with H2TLSClient(mock.port, certs / "ca.pem") as client:
        closed = False
        try:
            for _ in range(1500):
                stream = client.request("/v1/models", None)
                client.conn.reset_stream(stream)
                client.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # gwmock shut its side after the GOAWAY
        client.sock.settimeout(5)
        while not closed:
            try:
                data = client.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not data:
                closed = True  # close_notify, then the FIN
                break
            for event in client.conn.receive_data(data):
                if type(event).__name__ == "ConnectionTerminated":
                    client.goaway = event
        assert client.goaway is not None, "no GOAWAY after 1500 rapid resets"
        assert client.goaway.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
        assert closed, "gwmock kept the connection open after its GOAWAY"
    status, _, _, version = split(post_tls(mock.url + "/v1/chat/completions", certs / "ca.pem", CHAT))
    assert (status, version) == (200, "2")


def gwbench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(executable("gwbench")), "run", *args], capture_output=True, text=True, timeout=timeout)


def test_gwbench_h2_counts_what_gwmock_counts(tls_mock, certs: Path, tmp_path: Path):
    mock = tls_mock()
    out = tmp_path / "bench.json"
    result = gwbench(mock.url, "--h2", "-c", "2", "-m", "8", "-n", "2000", "--insecure", "--warmup", "0s",
                     "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(h2, 8 streams each)" in result.stdout, result.stdout
    report = json.loads(out.read_text())
    c = counters(report)
    stats = mock.stats(certs / "ca.pem")
    assert c["responses"] == c["responses_total"] == 2000, c
    assert stats["by_path"]["/v1/chat/completions"] == c["responses_total"]
    assert c["status_2xx"] == 2000
    for failure in ("failures_total", "connect_errors", "resets", "timeouts", "bad_responses"):
        assert c[failure] == 0, (failure, c)
    assert c["connections_opened"] == 2 and stats["connections"] == 2 + 1
    assert stats["tls"]["handshakes"] == 2 + 1
    assert report["options"]["streams_per_connection"] == 8
    assert report["options"]["protocol"] == "h2"
    # Every request was stamped when its HEADERS left, and x-mock-received-ns came back on every stream.
    ids = {s["id"]: s for s in report["results"][0]["statistics"]}
    assert ids["latency"]["count"] == 2000
    assert ids["leg_to_upstream"]["count"] == 2000


def test_gwbench_h2_streams_events_over_tls(tls_mock, tmp_path: Path):
    mock = tls_mock()
    out = tmp_path / "bench.json"
    result = gwbench(mock.url, "--h2", "-c", "1", "-m", "4", "-n", "40", "--insecure", "--warmup", "0s", "--stream",
                     "--header", "x-mock-chunks: 5", "--quiet", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    c = counters(json.loads(out.read_text()))
    assert c["responses"] == 40 and c["events"] == 40 * (5 + 2) and c["connect_errors"] == 0, c


def test_gwbench_h2_verifies_the_certificate(tls_mock):
    mock = tls_mock()
    # The mock's test CA is not in the system store: every connect fails, and says why.
    result = gwbench(mock.url, "--h2", "-c", "1", "-d", "300ms", "--warmup", "0s", timeout=60)
    assert "certificate verify failed" in result.stderr, result.stderr
    assert "0 responses" in result.stdout, result.stdout
    assert mock.stats()["by_path"]["/v1/chat/completions"] == 0


@pytest.fixture
def http11_only_tls_server(certs: Path):
    """A TLS server whose ALPN offers only http/1.1; it completes handshakes and then says nothing."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs / "server.pem"), str(certs / "server.key"))
    context.set_alpn_protocols(["http/1.1"])
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            client.settimeout(5)
            try:
                accepted.append(context.wrap_socket(client, server_side=True))
            except (OSError, ssl.SSLError):
                client.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()
    for client in accepted:
        client.close()


def test_gwbench_h2_refuses_a_server_that_does_not_choose_h2(http11_only_tls_server: int):
    result = gwbench(f"https://127.0.0.1:{http11_only_tls_server}", "--h2", "--insecure", "-c", "2", "-t", "2",
                     "-d", "300ms", "--warmup", "0s", timeout=60)
    # Said once, not per thread or per attempt.
    assert result.stderr.count("the server did not negotiate h2") == 1, result.stderr
    assert "0 responses" in result.stdout, result.stdout
    assert re.search(r"errors: [1-9]\d* connect", result.stdout), result.stdout


def test_gwbench_h2c_refuses_an_https_url(tls_mock):
    mock = tls_mock()
    result = gwbench(mock.url, "--h2c", "-n", "1", timeout=30)
    assert result.returncode != 0
    assert "use --h2 for HTTP/2 over TLS" in result.stderr
