//! Tests of the mock upstream itself: if the mock drifts from the real APIs (framing, usage rules, error bodies),
//! every proxy test built on it would prove the wrong thing. The last test runs the official Python SDKs against
//! the mock, which is the strongest evidence that its wire format is faithful.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::client::{get, open, post_json, read_body, send};
use common::mock::{Behavior, DEFAULT_REPLY, MockUpstream};
use common::sse::{anthropic_stream_text, openai_stream_text, parse_sse};
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};

fn chat(content: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]})
}

fn chat_stream(content: &str, include_usage: bool) -> Value {
    let mut body = chat(content);
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn anthropic_body(stream: bool) -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "one two three"}]}],
        "stream": stream,
    })
}

const ANTHROPIC_HEADERS: [(&str, &str); 2] =
    [("x-api-key", "sk-ant-test"), ("anthropic-version", "2023-06-01")];

#[tokio::test]
async fn chat_completion_has_openai_shape_and_deterministic_usage() {
    let mock = MockUpstream::start().await;
    let mut body = chat("one two three");
    body["some_unknown_field"] = json!({"kept": true});
    let resp = post_json(
        &format!("{}/v1/chat/completions", mock.url()),
        &[("authorization", "Bearer sk-up")],
        &body,
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert!(resp.header("x-request-id").is_some_and(|v| v.starts_with("req_")));
    let j = resp.json();
    assert!(j["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(j["object"], "chat.completion");
    assert!(j["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(j["model"], "gpt-4o-mini");
    assert_eq!(j["system_fingerprint"], "fp_mock");
    assert_eq!(
        j["choices"],
        json!([{
            "index": 0,
            "message": {"role": "assistant", "content": DEFAULT_REPLY, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }])
    );
    assert_eq!(
        j["usage"],
        json!({
            "prompt_tokens": 3,
            "completion_tokens": 8,
            "total_tokens": 11,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
            }
        })
    );

    let rec = mock.last_request();
    assert_eq!(rec.method, Method::POST);
    assert_eq!(rec.path, "/v1/chat/completions");
    assert_eq!(rec.bearer(), Some("sk-up"));
    assert_eq!(rec.body, body);
    assert_eq!(mock.counters().requests, 1);
}

#[tokio::test]
async fn chat_stream_is_framed_like_openai_without_usage_unless_asked() {
    let mock = MockUpstream::start().await;
    let resp = post_json(
        &format!("{}/v1/chat/completions", mock.url()),
        &[],
        &chat_stream("a b", false),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let text = resp.text();
    // Exact framing: every event is one `data: ` line followed by a blank line, and the stream ends with [DONE].
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    for frame in text.trim_end_matches("\n\n").split("\n\n") {
        assert!(
            frame.starts_with("data: ") && !frame.contains('\n'),
            "bad frame {frame:?}"
        );
    }
    let events = parse_sse(&text);
    // role chunk + 8 content chunks + finish chunk + [DONE]
    assert_eq!(events.len(), 11);
    let first = events[0].json();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    assert_eq!(openai_stream_text(&events), DEFAULT_REPLY);
    let finish = events[9].json();
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    for e in &events[..10] {
        let j = e.json();
        assert!(
            j.get("usage").is_none(),
            "usage must not appear unless include_usage was asked: {j}"
        );
        assert_eq!(j["id"], first["id"]);
        assert_eq!(j["model"], "gpt-4o-mini");
    }
    assert_eq!(mock.counters().streams_completed, 1);
}

#[tokio::test]
async fn chat_stream_with_include_usage_ends_with_a_usage_chunk() {
    let mock = MockUpstream::start().await;
    let resp = post_json(
        &format!("{}/v1/chat/completions", mock.url()),
        &[],
        &chat_stream("a b c d", true),
    )
    .await;
    let events = parse_sse(&resp.text());
    assert_eq!(events.len(), 12);
    assert!(events[11].is_done());
    let usage_chunk = events[10].json();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 4);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 8);
    assert_eq!(usage_chunk["usage"]["total_tokens"], 12);
    for e in &events[..10] {
        // OpenAI sends an explicit `"usage": null` on every other chunk when include_usage is set.
        assert_eq!(e.json()["usage"], Value::Null);
        assert!(e.json().as_object().unwrap().contains_key("usage"));
    }
}

#[tokio::test]
async fn max_tokens_truncates_with_finish_reason_length() {
    let mock = MockUpstream::start().await;
    let mut body = chat_stream("x", true);
    body["max_tokens"] = json!(3);
    let resp = post_json(&format!("{}/v1/chat/completions", mock.url()), &[], &body).await;
    let events = resp.sse();
    assert_eq!(openai_stream_text(&events), "Hello from the");
    assert_eq!(events[4].json()["choices"][0]["finish_reason"], "length");
    assert_eq!(events[5].json()["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn paths_without_v1_and_azure_deployments_are_served() {
    let mock = MockUpstream::builder().api_key("azure-key").start().await;
    let plain = post_json(
        &format!("{}/chat/completions", mock.url()),
        &[("authorization", "Bearer azure-key")],
        &chat("hi"),
    )
    .await;
    assert_eq!(plain.status, 200);

    let url = format!(
        "{}/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21",
        mock.url()
    );
    let mut body = chat("hi");
    body.as_object_mut().unwrap().remove("model");
    let azure = post_json(&url, &[("api-key", "azure-key")], &body).await;
    assert_eq!(azure.status, 200, "{}", azure.text());
    let j = azure.json();
    assert_eq!(j["model"], "my-gpt4o");
    assert!(j["prompt_filter_results"].is_array());
    let rec = mock.last_request();
    assert_eq!(rec.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(rec.header("api-key"), Some("azure-key"));

    let wrong_key = post_json(&url, &[("api-key", "nope")], &body).await;
    assert_eq!(wrong_key.status, 401);
    let no_version = post_json(
        &format!("{}/openai/deployments/my-gpt4o/chat/completions", mock.url()),
        &[("api-key", "azure-key")],
        &body,
    )
    .await;
    assert_eq!(no_version.status, 404);
    assert_eq!(
        no_version.json(),
        json!({"error": {"code": "404", "message": "Resource not found"}})
    );
}

#[tokio::test]
async fn completions_embeddings_and_models() {
    let mock = MockUpstream::start().await;
    let resp = post_json(
        &format!("{}/v1/completions", mock.url()),
        &[],
        &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "say this", "max_tokens": 2}),
    )
    .await;
    let j = resp.json();
    assert_eq!(j["object"], "text_completion");
    assert_eq!(j["choices"][0]["text"], "Hello from");
    assert_eq!(j["choices"][0]["finish_reason"], "length");
    assert_eq!(
        j["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4})
    );

    let stream = post_json(
        &format!("{}/v1/completions", mock.url()),
        &[],
        &json!({"model": "m", "prompt": "x", "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await
    .sse();
    assert!(stream.last().unwrap().is_done());
    assert_eq!(stream[stream.len() - 2].json()["usage"]["completion_tokens"], 8);

    let emb = post_json(
        &format!("{}/v1/embeddings", mock.url()),
        &[],
        &json!({"model": "text-embedding-3-small", "input": ["one two", "three"], "encoding_format": "float"}),
    )
    .await
    .json();
    assert_eq!(emb["object"], "list");
    assert_eq!(emb["data"].as_array().unwrap().len(), 2);
    assert_eq!(emb["data"][1]["index"], 1);
    assert_eq!(emb["data"][0]["embedding"].as_array().unwrap().len(), 16);
    assert_eq!(emb["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    // base64 is what the openai SDK asks for by default: little-endian f32s.
    let b64 = post_json(
        &format!("{}/v1/embeddings", mock.url()),
        &[],
        &json!({"model": "e", "input": "one two", "encoding_format": "base64", "dimensions": 4}),
    )
    .await
    .json();
    let encoded = b64["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(encoded.len(), 24, "4 f32 = 16 bytes = 24 base64 chars");

    let models = get(&format!("{}/v1/models", mock.url()), &[]).await.json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["object"], "model");
}

#[tokio::test]
async fn openai_error_bodies_match_the_real_api() {
    let mock = MockUpstream::builder()
        .api_key("sk-good")
        .models(&["gpt-4o-mini"])
        .start()
        .await;
    let url = format!("{}/v1/chat/completions", mock.url());
    let auth = [("authorization", "Bearer sk-good")];

    let bad_key = post_json(
        &url,
        &[("authorization", "Bearer sk-wrong-key-123456")],
        &chat("x"),
    )
    .await;
    assert_eq!(bad_key.status, 401);
    let e = &bad_key.json()["error"];
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["code"], "invalid_api_key");
    assert_eq!(e["param"], Value::Null);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("Incorrect API key provided: sk-")
    );
    assert!(
        !e["message"].as_str().unwrap().contains("sk-wrong-key-123456"),
        "the key is masked"
    );

    let no_key = post_json(&url, &[], &chat("x")).await;
    assert_eq!(no_key.status, 401);
    assert_eq!(no_key.json()["error"]["code"], Value::Null);

    let mut unknown = chat("x");
    unknown["model"] = json!("gpt-9");
    let not_found = post_json(&url, &auth, &unknown).await;
    assert_eq!(not_found.status, 404);
    assert_eq!(
        not_found.json(),
        json!({"error": {
            "message": "The model `gpt-9` does not exist or you do not have access to it.",
            "type": "invalid_request_error", "param": null, "code": "model_not_found"
        }})
    );

    let bad_json = send(Method::POST, &url, &auth, Bytes::from_static(b"{not json")).await;
    assert_eq!(bad_json.status, 400);
    assert_eq!(bad_json.json()["error"]["type"], "invalid_request_error");

    let limited = post_json(
        &url,
        &[auth[0], ("x-mock-status", "429"), ("x-mock-retry-after", "7")],
        &chat("x"),
    )
    .await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("7"));
    assert_eq!(limited.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(limited.json()["error"]["type"], "requests");

    for (status, kind) in [
        (400, "invalid_request_error"),
        (500, "server_error"),
        (503, "server_error"),
    ] {
        let mut body = chat("x");
        body["model"] = json!(format!("gpt-4o-mini-e{status}"));
        let resp = post_json(&url, &auth, &body).await;
        assert_eq!(resp.status, status);
        let j = resp.json();
        assert_eq!(j["error"]["type"], kind, "{j}");
        let keys: Vec<&String> = j["error"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["code", "message", "param", "type"]);
    }
}

#[tokio::test]
async fn anthropic_messages_non_stream() {
    let mock = MockUpstream::builder().api_key("sk-ant-test").start().await;
    let url = format!("{}/v1/messages", mock.url());
    let resp = post_json(&url, &ANTHROPIC_HEADERS, &anthropic_body(false)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.header("request-id").is_some());
    let j = resp.json();
    assert!(j["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(j["type"], "message");
    assert_eq!(j["role"], "assistant");
    assert_eq!(j["model"], "claude-haiku-4-5");
    assert_eq!(j["content"], json!([{"type": "text", "text": DEFAULT_REPLY}]));
    assert_eq!(j["stop_reason"], "end_turn");
    assert_eq!(j["stop_sequence"], Value::Null);
    // system (3 words) + message (3 words)
    assert_eq!(j["usage"]["input_tokens"], 6);
    assert_eq!(j["usage"]["output_tokens"], 8);
    assert_eq!(j["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(j["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(
        mock.last_request().header("anthropic-version"),
        Some("2023-06-01")
    );
}

#[tokio::test]
async fn anthropic_stream_has_the_exact_event_sequence() {
    let mock = MockUpstream::start().await;
    let mut body = anthropic_body(true);
    body["max_tokens"] = json!(5);
    let resp = post_json(&format!("{}/v1/messages", mock.url()), &ANTHROPIC_HEADERS, &body).await;
    assert_eq!(
        resp.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let text = resp.text();
    for frame in text.trim_end_matches("\n\n").split("\n\n") {
        let lines: Vec<&str> = frame.split('\n').collect();
        assert_eq!(lines.len(), 2, "{frame:?}");
        let name = lines[0].strip_prefix("event: ").unwrap();
        let data: Value = serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], name, "the event name repeats the data's type");
    }
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(["content_block_delta"; 5]);
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    assert_eq!(anthropic_stream_text(&events), "Hello from the mock upstream");
    let start = events[0].json();
    assert_eq!(start["message"]["usage"]["input_tokens"], 6);
    assert_eq!(
        start["message"]["usage"]["output_tokens"], 1,
        "Anthropic reports 1 output token at the start"
    );
    let delta = events[9].json();
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 5);
}

#[tokio::test]
async fn anthropic_errors_use_anthropic_shape() {
    let mock = MockUpstream::builder()
        .api_key("sk-ant-test")
        .models(&["claude-haiku-4-5"])
        .start()
        .await;
    let url = format!("{}/v1/messages", mock.url());
    let bad_key = post_json(
        &url,
        &[("x-api-key", "nope"), ("anthropic-version", "2023-06-01")],
        &anthropic_body(false),
    )
    .await;
    assert_eq!(bad_key.status, 401);
    let j = bad_key.json();
    assert_eq!(j["type"], "error");
    assert_eq!(
        j["error"],
        json!({"type": "authentication_error", "message": "invalid x-api-key"})
    );

    let no_version = post_json(&url, &[("x-api-key", "sk-ant-test")], &anthropic_body(false)).await;
    assert_eq!(no_version.status, 400);
    assert_eq!(
        no_version.json()["error"]["message"],
        "anthropic-version: header is required"
    );

    let mut body = anthropic_body(false);
    body["model"] = json!("claude-haiku-4-5-e529");
    let overloaded = post_json(&url, &ANTHROPIC_HEADERS, &body).await;
    assert_eq!(overloaded.status, 529);
    assert_eq!(overloaded.json()["error"]["type"], "overloaded_error");

    body["model"] = json!("claude-nope");
    let not_found = post_json(&url, &ANTHROPIC_HEADERS, &body).await;
    assert_eq!(not_found.status, 404);
    assert_eq!(
        not_found.json()["error"],
        json!({"type": "not_found_error", "message": "model: claude-nope"})
    );
}

#[tokio::test]
async fn tool_calls_in_both_flavours() {
    let mock = MockUpstream::start().await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                        "required": ["city"]});
    // OpenAI: forced with tool_choice "required".
    let mut body = chat("weather?");
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": schema}}]);
    body["tool_choice"] = json!("required");
    let j = post_json(&format!("{}/v1/chat/completions", mock.url()), &[], &body)
        .await
        .json();
    assert_eq!(j["choices"][0]["finish_reason"], "tool_calls");
    let call = &j["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "mock", "days": 1}));
    assert_eq!(j["choices"][0]["message"]["content"], Value::Null);

    body["stream"] = json!(true);
    let events = post_json(&format!("{}/v1/chat/completions", mock.url()), &[], &body)
        .await
        .sse();
    let streamed: String = events
        .iter()
        .filter(|e| !e.is_done())
        .filter_map(|e| {
            e.json()["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&streamed).unwrap(), args);

    // Anthropic: asked for by the `-tool` suffix, streamed as input_json_delta.
    let mut body = anthropic_body(true);
    body["model"] = json!("claude-haiku-4-5-tool");
    body["tools"] = json!([{"name": "get_weather", "description": "w", "input_schema": schema}]);
    let events = post_json(&format!("{}/v1/messages", mock.url()), &ANTHROPIC_HEADERS, &body)
        .await
        .sse();
    assert_eq!(events[1].json()["content_block"]["type"], "tool_use");
    let partial: String = events
        .iter()
        .filter_map(|e| e.json()["delta"]["partial_json"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&partial).unwrap(), args);
    let delta = events
        .iter()
        .find(|e| e.event.as_deref() == Some("message_delta"))
        .unwrap()
        .json();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn delays_from_model_suffix_and_header() {
    let mock = MockUpstream::start().await;
    let url = format!("{}/v1/chat/completions", mock.url());
    let mut body = chat("x");
    body["model"] = json!("mock-d80");
    let started = Instant::now();
    let resp = post_json(&url, &[], &body).await;
    assert!(started.elapsed() >= Duration::from_millis(80));
    assert_eq!(
        resp.json()["model"],
        "mock-d80",
        "the model is echoed as requested"
    );

    let started = Instant::now();
    post_json(&url, &[("x-mock-delay-ms", "60")], &chat("x")).await;
    assert!(started.elapsed() >= Duration::from_millis(60));

    // Slow first token: the head comes at once, the first content chunk later.
    let started = Instant::now();
    let mut body = chat_stream("x", false);
    body["model"] = json!("cold-model-ft120");
    let head = open(
        Method::POST,
        &url,
        &[("content-type", "application/json")],
        Bytes::from(body.to_string()),
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(120));
    let full = read_body(head).await;
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert_eq!(openai_stream_text(&full.sse()), DEFAULT_REPLY);
}

#[tokio::test]
async fn stream_dropped_mid_way_has_no_done() {
    let mock = MockUpstream::start().await;
    let mut body = chat_stream("x", true);
    body["model"] = json!("gpt-4o-mini-drop3");
    let resp = post_json(&format!("{}/v1/chat/completions", mock.url()), &[], &body).await;
    assert_eq!(resp.status, 200);
    assert!(
        resp.body_error.is_some(),
        "the connection must be cut, not closed cleanly"
    );
    let events = resp.sse();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| !e.is_done()));
    assert_eq!(mock.counters().streams_dropped, 1);

    // Anthropic too, via the header.
    let resp = post_json(
        &format!("{}/v1/messages", mock.url()),
        &[
            ANTHROPIC_HEADERS[0],
            ANTHROPIC_HEADERS[1],
            ("x-mock-drop-after", "4"),
        ],
        &anthropic_body(true),
    )
    .await;
    assert!(resp.body_error.is_some());
    assert_eq!(resp.sse().len(), 4);
}

#[tokio::test]
async fn in_stream_error_events_match_each_provider() {
    let mock = MockUpstream::start().await;
    let mut body = chat_stream("x", false);
    body["model"] = json!("gpt-4o-mini-serr2");
    let resp = post_json(&format!("{}/v1/chat/completions", mock.url()), &[], &body).await;
    assert_eq!(resp.status, 200);
    assert!(resp.body_error.is_none());
    let events = resp.sse();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].json()["error"]["type"], "server_error");

    let resp = post_json(
        &format!("{}/v1/messages", mock.url()),
        &[
            ANTHROPIC_HEADERS[0],
            ANTHROPIC_HEADERS[1],
            ("x-mock-stream-error-after", "4"),
        ],
        &anthropic_body(true),
    )
    .await;
    let events = resp.sse();
    assert_eq!(events.len(), 5);
    assert_eq!(events[4].event.as_deref(), Some("error"));
    assert_eq!(
        events[4].json(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
}

#[tokio::test]
async fn omit_usage_removes_usage_everywhere() {
    let mock = MockUpstream::builder()
        .behavior(Behavior::ok().omit_usage())
        .start()
        .await;
    let url = format!("{}/v1/chat/completions", mock.url());
    let j = post_json(&url, &[], &chat("x")).await.json();
    assert!(j.get("usage").is_none());
    let events = post_json(&url, &[], &chat_stream("x", true)).await.sse();
    assert!(
        events
            .iter()
            .filter(|e| !e.is_done())
            .all(|e| e.json().get("usage").is_none())
    );
    assert_eq!(openai_stream_text(&events), DEFAULT_REPLY);
}

#[tokio::test]
async fn reported_model_can_differ_from_the_requested_one() {
    let mock = MockUpstream::builder()
        .report_model("gpt-4o", "gpt-4o-2024-08-06")
        .start()
        .await;
    let url = format!("{}/v1/chat/completions", mock.url());
    let mut body = chat_stream("x", false);
    body["model"] = json!("gpt-4o-n2");
    let events = post_json(&url, &[], &body).await.sse();
    assert!(
        events
            .iter()
            .filter(|e| !e.is_done())
            .all(|e| e.json()["model"] == "gpt-4o-2024-08-06")
    );
}

#[tokio::test]
async fn queued_behaviours_apply_once_in_order() {
    let mock = MockUpstream::start().await;
    mock.push_behavior(Behavior::error(429).retry_after(2));
    mock.push_behavior(Behavior::error(503));
    let url = format!("{}/v1/chat/completions", mock.url());
    assert_eq!(post_json(&url, &[], &chat("x")).await.status, 429);
    assert_eq!(post_json(&url, &[], &chat("x")).await.status, 503);
    assert_eq!(post_json(&url, &[], &chat("x")).await.status, 200);
    mock.set_behavior(Behavior::ok().reply("custom words here").cached_tokens(2));
    let j = post_json(&url, &[], &chat("a b c")).await.json();
    assert_eq!(j["choices"][0]["message"]["content"], "custom words here");
    assert_eq!(j["usage"]["completion_tokens"], 3);
    assert_eq!(j["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
    assert_eq!(mock.requests().len(), 4);
}

#[tokio::test]
async fn hang_never_answers() {
    let mock = MockUpstream::start().await;
    let mut body = chat("x");
    body["model"] = json!("gpt-4o-mini-hang");
    let url = format!("{}/v1/chat/completions", mock.url());
    let result = tokio::time::timeout(Duration::from_millis(200), post_json(&url, &[], &body)).await;
    assert!(result.is_err(), "a hanging mock must not answer");
    mock.wait_for_requests(1).await;
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_counted() {
    let mock = MockUpstream::start().await;
    let mut body = chat_stream("x", false);
    body["model"] = json!("gpt-4o-mini-n1000-cd5");
    let resp = open(
        Method::POST,
        &format!("{}/v1/chat/completions", mock.url()),
        &[("content-type", "application/json")],
        Bytes::from(body.to_string()),
    )
    .await;
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().unwrap().starts_with(b"data: "));
    drop(body);
    mock.wait_for_cancelled_streams(1).await;
    assert_eq!(mock.counters().streams_completed, 0);
}

#[tokio::test]
async fn stalled_stream_keeps_the_connection_open_until_the_client_leaves() {
    let mock = MockUpstream::start().await;
    let resp = open(
        Method::POST,
        &format!("{}/v1/chat/completions", mock.url()),
        &[("content-type", "application/json"), ("x-mock-stall-after", "2")],
        Bytes::from(chat_stream("x", false).to_string()),
    )
    .await;
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(body.frame().await.unwrap().unwrap());
    }
    let third = tokio::time::timeout(Duration::from_millis(150), body.frame()).await;
    assert!(third.is_err(), "nothing may arrive after the stall point");
    drop(body);
    mock.wait_for_cancelled_streams(1).await;
}

#[tokio::test(start_paused = true)]
async fn ollama_loads_a_model_on_first_use() {
    let mock = MockUpstream::builder()
        .ollama(Duration::from_secs(30))
        .loaded_models(&["llama3.2:3b"])
        .start()
        .await;
    let ps = get(&format!("{}/api/ps", mock.url()), &[]).await.json();
    assert_eq!(ps["models"].as_array().unwrap().len(), 1);
    assert_eq!(ps["models"][0]["name"], "llama3.2:3b");
    assert!(ps["models"][0]["size_vram"].as_u64().unwrap() > 0);

    let url = format!("{}/v1/chat/completions", mock.url());
    let mut body = chat("x");
    body["model"] = json!("llama3.2:3b");
    let started = tokio::time::Instant::now();
    assert_eq!(post_json(&url, &[], &body).await.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a loaded model answers at once"
    );

    body["model"] = json!("qwen2.5:7b");
    let started = tokio::time::Instant::now();
    let (a, b) = tokio::join!(post_json(&url, &[], &body), post_json(&url, &[], &body));
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(60),
        "one shared load: {waited:?}"
    );
    assert_eq!(mock.loaded_models(), ["llama3.2:3b", "qwen2.5:7b"]);

    mock.set_loaded_models(&[]);
    let ps = get(&format!("{}/api/ps", mock.url()), &[]).await.json();
    assert_eq!(ps, json!({"models": []}));
}

/// The official `openai` and `anthropic` Python SDKs run their whole e2e suite against the mock (proxy-only
/// assertions skipped). Needs python3, and PyPI access the first time the venv is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_accept_the_mock() {
    const KEY: &str = "sk-switchyard-e2e";
    let mock = MockUpstream::builder()
        .api_key(KEY)
        .models(&["auto", "text-embedding-3-small", "claude-haiku-4-5", "mock-slow"])
        .start()
        .await;
    let mut env = common::e2e::sdk_env(&mock.url(), KEY, "mock");
    env.push(("SWITCHYARD_SLOW_MODEL", "mock-slow-n400-cd10".to_owned()));
    let run = common::e2e::run_pytest(&[], &env).await;
    run.assert_passed();
    common::e2e::assert_upstream_saw_sdk_traffic(&mock).await;
}

/// The black-box helper the proxy's end-to-end tests use: spawn, wait for /healthz, kill on drop.
#[tokio::test]
async fn child_server_helper_waits_for_health() {
    let port = common::process::free_port();
    let script = "import http.server, sys\n\
        class H(http.server.BaseHTTPRequestHandler):\n\
        \x20   def do_GET(self):\n\
        \x20       self.send_response(200 if self.path == '/healthz' else 404); self.end_headers()\n\
        \x20   def log_message(self, *a): print('served', self.path, flush=True)\n\
        http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n";
    let server = common::process::ChildServer::spawn(
        "python3".as_ref(),
        &["-c", script, &port.to_string()],
        &[],
        format!("http://127.0.0.1:{port}"),
    )
    .await;
    assert_eq!(
        get(&format!("{}/healthz", server.base_url), &[]).await.status,
        200
    );
    let output = server.stop().await;
    assert!(output.contains("served /healthz"), "{output}");
}
