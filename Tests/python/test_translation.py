"""OpenAI ⇄ Anthropic translation through a real gateway: the openai SDK against an Anthropic-shaped gwmock deployment,
the anthropic SDK against an OpenAI-shaped one, each non-streamed, streamed and with a tool call (gwmock's
`x-mock-tool-call` answers with one call of get_weather, its arguments streamed in 8-byte pieces). Usage and cost
must agree between what the client is told and what the audit log bills.
"""
from __future__ import annotations

import json
import os

import anthropic
import openai
import pytest

from gwtest import wait_for_audit

KEY = "sk-translate-test"
TOOL_ARGS = {"location": "Paris, France", "days": 3, "units": "celsius"}
WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The forecast for a place",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "days": {"type": "integer"}},
                       "required": ["location"]},
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "The forecast for a place",
    "input_schema": WEATHER_TOOL_OPENAI["function"]["parameters"],
}
# USD per million tokens: cost in micro-USD = prompt * 3 + completion * 15.
PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}


@pytest.fixture
def gateway(gwmock, start_gateway, tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("ANTHROPIC_"):
            monkeypatch.delenv(name)
    base = f"http://127.0.0.1:{gwmock.port}/v1"
    return start_gateway({
        "server": {"listen": ["127.0.0.1:0"], "threads": 1},
        "store": {"sqlite": str(tmp_path / "translate.db")},
        "providers": [
            {"name": "oai", "kind": "openai", "base_url": base, "api_key_env": "MOCK_API_KEY"},
            {"name": "ant", "kind": "anthropic", "base_url": base, "api_key_env": "MOCK_API_KEY"},
        ],
        "models": [
            {"name": "claude", "price": PRICE, "deployments": [{"provider": "ant", "model": "claude-3-5-haiku-latest"}],
             "retry": {"attempts": 1}},
            {"name": "gpt", "price": PRICE, "deployments": [{"provider": "oai", "model": "gpt-4o-mini"}],
             "retry": {"attempts": 1}},
        ],
        "groups": [{"name": "all", "models": ["*"]}],
        "keys": [{"name": "translator", "key": KEY, "groups": ["all"]}],
    })


def oai(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0, timeout=30.0)


def ant(gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0, timeout=30.0)


def billed(gateway, request_id: str) -> dict:
    return wait_for_audit(gateway.db_path, 1, "request_id = ?", (request_id,))[0]


def assert_billed(row: dict, prompt: int, completion: int) -> None:
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion), row
    assert row["cost_micro_usd"] == prompt * 3 + completion * 15, row
    assert row["status"] == 200


MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the weather like?"},
]


# --- the openai SDK, served by an Anthropic deployment ---------------------------------------------------------------


def test_openai_sdk_against_anthropic_deployment(gateway):
    raw = oai(gateway).chat.completions.with_raw_response.create(
        model="claude", messages=MESSAGES, max_tokens=50, temperature=0.2, stop=["END"],
        extra_headers={"x-request-id": "tr-oai-1"})
    completion = raw.parse()
    assert raw.headers["x-gateway-deployment"] == "ant/claude-3-5-haiku-latest"
    assert completion.object == "chat.completion"
    assert completion.model == "claude"
    assert completion.choices[0].message.content.startswith("tok tok")
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage.completion_tokens == 16 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert_billed(billed(gateway, "tr-oai-1"), usage.prompt_tokens, usage.completion_tokens)


def test_openai_sdk_stream_against_anthropic_deployment(gateway):
    stream = oai(gateway).chat.completions.create(
        model="claude", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
        extra_headers={"x-request-id": "tr-oai-stream"})
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == " ".join(["tok"] * 16)
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 16
    assert_billed(billed(gateway, "tr-oai-stream"), usage.prompt_tokens, usage.completion_tokens)


def test_openai_sdk_tool_call_against_anthropic_deployment(gateway):
    completion = oai(gateway).chat.completions.create(
        model="claude", messages=MESSAGES, tools=[WEATHER_TOOL_OPENAI], tool_choice="auto",
        extra_headers={"x-mock-tool-call": "1"})
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == TOOL_ARGS


def test_openai_sdk_streamed_tool_call_reassembles(gateway):
    stream = oai(gateway).chat.completions.create(
        model="claude", messages=MESSAGES, tools=[WEATHER_TOOL_OPENAI], stream=True,
        extra_headers={"x-mock-tool-call": "1"})
    name, arguments, pieces, finish = None, "", 0, None
    for chunk in stream:
        if not chunk.choices:
            continue
        for call in chunk.choices[0].delta.tool_calls or []:
            assert call.index == 0
            name = call.function.name or name
            if call.function.arguments:
                arguments += call.function.arguments
                pieces += 1
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather"
    assert pieces > 3, "the arguments should arrive in several deltas"
    assert json.loads(arguments) == TOOL_ARGS
    assert finish == "tool_calls"


def test_openai_sdk_gets_openai_shaped_errors_from_an_anthropic_deployment(gateway):
    with pytest.raises(openai.BadRequestError) as error:
        oai(gateway).chat.completions.create(model="claude", messages=MESSAGES, extra_headers={"x-mock-status": "400"})
    assert "gwmock status 400" in error.value.message
    with pytest.raises(openai.RateLimitError):
        oai(gateway).chat.completions.create(model="claude", messages=MESSAGES, extra_headers={"x-mock-status": "429"})


# --- the anthropic SDK, served by an OpenAI-shaped deployment --------------------------------------------------------


def test_anthropic_sdk_against_openai_deployment(gateway):
    raw = ant(gateway).messages.with_raw_response.create(
        model="gpt", max_tokens=100, system="You are terse.",
        messages=[{"role": "user", "content": "What is the weather like?"}],
        extra_headers={"x-request-id": "tr-ant-1"})
    message = raw.parse()
    assert raw.headers["x-gateway-deployment"] == "oai/gpt-4o-mini"
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "gpt"
    assert message.content[0].type == "text" and message.content[0].text.startswith("tok tok")
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 16
    assert_billed(billed(gateway, "tr-ant-1"), message.usage.input_tokens, message.usage.output_tokens)


def test_anthropic_sdk_stream_against_openai_deployment(gateway):
    with ant(gateway).messages.stream(
        model="gpt", max_tokens=100, messages=[{"role": "user", "content": "Hello"}],
        extra_headers={"x-request-id": "tr-ant-stream"},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == " ".join(["tok"] * 16)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 16
    assert_billed(billed(gateway, "tr-ant-stream"), final.usage.input_tokens, final.usage.output_tokens)


def test_anthropic_sdk_tool_use_against_openai_deployment(gateway):
    message = ant(gateway).messages.create(
        model="gpt", max_tokens=100, tools=[WEATHER_TOOL_ANTHROPIC],
        messages=[{"role": "user", "content": "Weather in Paris?"}], extra_headers={"x-mock-tool-call": "1"})
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use" and block.name == "get_weather"
    assert block.input == TOOL_ARGS


def test_anthropic_sdk_streamed_tool_use_reassembles(gateway):
    with ant(gateway).messages.stream(
        model="gpt", max_tokens=100, tools=[WEATHER_TOOL_ANTHROPIC],
        messages=[{"role": "user", "content": "Weather in Paris?"}], extra_headers={"x-mock-tool-call": "1"},
    ) as stream:
        partials = []
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partials.append(event.delta.partial_json)
        final = stream.get_final_message()
    assert len(partials) > 3
    assert json.loads("".join(partials)) == TOOL_ARGS
    assert final.stop_reason == "tool_use"
    assert final.content[0].input == TOOL_ARGS


def test_anthropic_sdk_gets_anthropic_shaped_errors_from_an_openai_deployment(gateway):
    with pytest.raises(anthropic.BadRequestError) as error:
        ant(gateway).messages.create(model="gpt", max_tokens=10, messages=[{"role": "user", "content": "x"}],
                                     extra_headers={"x-mock-status": "400"})
    assert error.value.body["type"] == "error"
    with pytest.raises(anthropic.RateLimitError):
        ant(gateway).messages.create(model="gpt", max_tokens=10, messages=[{"role": "user", "content": "x"}],
                                     extra_headers={"x-mock-status": "429"})


def test_untranslatable_request_gets_400_naming_the_field(gateway):
    with pytest.raises(anthropic.BadRequestError) as error:
        ant(gateway).messages.create(model="gpt", max_tokens=10, messages=[])
    assert "messages" in str(error.value)


def test_anthropic_providers_get_anthropic_version_and_their_key(start_gateway):
    """The headers an Anthropic-kind provider receives, translated or passed through."""
    import httpx
    from gwtest import RecordingUpstream

    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
               "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
               "usage": {"input_tokens": 3, "output_tokens": 1}}
    with RecordingUpstream(message) as upstream:
        gateway = start_gateway({
            "server": {"listen": ["127.0.0.1:0"], "threads": 1},
            "providers": [{"name": "ant", "kind": "anthropic", "base_url": f"http://127.0.0.1:{upstream.port}/v1",
                           "api_key_env": "MOCK_API_KEY"}],
            "models": [{"name": "claude", "deployments": [{"provider": "ant"}]}],
        })
        messages = {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        # Translated (an OpenAI chat request) and passed through (Anthropic Messages without the version header).
        assert httpx.post(f"{gateway.url}/v1/chat/completions", timeout=10,
                          json={"model": "claude", "messages": [{"role": "user", "content": "x"}]}).status_code == 200
        assert httpx.post(f"{gateway.url}/v1/messages", timeout=10, json=messages).status_code == 200
        # A client's own version is kept, not doubled.
        assert httpx.post(f"{gateway.url}/v1/messages", timeout=10, headers={"anthropic-version": "2024-01-01"},
                          json=messages).status_code == 200
    seen = [headers for _, headers in upstream.requests]
    assert [h.get("anthropic-version") for h in seen] == ["2023-06-01", "2023-06-01", "2024-01-01"]
    assert all(h.get("x-api-key") == gateway.env["MOCK_API_KEY"] for h in seen)
    assert all("authorization" not in h for h in seen)
