"""TLS on both sides of the gateway, and in gwmock, with a CA made per test session (no key is committed).

- gwmock serves HTTPS with --tls-cert/--tls-key;
- a `tls://` listener serves the openai SDK and curl, with ALPN, session resumption (TLS 1.2 and 1.3) and a handshake
  timeout, and a client whose handshake fails does not disturb the others;
- `https://` upstreams are verified against `ca_file` with the host name checked: a bad certificate or a wrong host
  gives 502 `upstream_error` with OpenSSL's reason in the message and the log line; `insecure_skip_verify` works and
  warns; new upstream connections resume the thread's last session.
"""
from __future__ import annotations

import concurrent.futures
import json
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import Process, executable

MODEL = "gpt-4o-mini"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _leaf(directory: Path, name: str, san: str, ca: bool = True) -> None:
    """A P-256 certificate for `san`, signed by the test CA (or self-signed)."""
    if not ca:
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", "/CN=localhost",
                 "-addext", f"subjectAltName={san}", cwd=directory)
        return
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=test", cwd=directory)
    (directory / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """ca.pem; server.{pem,key} for localhost and 127.0.0.1; wronghost.* for wrong.example; selfsigned.*."""
    directory = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=gateway test CA", cwd=directory)
    _leaf(directory, "server", "DNS:localhost,IP:127.0.0.1")
    _leaf(directory, "wronghost", "DNS:wrong.example")
    _leaf(directory, "selfsigned", "DNS:localhost,IP:127.0.0.1", ca=False)
    return directory


class TLSMock:
    def __init__(self, process: Process, url: str):
        self.process = process
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])

    def stats(self, ca: Path | None = None) -> dict:
        return httpx.get(f"{self.url}/mock/stats", verify=ssl.create_default_context(cafile=str(ca)) if ca else False, timeout=10).json()


@pytest.fixture
def tls_mock(tmp_path: Path, certs: Path):
    """A factory: tls_mock("server") starts gwmock with that certificate and returns it."""
    started: list[TLSMock] = []

    def start(name: str = "server") -> TLSMock:
        process = Process(f"gwmock-tls-{len(started)}", [
            str(executable("gwmock")), "--listen", "127.0.0.1:0",
            "--tls-cert", str(certs / f"{name}.pem"), "--tls-key", str(certs / f"{name}.key"),
        ], cwd=tmp_path)
        url = process.wait_listening()
        assert url.startswith("https://"), url
        mock = TLSMock(process, url)
        started.append(mock)
        return mock

    yield start
    for mock in started:
        mock.process.terminate()


def chat(stream: bool = False, model: str = MODEL) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    return body


def tls_gateway_config(certs: Path, upstream: str, **server) -> dict:
    return {
        "server": {
            "listen": ["tls://127.0.0.1:0"],
            "tls": {"cert": str(certs / "server.pem"), "key": str(certs / "server.key")},
            **server,
        },
        "providers": [{"name": "mock", "base_url": f"{upstream}/v1", "api_key_env": "MOCK_API_KEY"}],
        "models": [{"name": MODEL, "deployments": [{"provider": "mock"}]}],
    }


# gwmock


def test_gwmock_serves_https(tls_mock, certs: Path):
    mock = tls_mock()
    answer = subprocess.run(
        ["curl", "-sS", "--cacert", str(certs / "ca.pem"), f"{mock.url}/v1/chat/completions",
         "-H", "content-type: application/json", "-d", json.dumps(chat())],
        check=True, capture_output=True, timeout=30,
    )
    assert json.loads(answer.stdout)["object"] == "chat.completion"
    streamed = subprocess.run(
        ["curl", "-sSN", "--cacert", str(certs / "ca.pem"), f"https://localhost:{mock.port}/v1/chat/completions",
         "-H", "content-type: application/json", "-d", json.dumps(chat(stream=True))],
        check=True, capture_output=True, timeout=30,
    ).stdout.decode()
    events = [line for line in streamed.split("\n") if line.startswith("data: ")]
    assert len(events) > 3 and events[-1] == "data: [DONE]"
    stats = mock.stats(certs / "ca.pem")
    assert stats["by_path"]["/v1/chat/completions"] == 2
    assert stats["tls"]["handshakes"] == 3


def test_gwbench_over_https(tls_mock, certs: Path, tmp_path: Path):
    mock = tls_mock()
    report = tmp_path / "run.json"
    run = subprocess.run(
        [str(executable("gwbench")), "run", mock.url, "-c", "2", "-n", "500", "--warmup", "100ms", "--insecure",
         "--json", str(report)],
        capture_output=True, timeout=120, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "https://" in run.stdout and "0 connect, 0 reset, 0 timeout" in run.stdout, run.stdout
    counters = json.loads(report.read_text())["results"][0]["counters"]
    statuses = {c["name"]: c["value"] for c in counters}
    assert statuses.get("status_200") == 500, counters
    stats = mock.stats()
    assert stats["by_path"]["/v1/chat/completions"] == statuses["requests_sent_total"] == statuses["responses_total"]
    # Two connections, two handshakes (plus the stats request's own): no reconnect storm from session tickets.
    assert stats["tls"]["handshakes"] == 3, stats

    # Without --insecure the mock's test CA is not trusted: every connect fails, and says why.
    refused = subprocess.run(
        [str(executable("gwbench")), "run", mock.url, "-c", "1", "-d", "300ms", "--warmup", "0s"],
        capture_output=True, timeout=60, text=True,
    )
    assert "certificate verify failed" in refused.stderr
    assert "0 responses" in refused.stdout


@pytest.mark.parametrize("resume", [False, True])
def test_gwbench_handshakes(tls_mock, tmp_path: Path, resume: bool):
    mock = tls_mock()
    report = tmp_path / "handshakes.json"
    args = [str(executable("gwbench")), "handshakes", mock.url, "-c", "4", "-d", "500ms", "--warmup", "100ms",
            "--insecure", "--pid", f"gwmock={mock.process.proc.pid}", "--json", str(report)]
    run = subprocess.run(args + (["--resume"] if resume else []), capture_output=True, timeout=60, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(report.read_text())
    assert figures["failures"] == 0 and figures["handshakes"] > 20, figures
    assert figures["resumed"] == (figures["handshakes"] if resume else 0), figures
    assert figures["cpu_us_per_handshake"]["gwmock"] > 0
    # The server agrees: it completed at least the measured handshakes (warm-up ones too), resumed as many.
    tls = mock.stats()["tls"]
    assert tls["handshakes"] >= figures["handshakes"]
    if resume:
        assert tls["resumed"] >= figures["resumed"]
    else:
        assert tls["resumed"] == 0


# The gateway's tls:// listener


def test_tls_listener_serves_the_openai_sdk(tls_mock, gwmock, start_gateway, certs: Path):
    import openai

    gateway = start_gateway(tls_gateway_config(certs, gwmock.url))
    assert gateway.url.startswith("https://127.0.0.1:")
    with httpx.Client(verify=ssl.create_default_context(cafile=str(certs / "ca.pem"))) as http:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", http_client=http, max_retries=0)
        completion = client.chat.completions.create(**chat())
        assert completion.choices[0].message.content
        assert completion.usage.completion_tokens > 0
        pieces = [chunk.choices[0].delta.content for chunk in client.chat.completions.create(**chat(stream=True))
                  if chunk.choices and chunk.choices[0].delta.content]
        assert len(pieces) > 3
        models = client.models.list()
        assert [m.id for m in models.data] == [MODEL]
    # Without the CA, the SDK refuses the gateway's certificate: verification is real.
    with httpx.Client() as http:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", http_client=http, max_retries=0)
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(**chat())
    assert gwmock.stats()["by_path"]["/v1/chat/completions"] == 2


def test_tls_listener_with_curl_keep_alive(gwmock, start_gateway, certs: Path):
    gateway = start_gateway(tls_gateway_config(certs, gwmock.url))
    url = f"{gateway.url}/v1/chat/completions"
    result = subprocess.run(
        ["curl", "-sS", "--cacert", str(certs / "ca.pem"), "-H", "content-type: application/json",
         "-d", json.dumps(chat()), "-w", "\\n%{http_code} %{num_connects}\\n", url, url, url],
        check=True, capture_output=True, timeout=30,
    ).stdout.decode()
    codes = [line for line in result.split("\n") if line.startswith("200 ")]
    # Three requests on one TLS connection: one connect, then two reuses.
    assert codes == ["200 1", "200 0", "200 0"], result


def _handshake(port: int, context: ssl.SSLContext, session=None) -> tuple[ssl.SSLSocket, bytes]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = context.wrap_socket(raw, server_hostname="localhost", session=session)
    tls.sendall(b"GET /v1/models HTTP/1.1\r\nhost: localhost\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = tls.recv(65536)
        assert chunk, f"the connection closed after {response!r}"
        response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += tls.recv(65536)
    return tls, head


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_listener_alpn_and_resumption(gwmock, start_gateway, certs: Path, version):
    gateway = start_gateway(tls_gateway_config(certs, gwmock.url))
    port = int(gateway.url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    context.minimum_version = context.maximum_version = version
    context.set_alpn_protocols(["h2", "http/1.1"])
    # ALPN: the gateway prefers h2, and speaks http/1.1 to a client that offers only that.
    probe = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
    assert probe.selected_alpn_protocol() == "h2"
    probe.close()
    context.set_alpn_protocols(["http/1.1"])
    first, head = _handshake(port, context)
    assert head.startswith(b"HTTP/1.1 200")
    assert first.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    assert first.selected_alpn_protocol() == "http/1.1"
    assert not first.session_reused
    session = first.session
    first.close()
    second, head = _handshake(port, context, session=session)
    assert head.startswith(b"HTTP/1.1 200")
    assert second.session_reused, "the gateway did not resume the session"
    second.close()


def test_a_failed_client_handshake_does_not_disturb_others(gwmock, start_gateway, certs: Path):
    gateway = start_gateway(tls_gateway_config(certs, gwmock.url, timeouts={"header_ms": 500}))
    port = int(gateway.url.rsplit(":", 1)[1])
    with httpx.Client(verify=ssl.create_default_context(cafile=str(certs / "ca.pem"))) as good:
        assert good.post(f"{gateway.url}/v1/chat/completions", json=chat()).status_code == 200

        # Plain HTTP on the TLS port: not a ClientHello, closed.
        plain = socket.create_connection(("127.0.0.1", port), timeout=10)
        plain.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
        received = b""
        try:
            while chunk := plain.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass  # closed with the request unread: a reset
        assert b"HTTP/1.1" not in received  # at most a TLS alert, then the close
        plain.close()

        # A client that rejects the gateway's certificate (no CA): its handshake fails, alone.
        with pytest.raises(ssl.SSLCertVerificationError):
            _handshake(port, ssl.create_default_context())

        # A client that connects and never says hello is closed after the handshake timeout (header_ms).
        silent = socket.create_connection(("127.0.0.1", port), timeout=10)
        started = time.monotonic()
        assert silent.recv(4096) == b""
        assert time.monotonic() - started < 5
        silent.close()

        # The good client's keep-alive connection is still in service.
        for _ in range(3):
            assert good.post(f"{gateway.url}/v1/chat/completions", json=chat()).status_code == 200
    assert gateway.process.proc.poll() is None


# https:// upstreams


def upstream_config(providers: list[dict]) -> dict:
    return {
        "server": {"listen": ["127.0.0.1:0"]},
        "providers": [{"api_key_env": "MOCK_API_KEY", **p} for p in providers],
        "models": [{"name": p["name"], "retry": {"attempts": 1}, "deployments": [{"provider": p["name"], "model": MODEL}]}
                   for p in providers],
    }


def test_https_upstreams_are_verified(tls_mock, start_gateway, certs: Path):
    good = tls_mock("server")
    wrong = tls_mock("wronghost")
    selfsigned = tls_mock("selfsigned")
    ca = str(certs / "ca.pem")
    gateway = start_gateway(upstream_config([
        {"name": "good", "base_url": f"https://localhost:{good.port}/v1", "ca_file": ca},
        {"name": "by-address", "base_url": f"https://127.0.0.1:{good.port}/v1", "ca_file": ca},
        {"name": "wrong-host", "base_url": f"https://localhost:{wrong.port}/v1", "ca_file": ca},
        {"name": "bad-cert", "base_url": f"https://localhost:{selfsigned.port}/v1", "ca_file": ca},
        {"name": "system-cas", "base_url": f"https://localhost:{good.port}/v1"},
        {"name": "insecure", "base_url": f"https://localhost:{selfsigned.port}/v1", "insecure_skip_verify": True},
    ]))
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for model in ("good", "by-address", "insecure"):
            response = client.post("/v1/chat/completions", json=chat(model=model))
            assert response.status_code == 200, (model, response.text)
            assert response.json()["usage"]["completion_tokens"] > 0
        streamed = client.post("/v1/chat/completions", json=chat(stream=True, model="good"))
        assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")

        failures = {
            "wrong-host": "hostname mismatch",
            "bad-cert": "self-signed certificate",
            "system-cas": "unable to get local issuer certificate",
        }
        for model, reason in failures.items():
            response = client.post("/v1/chat/completions", json=chat(model=model))
            assert response.status_code == 502, (model, response.text)
            error = response.json()["error"]
            assert error["code"] == "upstream_error"
            assert "TLS handshake" in error["message"] and reason in error["message"], error
    log = gateway.stderr()
    assert "insecure_skip_verify: the upstream's certificate and host name are not verified" in log
    for reason in failures.values():
        assert reason in log
    # The failed handshakes never reached an endpoint.
    assert wrong.stats()["requests"] == 1 and selfsigned.stats()["by_path"]["/v1/chat/completions"] == 1


def test_https_upstream_resumes_sessions(tls_mock, start_gateway, certs: Path):
    mock = tls_mock("server")
    gateway = start_gateway({
        **upstream_config([{"name": "good", "base_url": f"https://localhost:{mock.port}/v1",
                            "ca_file": str(certs / "ca.pem")}]),
        "server": {"listen": ["127.0.0.1:0"], "threads": 1},
    })
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        assert client.post("/v1/chat/completions", json=chat(model="good")).status_code == 200
    # Six at once, each held 300 ms upstream: five new connections besides the idle one, each resuming the session.
    def slow(_):
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            return client.post("/v1/chat/completions", json=chat(model="good"),
                               headers={"x-mock-latency-ms": "300"}).status_code
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert list(pool.map(slow, range(6))) == [200] * 6
    tls = mock.stats(certs / "ca.pem")["tls"]
    # Two full handshakes: the gateway's first connection and this stats request. Every other upstream connection
    # (up to five; fewer when a request finished before another started) resumed.
    assert tls["handshakes"] >= 3, tls
    assert tls["resumed"] == tls["handshakes"] - 2, tls
