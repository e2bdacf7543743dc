"""Checks the example gateway against its built-in demo upstream with the official SDK: a
streamed answer arrives. Usage: demo_check.py BASE_URL [GATEWAY_KEY]

With GATEWAY_KEY (a gateway started with [auth]): the key is the SDK's api_key and gets
through, as the SDK's auth_token too, and a wrong key raises AuthenticationError."""

import sys

import anthropic

base_url = sys.argv[1]
key = sys.argv[2] if len(sys.argv) > 2 else "any-key"
client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0)
chunks = []
with client.messages.stream(
    model="claude-sonnet-4-5", max_tokens=128, messages=[{"role": "user", "content": "Hello"}]
) as stream:
    for text in stream.text_stream:
        chunks.append(text)
    final = stream.get_final_message()
assert len(chunks) > 3, f"expected a streamed answer in several chunks, got {chunks!r}"
assert "demo upstream" in "".join(chunks)
assert final.stop_reason == "end_turn"
assert final.usage.output_tokens > 0
print(f"demo check passed: {len(chunks)} chunks, {final.usage.output_tokens} output tokens")

if len(sys.argv) > 2:
    bearer = anthropic.Anthropic(base_url=base_url, auth_token=key, max_retries=0)
    msg = bearer.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "Hi"}])
    assert msg.stop_reason == "max_tokens", msg
    wrong = anthropic.Anthropic(base_url=base_url, api_key="gwk_0123456789abcdef_" + "A" * 43, max_retries=0)
    try:
        wrong.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": "Hi"}])
    except anthropic.AuthenticationError as e:
        assert e.body["error"]["message"] == "invalid api key", e.body
    else:
        raise AssertionError("a wrong gateway key got through")
    print("key check passed: api_key and auth_token get through, a wrong key is AuthenticationError")
