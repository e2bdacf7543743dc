"""The official `openai` Python SDK, unmodified, against the running gateway's OpenAI
surface (`/v1/chat/completions`, `/v1/models`): the same gateway and layers as the
Anthropic SDK, in front of the mock upstream replaying recorded Anthropic answers."""

import openai
import pytest

USER = [{"role": "user", "content": "Hello"}]


@pytest.fixture()
def oai(gateway_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="caller-key", max_retries=0)


def test_chat_completions_create(oai):
    c = oai.chat.completions.create(model="replay/message_basic", messages=USER, max_tokens=64)
    assert c.object == "chat.completion"
    assert c.choices[0].message.role == "assistant"
    assert c.choices[0].message.content == "The capital of France is Paris."
    assert c.choices[0].finish_reason == "stop"
    assert c.usage.prompt_tokens == 20
    assert c.usage.completion_tokens == 10


def test_streaming_chunks(oai):
    stream = oai.chat.completions.create(
        model="replay/stream_text", messages=USER, max_tokens=64, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there!"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens > 0


def test_the_stream_helper_final_completion(oai):
    with oai.chat.completions.stream(model="replay/stream_text", messages=USER, max_tokens=64) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    assert final.choices[0].message.content == "Hello there!"
    assert final.choices[0].finish_reason == "stop"


def test_tool_calls(oai):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"location": {"type": "string"}}}}}]
    with oai.chat.completions.stream(model="replay/stream_tool_use", messages=USER,
                                     max_tokens=64, tools=tools) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert msg.content.startswith("I'll check the current weather in Paris")
    assert msg.tool_calls[0].id == "toolu_01NRLabsLyVHZPKxbKvkfSMn"
    assert msg.tool_calls[0].function.name == "get_weather"
    assert "Paris" in msg.tool_calls[0].function.arguments


def test_a_429_is_a_rate_limit_error(oai):
    with pytest.raises(openai.RateLimitError) as e:
        oai.chat.completions.create(model="error/429", messages=USER, max_tokens=64)
    assert e.value.status_code == 429
    assert e.value.response.headers.get("retry-after")


def test_models_in_openai_shape(oai):
    models = list(oai.models.list())
    assert models[0].id == "claude-sonnet-4-5-20250929"
    assert models[0].object == "model"
    assert models[0].owned_by == "anthropic"
    assert models[0].created > 1_700_000_000


def _keyed_gateway():
    import os

    url, key = os.environ.get("GATEWAY_AUTH_URL"), os.environ.get("GATEWAY_KEY")
    if not url or not key:
        pytest.fail("GATEWAY_AUTH_URL / GATEWAY_KEY are not set: run through `cargo test --test python_sdk`")
    return url, key


def test_a_gateway_key_works_as_the_openai_api_key():
    url, key = _keyed_gateway()
    oai = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    done = oai.chat.completions.create(
        model="replay/message_basic", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
    )
    assert done.choices[0].message.content


def test_a_wrong_key_is_an_openai_authentication_error():
    url, _ = _keyed_gateway()
    oai = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-proj-not-a-gateway-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        oai.chat.completions.create(
            model="replay/message_basic", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
        )
    # OpenAI's error shape, which the SDK reads into .code and .type.
    assert exc.value.code == "invalid_api_key"
    assert exc.value.body["message"] == "invalid api key"
    with pytest.raises(openai.AuthenticationError):
        oai.models.list()
