"""Keys, groups and model access through the official SDKs: the gateway in policy mode in front of gwmock."""
from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from gwtest import MESSAGES, MINI, chat, policy_config

ALICE = "sk-alice-4d1f0c2b"  # the interns group
ONE_RPM = "sk-one-rpm-77a1"  # rpm 1: the second request within the minute is refused
BROKE = "sk-broke-90e2"  # a budget of $0.0001: the first call spends it
EXPIRED = "sk-expired-13c5"

INTERN_MODELS = {"gpt-4o-mini", "text-embedding-3-small", "claude-3-5-haiku"}  # gpt-4o is outside the patterns


@pytest.fixture
def gateway(gwmock, start_gateway, tmp_path):
    config = policy_config(
        gwmock.port, tmp_path / "gateway.db",
        groups=[
            {"name": "interns", "models": ["gpt-4o-mini", "text-embedding-*", "claude-*"]},
        ],
        keys=[
            {"name": "alice", "key": ALICE, "groups": ["interns"]},
            {"name": "one-rpm", "key": ONE_RPM, "groups": ["interns"], "limits": {"rpm": 1}},
            {"name": "broke", "key": BROKE, "groups": ["interns"], "budget": {"usd": 0.0001, "period": "total"}},
            {"name": "expired", "key": EXPIRED, "groups": ["interns"], "expires": "2020-01-01"},
        ],
    )
    return start_gateway(config)


def openai_client(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30.0)


@pytest.fixture
def anthropic_env(monkeypatch):
    """No ANTHROPIC_* variable of the environment may add credentials or change the base URL."""
    import os

    for name in list(os.environ):
        if name.startswith("ANTHROPIC_"):
            monkeypatch.delenv(name)


def anthropic_client(gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=30.0)


# --- a valid key: the four OpenAI endpoints -------------------------------------------------------------------------


def test_chat_completion_with_a_virtual_key(gateway):
    completion = openai_client(gateway, ALICE).chat.completions.create(model=MINI, messages=MESSAGES)

    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens == 16
    assert completion.usage.prompt_tokens > 0


def test_stream_ends_with_a_usage_chunk_the_client_did_not_ask_for(gateway):
    stream = openai_client(gateway, ALICE).chat.completions.create(
        model=MINI, messages=MESSAGES, stream=True, extra_headers={"x-mock-usage": "1000,500"},
    )  # no stream_options: the gateway forces include_usage

    chunks = list(stream)

    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1, f"expected several content chunks, got {pieces!r}"
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert usage_chunks, "the stream has no usage chunk although the gateway must force stream_options.include_usage"
    assert chunks[-1].usage is not None, "the usage chunk must be the last one"
    assert not chunks[-1].choices
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (1000, 500)


def test_embedding(gateway):
    result = openai_client(gateway, ALICE).embeddings.create(model="text-embedding-3-small", input="hello")

    assert result.data and len(result.data[0].embedding) > 0
    assert result.usage.prompt_tokens > 0


def test_models_list_shows_only_the_keys_models(gateway):
    models = openai_client(gateway, ALICE).models.list()

    ids = {model.id for model in models}
    assert ids == INTERN_MODELS, f"GET /v1/models should list exactly the models the key may use, got {sorted(ids)}"


def test_x_api_key_header_is_accepted(gateway):
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": MINI, "messages": MESSAGES},
                          headers={"x-api-key": ALICE}, timeout=30)

    assert response.status_code == 200, response.text


# --- errors as the SDK raises them ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["sk-not-a-key-" + "0" * 16, EXPIRED], ids=["unknown", "expired"])
def test_bad_key_is_an_authentication_error(gateway, key):
    with pytest.raises(openai.AuthenticationError) as raised:
        openai_client(gateway, key).chat.completions.create(model=MINI, messages=MESSAGES)

    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"


def test_missing_key_is_401(gateway):
    response = chat(gateway.url, None)

    assert response.status == 401, response
    assert response.error_code == "invalid_api_key"


@pytest.mark.parametrize("model", ["gpt-4o", "no-such-model"], ids=["exists", "does-not-exist"])
def test_model_outside_the_groups_is_permission_denied(gateway, model):
    with pytest.raises(openai.PermissionDeniedError) as raised:
        openai_client(gateway, ALICE).chat.completions.create(model=model, messages=MESSAGES)

    assert raised.value.status_code == 403
    assert raised.value.code == "model_not_allowed"


def test_model_the_patterns_allow_but_nobody_carries_is_not_found(gateway):
    with pytest.raises(openai.NotFoundError) as raised:
        # claude-* allows the name, no model carries it
        openai_client(gateway, ALICE).chat.completions.create(model="claude-9-opus", messages=MESSAGES)

    assert raised.value.status_code == 404
    assert raised.value.code == "model_not_found"


def test_rate_limit_is_a_rate_limit_error_with_retry_after(gateway):
    client = openai_client(gateway, ONE_RPM)
    client.chat.completions.create(model=MINI, messages=MESSAGES)

    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model=MINI, messages=MESSAGES)

    error = raised.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    retry_after = error.response.headers.get("retry-after")
    assert retry_after is not None, f"a 429 must carry retry-after: {dict(error.response.headers)}"
    assert 0 < float(retry_after) <= 60
    assert error.response.headers.get("x-ratelimit-limit-requests") == "1"
    assert error.response.headers.get("x-ratelimit-remaining-requests") == "0"


def test_exhausted_budget_is_a_402_status_error(gateway):
    client = openai_client(gateway, BROKE)
    # 450 micro-USD: over the $0.0001 budget at once (the call was admitted with nothing spent).
    client.chat.completions.create(model=MINI, messages=MESSAGES, extra_headers={"x-mock-usage": "1000,500"})

    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model=MINI, messages=MESSAGES)

    assert raised.value.status_code == 402
    assert raised.value.code == "budget_exceeded"


def test_invalid_body_is_400(gateway):
    for body in (b"not json", b'{"messages": []}'):
        response = httpx.post(f"{gateway.url}/v1/chat/completions", content=body,
                              headers={"Authorization": f"Bearer {ALICE}", "content-type": "application/json"},
                              timeout=30)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == "invalid_request"


# --- the Anthropic SDK on /v1/messages, passed through to an anthropic-kind provider -------------------------------


def test_anthropic_messages_create(gateway, anthropic_env):
    message = anthropic_client(gateway, ALICE).messages.create(
        model="claude-3-5-haiku", max_tokens=64, messages=[{"role": "user", "content": "hello"}],
    )

    assert message.type == "message"
    assert message.content and message.content[0].text
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == 16


def test_anthropic_messages_stream(gateway, anthropic_env):
    with anthropic_client(gateway, ALICE).messages.stream(
        model="claude-3-5-haiku", max_tokens=64, messages=[{"role": "user", "content": "hello"}],
        extra_headers={"x-mock-chunks": "5"},
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) == 5, pieces
    assert final.content[0].text == "".join(pieces)
    assert final.usage.output_tokens == 5


def test_anthropic_bad_key_and_disallowed_model(gateway, anthropic_env):
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_client(gateway, "sk-bad-" + "1" * 12).messages.create(
            model="claude-3-5-haiku", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic_client(gateway, ALICE).messages.create(
            model="gpt-4o", max_tokens=8, messages=[{"role": "user", "content": "hi"}])


def test_errors_on_messages_are_anthropic_shaped(gateway):
    """DESIGN.md: on /v1/messages errors are Anthropic-shaped: {"type":"error","error":{"type":…,"message":…}}."""
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        json={"model": "claude-3-5-haiku", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": "sk-bad-" + "2" * 12, "anthropic-version": "2023-06-01"},
        timeout=30,
    )

    assert response.status_code == 401
    document = response.json()
    assert document.get("type") == "error", f"not Anthropic-shaped: {document}"
    assert document["error"]["type"] == "authentication_error"
    assert document["error"]["message"]


@pytest.mark.parametrize("case", ["ok", "bad-key", "denied", "rate-limited", "models"])
def test_request_id_is_echoed_on_every_response(gateway, case):
    request_id = f"rid-{case}"
    headers = {"x-request-id": request_id}
    if case == "models":
        response = httpx.get(f"{gateway.url}/v1/models", headers={**headers, "Authorization": f"Bearer {ALICE}"},
                             timeout=30)
        status = response.status_code
        echoed = response.headers.get("x-request-id")
    else:
        key, model = {"ok": (ALICE, MINI), "bad-key": ("sk-bad-" + "3" * 12, MINI), "denied": (ALICE, "gpt-4o"),
                      "rate-limited": (ONE_RPM, MINI)}[case]
        if case == "rate-limited":
            assert chat(gateway.url, key).status == 200
        response = chat(gateway.url, key, model, headers=headers)
        status = response.status
        echoed = response.headers.get("x-request-id")
    assert status == {"ok": 200, "bad-key": 401, "denied": 403, "rate-limited": 429, "models": 200}[case]
    assert echoed == request_id, f"{case}: x-request-id {echoed!r} (sent {request_id!r})"
