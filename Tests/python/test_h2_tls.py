"""HTTP/2 over TLS (h2, chosen by ALPN) on gwmock's https port, against real processes on 127.0.0.1.

gwmock offers ALPN h2 then http/1.1: curl --http2 and h2load get HTTP/2, curl --http1.1 still gets HTTP/1.1, and
every TLS handshake is counted in /mock/stats "tls" whichever protocol follows it. The CA and certificates are made
per test session by the `certs` fixture of test_tls.py (no key is committed).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import executable
from test_h2 import CHAT, STREAM, normalised, sse_events, split
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
