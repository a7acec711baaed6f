"""Hot reload under load: gwbench keeps 8 connections busy while the price changes 6 times; nothing fails."""
from __future__ import annotations

import copy
import json
import subprocess
import time

import pytest

from conftest import executable
from gwtest import (
    MINI, USAGE_1000_500, KeepAliveClient, audit_count, audit_rows, chat, policy_config, wait_for_audit, wait_until,
)

KEY = "sk-reload-3c4d"


@pytest.fixture
def config(gwmock, tmp_path):
    return policy_config(
        gwmock.port, tmp_path / "gateway.db",
        groups=[{"name": "team", "models": ["gpt-4o-mini"]}],
        keys=[{"name": "reload", "key": KEY, "groups": ["team"]}],
    )


def with_price(config: dict, input_per_mtok: float, output_per_mtok: float = 0.0) -> dict:
    changed = copy.deepcopy(config)
    for model in changed["models"]:
        if model["name"] == MINI:
            model["price"] = {"input_per_mtok": input_per_mtok, "output_per_mtok": output_per_mtok}
    return changed


def counters(result: dict) -> dict[str, int]:
    return {c["name"]: c["value"] for c in result["results"][0]["counters"]}


def test_hot_reload_under_load(config, start_gateway, tmp_path):
    gateway = start_gateway(with_price(config, 1.0))
    out = tmp_path / "bench.json"
    bench = subprocess.Popen(
        [str(executable("gwbench")), "run", gateway.url, "-c", "8", "-d", "4s", "--warmup", "500ms",
         "--key", KEY, "--json", str(out), "--quiet"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(1.0)  # past the warm-up: the reloads land in the measured window
        for price in (2.0, 3.0, 4.0, 5.0, 6.0):  # 5 SIGHUPs, each with a new price
            gateway.write_config(with_price(config, price))
            gateway.sighup()
            time.sleep(0.4)
        gateway.write_config(with_price(config, 7.0))
        response = gateway.admin("POST", "/admin/reload")
        assert response.status_code == 200, response.text
        output, _ = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(10)
    report = output.decode(errors="replace")
    assert bench.returncode == 0, report

    result = counters(json.loads(out.read_text()))
    assert result["responses_total"] > 0, report
    assert result["responses_total"] == result["requests_sent_total"], result
    # the status counters cover the measured window (`responses`); the audit below covers the warm-up too
    assert result["status_2xx"] == result["responses"] == result.get("status_200"), result
    for failure in ("failures_total", "connect_errors", "resets", "timeouts", "bad_responses", "reconnects",
                    "status_4xx", "status_5xx"):
        assert result[failure] == 0, f"{failure} = {result[failure]} during the reloads\n{report}"
    assert result["connections_opened"] == 8, "a connection was dropped and reopened"

    wait_until(lambda: gateway.stderr().count("configuration reloaded") >= 5, timeout=10,
               what="5 SIGHUP reloads in the gateway's log")

    # Every request of the run (warm-up included) has a record, and every one is a 200.
    wait_for_audit(gateway.db_path, result["responses_total"], timeout=30)
    assert audit_count(gateway.db_path) == result["responses_total"]
    failed = audit_rows(gateway.db_path, "status != 200")[:5]
    assert not failed, f"requests that failed during the reloads: {failed}"

    # The new prices took effect while the load ran: gwbench's 300-byte body costs 75 prompt tokens x price.
    costs = {row["cost_micro_usd"] for row in audit_rows(gateway.db_path, "status = 200")}
    assert len(costs) >= 4, f"the audit shows only the prices {sorted(costs)}: reloads did not take effect"

    # and the last one (POST /admin/reload: input 7.0) is in force now
    with KeepAliveClient(gateway.url) as client:
        response = client.chat(KEY, headers={**USAGE_1000_500, "x-request-id": "after-reload"})
    assert response.status == 200
    row = wait_for_audit(gateway.db_path, 1, "request_id = 'after-reload'")[0]
    assert row["cost_micro_usd"] == 7000, row


def test_invalid_config_is_refused_and_the_old_one_stays(config, start_gateway):
    gateway = start_gateway(config)
    broken = copy.deepcopy(config)
    broken["no_such_section"] = {"x": 1}
    gateway.write_config(broken)

    response = gateway.admin("POST", "/admin/reload")
    assert 400 <= response.status_code < 500, response.text
    assert "no_such_section" in response.text
    gateway.sighup()
    wait_until(lambda: "reload failed" in gateway.stderr(), timeout=10, what="the refused SIGHUP reload in the log")
    assert chat(gateway.url, KEY).status == 200, "the running configuration must stay in force"
    assert gateway.process.proc.poll() is None


def test_in_flight_requests_finish_under_the_old_config(config, start_gateway, gwmock):
    """A request admitted before a reload is billed at the old price; one admitted after it at the new price."""
    import threading

    gateway = start_gateway(config)  # gpt-4o-mini at {0.15, 0.60}: usage (1000, 500) costs 450 micro-USD
    result = {}
    before = gwmock.stats()["by_path"]["/v1/chat/completions"]

    def slow() -> None:
        result["response"] = chat(gateway.url, KEY, headers={**USAGE_1000_500, "x-mock-latency-ms": "1500",
                                                             "x-request-id": "in-flight"})

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        wait_until(lambda: gwmock.stats()["by_path"]["/v1/chat/completions"] > before, timeout=10,
                   what="the slow request to reach gwmock")
        gateway.write_config(with_price(config, 1.5, 6.0))  # ten times the price: 4500 micro-USD
        assert gateway.admin("POST", "/admin/reload").status_code == 200
        after = chat(gateway.url, KEY, headers={**USAGE_1000_500, "x-request-id": "after"})
        assert after.status == 200
    finally:
        thread.join(30)
    assert result["response"].status == 200, result

    rows = {row["request_id"]: row for row in wait_for_audit(
        gateway.db_path, 2, "request_id IN ('in-flight', 'after')")}
    assert rows["after"]["cost_micro_usd"] == 4500, rows["after"]
    assert rows["in-flight"]["cost_micro_usd"] == 450, (
        f"the request in flight during the reload was billed at the new price: {rows['in-flight']}")
