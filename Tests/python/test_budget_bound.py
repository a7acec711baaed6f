"""Overspend is bounded by the requests in flight when the budget is crossed: 64 concurrent clients, $0.01."""
from __future__ import annotations

import threading

import pytest

from gwtest import COST_1000_500_MICRO, USAGE_1000_500, KeepAliveClient, audit_rows, chat, policy_config, wait_until

CLIENTS = 64
BUDGET_MICRO = 10_000  # $0.01
KEY = "sk-bound-9f0e"
GROUP_KEY = "sk-bound-group-1a2b"


@pytest.fixture
def gateway(gwmock, start_gateway, tmp_path):
    config = policy_config(
        gwmock.port, tmp_path / "gateway.db",
        groups=[
            {"name": "team", "models": ["gpt-4o-mini"]},
            {"name": "capped", "models": ["gpt-4o-mini"], "budget": {"usd": BUDGET_MICRO / 1e6, "period": "total"}},
        ],
        keys=[
            {"name": "bound", "key": KEY, "groups": ["team"], "budget": {"usd": BUDGET_MICRO / 1e6, "period": "total"}},
            {"name": "group-bound", "key": GROUP_KEY, "groups": ["capped"]},
        ],
    )
    return start_gateway(config)


@pytest.mark.parametrize("key", [KEY, GROUP_KEY], ids=["key-budget", "group-budget"])
def test_budget_bound_under_64_concurrent_clients(gateway, key):
    barrier = threading.Barrier(CLIENTS)
    lock = threading.Lock()
    statuses: dict[int, int] = {}
    last_status: list[int] = []
    errors: list[str] = []

    def client_loop(index: int) -> None:
        seen_402 = 0
        try:
            with KeepAliveClient(gateway.url, timeout=60) as client:
                barrier.wait(30)
                for _ in range(40):  # bounded: well past the crossing (~23 calls of 450 micro-USD)
                    # 20 ms upstream latency: many requests are in flight at the crossing
                    response = client.chat(key, headers={**USAGE_1000_500, "x-mock-latency-ms": "20"})
                    with lock:
                        statuses[response.status] = statuses.get(response.status, 0) + 1
                    if response.status == 402:
                        assert response.error_code == "budget_exceeded", response
                        seen_402 += 1
                        if seen_402 == 2:
                            break
                    else:
                        assert response.status == 200, response
                with lock:
                    last_status.append(response.status)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(f"client {index}: {error!r}")

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert not errors, errors[:5]
    assert set(statuses) == {200, 402}, statuses
    assert last_status == [402] * CLIENTS, "every client ends on 402 once the budget is crossed"

    wait_until(lambda: len(audit_rows(gateway.db_path, "status = 200")) == statuses[200], timeout=15,
               what="the audit records of the admitted calls")
    spent = sum(row["cost_micro_usd"] for row in audit_rows(gateway.db_path, "status = 200"))
    assert spent == statuses[200] * COST_1000_500_MICRO
    bound = BUDGET_MICRO + CLIENTS * COST_1000_500_MICRO
    print(f"\n{key}: {statuses[200]} calls admitted, spent {spent} micro-USD of a {BUDGET_MICRO} budget "
          f"(bound {bound})")
    assert spent >= BUDGET_MICRO, f"refused before the budget was spent: {spent} < {BUDGET_MICRO}"
    assert spent <= bound, f"overspend beyond the in-flight bound: {spent} > {bound}"

    after = chat(gateway.url, key, headers=USAGE_1000_500)
    assert after.status == 402, after
    assert after.error_code == "budget_exceeded"
