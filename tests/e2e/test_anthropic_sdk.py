"""The official anthropic SDK against Switchyard's /v1/messages (or, with SWITCHYARD_E2E_TARGET=mock, the mock).

The SDK's base_url has no /v1: it posts to f"{base_url}/v1/messages" itself.
"""

import anthropic
import pytest

from conftest import ANTHROPIC_BASE_URL, ANTHROPIC_MODEL

MESSAGES = [{"role": "user", "content": "Say hello in a few words."}]


def test_messages_create(anthropic_client):
    msg = anthropic_client.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=64, system="You are terse.", messages=MESSAGES
    )
    assert msg.type == "message"
    assert msg.id.startswith("msg_")
    assert msg.role == "assistant"
    assert msg.content and msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


def test_messages_multi_turn(anthropic_client):
    msg = anthropic_client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=64,
        messages=[
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi there."},
            {"role": "user", "content": [{"type": "text", "text": "And again?"}]},
        ],
    )
    assert msg.content[0].text


def test_messages_stream_helper(anthropic_client):
    with anthropic_client.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0
    assert final.usage.input_tokens > 0


def test_raw_stream_event_order(anthropic_client):
    events = list(
        anthropic_client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES, stream=True)
    )
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert "content_block_delta" in types
    assert types[-2] == "message_delta"
    assert events[-2].usage.output_tokens > 0


def test_forced_tool_use(anthropic_client):
    msg = anthropic_client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=128,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[
            {
                "name": "get_weather",
                "description": "Current weather for a city",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }
        ],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert msg.stop_reason == "tool_use"
    blocks = [b for b in msg.content if b.type == "tool_use"]
    assert blocks and blocks[0].name == "get_weather"
    assert isinstance(blocks[0].input, dict) and "city" in blocks[0].input


def test_bad_key_is_authentication_error():
    with anthropic.Anthropic(base_url=ANTHROPIC_BASE_URL, api_key="sk-ant-not-valid", max_retries=0) as bad:
        with pytest.raises(anthropic.AuthenticationError) as info:
            bad.messages.create(model=ANTHROPIC_MODEL, max_tokens=16, messages=MESSAGES)
    assert info.value.status_code == 401
