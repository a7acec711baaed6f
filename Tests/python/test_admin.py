"""The admin API: keys (created, used, revoked at once), groups, reload, and its own authentication."""
from __future__ import annotations

import hashlib
import json
import re

import pytest

from gwtest import MINI, KeepAliveClient, chat, policy_config

CONFIG_KEY = "sk-config-key-6f3a9c"


@pytest.fixture
def config(gwmock, tmp_path):
    return policy_config(
        gwmock.port, tmp_path / "gateway.db",
        groups=[{"name": "interns", "models": ["gpt-4o-mini", "text-embedding-*"]}],
        keys=[{"name": "carol", "key": CONFIG_KEY, "groups": ["interns"]}],
    )


@pytest.fixture
def gateway(config, start_gateway):
    return start_gateway(config)


def create_key(gateway, **fields) -> dict:
    response = gateway.admin("POST", "/admin/keys", {"name": "temp", "groups": ["interns"], **fields})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"] and created["key"], created
    return created


def test_created_key_works_and_revocation_is_immediate(gateway):
    created = create_key(gateway, name="dave", limits={"rpm": 100}, budget={"usd": 5, "period": "daily"})
    key = created["key"]
    assert created["name"] == "dave"
    assert created["groups"] == ["interns"]

    with KeepAliveClient(gateway.url) as client:
        assert client.chat(key).status == 200
        assert client.chat(key, "gpt-4o").status == 403  # outside interns

        response = gateway.admin("DELETE", f"/admin/keys/{created['id']}")
        assert response.status_code in (200, 204), response.text

        # at once, even on the same keep-alive connection that used the key a moment ago
        revoked = client.chat(key)
        assert revoked.status == 401, revoked
        assert revoked.error_code == "invalid_api_key"
    assert chat(gateway.url, key).status == 401

    listed = {entry["id"]: entry for entry in gateway.admin("GET", "/admin/keys").json()["data"]}
    assert listed[created["id"]]["revoked"] is True


def test_key_listing_never_shows_a_hash_or_a_secret(gateway):
    created = [create_key(gateway, name=f"k{i}") for i in range(3)]

    response = gateway.admin("GET", "/admin/keys")
    assert response.status_code == 200
    text = response.text
    names = {entry["name"] for entry in response.json()["data"]}
    assert {"carol", "k0", "k1", "k2"} <= names

    assert not re.search(r"[0-9a-fA-F]{64}", text), f"a 64-hex string (a key hash?) in the listing: {text}"
    assert "sk-" not in text, f"a key secret in the listing: {text}"
    for entry in created:
        assert entry["key"] not in text
        assert hashlib.sha256(entry["key"].encode()).hexdigest() not in text
    assert hashlib.sha256(CONFIG_KEY.encode()).hexdigest() not in text
    assert CONFIG_KEY not in text
    for entry in response.json()["data"]:
        assert not {"key", "key_sha256", "hash", "secret"} & set(entry), entry


def test_admin_responses_never_show_the_provider_secret(gateway):
    secret = gateway.env["MOCK_API_KEY"]
    create_key(gateway, name="x")
    for method, path in (("GET", "/admin/keys"), ("GET", "/admin/groups"), ("POST", "/admin/reload"),
                         ("GET", "/admin/usage?by=key"), ("GET", "/admin/logs?limit=50"), ("GET", "/metrics")):
        response = gateway.admin(method, path)
        assert response.status_code == 200, (path, response.text)
        assert secret not in response.text, path


def test_group_create_update_delete(gateway):
    created = gateway.admin("POST", "/admin/groups", {"name": "researchers", "models": ["gpt-4o"],
                                                      "limits": {"rpm": 100}})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "researchers"
    assert created.json()["models"] == ["gpt-4o"]

    duplicate = gateway.admin("POST", "/admin/groups", {"name": "researchers", "models": ["gpt-4o"]})
    assert 400 <= duplicate.status_code < 500, duplicate.text

    key = create_key(gateway, name="rita", groups=["researchers"])["key"]
    with KeepAliveClient(gateway.url) as client:
        assert client.chat(key, "gpt-4o").status == 200
        assert client.chat(key, MINI).status == 403

        updated = gateway.admin("PUT", "/admin/groups/researchers", {"name": "researchers", "models": [MINI]})
        assert updated.status_code == 200, updated.text
        assert gateway.admin("GET", "/admin/groups/researchers").json()["models"] == [MINI]
        assert client.chat(key, MINI).status == 200, "the group's new models apply at once"
        assert client.chat(key, "gpt-4o").status == 403

        listed = {group["name"] for group in gateway.admin("GET", "/admin/groups").json()["data"]}
        assert {"interns", "researchers"} <= listed

        deleted = gateway.admin("DELETE", "/admin/groups/researchers")
        assert deleted.status_code in (200, 204), deleted.text
        assert gateway.admin("GET", "/admin/groups/researchers").status_code == 404
        assert "researchers" not in {g["name"] for g in gateway.admin("GET", "/admin/groups").json()["data"]}
        assert client.chat(key, MINI).status == 403, "a deleted group grants nothing"


def test_admin_errors_are_clear(gateway):
    unknown_group = gateway.admin("POST", "/admin/keys", {"name": "x", "groups": ["no-such-group"]})
    assert unknown_group.status_code == 400
    assert unknown_group.json()["error"]["message"]
    no_name = gateway.admin("POST", "/admin/keys", {"groups": ["interns"]})
    assert no_name.status_code == 400
    assert gateway.admin("DELETE", "/admin/keys/no-such-id").status_code == 404
    assert gateway.admin("GET", "/admin/groups/no-such-group").status_code == 404


ADMIN_ENDPOINTS = [
    ("GET", "/admin/keys", None),
    ("POST", "/admin/keys", {"name": "intruder", "groups": ["interns"]}),
    ("DELETE", "/admin/keys/cfg-carol", None),
    ("GET", "/admin/groups", None),
    ("POST", "/admin/groups", {"name": "intruders", "models": ["*"]}),
    ("PUT", "/admin/groups/interns", {"name": "interns", "models": ["*"]}),
    ("DELETE", "/admin/groups/interns", None),
    ("GET", "/admin/usage?by=key", None),
    ("GET", "/admin/logs?limit=5", None),
    ("POST", "/admin/reload", None),
]


@pytest.mark.parametrize("key", [None, "wrong-admin-key", CONFIG_KEY], ids=["none", "wrong", "virtual-key"])
def test_admin_endpoints_need_the_admin_key(gateway, key):
    for method, path, body in ADMIN_ENDPOINTS:
        response = gateway.admin(method, path, body, key=key)
        assert response.status_code == 401, (method, path, response.status_code, response.text)
        assert response.json()["error"]["code"], response.text
    # nothing changed
    assert chat(gateway.url, CONFIG_KEY).status == 200
    groups = gateway.admin("GET", "/admin/groups").json()["data"]
    assert [g["models"] for g in groups if g["name"] == "interns"] == [["gpt-4o-mini", "text-embedding-*"]]
    assert "intruder" not in json.dumps(gateway.admin("GET", "/admin/keys").json())


def test_health_ready_and_metrics_need_no_key(gateway):
    for path in ("/health", "/ready", "/metrics"):
        response = gateway.admin("GET", path, key=None)
        assert response.status_code == 200, (path, response.text)


def test_admin_reload(gateway):
    response = gateway.admin("POST", "/admin/reload")
    assert response.status_code == 200, response.text
    assert chat(gateway.url, CONFIG_KEY).status == 200


def test_api_keys_and_groups_survive_a_restart(config, start_gateway):
    first = start_gateway(config)
    group = first.admin("POST", "/admin/groups", {"name": "persisted", "models": ["gpt-4o"]})
    assert group.status_code == 201, group.text
    kept = create_key(first, name="kept", groups=["persisted"])
    gone = create_key(first, name="gone")
    assert first.admin("DELETE", f"/admin/keys/{gone['id']}").status_code in (200, 204)
    assert first.stop() == 0, first.stderr()

    second = start_gateway(config)
    assert chat(second.url, kept["key"], "gpt-4o").status == 200, "an API key did not survive the restart"
    assert chat(second.url, gone["key"]).status == 401, "a revoked key came back after the restart"
    assert second.admin("GET", "/admin/groups/persisted").status_code == 200
