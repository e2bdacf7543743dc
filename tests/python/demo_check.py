"""Checks the example gateway started with no vendor key: the official SDK gets a
streamed answer from the built-in demo upstream. Usage: demo_check.py BASE_URL"""

import sys

import anthropic

base_url = sys.argv[1]
client = anthropic.Anthropic(base_url=base_url, api_key="any-key", max_retries=0)
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
