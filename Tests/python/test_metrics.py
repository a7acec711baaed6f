"""GET /metrics in the Prometheus text format, parsed by prometheus_client, after known traffic."""
from __future__ import annotations

import math

import pytest

from gwtest import MINI, USAGE_1000_500, KeepAliveClient, families, policy_config, sample_sum, scrape

KEY = "sk-metrics-7d8e"
OK_CALLS = 5
STREAM_CALLS = 2
BAD_KEY_CALLS = 3
DENIED_CALLS = 2


@pytest.fixture
def gateway(gwmock, start_gateway, tmp_path):
    config = policy_config(
        gwmock.port, tmp_path / "gateway.db",
        groups=[{"name": "analysts", "models": ["gpt-4o-mini"]}],
        keys=[{"name": "metrics", "key": KEY, "groups": ["analysts"]}],
    )
    return start_gateway(config)


def histogram(samples: dict, name: str, **labels) -> tuple[list[tuple[float, float]], float, float]:
    """(buckets as (le, cumulative count) sorted by le, _count, _sum) of one histogram series."""
    def matches(sample_labels):
        return all(sample_labels.get(k) == v for k, v in labels.items())

    buckets = sorted((float(l["le"]), v) for l, v in samples.get(name + "_bucket", []) if matches(l))
    return buckets, sample_sum(samples, name + "_count", **labels), sample_sum(samples, name + "_sum", **labels)


def check_histogram(samples: dict, name: str, at_least: int, **labels) -> tuple[float, float]:
    buckets, count, total = histogram(samples, name, **labels)
    assert buckets, f"{name}: no _bucket samples"
    assert buckets[-1][0] == math.inf, f"{name}: no +Inf bucket"
    counts = [c for _, c in buckets]
    assert counts == sorted(counts), f"{name}: buckets are not cumulative: {buckets}"
    assert buckets[-1][1] == count, f"{name}: +Inf bucket {buckets[-1][1]} != _count {count}"
    assert count >= at_least, f"{name}: _count {count} < {at_least}"
    assert 0 <= total < 60 * count, f"{name}: implausible _sum {total} for {count} observations"
    return count, total


def test_metrics_after_traffic(gateway):
    with KeepAliveClient(gateway.url) as client:
        for _ in range(OK_CALLS):
            assert client.chat(KEY, headers=USAGE_1000_500).status == 200
        for _ in range(STREAM_CALLS):
            assert client.chat(KEY, stream=True, headers=USAGE_1000_500).status == 200
        for i in range(BAD_KEY_CALLS):
            assert client.chat(f"sk-bad-{i}").status == 401
        for _ in range(DENIED_CALLS):
            assert client.chat(KEY, "gpt-4o").status == 403
    answered = OK_CALLS + STREAM_CALLS + BAD_KEY_CALLS + DENIED_CALLS
    ok = OK_CALLS + STREAM_CALLS

    samples = scrape(gateway.admin_url)
    names = set(samples)
    for required in ("gateway_requests_total", "gateway_request_duration_seconds_bucket",
                     "gateway_overhead_seconds_bucket", "gateway_upstream_duration_seconds_bucket",
                     "gateway_tokens_total", "gateway_cost_usd_total", "gateway_inflight_requests",
                     "gateway_rejections_total"):
        assert required in names, f"{required} missing from /metrics: {sorted(names)}"
    assert "gateway_upstream_connections" in families(gateway.admin_url), "the family gateway_upstream_connections"

    # gateway_requests_total{model,group,status}
    assert sample_sum(samples, "gateway_requests_total", status="200") == ok
    assert sample_sum(samples, "gateway_requests_total", model=MINI, group="analysts", status="200") == ok
    assert sample_sum(samples, "gateway_requests_total", status="401") == BAD_KEY_CALLS
    assert sample_sum(samples, "gateway_requests_total", status="403") == DENIED_CALLS
    assert sample_sum(samples, "gateway_requests_total") == answered
    for labels, _ in samples["gateway_requests_total"]:
        assert {"model", "group", "status"} <= set(labels), labels

    _, duration_sum = check_histogram(samples, "gateway_request_duration_seconds", answered)
    _, overhead_sum = check_histogram(samples, "gateway_overhead_seconds", ok)
    assert overhead_sum <= duration_sum + 1e-6, "the overhead is a part of the total time"
    check_histogram(samples, "gateway_upstream_duration_seconds", ok, deployment="mock/gpt-4o-mini")

    # tokens and cost: 7 calls x usage (1000, 500) x price (0.15, 0.60) = 7 x 450 micro-USD
    assert sample_sum(samples, "gateway_tokens_total", model=MINI, group="analysts", kind="prompt") == ok * 1000
    assert sample_sum(samples, "gateway_tokens_total", model=MINI, group="analysts", kind="completion") == ok * 500
    assert sample_sum(samples, "gateway_cost_usd_total", model=MINI, group="analysts") == pytest.approx(ok * 0.00045)

    assert sample_sum(samples, "gateway_rejections_total", reason="invalid_api_key") == BAD_KEY_CALLS
    assert sample_sum(samples, "gateway_rejections_total", reason="model_not_allowed") == DENIED_CALLS
    assert sample_sum(samples, "gateway_inflight_requests") == 0


def test_upstream_connections_gauge_has_samples(gateway):
    """DESIGN.md: gateway_upstream_connections{deployment,state}; after traffic the pools hold connections."""
    with KeepAliveClient(gateway.url) as client:
        for _ in range(4):
            assert client.chat(KEY).status == 200
        samples = scrape(gateway.admin_url)
    series = samples.get("gateway_upstream_connections", [])
    assert series, "gateway_upstream_connections has no samples after traffic through a keep-alive upstream pool"
    assert all({"deployment", "state"} <= set(labels) for labels, _ in series), series
    assert sum(value for _, value in series) >= 1


def test_counters_only_grow(gateway):
    with KeepAliveClient(gateway.url) as client:
        assert client.chat(KEY).status == 200
        first = scrape(gateway.admin_url)
        assert client.chat(KEY).status == 200
        second = scrape(gateway.admin_url)
    assert sample_sum(second, "gateway_requests_total") == sample_sum(first, "gateway_requests_total") + 1
    assert sample_sum(second, "gateway_request_duration_seconds_count") == \
        sample_sum(first, "gateway_request_duration_seconds_count") + 1
