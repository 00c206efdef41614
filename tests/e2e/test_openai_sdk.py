"""The official openai SDK against Switchyard (or, with SWITCHYARD_E2E_TARGET=mock, the mock upstream)."""

import openai
import pytest

from conftest import (
    BASE_URL,
    EMBEDDING_MODEL,
    EXTRA_BODY_PROBE,
    EXTRA_BODY_VALUE,
    MODEL,
    OVERSIZE_BYTES,
    SLOW_MODEL,
    TARGET,
    UNKNOWN_MODEL,
    proxy_only,
)

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say hello in a few words."},
]


def test_chat_completion(client):
    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert resp.object == "chat.completion"
    assert resp.id
    assert resp.created > 0
    assert resp.model
    choice = resp.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = resp.usage
    assert usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_without_usage_has_no_usage_chunk(client):
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    chunks = list(stream)
    assert chunks, "no chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.usage is None for c in chunks), "usage must only be sent when include_usage is asked"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"] or finishes == ["length"]
    assert len({c.id for c in chunks}) == 1


def test_stream_with_include_usage_ends_with_usage_chunk(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text


def test_stream_reassembles_to_the_non_stream_reply_shape(client):
    # Streaming and non-streaming calls both produce a complete assistant message.
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles[:1] == ["assistant"]


def test_legacy_completions(client):
    resp = client.completions.create(model=MODEL, prompt="Say hello", max_tokens=16)
    assert resp.object == "text_completion"
    assert resp.choices[0].text
    assert resp.usage is not None and resp.usage.completion_tokens > 0


def test_embeddings_default_base64_and_float(client):
    # The SDK asks for base64 by default and decodes it; check both encodings agree in shape.
    default = client.embeddings.create(model=EMBEDDING_MODEL, input=["first text", "second text"])
    assert default.object == "list"
    assert [d.index for d in default.data] == [0, 1]
    dims = len(default.data[0].embedding)
    assert dims > 0 and all(isinstance(x, float) for x in default.data[0].embedding)
    floats = client.embeddings.create(model=EMBEDDING_MODEL, input="first text", encoding_format="float")
    assert len(floats.data) == 1 and len(floats.data[0].embedding) == dims
    assert default.usage.prompt_tokens > 0
    assert default.usage.total_tokens == default.usage.prompt_tokens


def test_models_list(client):
    models = list(client.models.list())
    assert models, "the model list is empty"
    assert all(m.object == "model" and m.id for m in models)


def test_bad_key_is_authentication_error():
    with openai.OpenAI(base_url=BASE_URL, api_key="sk-definitely-not-valid", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            bad.chat.completions.create(model=MODEL, messages=MESSAGES)
    err = info.value
    assert err.status_code == 401
    assert isinstance(err.body, dict) and err.body.get("message")
    assert err.code == "invalid_api_key"
    assert err.type == "invalid_request_error"


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model=UNKNOWN_MODEL, messages=MESSAGES)
    err = info.value
    assert err.status_code == 404
    assert err.code == "model_not_found"
    assert UNKNOWN_MODEL in err.message


@proxy_only
def test_oversized_body_is_413(client):
    big = "x" * OVERSIZE_BYTES
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": big}])
    err = info.value
    assert err.status_code == 413
    assert isinstance(err.body, dict) and err.body.get("message")


def test_raw_response_headers(client):
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.status_code == 200
    assert raw.headers.get("x-request-id")
    if TARGET != "mock":
        assert raw.headers.get("x-switchyard-model")
    completion = raw.parse()
    assert completion.choices[0].message.content


@proxy_only
def test_client_request_id_is_propagated(client):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, extra_headers={"x-request-id": "e2e-request-0001"}
    )
    assert raw.headers.get("x-request-id") == "e2e-request-0001"


@proxy_only
def test_streamed_response_has_switchyard_headers(client):
    with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=MESSAGES, stream=True
    ) as resp:
        assert resp.headers.get("x-request-id")
        assert resp.headers.get("x-switchyard-model")
        chunks = list(resp.parse())
    assert chunks


def test_extra_body_passes_through(client):
    # The Rust harness then checks that the upstream received this field untouched.
    resp = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, extra_body={EXTRA_BODY_PROBE: EXTRA_BODY_VALUE}
    )
    assert resp.choices[0].message.content


def test_client_closes_stream_early(client):
    stream = client.chat.completions.create(
        model=SLOW_MODEL,
        messages=MESSAGES,
        stream=True,
        extra_headers={"x-mock-chunks": "400", "x-mock-chunk-delay-ms": "10"},
    )
    seen = 0
    for chunk in stream:
        seen += 1
        if seen == 3:
            break
    stream.close()
    assert seen == 3
    # The server must still serve the next request normally.
    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert resp.choices[0].message.content
