"""A flood of invalid keys: every request gets 401 and none reaches the provider."""
from __future__ import annotations

import os
import secrets
import threading
import time

import pytest

from gwtest import RawHTTP, chat, chat_body, policy_config, raw_request, sample_sum, scrape, wait_for_audit

VALID = "sk-flood-valid-0a9b"
REQUESTS = 10_000
THREADS = 4


@pytest.fixture
def gateway(gwmock, start_gateway, tmp_path):
    config = policy_config(
        gwmock.port, tmp_path / "gateway.db",
        groups=[{"name": "team", "models": ["gpt-4o-mini"]}],
        keys=[{"name": "valid", "key": VALID, "groups": ["team"]}],
    )
    return start_gateway(config)


def model_requests(stats: dict) -> int:
    """Requests that gwmock received, without its own /mock/stats and /health."""
    by_path = stats["by_path"]
    return stats["requests"] - by_path.get("/mock/stats", 0) - by_path.get("/health", 0)


def test_invalid_keys_flood(gateway, gwmock, capsys):
    assert chat(gateway.url, VALID).status == 200  # the route to the mock works: 1 model request
    before = gwmock.stats()
    assert model_requests(before) == 1, before

    body = chat_body()
    statuses: dict[int, int] = {}
    errors: list[str] = []
    lock = threading.Lock()
    per_thread = REQUESTS // THREADS

    def flood(index: int) -> None:
        client = RawHTTP(gateway.url, timeout=30)
        local: dict[int, int] = {}
        try:
            for i in range(per_thread):
                key = "sk-" + secrets.token_hex(16)
                auth = {"x-api-key": key} if i % 4 == 3 else {"Authorization": f"Bearer {key}"}
                request = raw_request("POST", "/v1/chat/completions",
                                      {"Content-Type": "application/json", **auth}, body)
                try:
                    status, _ = client.exchange(request)
                except (ConnectionError, OSError):
                    client.reconnects += 1
                    if client.reconnects > 50:
                        raise
                    status, _ = client.exchange(request)  # once more, on a new connection
                local[status] = local.get(status, 0) + 1
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(f"thread {index}: {error!r}")
        finally:
            client.close()
            with lock:
                for status, count in local.items():
                    statuses[status] = statuses.get(status, 0) + count

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(THREADS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    elapsed = time.monotonic() - started

    assert not errors, errors
    assert statuses == {401: REQUESTS}, statuses
    rate = REQUESTS / elapsed
    with capsys.disabled():
        print(f"\nkeys flood: {REQUESTS} invalid keys -> 401 in {elapsed:.2f}s: {rate:,.0f} rejections/s "
              f"({THREADS} keep-alive connections, Python client, {os.cpu_count()} cores)")

    after = gwmock.stats()
    assert model_requests(after) == model_requests(before), (before, after)
    assert after["by_path"]["/v1/chat/completions"] == before["by_path"]["/v1/chat/completions"]

    samples = scrape(gateway.admin_url)
    assert sample_sum(samples, "gateway_rejections_total", reason="invalid_api_key") == REQUESTS
    # every rejected request has its audit record, with the error code
    wait_for_audit(gateway.db_path, REQUESTS, "status = 401 AND error_code = 'invalid_api_key'", timeout=30)
