"""The audit log is complete (N requests, N records, across a SIGTERM under load), and spend survives a restart."""
from __future__ import annotations

import threading
import time

import pytest

from gwtest import USAGE_1000_500, KeepAliveClient, audit_count, chat, policy_config, wait_for_audit

KEY = "sk-audit-1c2d"
KEY_BUDGET = "sk-audit-budget-3e4f"
GROUP_BUDGET = "sk-audit-gbudget-5a6b"


@pytest.fixture
def config(gwmock, tmp_path):
    return policy_config(
        gwmock.port, tmp_path / "gateway.db",
        groups=[
            {"name": "team", "models": ["gpt-4o-mini"]},
            # $0.0012: three calls of 450 micro-USD (0, 450, 900 spent at admission), the fourth is refused
            {"name": "capped", "models": ["gpt-4o-mini"], "budget": {"usd": 0.0012, "period": "monthly"}},
        ],
        keys=[
            {"name": "audit", "key": KEY, "groups": ["team"]},
            {"name": "budget", "key": KEY_BUDGET, "groups": ["team"], "budget": {"usd": 0.0012, "period": "total"}},
            {"name": "gbudget", "key": GROUP_BUDGET, "groups": ["capped"]},
        ],
    )


def run_threads(count: int, target) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_n_requests_give_n_records(config, start_gateway):
    gateway = start_gateway(config)
    statuses = []
    with KeepAliveClient(gateway.url) as client:
        for i in range(60):
            key, model = [(KEY, "gpt-4o-mini"), (KEY, "gpt-4o"), ("sk-wrong", "gpt-4o-mini")][i % 3]
            statuses.append(client.chat(key, model).status)
    assert sorted(set(statuses)) == [200, 401, 403]

    rows = wait_for_audit(gateway.db_path, 60)
    time.sleep(0.3)  # nothing more may arrive
    assert audit_count(gateway.db_path) == 60
    assert sorted(row["status"] for row in rows) == sorted(statuses)
    assert {row["error_code"] for row in rows if row["status"] == 403} == {"model_not_allowed"}
    assert {row["error_code"] for row in rows if row["status"] == 401} == {"invalid_api_key"}


def test_audit_is_complete_across_sigterm_under_load(config, start_gateway):
    gateway = start_gateway(config)
    lock = threading.Lock()
    received: dict[int, int] = {}  # status -> responses the clients got

    def count(status: int) -> None:
        with lock:
            received[status] = received.get(status, 0) + 1

    # 1. N = 500 requests from 4 threads
    def burst(index: int) -> None:
        with KeepAliveClient(gateway.url) as client:
            for _ in range(125):
                count(client.chat(KEY).status)

    for thread in run_threads(4, burst):
        thread.join(60)
    assert received == {200: 500}, received

    # 2. 8 threads keep slow requests in flight; SIGTERM lands in the middle of them
    stop_sending = threading.Event()
    in_flight_started = threading.Semaphore(0)

    def load(index: int) -> None:
        client = KeepAliveClient(gateway.url, timeout=60)
        failures = 0
        while not stop_sending.is_set() and failures < 3:
            in_flight_started.release()
            try:
                response = client.chat(KEY, headers={"x-mock-latency-ms": "300"})
            except (OSError, ConnectionError, Exception):  # noqa: BLE001 - the gateway closed or refused
                failures += 1
                time.sleep(0.05)
                continue
            count(response.status)
        client.close()

    threads = run_threads(8, load)
    for _ in range(16):  # each thread has sent at least one request, most a second one
        in_flight_started.acquire(timeout=20)
    time.sleep(0.1)
    status = gateway.stop()  # SIGTERM by PID, then wait for the exit
    stop_sending.set()
    for thread in threads:
        thread.join(60)

    assert status == 0, f"exit status {status} after SIGTERM\n{gateway.stderr()}"
    total = sum(received.values())
    assert total >= 500 + 8, received  # phase 2's first round at least (the second was in flight: drained)
    rows = audit_count(gateway.db_path)
    ok_rows = audit_count(gateway.db_path, "status = 200")
    assert rows == total, (
        f"{rows} audit records but the clients received {total} responses {received}; "
        f"records by status: 200 -> {ok_rows}")
    assert ok_rows == received.get(200, 0)


def test_spend_survives_a_restart(config, start_gateway):
    first = start_gateway(config)
    with KeepAliveClient(first.url) as client:
        for key in (KEY_BUDGET, GROUP_BUDGET):
            for _ in range(2):  # 900 of the 1200 micro-USD
                response = client.chat(key, headers=USAGE_1000_500)
                assert response.status == 200, response
    assert first.stop() == 0, first.stderr()

    second = start_gateway(config)
    with KeepAliveClient(second.url) as client:
        for key in (KEY_BUDGET, GROUP_BUDGET):
            third = client.chat(key, headers=USAGE_1000_500)
            assert third.status == 200, f"{key}: the budget had room for one more call: {third}"
            fourth = client.chat(key, headers=USAGE_1000_500)
            assert fourth.status == 402, (
                f"{key}: after a restart the spend of before was forgotten (a fourth call was admitted): {fourth}")
            assert fourth.error_code == "budget_exceeded"

    usage = {row["name"]: row for row in second.admin("GET", "/admin/usage?by=key").json()["rows"]}
    assert usage["budget"]["cost_micro_usd"] == 3 * 450
    assert usage["gbudget"]["cost_micro_usd"] == 3 * 450


def test_budget_period_total_is_not_reset_by_a_reload(config, start_gateway):
    gateway = start_gateway(config)
    with KeepAliveClient(gateway.url) as client:
        for _ in range(3):
            assert client.chat(KEY_BUDGET, headers=USAGE_1000_500).status == 200
        assert client.chat(KEY_BUDGET, headers=USAGE_1000_500).status == 402
        assert gateway.admin("POST", "/admin/reload").status_code == 200
        assert client.chat(KEY_BUDGET, headers=USAGE_1000_500).status == 402
    assert chat(gateway.url, KEY).status == 200
