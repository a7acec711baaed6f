"""Rate limits over a window: RPM, TPM and concurrency, per key and per group, and how they interact."""
from __future__ import annotations

import threading
import time

import pytest

from gwtest import KeepAliveClient, policy_config, wait_until

KEY_A = "sk-limits-a-1f"
KEY_B = "sk-limits-b-2e"
FAST = "sk-limits-fast-3d"
TPM = "sk-limits-tpm-4c"
ONE_AT_A_TIME = "sk-limits-conc-5b"
GROUP_TPM_1 = "sk-limits-gt1-6a"
GROUP_TPM_2 = "sk-limits-gt2-79"


@pytest.fixture
def gateway(gwmock, start_gateway, tmp_path):
    config = policy_config(
        gwmock.port, tmp_path / "gateway.db",
        groups=[
            {"name": "shared", "models": ["gpt-4o-mini"], "limits": {"rpm": 3}},
            {"name": "open", "models": ["gpt-4o-mini"]},
            {"name": "tokens", "models": ["gpt-4o-mini"], "limits": {"tpm": 3000}},
        ],
        keys=[
            {"name": "a", "key": KEY_A, "groups": ["shared"], "limits": {"rpm": 2}},
            {"name": "b", "key": KEY_B, "groups": ["shared"]},
            {"name": "fast", "key": FAST, "groups": ["open"], "limits": {"rpm": 120}},
            {"name": "tpm", "key": TPM, "groups": ["open"], "limits": {"tpm": 3000}},
            {"name": "conc", "key": ONE_AT_A_TIME, "groups": ["open"], "limits": {"concurrency": 1}},
            {"name": "gt1", "key": GROUP_TPM_1, "groups": ["tokens"]},
            {"name": "gt2", "key": GROUP_TPM_2, "groups": ["tokens"]},
        ],
    )
    return start_gateway(config)


def assert_429(response, limit_header: str | None = None):
    assert response.status == 429, response
    assert response.error_code == "rate_limit_exceeded"
    assert "retry-after" in response.headers, response.headers
    assert float(response.headers["retry-after"]) > 0
    if limit_header:
        assert limit_header in response.headers, response.headers


def test_key_rpm_and_a_group_rpm_shared_by_two_keys(gateway):
    """Key A: rpm 2; group `shared`: rpm 3 for A and B together (GCRA: a burst of N, then one every 60/N s)."""
    with KeepAliveClient(gateway.url) as a, KeepAliveClient(gateway.url) as b:
        first, second = a.chat(KEY_A), a.chat(KEY_A)
        assert (first.status, second.status) == (200, 200), (first, second)
        assert first.headers.get("x-ratelimit-limit-requests") is not None
        assert second.headers.get("x-ratelimit-remaining-requests") == "0"

        third = a.chat(KEY_A)
        assert_429(third, "x-ratelimit-remaining-requests")  # A's own limit

        # The group allowed 3 and A used 2 (a refused request is not admitted, so it does not count):
        # B gets exactly the one that is left.
        b_first = b.chat(KEY_B)
        assert b_first.status == 200, b_first
        b_second = b.chat(KEY_B)
        assert_429(b_second)


def test_rpm_refills_over_the_window(gateway):
    """rpm 120: a burst of 120, then one every 0.5 s; retry-after says when to come back."""
    with KeepAliveClient(gateway.url) as client:
        started = time.monotonic()
        admitted = 0
        refused = None
        for _ in range(400):
            response = client.chat(FAST)
            if response.status != 200:
                refused = response
                break
            admitted += 1
        elapsed = time.monotonic() - started
        assert refused is not None, "400 requests within the burst of 120 were all admitted"
        assert_429(refused)
        # the burst, plus what refilled while the burst was being sent (one per 0.5 s), plus slack for rounding
        assert 120 <= admitted <= 120 + elapsed / 0.5 + 2, (admitted, elapsed)

        time.sleep(min(float(refused.headers["retry-after"]), 2.0) + 0.6)
        assert client.chat(FAST).status == 200, "no request was admitted again after retry-after"


def test_tpm_counts_the_real_usage(gateway):
    """tpm 3000. Usage (1000, 1000) = 2000 tokens a call: call 1 leaves 1000, call 2 is admitted on its small
    estimate and goes 1000 into debt, call 3 is refused until the debt is repaid (50 tokens/s, ~20 s)."""
    with KeepAliveClient(gateway.url) as client:
        usage = {"x-mock-usage": "1000,1000"}
        first = client.chat(TPM, headers=usage)
        assert first.status == 200, first
        assert first.headers.get("x-ratelimit-limit-tokens") == "3000", first.headers
        # The head is written before the real usage is known: it shows the admission estimate (~19 tokens),
        # which refills at 50 tokens/s, so on a slow machine it may already read 3000 again.
        assert int(first.headers["x-ratelimit-remaining-tokens"]) <= 3000

        second = client.chat(TPM, headers=usage)
        assert second.status == 200, second
        assert int(second.headers["x-ratelimit-remaining-tokens"]) <= 1100, second.headers  # 3000 - 2000 - estimate

        third = client.chat(TPM, headers=usage)
        assert_429(third, "x-ratelimit-remaining-tokens")
        assert third.headers["x-ratelimit-limit-tokens"] == "3000"
        assert float(third.headers["retry-after"]) >= 5, third.headers  # the debt takes ~20 s to repay


def test_group_tpm_is_shared_by_its_keys(gateway):
    with KeepAliveClient(gateway.url) as client:
        # 4000 tokens: the group's 3000 and 1000 of debt (~20 s to repay): the other key of the group is refused too
        assert client.chat(GROUP_TPM_1, headers={"x-mock-usage": "2000,2000"}).status == 200
        assert_429(client.chat(GROUP_TPM_2, headers={"x-mock-usage": "10,10"}))


def test_concurrency_limit(gateway, gwmock):
    slow_result = {}
    before = gwmock.stats()["by_path"]["/v1/chat/completions"]

    def slow():
        with KeepAliveClient(gateway.url) as client:
            slow_result["response"] = client.chat(ONE_AT_A_TIME, headers={"x-mock-latency-ms": "2500"})

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        # wait until the slow request is at the mock, so that it is surely in flight
        wait_until(lambda: gwmock.stats()["by_path"]["/v1/chat/completions"] > before, timeout=10,
                   what="the slow request to reach gwmock")
        with KeepAliveClient(gateway.url) as client:
            assert_429(client.chat(ONE_AT_A_TIME))
    finally:
        thread.join(30)
    assert slow_result["response"].status == 200
    with KeepAliveClient(gateway.url) as client:
        assert client.chat(ONE_AT_A_TIME).status == 200, "the concurrency slot was not released"
