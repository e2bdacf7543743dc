"""The official `anthropic` Python SDK, unmodified, against the running gateway (only
`base_url` changes). The gateway forwards to a mock upstream replaying recorded streams."""

import anthropic
import pytest

from conftest import expected, recorded

USER = [{"role": "user", "content": "Hello"}]


def same_message(msg, want: dict) -> bool:
    """The SDK's message equals the recording; keys the SDK itself adds as None (newer
    SDKs add e.g. `stop_details` while accumulating) are not part of the comparison."""
    got = {k: v for k, v in msg.to_dict().items() if not (v is None and k not in want)}
    assert got == want
    return True


def test_messages_create_returns_the_recorded_message(client):
    msg = client.messages.create(model="replay/message_basic", max_tokens=64, messages=USER)
    want = recorded("message_basic.json")
    assert same_message(msg, want)
    assert msg.content[0].text == "The capital of France is Paris."
    assert msg.usage.input_tokens == 20
    assert msg._request_id == "req_replay_conformance_0001"


def test_cache_usage_fields_survive(client):
    msg = client.messages.create(model="replay/message_cache_usage", max_tokens=64, messages=USER)
    assert msg.usage.cache_creation_input_tokens == 418
    assert msg.usage.cache_read_input_tokens == 1111


@pytest.mark.parametrize("name", ["stream_text", "stream_thinking"])
def test_stream_final_message_equals_the_recording(client, name):
    with client.messages.stream(model=f"replay/{name}", max_tokens=2048, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    want = expected(name)
    assert text == want["text"]
    assert same_message(final, want["final"])


@pytest.mark.parametrize(
    "name,tool_input",
    [
        ("stream_tool_use", {"location": "Paris"}),
        ("stream_tool_use_docs", {"location": "San Francisco, CA", "unit": "fahrenheit"}),
    ],
)
def test_tool_use_stream_accumulates_the_input_json(client, name, tool_input):
    with client.messages.stream(model=f"replay/{name}", max_tokens=1024, messages=USER) as stream:
        final = stream.get_final_message()
    tool = [b for b in final.content if b.type == "tool_use"]
    assert len(tool) == 1
    assert tool[0].input == tool_input
    assert final.stop_reason == "tool_use"
    assert same_message(final, expected(name)["final"])


def test_raw_stream_events_arrive_in_order(client):
    events = client.messages.create(model="replay/stream_text", max_tokens=64, messages=USER, stream=True)
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert types.count("content_block_delta") == 3


def test_rate_limit_surfaces_as_rate_limit_error(client):
    with pytest.raises(anthropic.RateLimitError) as exc:
        client.messages.create(model="error/429", max_tokens=64, messages=USER)
    err = exc.value
    assert err.status_code == 429
    assert err.body["error"]["type"] == "rate_limit_error"
    assert err.response.headers["retry-after"] == "1"
    assert err.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert err.request_id == "req_01T5fCVnYdf9X5ZW6KayReBK"


def test_rate_limit_is_retried_by_the_sdk_honouring_retry_after(gateway_url):
    c = anthropic.Anthropic(base_url=gateway_url, api_key="caller-key", max_retries=1)
    with pytest.raises(anthropic.RateLimitError):
        c.messages.create(model="error/429", max_tokens=64, messages=USER)


def test_overloaded_surfaces_as_overloaded_error(client):
    with pytest.raises(anthropic.InternalServerError) as exc:
        client.messages.create(model="error/529", max_tokens=64, messages=USER)
    assert exc.value.status_code == 529
    assert exc.value.body["error"]["type"] == "overloaded_error"
    if hasattr(anthropic, "OverloadedError"):
        assert isinstance(exc.value, anthropic.OverloadedError)


def test_client_errors_keep_their_class(client):
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(model="error/400", max_tokens=64, messages=USER)
    assert exc.value.body["error"]["type"] == recorded("errors/error_400.json")["error"]["type"]


def test_an_upstream_401_is_not_the_caller_s_authentication_error(client):
    # The vendor refused the gateway's key: the caller's own credential is not at fault.
    with pytest.raises(anthropic.APIStatusError) as exc:
        client.messages.create(model="error/401", max_tokens=64, messages=USER)
    assert not isinstance(exc.value, anthropic.AuthenticationError)
    assert exc.value.status_code == 502
    assert "gateway's own credentials" in exc.value.body["error"]["message"]


def test_error_event_mid_stream_raises(client):
    with pytest.raises(anthropic.APIStatusError) as exc:
        with client.messages.stream(model="replay/stream_error_overloaded", max_tokens=64, messages=USER) as stream:
            for _ in stream.text_stream:
                pass
    assert exc.value.body["error"]["type"] == "overloaded_error"


def test_count_tokens_and_models(client):
    assert client.messages.count_tokens(model="claude-sonnet-4-5", messages=USER).input_tokens == 1114
    models = client.models.list(limit=5)
    assert models.data[0].id == "claude-sonnet-4-5-20250929"


def test_async_client_streams_too(gateway_url):
    import asyncio

    async def run():
        c = anthropic.AsyncAnthropic(base_url=gateway_url, api_key="caller-key", max_retries=0)
        async with c.messages.stream(model="replay/stream_text", max_tokens=64, messages=USER) as s:
            return await s.get_final_message()

    final = asyncio.run(run())
    assert same_message(final, expected("stream_text")["final"])


def test_beta_resource_with_betas_header(client):
    # `client.beta.messages` posts to /v1/messages?beta=true with an anthropic-beta header.
    msg = client.beta.messages.create(
        model="replay/message_basic", max_tokens=64, messages=USER, betas=["token-efficient-tools-2025-02-19"]
    )
    assert msg.content[0].text == "The capital of France is Paris."


@pytest.mark.parametrize("model", ["cut/clean", "cut/mid-event"])
def test_a_stream_the_upstream_ends_early_raises(client, model):
    # Without the gateway's closing `event: error`, the SDK would hand back a "final"
    # message with stop_reason None and a few characters.
    text = []
    with pytest.raises(anthropic.APIStatusError) as exc:
        with client.messages.stream(model=model, max_tokens=64, messages=USER) as stream:
            for t in stream.text_stream:
                text.append(t)
            stream.get_final_message()
    assert exc.value.body["error"]["type"] == "api_error"
    assert "ended the stream early" in exc.value.body["error"]["message"]
    assert "".join(text) == "Hello there"


def test_a_gzip_message_is_the_recorded_message(client):
    msg = client.messages.create(model="gzip/message_basic", max_tokens=64, messages=USER)
    assert same_message(msg, recorded("message_basic.json"))


@pytest.mark.parametrize("name", ["stream_text", "stream_thinking", "stream_tool_use"])
def test_a_gzip_stream_gives_the_recorded_final_message(client, name):
    with client.messages.stream(model=f"gzip/{name}", max_tokens=2048, messages=USER) as stream:
        final = stream.get_final_message()
    assert same_message(final, expected(name)["final"])


@pytest.mark.parametrize("name", ["message_basic", "message_cache_usage"])
def test_a_json_answer_to_a_stream_gives_the_recorded_message(client, name):
    with client.messages.stream(model=f"json/{name}", max_tokens=64, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    want = recorded(f"{name}.json")
    assert same_message(final, want)
    assert text == "".join(b["text"] for b in want["content"] if b["type"] == "text")


def test_the_api_s_own_400s_are_refused_at_the_gateway(client):
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(model="replay/message_basic", max_tokens=0, messages=USER)
    assert exc.value.body["error"]["message"].startswith("max_tokens")
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(model="replay/message_basic", max_tokens=5, messages=[])
    assert exc.value.body["error"]["message"].startswith("messages")


def _keyed_gateway():
    import os

    url, key = os.environ.get("GATEWAY_AUTH_URL"), os.environ.get("GATEWAY_KEY")
    if not url or not key:
        pytest.fail("GATEWAY_AUTH_URL / GATEWAY_KEY are not set: run through `cargo test --test python_sdk`")
    return url, key


def test_a_gateway_key_gets_through_as_the_sdk_s_api_key():
    url, key = _keyed_gateway()
    client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
    msg = client.messages.create(model="replay/message_basic", max_tokens=64, messages=USER)
    assert same_message(msg, recorded("message_basic.json"))
    # The SDK's auth_token (authorization: Bearer) works too.
    bearer = anthropic.Anthropic(base_url=url, auth_token=key, max_retries=0)
    with bearer.messages.stream(model="replay/stream_text", max_tokens=64, messages=USER) as stream:
        assert same_message(stream.get_final_message(), expected("stream_text")["final"])


@pytest.mark.parametrize("wrong", ["sk-ant-api03-not-a-gateway-key", "gwk_0123456789abcdef_" + "A" * 43])
def test_a_wrong_key_is_an_authentication_error(wrong):
    url, _ = _keyed_gateway()
    client = anthropic.Anthropic(base_url=url, api_key=wrong, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as exc:
        client.messages.create(model="replay/message_basic", max_tokens=64, messages=USER)
    assert exc.value.body["error"]["type"] == "authentication_error"
    assert exc.value.body["error"]["message"] == "invalid api key"


def test_a_rate_limit_is_a_rate_limit_error_and_the_sdk_s_own_retry_succeeds():
    import os
    import time

    url = os.environ.get("GATEWAY_LIMITED_URL")
    if not url:
        pytest.fail("GATEWAY_LIMITED_URL is not set: run through `cargo test --test python_sdk`")
    # The gateway allows one request per two seconds to this caller.
    once = anthropic.Anthropic(base_url=url, api_key="caller-key", max_retries=0)
    first = once.messages.with_raw_response.create(model="replay/message_basic", max_tokens=64, messages=USER)
    assert first.headers["anthropic-ratelimit-requests-limit"] == "1"
    assert first.headers["anthropic-ratelimit-requests-remaining"] == "0"
    with pytest.raises(anthropic.RateLimitError) as exc:
        once.messages.create(model="replay/message_basic", max_tokens=64, messages=USER)
    headers = exc.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 2
    assert 0 < int(headers["retry-after-ms"]) <= 2000
    assert exc.value.body["error"]["type"] == "rate_limit_error"
    assert "requests per 2s per subject" in exc.value.body["error"]["message"]
    # The SDK's default retry obeys retry-after-ms and gets through once the meter refills.
    retrying = anthropic.Anthropic(base_url=url, api_key="caller-key", max_retries=2)
    started = time.monotonic()
    msg = retrying.messages.create(model="replay/message_basic", max_tokens=64, messages=USER)
    assert msg.content[0].text == "The capital of France is Paris."
    assert time.monotonic() - started >= 0.5


def test_a_stream_cut_off_by_a_budget_ends_cleanly_and_the_next_call_is_a_402():
    import os

    url = os.environ.get("GATEWAY_BUDGET_URL")
    if not url:
        pytest.fail("GATEWAY_BUDGET_URL is not set: run through `cargo test --test python_sdk`")
    client = anthropic.Anthropic(base_url=url, api_key="caller-key", max_retries=0)
    # $0.001 of Claude Sonnet 4: 43 input tokens, then at most 58 output tokens.
    with client.messages.stream(
        model="replay/stream_thinking", max_tokens=4096, messages=USER
    ) as stream:
        final = stream.get_final_message()
        raw_cost = stream.response.headers["x-gateway-cost-usd"]
    assert final.stop_reason == "budget_exceeded"
    assert 0 < final.usage.output_tokens <= 58
    assert final.content[0].type == "thinking"
    assert raw_cost == "0.001"
    with pytest.raises(anthropic.APIStatusError) as exc:
        client.messages.create(model="replay/stream_thinking", max_tokens=4096, messages=USER)
    assert exc.value.status_code == 402
    assert exc.value.body["error"]["type"] == "budget_exceeded"
    assert "sdk-budget" in exc.value.body["error"]["message"]


REDACT_USER = [
    {
        "role": "user",
        "content": "Please email maria.lopez@north-wind.io or call +44 20 7946 0958. "
        "Regards,\nMaria Lopez",
    }
]
REDACT_VALUES = ["maria.lopez@north-wind.io", "+44 20 7946 0958", "Maria Lopez"]


def redact_client():
    import os

    url = os.environ.get("GATEWAY_REDACT_URL")
    if not url:
        pytest.fail("GATEWAY_REDACT_URL is not set: run through `cargo test --test python_sdk`")
    return anthropic.Anthropic(base_url=url, api_key="caller-key", max_retries=0)


def test_redacted_values_come_back_in_a_message():
    # The upstream only ever sees <EMAIL_1>, <PHONE_1>, <PERSON_1> and answers with them;
    # the caller reads the real values, in the text and in the tool call's arguments.
    msg = redact_client().messages.create(model="echo/tokens", max_tokens=64, messages=REDACT_USER)
    text = msg.content[0].text
    for v in REDACT_VALUES:
        assert v in text, text
    assert "<EMAIL_1>" not in text
    tool = msg.content[1]
    assert tool.type == "tool_use"
    assert "maria.lopez@north-wind.io" in tool.input["to"]


def test_redacted_values_come_back_in_a_stream():
    with redact_client().messages.stream(
        model="echo/tokens", max_tokens=64, messages=REDACT_USER
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    for v in REDACT_VALUES:
        assert v in text, text
    assert "<" not in text
    assert final.content[1].input["to"].startswith("maria.lopez@north-wind.io")


def inspect_client():
    import os

    url = os.environ.get("GATEWAY_INSPECT_URL")
    if not url:
        pytest.fail("GATEWAY_INSPECT_URL is not set: run through `cargo test --test python_sdk`")
    return anthropic.Anthropic(base_url=url, api_key="caller-key", max_retries=0)


BEFORE_KEY = "Sure. The deploy key is "


@pytest.mark.parametrize("pieces", [2, 3, 10])
def test_a_blocked_stream_ends_with_policy_block(pieces):
    # The model leaks a key split over `pieces` deltas; the gateway cuts the answer. The
    # SDK's stream helper consumes it without raising and reports the stop reason.
    with inspect_client().messages.stream(
        model=f"secret/{pieces}", max_tokens=64, messages=USER
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == BEFORE_KEY
    assert final.stop_reason == "policy_block"
    assert final.content[0].text == BEFORE_KEY
    assert final.usage.output_tokens > 1


def test_the_reason_code_is_in_the_raw_events():
    # The helper rebuilds message_stop and drops policy_reason_code; the raw events keep it.
    events = list(
        inspect_client().messages.create(
            model="secret/3", max_tokens=64, messages=USER, stream=True
        )
    )
    assert [e.type for e in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[-2].delta.stop_reason == "policy_block"
    assert events[-2].usage.output_tokens > 1
    assert events[-1].to_dict()["policy_reason_code"] == "completion.credential.detected"


def test_a_blocked_message_carries_the_reason_code():
    msg = inspect_client().messages.create(model="secret/3", max_tokens=64, messages=USER)
    assert msg.stop_reason == "policy_block"
    assert msg.content[0].text == BEFORE_KEY
    assert msg.to_dict()["policy_reason_code"] == "completion.credential.detected"


def test_an_openai_compatible_upstream_gives_an_anthropic_stream():
    # The gateway maps the Anthropic request to Chat Completions and the recorded OpenAI
    # stream back to Anthropic events; the SDK's helper accumulates them as usual.
    import os

    url = os.environ.get("GATEWAY_OPENAI_UPSTREAM_URL")
    if not url:
        pytest.fail("GATEWAY_OPENAI_UPSTREAM_URL is not set: run through `cargo test --test python_sdk`")
    client = anthropic.Anthropic(base_url=url, api_key="caller-key", max_retries=0)
    with client.messages.stream(model="replay/stream_text", max_tokens=64, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("I'm unable to provide real-time weather")
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    msg = client.messages.create(model="replay/message_basic", max_tokens=64, messages=USER)
    assert msg.usage.output_tokens == 37
    assert msg.content[0].text.startswith("I'm unable")
