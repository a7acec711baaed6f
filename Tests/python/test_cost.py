"""Cost accounting against gwmock's deterministic usage, and the audit record that carries it."""
from __future__ import annotations

import json

import pytest

from gwtest import (
    COST_1000_500_MICRO, MINI, USAGE_1000_500, KeepAliveClient, chat_body, policy_config, wait_for_audit,
)

ALICE = "sk-alice-cost-5b7e"
BOB = "sk-bob-cost-8c21"


@pytest.fixture
def gateway(gwmock, start_gateway, tmp_path):
    config = policy_config(
        gwmock.port, tmp_path / "gateway.db",
        groups=[{"name": "team", "models": ["gpt-4o-mini", "claude-*"]}],
        keys=[
            {"name": "alice", "key": ALICE, "groups": ["team"]},
            {"name": "bob", "key": BOB, "groups": ["team"]},
        ],
    )
    return start_gateway(config)


def read_stream(response_body: bytes) -> list[dict]:
    events = []
    for line in response_body.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[len("data: "):]))
    return events


def test_cost_of_streamed_and_non_streamed_calls(gateway):
    """price {input 0.15, output 0.60} x usage (1000, 500) = 150 + 300 = 450 micro-USD, streamed or not."""
    with KeepAliveClient(gateway.url) as client:
        plain = client.chat(ALICE, headers={**USAGE_1000_500, "x-request-id": "cost-plain-1"})
        streamed = client.chat(ALICE, stream=True, headers={**USAGE_1000_500, "x-request-id": "cost-stream-1"})
    assert plain.status == 200, plain
    assert streamed.status == 200, streamed
    assert plain.json()["usage"]["prompt_tokens"] == 1000
    assert read_stream(streamed.body)[-1]["usage"]["completion_tokens"] == 500

    rows = {row["request_id"]: row for row in wait_for_audit(
        gateway.db_path, 2, "request_id IN (?, ?)", ("cost-plain-1", "cost-stream-1"))}

    for request_id, streamed_flag in (("cost-plain-1", 0), ("cost-stream-1", 1)):
        row = rows[request_id]
        assert row["status"] == 200
        assert row["streamed"] == streamed_flag, row
        assert (row["prompt_tokens"], row["completion_tokens"]) == (1000, 500), row
        assert row["cost_micro_usd"] == COST_1000_500_MICRO, row

    logs = gateway.admin("GET", "/admin/logs?limit=10&key=alice").json()["data"]
    by_id = {record["request_id"]: record for record in logs}
    for request_id in ("cost-plain-1", "cost-stream-1"):
        assert by_id[request_id]["cost_usd"] == pytest.approx(0.00045)
        assert by_id[request_id]["cost_micro_usd"] == COST_1000_500_MICRO


def test_usage_by_key_sums_the_cost(gateway):
    with KeepAliveClient(gateway.url) as client:
        for stream in (False, True, False):
            assert client.chat(ALICE, stream=stream, headers=USAGE_1000_500).status == 200
        assert client.chat(BOB, headers={"x-mock-usage": "2000,0"}).status == 200  # 300 micro-USD
    wait_for_audit(gateway.db_path, 4)

    response = gateway.admin("GET", "/admin/usage?by=key")
    assert response.status_code == 200, response.text
    usage = response.json()
    rows = {row["name"]: row for row in usage["rows"]}
    assert rows["alice"]["requests"] == 3
    assert rows["alice"]["prompt_tokens"] == 3000
    assert rows["alice"]["completion_tokens"] == 1500
    assert rows["alice"]["cost_micro_usd"] == 3 * COST_1000_500_MICRO
    assert rows["alice"]["cost_usd"] == pytest.approx(3 * 0.00045)
    assert rows["bob"]["cost_micro_usd"] == 300
    assert usage["total"]["cost_micro_usd"] == 3 * COST_1000_500_MICRO + 300

    by_model = {row.get("model"): row for row in gateway.admin("GET", "/admin/usage?by=model").json()["rows"]}
    assert by_model[MINI]["cost_micro_usd"] == 3 * COST_1000_500_MICRO + 300
    by_group = {row.get("group"): row for row in gateway.admin("GET", "/admin/usage?by=group").json()["rows"]}
    assert by_group["team"]["cost_micro_usd"] == 3 * COST_1000_500_MICRO + 300


def test_usage_time_range(gateway):
    with KeepAliveClient(gateway.url) as client:
        assert client.chat(ALICE, headers=USAGE_1000_500).status == 200
    wait_for_audit(gateway.db_path, 1)

    future = gateway.admin("GET", "/admin/usage?by=key&since=2099-01-01").json()
    assert future["total"]["requests"] == 0, future
    past = gateway.admin("GET", "/admin/usage?by=key&since=2000-01-01&until=2099-01-01").json()
    assert past["total"]["cost_micro_usd"] == COST_1000_500_MICRO, past


def test_anthropic_stream_cost_from_message_start_and_delta(gateway):
    """claude-3-5-haiku costs {0.80, 4.00}: usage (1000, 500) = 800 + 2000 = 2800 micro-USD."""
    body = json.dumps({"model": "claude-3-5-haiku", "max_tokens": 64, "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    with KeepAliveClient(gateway.url) as client:
        for request_id, payload in (("anth-stream", body), ("anth-plain", body.replace(b'"stream": true, ', b""))):
            response = client.request("POST", "/v1/messages", payload,
                                      {"x-api-key": ALICE, "x-request-id": request_id, **USAGE_1000_500})
            assert response.status == 200, response

    rows = {row["request_id"]: row for row in wait_for_audit(
        gateway.db_path, 2, "request_id IN ('anth-stream', 'anth-plain')")}
    for request_id, streamed in (("anth-stream", 1), ("anth-plain", 0)):
        row = rows[request_id]
        assert row["streamed"] == streamed, row
        assert (row["prompt_tokens"], row["completion_tokens"]) == (1000, 500), row
        assert row["cost_micro_usd"] == 2800, row


def test_audit_record_fields_and_tags(gateway):
    with KeepAliveClient(gateway.url) as client:
        response = client.chat(ALICE, headers={**USAGE_1000_500, "x-request-id": "fields-1",
                                               "x-gateway-tags": "team=search,env=prod"})
        denied = client.chat(ALICE, "gpt-4o", headers={"x-request-id": "fields-denied"})
    assert response.status == 200
    assert response.headers["x-request-id"] == "fields-1"
    assert denied.status == 403

    rows = {row["request_id"]: row for row in wait_for_audit(
        gateway.db_path, 2, "request_id IN ('fields-1', 'fields-denied')")}
    row = rows["fields-1"]
    assert row["key_name"] == "alice" and row["key_id"]
    assert "team" in row["groups"]
    assert "team=search" in row["tags"] and "env=prod" in row["tags"]
    assert row["client_address"].startswith("127.0.0.1")
    assert row["end_ns"] >= row["start_ns"] > 0
    assert row["total_latency_us"] >= row["upstream_latency_us"] > 0
    assert row["overhead_us"] >= 0
    assert row["ttfb_us"] > 0
    assert row["requested_model"] == MINI
    assert row["deployment"] == "mock/gpt-4o-mini"
    assert row["attempts"] == 1
    assert row["error_code"] is None
    assert row["bytes_in"] >= len(chat_body()) and row["bytes_out"] > 0
    # The request and response bodies are not stored unless a group asks for it.
    assert row["request_body"] is None and row["response_body"] is None

    rejected = rows["fields-denied"]
    assert rejected["status"] == 403
    assert rejected["error_code"] == "model_not_allowed"
    assert rejected["cost_micro_usd"] == 0
    assert rejected["bytes_in"] > 0

    by_tag = gateway.admin("GET", "/admin/usage?by=tag").json()
    tags = {row.get("tag"): row for row in by_tag["rows"]}
    assert tags["team=search"]["cost_micro_usd"] == COST_1000_500_MICRO
    assert tags["env=prod"]["requests"] == 1

    logs = gateway.admin("GET", "/admin/logs?status=403&limit=5").json()["data"]
    assert [record["request_id"] for record in logs] == ["fields-denied"]
    logs = gateway.admin("GET", f"/admin/logs?model={MINI}&limit=5").json()["data"]
    assert [record["request_id"] for record in logs] == ["fields-1"]


def test_rejected_request_record_counts_its_bytes_out(gateway):
    """The audit record's `bytes out` of a request refused by policy: the error response was sent, so not 0."""
    with KeepAliveClient(gateway.url) as client:
        denied = client.chat(ALICE, "gpt-4o", headers={"x-request-id": "bytes-denied"})
    assert denied.status == 403
    row = wait_for_audit(gateway.db_path, 1, "request_id = 'bytes-denied'")[0]
    assert row["bytes_out"] >= len(denied.body), (
        f"the 403 sent a body of {len(denied.body)} bytes, the record says bytes_out = {row['bytes_out']}")
