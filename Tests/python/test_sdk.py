"""The gateway as the official OpenAI SDK and curl see it, with gwmock as the provider behind it."""
from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import openai
import pytest

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello through the gateway."}]
MOCK_CHUNKS = 16  # gwmock's default: completion_tokens == the number of chunks


def test_chat_completion(openai_client):
    completion = openai_client.chat.completions.create(model=MODEL, messages=MESSAGES)

    content = completion.choices[0].message.content
    assert isinstance(content, str) and content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens == MOCK_CHUNKS


def test_streamed_chat_completion(openai_client):
    stream = openai_client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)

    pieces = []
    for chunk in stream:
        # A usage-only chunk (stream_options.include_usage) has no choices.
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)

    assert len(pieces) > 1, f"expected several content chunks, got {pieces!r}"
    assert "".join(pieces)


def test_curl_post(gateway_url, tmp_path):
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl not found (scripts/test.sh installs it)")
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"model": MODEL, "messages": MESSAGES}))
    out = tmp_path / "out.json"

    result = subprocess.run(
        [curl, "-sS", "--max-time", "30", "-o", str(out), "-w", "%{http_code} %{content_type}",
         "-H", "Content-Type: application/json", "--data-binary", f"@{body}",
         f"{gateway_url}/v1/chat/completions"],
        capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 0, result.stderr
    status, _, content_type = result.stdout.partition(" ")
    assert status == "200", out.read_text(errors="replace")
    assert content_type.startswith("application/json")
    document = json.loads(out.read_text())
    assert document["choices"][0]["message"]["content"]


def test_unknown_model_is_an_openai_error(gateway_url):
    response = httpx.post(
        f"{gateway_url}/v1/chat/completions",
        json={"model": "no-such-model", "messages": MESSAGES},
        headers={"Authorization": "Bearer sk-test"},
        timeout=30,
    )

    assert 400 <= response.status_code < 500
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]


def test_unknown_model_raises_not_found_in_the_sdk(openai_client):
    with pytest.raises(openai.NotFoundError) as raised:
        openai_client.chat.completions.create(model="no-such-model", messages=MESSAGES)

    assert raised.value.status_code == 404
    assert raised.value.code == "model_not_found"


def test_request_id_is_echoed(gateway_url):
    response = httpx.post(
        f"{gateway_url}/v1/chat/completions",
        json={"model": MODEL, "messages": MESSAGES},
        headers={"x-request-id": "pytest-req-0001"},
        timeout=30,
    )

    assert response.status_code == 200
    assert response.headers.get("x-request-id") == "pytest-req-0001"


def test_request_id_is_generated_when_absent(gateway_url):
    ids = []
    with httpx.Client(timeout=30) as client:
        for _ in range(2):
            response = client.post(f"{gateway_url}/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES})
            assert response.status_code == 200
            ids.append(response.headers.get("x-request-id"))

    assert all(ids), f"missing x-request-id: {ids}"
    assert ids[0] != ids[1], f"generated request ids repeat: {ids}"
