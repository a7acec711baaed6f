"""Routing, failover, cooldown and health checks through a real gateway, against one gwmock playing several
providers (`--profile NAME:settings`, served at /NAME/v1/...; `POST /mock/profiles/NAME?...` changes one at run time).
"""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections import Counter

import pytest

from conftest import Mock, Process, executable
from gwtest import KeepAliveClient, chat_body, wait_until

MODEL = "gpt-4o-mini"


@pytest.fixture
def profiled_mock(tmp_path):
    """start(*profiles) starts a gwmock with `--profile P` for each P and returns it (a conftest Mock)."""
    started: list[Process] = []

    def start(*profiles: str, threads: int = 1) -> Mock:
        args = [str(executable("gwmock")), "--listen", "127.0.0.1:0", "--threads", str(threads)]
        for profile in profiles:
            args += ["--profile", profile]
        process = Process(f"gwmock-{len(started) + 1}", args, cwd=tmp_path)
        started.append(process)
        return Mock(process, process.wait_listening())

    yield start
    for process in started:
        process.terminate()


def set_profile(mock: Mock, name: str, **settings) -> None:
    query = "&".join(f"{key.replace('_', '-')}={value}" for key, value in settings.items())
    request = urllib.request.Request(f"{mock.url}/mock/profiles/{name}?{query}", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def routing_config(mock: Mock, providers: list[str], models: list[dict], *, threads: int = 1,
                   timeouts: dict | None = None, extra_providers: list[dict] | None = None) -> dict:
    """An open-mode gateway whose providers are gwmock profiles: provider P is http://.../P/v1."""
    server: dict = {"listen": ["127.0.0.1:0"], "threads": threads}
    if timeouts:
        server["timeouts"] = timeouts
    return {
        "server": server,
        "providers": [{"name": p, "base_url": f"http://127.0.0.1:{mock.port}/{p}/v1"} for p in providers]
        + (extra_providers or []),
        "models": models,
    }


def model(deployments: list, routing: str = "weighted", name: str = MODEL, **extra) -> dict:
    deps = [d if isinstance(d, dict) else {"provider": d} for d in deployments]
    return {"name": name, "routing": routing, "deployments": deps, **extra}


def deployment_of(response) -> str:
    return response.headers.get("x-gateway-deployment", "")


def test_weighted_distribution_over_10000_requests(profiled_mock, start_gateway):
    mock = profiled_mock("a", "b", "c")
    gateway = start_gateway(routing_config(mock, ["a", "b", "c"], [model([
        {"provider": "a", "weight": 5}, {"provider": "b", "weight": 3}, {"provider": "c", "weight": 2}])], threads=2))
    counts: Counter = Counter()

    def worker(n: int) -> None:
        with KeepAliveClient(gateway.url) as client:
            for _ in range(n):
                response = client.chat(None)
                assert response.status == 200, response
                counts[deployment_of(response)] += 1

    threads = [threading.Thread(target=worker, args=(2500,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts.values()) == 10_000
    # Smooth weighted round robin is exact per thread, so the shares are within a few requests of 50/30/20%.
    assert abs(counts[f"a/{MODEL}"] - 5000) <= 100, counts
    assert abs(counts[f"b/{MODEL}"] - 3000) <= 100, counts
    assert abs(counts[f"c/{MODEL}"] - 2000) <= 100, counts
    # gwmock saw the same split.
    by_profile = mock.stats()["by_profile"]
    assert by_profile == {"a": counts[f"a/{MODEL}"], "b": counts[f"b/{MODEL}"], "c": counts[f"c/{MODEL}"]}


def test_least_busy_avoids_a_slow_deployment(profiled_mock, start_gateway):
    mock = profiled_mock("slow:latency-ms=150", "fast:latency-ms=5")
    gateway = start_gateway(routing_config(mock, ["slow", "fast"], [model(["slow", "fast"], routing="least_busy")]))
    counts: Counter = Counter()
    deadline = time.monotonic() + 2.0

    def worker() -> None:
        with KeepAliveClient(gateway.url) as client:
            while time.monotonic() < deadline:
                response = client.chat(None)
                assert response.status == 200
                counts[deployment_of(response)] += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slow, fast = counts[f"slow/{MODEL}"], counts[f"fast/{MODEL}"]
    # Weighted round robin would split evenly; least_busy sends the slow one only what it can finish.
    assert fast > 5 * slow, counts


def test_latency_strategy_prefers_the_faster_deployment(profiled_mock, start_gateway):
    mock = profiled_mock("slow:latency-ms=60", "fast")
    gateway = start_gateway(routing_config(mock, ["slow", "fast"], [model(["slow", "fast"], routing="latency")]))
    counts: Counter = Counter()
    with KeepAliveClient(gateway.url) as client:
        for _ in range(200):
            counts[deployment_of(client.chat(None))] += 1
    assert counts[f"fast/{MODEL}"] > 180, counts


@pytest.mark.parametrize("fault", ["refused", "reset", "timeout", "429", "500"])
def test_each_fault_class_fails_over_to_the_next_deployment(profiled_mock, start_gateway, fault):
    profiles = {
        "reset": "a:fault=reset",
        "timeout": "a:fault=stall",
        "429": "a:status=429,retry-after=1",
        "500": "a:status=500",
        "refused": "a",
    }
    mock = profiled_mock(profiles[fault], "b")
    extra = None
    providers = ["a", "b"]
    if fault == "refused":
        providers = ["b"]
        extra = [{"name": "a", "base_url": f"http://127.0.0.1:{closed_port()}/v1"}]
    config = routing_config(mock, providers, [model(["a", "b"], routing="ordered")],
                            timeouts={"upstream_response_ms": 400}, extra_providers=extra)
    gateway = start_gateway(config)
    with KeepAliveClient(gateway.url) as client:
        response = client.chat(None)
    assert response.status == 200, response
    assert deployment_of(response) == f"b/{MODEL}"
    assert response.headers["x-gateway-attempts"] == "2"
    assert mock.stats()["by_profile"].get("b") == 1


def test_a_400_is_not_retried(profiled_mock, start_gateway):
    mock = profiled_mock("a:status=400", "b")
    gateway = start_gateway(routing_config(mock, ["a", "b"], [model(["a", "b"], routing="ordered")]))
    with KeepAliveClient(gateway.url) as client:
        response = client.chat(None)
    assert response.status == 400
    # The upstream's own error body passes through.
    assert "gwmock status 400" in response.json()["error"]["message"]
    assert response.headers["x-gateway-attempts"] == "1"
    assert "b" not in mock.stats()["by_profile"]


def test_fallback_to_another_model_and_fallbacks_off(profiled_mock, start_gateway):
    mock = profiled_mock("a:status=503", "b")
    models = [
        model(["a"], fallbacks=["backup"], retry={"attempts": 2, "backoff_ms": 1}),
        model([{"provider": "b", "model": "backup-upstream"}], name="backup"),
    ]
    gateway = start_gateway(routing_config(mock, ["a", "b"], models))
    with KeepAliveClient(gateway.url) as client:
        response = client.chat(None)
        assert response.status == 200, response
        assert deployment_of(response) == "b/backup-upstream"
        # The fallback's upstream id replaced the requested name in the body.
        assert response.json()["model"] == "backup-upstream"
        # x-gateway-fallbacks: none: the deployment's 503 is final and passes through.
        response = client.chat(None, headers={"x-gateway-fallbacks": "none"})
        assert response.status == 503, response
        assert "gwmock status 503" in response.json()["error"]["message"]


def test_all_attempts_fail_then_the_last_answer_passes_through(profiled_mock, start_gateway):
    mock = profiled_mock("a:status=500", "b:status=502")
    gateway = start_gateway(routing_config(mock, ["a", "b"], [
        model(["a", "b"], routing="ordered", retry={"attempts": 3, "backoff_ms": 1},
              cooldown={"failures": 10})]))
    with KeepAliveClient(gateway.url) as client:
        started = time.monotonic()
        response = client.chat(None)
    assert response.headers["x-gateway-attempts"] == "3"
    assert response.status in (500, 502)
    assert "gwmock status" in response.json()["error"]["message"]
    assert time.monotonic() - started < 2
    assert sum(mock.stats()["by_profile"].values()) == 3


def test_cooldown_then_half_open_recovery(profiled_mock, start_gateway):
    mock = profiled_mock("a:status=500", "b")
    gateway = start_gateway(routing_config(mock, ["a", "b"], [
        model(["a", "b"], routing="ordered", cooldown={"failures": 2, "window_ms": 10000, "duration_ms": 600})]))
    with KeepAliveClient(gateway.url) as client:
        # Two failures on a open its breaker; each request still succeeds on b.
        for _ in range(2):
            response = client.chat(None)
            assert (response.status, response.headers["x-gateway-attempts"]) == (200, "2")
        # Cooling down: a is skipped, b answers at the first attempt.
        for _ in range(5):
            response = client.chat(None)
            assert (deployment_of(response), response.headers["x-gateway-attempts"]) == (f"b/{MODEL}", "1")
        assert mock.stats()["by_profile"]["a"] == 2
        # a recovers; after the cooldown one probe goes to it and closes the breaker.
        set_profile(mock, "a", status=0)
        time.sleep(0.7)
        response = client.chat(None)
        assert deployment_of(response) == f"a/{MODEL}"
        assert deployment_of(client.chat(None)) == f"a/{MODEL}"


def test_a_failed_probe_cools_down_again(profiled_mock, start_gateway):
    mock = profiled_mock("a:status=500", "b")
    gateway = start_gateway(routing_config(mock, ["a", "b"], [
        model(["a", "b"], routing="ordered", cooldown={"failures": 1, "duration_ms": 300})]))
    with KeepAliveClient(gateway.url) as client:
        assert client.chat(None).headers["x-gateway-attempts"] == "2"
        time.sleep(0.35)
        # The probe fails (attempts 2), then a is cooling again (attempts 1).
        assert client.chat(None).headers["x-gateway-attempts"] == "2"
        assert client.chat(None).headers["x-gateway-attempts"] == "1"
    assert mock.stats()["by_profile"]["a"] == 2


def stream(client: KeepAliveClient):
    return client.chat(None, stream=True)


def test_streamed_failover_before_the_first_byte_and_not_after(profiled_mock, start_gateway):
    mock = profiled_mock("a:status=500", "b", "c:fault=close-mid-body", "d")
    models = [
        model(["a", "b"], routing="ordered"),
        model(["c", "d"], routing="ordered", name="mid-body"),
    ]
    gateway = start_gateway(routing_config(mock, ["a", "b", "c", "d"], models))
    with KeepAliveClient(gateway.url) as client:
        response = stream(client)
        assert response.status == 200
        assert deployment_of(response) == f"b/{MODEL}"
        assert response.body.rstrip().endswith(b"data: [DONE]")
    # The stream from c breaks after its head and first events went out: no failover, the client sees the break.
    sock = socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])), timeout=10)
    body = chat_body("mid-body", stream=True)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 + f"content-length: {len(body)}\r\n\r\n".encode() + body)
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    sock.close()
    assert b"200 OK" in received.split(b"\r\n", 1)[0]
    assert b"x-gateway-deployment: c/mid-body" in received
    assert b"[DONE]" not in received
    assert "d" not in mock.stats()["by_profile"]


def test_gateway_timeout_header_caps_the_whole_request(profiled_mock, start_gateway):
    mock = profiled_mock("a:latency-ms=3000")
    gateway = start_gateway(routing_config(mock, ["a"], [model(["a"])]))
    with KeepAliveClient(gateway.url) as client:
        started = time.monotonic()
        response = client.chat(None, headers={"x-gateway-timeout-ms": "300"})
        elapsed = time.monotonic() - started
    assert response.status == 504
    assert response.error_code == "upstream_timeout"
    assert 0.25 < elapsed < 1.5, elapsed


def test_429_retry_after_within_the_cap_is_waited_for_on_a_single_deployment(profiled_mock, start_gateway):
    mock = profiled_mock("a:status=429,retry-after=1")
    gateway = start_gateway(routing_config(mock, ["a"], [model(["a"], retry={"attempts": 2, "retry_after_max_ms": 2000})]))
    with KeepAliveClient(gateway.url) as client:
        threading.Timer(0.3, lambda: set_profile(mock, "a", status=0)).start()
        started = time.monotonic()
        response = client.chat(None)
        elapsed = time.monotonic() - started
    assert response.status == 200, response
    assert response.headers["x-gateway-attempts"] == "2"
    assert 0.9 < elapsed < 2.0, elapsed


def test_429_retry_after_beyond_the_cap_passes_through(profiled_mock, start_gateway):
    mock = profiled_mock("a:status=429,retry-after=30")
    gateway = start_gateway(routing_config(mock, ["a"], [model(["a"], retry={"retry_after_max_ms": 1000})]))
    with KeepAliveClient(gateway.url) as client:
        response = client.chat(None)
    assert response.status == 429
    assert response.headers["retry-after"] == "30"
    assert response.headers["x-gateway-attempts"] == "1"


def test_aliases_share_a_model(profiled_mock, start_gateway):
    mock = profiled_mock("a")
    gateway = start_gateway(routing_config(mock, ["a"], [model(["a"], aliases=["fast", "cheap"])]))
    with KeepAliveClient(gateway.url) as client:
        for name in ("fast", "cheap", MODEL):
            response = client.chat(None, model=name)
            assert response.status == 200, response
            assert deployment_of(response) == f"a/{MODEL}"
            # The alias is rewritten to the deployment's upstream id.
            assert response.json()["model"] == MODEL
        ids = [m["id"] for m in client.request("GET", "/v1/models").json()["data"]]
    assert ids == [MODEL, "fast", "cheap"]


def test_a_model_whose_deployments_all_cool_down_is_still_tried_once(profiled_mock, start_gateway):
    mock = profiled_mock("a:status=500")
    gateway = start_gateway(routing_config(mock, ["a"], [
        model(["a"], retry={"attempts": 1}, cooldown={"failures": 1, "duration_ms": 60000})]))
    with KeepAliveClient(gateway.url) as client:
        for _ in range(3):
            response = client.chat(None)
            # Not refused by the gateway: the provider's own answer, one attempt each.
            assert response.status == 500
            assert response.headers["x-gateway-attempts"] == "1"
    assert mock.stats()["by_profile"]["a"] == 3


def test_health_check_cools_a_provider_down_and_back(profiled_mock, start_gateway):
    mock = profiled_mock("a", "b")
    config = routing_config(mock, ["a", "b"], [model(["a", "b"], routing="ordered")])
    config["providers"][0]["health_check"] = {"path": "/a/v1/models", "interval_ms": 100, "timeout_ms": 500}
    config["admin"] = {"listen": "127.0.0.1:0", "key_env": "GATEWAY_ADMIN_KEY"}
    config["store"] = {"sqlite": "health.db"}
    config["groups"] = [{"name": "all", "models": ["*"]}]
    config["keys"] = [{"name": "k", "key": "sk-health", "groups": ["all"]}]
    gateway = start_gateway(config)

    def state_of_a() -> str:
        import httpx
        text = httpx.get(f"{gateway.admin_url}/metrics", headers={"Authorization": f"Bearer {gateway.admin_key}"}).text
        return next(line.split()[-1] for line in text.splitlines()
                    if line.startswith('gateway_deployment_state{deployment="a/'))

    with KeepAliveClient(gateway.url) as client:
        assert deployment_of(client.chat("sk-health")) == f"a/{MODEL}"
        # The provider starts failing its health check: requests move to b without touching a.
        set_profile(mock, "a", status=503)
        wait_until(lambda: state_of_a() == "1", timeout=5, what="a cooling down")
        before = mock.stats()["by_path"]["/v1/chat/completions"]
        response = client.chat("sk-health")
        assert (deployment_of(response), response.headers["x-gateway-attempts"]) == (f"b/{MODEL}", "1")
        # It recovers: the next check ends the cooldown.
        set_profile(mock, "a", status=0)
        wait_until(lambda: state_of_a() == "0", timeout=5, what="a healthy")
        assert deployment_of(client.chat("sk-health")) == f"a/{MODEL}"
        assert mock.stats()["by_path"]["/v1/chat/completions"] == before + 2


def test_the_audit_record_holds_every_attempt(profiled_mock, start_gateway, tmp_path):
    from gwtest import wait_for_audit
    mock = profiled_mock("a:status=500", "b")
    config = routing_config(mock, ["a", "b"], [model(["a", "b"], routing="ordered", cooldown={"failures": 100})])
    config["store"] = {"sqlite": str(tmp_path / "routing-audit.db")}
    gateway = start_gateway(config)
    with KeepAliveClient(gateway.url) as client:
        assert client.chat(None, headers={"x-request-id": "failed-over"}).status == 200
    row = wait_for_audit(gateway.db_path, 1, "request_id = ?", ("failed-over",))[0]
    assert (row["attempts"], row["deployment"], row["status"]) == (2, f"b/{MODEL}", 200)
    assert row["attempt_log"].startswith(f"a/{MODEL} 500 "), row["attempt_log"]


def test_azure_style_provider_key_header_and_query(start_gateway):
    import httpx
    from gwtest import RecordingUpstream

    completion = {"id": "c1", "object": "chat.completion", "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    with RecordingUpstream(completion) as upstream:
        gateway = start_gateway({
            "server": {"listen": ["127.0.0.1:0"], "threads": 1},
            "providers": [{"name": "azure", "kind": "openai",
                           "base_url": f"http://127.0.0.1:{upstream.port}/openai/deployments/gpt-4o",
                           "api_key_env": "MOCK_API_KEY", "api_key_header": "api-key", "query": "api-version=2024-10-21"}],
            "models": [{"name": "gpt-4o", "deployments": [{"provider": "azure"}]}],
        })
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
        # A client's own api-key header must not reach the provider beside the gateway's.
        assert httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers={"api-key": "client-secret"},
                          timeout=10).status_code == 200
        assert httpx.post(f"{gateway.url}/v1/chat/completions?trace=1", json=body, timeout=10).status_code == 200
    (path1, headers1), (path2, _) = upstream.requests
    assert path1 == "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    assert path2 == "/openai/deployments/gpt-4o/chat/completions?trace=1&api-version=2024-10-21"
    assert headers1["api-key"] == gateway.env["MOCK_API_KEY"]
    assert "authorization" not in headers1


def test_every_429_carries_retry_after(profiled_mock, start_gateway):
    # The provider's 429 has no retry-after: passed through after the last attempt, it gains one.
    mock = profiled_mock("a:status=429", "b:status=429,retry-after=1")
    gateway = start_gateway(routing_config(mock, ["a", "b"], [
        model(["a"], retry={"attempts": 2, "backoff_ms": 1}),
        model(["b"], name="b-model", retry={"attempts": 2, "retry_after_max_ms": 1500}, cooldown={"failures": 100})]))
    with KeepAliveClient(gateway.url) as client:
        response = client.chat(None)
        assert (response.status, response.headers.get("retry-after"), response.headers["x-gateway-attempts"]) == (429, "1", "2")
        # b says retry-after 1 within the cap: the gateway waits, tries again, and passes the second 429 on.
        response = client.chat(None, model="b-model")
        assert (response.status, response.headers.get("retry-after"), response.headers["x-gateway-attempts"]) == (429, "1", "2")
