//! Table tests for the Anthropic translation. JSON is compared as values, never as strings.

use super::*;
use crate::providers::TranslateError;
use crate::sse::SseParser;
use serde_json::{Map, json};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("test request must be an object"),
    }
}

fn translate(v: Value) -> Result<Value, TranslateError> {
    chat_request_to_messages(&obj(v), "claude-sonnet-4-5")
}

// ---------------------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn minimal_request_gets_default_max_tokens() {
    let out = translate(json!({"model": "auto", "messages": [{"role": "user", "content": "Hi"}]})).unwrap();
    assert_eq!(
        out,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": DEFAULT_MAX_TOKENS,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
        })
    );
}

#[test]
fn system_developer_and_multi_turn() {
    let out = translate(json!({
        "model": "auto",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Salut."},
            {"role": "user", "content": [{"type": "text", "text": "And again"}]},
            {"role": "user", "content": "twice"},
        ],
        "max_tokens": 100,
        "temperature": 0.3,
        "stop": "END",
        "stream": true,
        "user": "alice@example.com",
    }))
    .unwrap();
    assert_eq!(
        out,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "Be terse."}, {"type": "text", "text": "Answer in French."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Salut."}]},
                {"role": "user", "content": [{"type": "text", "text": "And again"}, {"type": "text", "text": "twice"}]},
            ],
            "temperature": 0.3,
            "stop_sequences": ["END"],
            "stream": true,
            "metadata": {"user_id": "alice@example.com"},
        })
    );
}

#[test]
fn scalar_parameter_table() {
    // (request extras, expected subset of the output, keys that must be absent)
    let cases: Vec<(Value, Value, Vec<&str>)> = vec![
        (
            json!({"max_completion_tokens": 50, "max_tokens": 10}),
            json!({"max_tokens": 50}),
            vec![],
        ),
        (json!({"max_tokens": 10}), json!({"max_tokens": 10}), vec![]),
        (
            json!({"max_tokens": null}),
            json!({"max_tokens": DEFAULT_MAX_TOKENS}),
            vec![],
        ),
        (
            json!({"temperature": 1.7}),
            json!({"temperature": 1.0}),
            vec!["top_p"],
        ),
        (
            json!({"temperature": 0.2, "top_p": 0.9}),
            json!({"temperature": 0.2}),
            vec!["top_p"],
        ),
        (json!({"top_p": 0.9}), json!({"top_p": 0.9}), vec!["temperature"]),
        (
            json!({"stop": ["a", "b", "", "  "]}),
            json!({"stop_sequences": ["a", "b"]}),
            vec![],
        ),
        (json!({"stop": []}), json!({}), vec!["stop_sequences"]),
        (json!({"stop": null}), json!({}), vec!["stop_sequences"]),
        (json!({"stream": false}), json!({}), vec!["stream"]),
        (
            json!({"safety_identifier": "u-1"}),
            json!({"metadata": {"user_id": "u-1"}}),
            vec![],
        ),
        (json!({"user": ""}), json!({}), vec!["metadata"]),
        (
            json!({"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 2048}}),
            json!({"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 2048}}),
            vec![],
        ),
        (
            json!({"n": 1, "logprobs": false, "response_format": {"type": "text"}, "seed": 4,
                "frequency_penalty": 0.5, "stream_options": {"include_usage": true}, "metadata": {"k": "v"},
                "some_future_field": 1, "logit_bias": {}}),
            json!({}),
            vec![
                "n",
                "logprobs",
                "response_format",
                "seed",
                "frequency_penalty",
                "stream_options",
                "metadata",
                "some_future_field",
                "logit_bias",
            ],
        ),
    ];
    for (extra, want, absent) in cases {
        let mut req = json!({"model": "auto", "messages": [{"role": "user", "content": "x"}]});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        let out = translate(req).unwrap_or_else(|e| panic!("{extra}: {e}"));
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(&out[k], v, "{extra}: key {k}");
        }
        for k in absent {
            assert!(out.get(k).is_none(), "{extra}: {k} should be absent in {out}");
        }
    }
}

#[test]
fn unsupported_and_invalid_table() {
    // (request extras, expected param, expect Unsupported (true) or InvalidRequest (false))
    let cases: Vec<(Value, &str, bool)> = vec![
        (json!({"n": 2}), "n", true),
        (json!({"logprobs": true}), "logprobs", true),
        (json!({"top_logprobs": 3}), "top_logprobs", true),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
            true,
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
            "response_format",
            true,
        ),
        (json!({"audio": {"voice": "alloy"}}), "audio", true),
        (json!({"modalities": ["text", "audio"]}), "modalities", true),
        (json!({"logit_bias": {"123": 5}}), "logit_bias", true),
        (json!({"functions": [{"name": "f"}]}), "functions", true),
        (
            json!({"prediction": {"type": "content", "content": "x"}}),
            "prediction",
            true,
        ),
        (json!({"tools": [{"type": "web_search"}]}), "tools[0].type", true),
        (json!({"max_tokens": 0}), "max_tokens", false),
        (
            json!({"max_completion_tokens": -3}),
            "max_completion_tokens",
            false,
        ),
        (json!({"temperature": "hot"}), "temperature", false),
        (json!({"stop": 5}), "stop", false),
        (json!({"stop": ["a", 1]}), "stop", false),
        (json!({"user": 5}), "user", false),
        (json!({"tools": "nope"}), "tools", false),
        (
            json!({"tools": [{"type": "function"}]}),
            "tools[0].function",
            false,
        ),
        (
            json!({"tools": [{"type": "function", "function": {}}]}),
            "tools[0].function.name",
            false,
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}),
            "tool_choice",
            false,
        ),
        (json!({"messages": "hi"}), "messages", false),
        (json!({"messages": [{"content": "x"}]}), "messages[0].role", false),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
            false,
        ),
        (
            json!({"messages": [{"role": "function", "name": "f", "content": "x"}]}),
            "messages[0].role",
            true,
        ),
        (
            json!({"messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
            false,
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
            "messages[0].content[0].type",
            true,
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "video"}]}]}),
            "messages[0].content[0].type",
            true,
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}),
            "messages[0].content[0].image_url.url",
            false,
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url",
            "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]}),
            "messages[0].content[0].image_url.url",
            true,
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url",
            "image_url": {"url": "data:image/png,notbase64"}}]}]}),
            "messages[0].content[0].image_url.url",
            false,
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]}),
            "messages[0].content[0].file",
            true,
        ),
        (
            json!({"messages": [{"role": "system", "content": [{"type": "image_url"}]}]}),
            "messages[0].content[0].type",
            true,
        ),
        (
            json!({"messages": [{"role": "tool", "content": "42"}]}),
            "messages[0].tool_call_id",
            false,
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c1",
            "function": {"name": "f", "arguments": "{not json"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
            false,
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c1",
            "function": {"name": "f", "arguments": "[1]"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
            false,
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]}),
            "messages[0].tool_calls[0].id",
            false,
        ),
    ];
    for (extra, param, unsupported) in cases {
        let mut req = json!({"model": "auto", "messages": [{"role": "user", "content": "x"}]});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        let err = translate(req).expect_err(&extra.to_string());
        assert_eq!(err.param(), Some(param), "{extra}: {err:?}");
        assert_eq!(
            matches!(err, TranslateError::Unsupported { .. }),
            unsupported,
            "{extra}: {err:?}"
        );
        assert_eq!(err.status_code(), 400);
        assert_eq!(err.to_openai_error()["error"]["param"], json!(param));
    }
}

#[test]
fn images_and_documents() {
    let out = translate(json!({"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "image_url", "image_url": "http://example.com/dog.webp"},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
        {"type": "text", "text": ""},
    ]}]}))
    .unwrap();
    assert_eq!(
        out["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            {"type": "image", "source": {"type": "url", "url": "http://example.com/dog.webp"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
        ]}])
    );
}

#[test]
fn cache_control_hints_survive() {
    let out = translate(json!({"model": "auto", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "q"},
    ]}))
    .unwrap();
    assert_eq!(
        out["system"],
        json!([{"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}])
    );
}

#[test]
fn tools_tool_calls_and_tool_results() {
    let out = translate(json!({
        "model": "auto",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
                {"id": "call_3", "type": "function", "function": {"name": "now", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "22C"}]},
            {"role": "tool", "tool_call_id": "call_3", "content": ""},
            {"role": "user", "content": "Thanks, and in °F?"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "now"}},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false,
    }))
    .unwrap();
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
                {"type": "tool_use", "id": "call_3", "name": "now", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18C"}]},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "22C"}]},
                {"type": "tool_result", "tool_use_id": "call_3"},
                {"type": "text", "text": "Thanks, and in °F?"},
            ]},
        ])
    );
    assert_eq!(
        out["tools"],
        json!([
            {"name": "get_weather", "description": "Current weather",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        ])
    );
    assert_eq!(
        out["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
}

#[test]
fn tool_results_are_moved_before_text_in_a_merged_user_turn() {
    let out = translate(json!({"model": "auto", "messages": [
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "also this"},
        {"role": "tool", "tool_call_id": "c", "content": "done"},
    ]}))
    .unwrap();
    assert_eq!(
        out["messages"][1]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "c", "content": [{"type": "text", "text": "done"}]},
            {"type": "text", "text": "also this"},
        ])
    );
}

#[test]
fn tool_choice_table() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let cases: Vec<(Value, Option<bool>, Option<Value>)> = vec![
        (json!("auto"), None, Some(json!({"type": "auto"}))),
        (json!("none"), None, Some(json!({"type": "none"}))),
        (json!("required"), None, Some(json!({"type": "any"}))),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            None,
            Some(json!({"type": "tool", "name": "f"})),
        ),
        (Value::Null, None, None),
        (Value::Null, Some(true), None),
        (
            Value::Null,
            Some(false),
            Some(json!({"type": "auto", "disable_parallel_tool_use": true})),
        ),
        (json!("none"), Some(false), Some(json!({"type": "none"}))),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            Some(false),
            Some(json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})),
        ),
    ];
    for (choice, parallel, want) in cases {
        let mut req = json!({"model": "auto", "messages": [{"role": "user", "content": "x"}], "tools": tools,
            "tool_choice": choice});
        if let Some(p) = parallel {
            req["parallel_tool_calls"] = json!(p);
        }
        let out = translate(req).unwrap();
        assert_eq!(out.get("tool_choice"), want.as_ref(), "{choice} / {parallel:?}");
    }
    // tool_choice without tools is dropped rather than sent to an API that would reject it.
    let out = translate(
        json!({"model": "auto", "messages": [{"role": "user", "content": "x"}], "tools": [],
        "tool_choice": "auto"}),
    )
    .unwrap();
    assert!(out.get("tool_choice").is_none() && out.get("tools").is_none());
}

#[test]
fn empty_messages_are_dropped_and_neighbours_merged() {
    let out = translate(json!({"model": "auto", "messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "b"},
    ]}))
    .unwrap();
    assert_eq!(
        out["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------------------------

fn without_created(mut v: Value) -> Value {
    assert!(
        v["created"].as_u64().is_some_and(|c| c > 1_700_000_000),
        "created is a current timestamp"
    );
    v.as_object_mut().unwrap().remove("created");
    v
}

#[test]
fn text_response() {
    let resp = json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 12, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000,
                  "output_tokens": 6, "service_tier": "standard"}
    });
    let out = messages_response_to_chat(&resp, "smart").unwrap();
    assert_eq!(
        without_created(out),
        json!({
            "id": "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL",
            "object": "chat.completion",
            "model": "smart",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Hello there", "refusal": null}}],
            "usage": {"prompt_tokens": 2112, "completion_tokens": 6, "total_tokens": 2118,
                "prompt_tokens_details": {"cached_tokens": 2000},
                "completion_tokens_details": {"reasoning_tokens": 0}},
        })
    );
    assert_eq!(
        messages_usage_from_json(&resp),
        Some(Usage {
            input_tokens: 2112,
            output_tokens: 6,
            cached_input_tokens: 2000,
            cache_write_input_tokens: 100,
            reasoning_tokens: 0
        })
    );
}

#[test]
fn tool_use_and_thinking_response() {
    let resp = json!({
        "id": "msg_2", "type": "message", "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "User wants weather.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "units": "c"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 50, "output_tokens": 30}
    });
    let out = messages_response_to_chat(&resp, "m").unwrap();
    let msg = &out["choices"][0]["message"];
    assert_eq!(msg["content"], Value::Null);
    assert_eq!(msg["reasoning_content"], json!("User wants weather."));
    assert_eq!(out["choices"][0]["finish_reason"], json!("tool_calls"));
    let call = &msg["tool_calls"][0];
    assert_eq!(call["id"], json!("toolu_1"));
    assert_eq!(call["type"], json!("function"));
    assert_eq!(call["function"]["name"], json!("get_weather"));
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "units": "c"}));
    assert_eq!(out["usage"]["prompt_tokens"], json!(50));
}

#[test]
fn finish_reason_table() {
    let cases = [
        (Some("end_turn"), "stop"),
        (Some("stop_sequence"), "stop"),
        (Some("max_tokens"), "length"),
        (Some("model_context_window_exceeded"), "length"),
        (Some("tool_use"), "tool_calls"),
        (Some("refusal"), "content_filter"),
        (Some("pause_turn"), "stop"),
        (Some("something_new"), "stop"),
        (None, "stop"),
    ];
    for (reason, want) in cases {
        assert_eq!(finish_reason(reason), want, "{reason:?}");
        let resp = json!({"id": "m", "content": [{"type": "text", "text": "x"}], "stop_reason": reason});
        assert_eq!(
            messages_response_to_chat(&resp, "m").unwrap()["choices"][0]["finish_reason"],
            json!(want)
        );
    }
}

#[test]
fn malformed_responses_are_upstream_errors() {
    for bad in [
        json!(null),
        json!("text"),
        json!({"type": "error", "error": {"type": "api_error", "message": "x"}}),
        json!({"id": "m", "content": "not an array"}),
    ] {
        let err = messages_response_to_chat(&bad, "m").unwrap_err();
        assert_eq!(err.status_code(), 502, "{bad}");
        assert!(!err.is_client_error());
    }
    // Missing usage is not an error: the ledger estimates.
    let out = messages_response_to_chat(&json!({"content": []}), "m").unwrap();
    assert!(out.get("usage").is_none());
    assert_eq!(out["choices"][0]["message"]["content"], json!(""));
    assert_eq!(messages_usage_from_json(&json!({"content": []})), None);
}

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn error_body_table() {
    let cases: Vec<(u16, &[u8], Value)> = vec![
        (
            400,
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"},"request_id":"req_1"}"#,
            json!({"error": {"message": "max_tokens: too big", "type": "invalid_request_error", "param": null, "code": null}}),
        ),
        (
            401,
            br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
            json!({"error": {"message": "invalid x-api-key", "type": "authentication_error", "param": null, "code": "invalid_api_key"}}),
        ),
        (
            429,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
            json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}}),
        ),
        (
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}}),
        ),
        (
            404,
            br#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"}}"#,
            json!({"error": {"message": "model: claude-x", "type": "invalid_request_error", "param": null, "code": "not_found"}}),
        ),
        (
            502,
            b"<html>Bad gateway</html>",
            json!({"error": {"message": "the upstream provider returned HTTP 502", "type": "server_error", "param": null, "code": null}}),
        ),
        (
            403,
            b"",
            json!({"error": {"message": "the upstream provider returned HTTP 403", "type": "permission_error", "param": null, "code": null}}),
        ),
        (
            418,
            br#"{"error":"just a string"}"#,
            json!({"error": {"message": "the upstream provider returned HTTP 418", "type": "invalid_request_error", "param": null, "code": null}}),
        ),
    ];
    for (status, body, want) in cases {
        assert_eq!(
            error_body_to_openai(status, body),
            want,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let long = "é".repeat(5000);
    let body = json!({"type": "error", "error": {"type": "api_error", "message": long}}).to_string();
    let msg = error_body_to_openai(500, body.as_bytes())["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(msg.chars().count(), 2001);
}

// ---------------------------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------------------------

/// Writes Anthropic-style SSE (`event:` + `data:` lines) for a list of events.
fn anthropic_sse(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        let name = e["type"].as_str().unwrap();
        out.extend_from_slice(&crate::sse::encode_named_json(name, e));
    }
    out
}

/// Runs bytes through parser + translator in the given chunk size; returns the parsed OpenAI frames' data (JSON,
/// or the string "[DONE]") and the translator.
fn run_stream(
    bytes: &[u8],
    chunk: usize,
    include_usage: bool,
    finish: bool,
) -> (Vec<Value>, StreamTranslator) {
    let mut parser = SseParser::new();
    let mut t = StreamTranslator::new("smart", include_usage);
    let mut frames = Vec::new();
    for c in bytes.chunks(chunk.max(1)) {
        for ev in parser.push(c).unwrap() {
            frames.extend(t.push(&ev).unwrap());
        }
    }
    if let Some(ev) = parser.finish().unwrap() {
        frames.extend(t.push(&ev).unwrap());
    }
    if finish {
        frames.extend(t.finish());
    }
    // Re-parse our own output as an OpenAI client would.
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for f in &frames {
        assert!(f.ends_with(b"\n\n"), "every frame ends with a blank line");
        for ev in p.push(f).unwrap() {
            out.push(if ev.is_done() {
                json!("[DONE]")
            } else {
                ev.json().unwrap()
            });
        }
    }
    assert!(p.finish().unwrap().is_none());
    (out, t)
}

fn message_start(input: u64, cache_read: u64) -> Value {
    json!({"type": "message_start", "message": {"id": "msg_S1", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cache_read,
                  "output_tokens": 1}}})
}

fn text_stream_events() -> Vec<Value> {
    vec![
        message_start(25, 100),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ", world"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": 15}}),
        json!({"type": "message_stop"}),
    ]
}

fn strip_volatile(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if let Some(o) = f.as_object_mut() {
                assert_eq!(o.remove("id"), Some(json!("chatcmpl-msg_S1")), "stable id");
                assert!(o.remove("created").is_some_and(|c| c.is_u64()));
                assert_eq!(o.remove("object"), Some(json!("chat.completion.chunk")));
                assert_eq!(o.remove("model"), Some(json!("smart")));
            }
            f
        })
        .collect()
}

#[test]
fn text_stream_without_usage() {
    let bytes = anthropic_sse(&text_stream_events());
    let (frames, t) = run_stream(&bytes, 4096, false, true);
    let choice = |delta: Value, finish: Value| json!({"choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    assert_eq!(
        strip_volatile(&frames),
        vec![
            choice(json!({"role": "assistant", "content": ""}), Value::Null),
            choice(json!({"content": "Hello"}), Value::Null),
            choice(json!({"content": ", world"}), Value::Null),
            choice(json!({}), json!("stop")),
            json!("[DONE]"),
        ]
    );
    assert!(t.saw_stop());
    assert!(t.is_done());
    assert_eq!(t.stop_reason(), Some("end_turn"));
    assert_eq!(
        t.usage(),
        Usage {
            input_tokens: 125,
            output_tokens: 15,
            cached_input_tokens: 100,
            ..Usage::default()
        }
    );
    assert_eq!(t.generated_text(), "Hello, world");
}

#[test]
fn text_stream_with_usage_chunk() {
    let bytes = anthropic_sse(&text_stream_events());
    let (frames, mut t) = run_stream(&bytes, 4096, true, false);
    assert_eq!(frames.len(), 6);
    for f in &frames[..4] {
        assert_eq!(f["usage"], Value::Null, "content chunks carry usage: null");
        assert!(f.get("usage").is_some());
    }
    let usage_chunk = strip_volatile(&frames[4..5]).remove(0);
    assert_eq!(
        usage_chunk,
        json!({"choices": [], "usage": {"prompt_tokens": 125, "completion_tokens": 15, "total_tokens": 140,
            "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 0}}})
    );
    assert!(crate::usage::is_usage_only_chunk(&frames[4]));
    assert_eq!(frames[5], json!("[DONE]"));
    assert!(t.finish().is_empty(), "finish after message_stop adds nothing");
    assert!(t.finish().is_empty(), "finish is idempotent");
}

#[test]
fn every_chunk_size_gives_the_same_frames() {
    let bytes = anthropic_sse(&text_stream_events());
    let (whole, _) = run_stream(&bytes, bytes.len(), true, true);
    for size in 1..64 {
        let (frames, _) = run_stream(&bytes, size, true, true);
        assert_eq!(strip_created(&frames), strip_created(&whole), "chunk size {size}");
    }
}

fn strip_created(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if let Some(o) = f.as_object_mut() {
                o.remove("created");
            }
            f
        })
        .collect()
}

#[test]
fn tool_use_stream_with_split_json() {
    let events = vec![
        message_start(300, 0),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1,
               "content_block": {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"ci"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "ty\": \"Par"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "is\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2,
               "content_block": {"type": "tool_use", "id": "toolu_B", "name": "now", "input": {}}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 60}}),
        json!({"type": "message_stop"}),
    ];
    let (frames, t) = run_stream(&anthropic_sse(&events), 7, false, true);
    let deltas: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| f["choices"][0]["delta"].clone())
        .collect();
    assert_eq!(
        deltas,
        vec![
            json!({"role": "assistant", "content": ""}),
            json!({"content": "Checking."}),
            json!({"tool_calls": [{"index": 0, "id": "toolu_A", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"ci"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\": \"Par"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "is\"}"}}]}),
            json!({"tool_calls": [{"index": 1, "id": "toolu_B", "type": "function",
                "function": {"name": "now", "arguments": ""}}]}),
            json!({}),
        ]
    );
    assert_eq!(
        frames[frames.len() - 2]["choices"][0]["finish_reason"],
        json!("tool_calls")
    );
    assert_eq!(frames.last(), Some(&json!("[DONE]")));
    // The fragments of tool 0 reassemble to the full arguments.
    let args: String = deltas
        .iter()
        .filter(|d| d["tool_calls"][0]["index"] == json!(0))
        .filter_map(|d| d["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(t.usage().output_tokens, 60);
}

#[test]
fn max_tokens_stop() {
    let events = vec![
        message_start(10, 0),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Once upon"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 2}}),
        json!({"type": "message_stop"}),
    ];
    let (frames, _) = run_stream(&anthropic_sse(&events), 4096, false, true);
    let finishes: Vec<&Value> = frames.iter().map(|f| &f["choices"][0]["finish_reason"]).collect();
    assert_eq!(finishes.iter().filter(|f| !f.is_null()).count(), 1);
    assert_eq!(
        frames[frames.len() - 2]["choices"][0]["finish_reason"],
        json!("length")
    );
}

#[test]
fn thinking_stream_maps_to_reasoning_content() {
    let events = vec![
        message_start(10, 0),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "42"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "server_tool_use", "id": "s",
               "name": "web_search", "input": {}}}),
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        json!({"type": "content_block_stop", "index": 2}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
        json!({"type": "message_stop"}),
    ];
    let (frames, _) = run_stream(&anthropic_sse(&events), 4096, false, true);
    let deltas: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| f["choices"][0]["delta"].clone())
        .collect();
    assert_eq!(
        deltas,
        vec![
            json!({"role": "assistant", "content": ""}),
            json!({"reasoning_content": "Hmm."}),
            json!({"content": "42"}),
            json!({}),
        ]
    );
}

#[test]
fn error_mid_stream() {
    let mut events = text_stream_events();
    events.truncate(4);
    events.push(json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
    events.push(
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "late"}}),
    );
    let (frames, mut t) = run_stream(&anthropic_sse(&events), 4096, true, true);
    assert_eq!(frames.len(), 3, "{frames:#?}");
    assert_eq!(
        frames[2],
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}})
    );
    assert!(!t.saw_stop());
    assert!(t.is_done());
    assert!(t.finish().is_empty(), "no [DONE] after an error frame");
    assert_eq!(
        t.usage().input_tokens,
        125,
        "input charged even though the stream failed"
    );
}

#[test]
fn cut_before_message_stop() {
    let mut events = text_stream_events();
    events.truncate(4);
    let mut bytes = anthropic_sse(&events);
    // A half-written frame at the cut.
    bytes.extend_from_slice(b"event: content_block_delta\ndata: {\"type\":\"content_bl");
    let mut parser = SseParser::new();
    let mut t = StreamTranslator::new("smart", true);
    let mut frames = Vec::new();
    for ev in parser.push(&bytes).unwrap() {
        frames.extend(t.push(&ev).unwrap());
    }
    let tail = parser.finish().unwrap().unwrap();
    assert!(
        t.push(&tail).is_err(),
        "a truncated JSON frame is reported, not swallowed"
    );
    assert!(!t.saw_stop());
    assert_eq!(
        t.usage(),
        Usage {
            input_tokens: 125,
            output_tokens: 1,
            cached_input_tokens: 100,
            ..Usage::default()
        }
    );
    assert_eq!(t.generated_text(), "Hello");
    let end = t.finish();
    assert_eq!(end.len(), 2, "usage chunk then [DONE]");
    assert_eq!(&end[1][..], crate::sse::DONE_FRAME);
    assert!(t.finish().is_empty());
    assert!(t.abort("late").is_empty());
}

#[test]
fn abort_emits_one_error_frame() {
    let mut t = StreamTranslator::new("smart", false);
    t.push_json(&message_start(1, 0));
    let out = t.abort("upstream timed out");
    assert_eq!(out.len(), 1);
    let v: Value = serde_json::from_slice(out[0].strip_prefix(b"data: ").unwrap()).unwrap();
    assert_eq!(v["error"]["code"], json!("upstream_stream_interrupted"));
    assert!(t.finish().is_empty());
}

#[test]
fn content_before_message_start_still_gets_role_and_an_id() {
    let mut t = StreamTranslator::new("smart", false);
    let mut out = t.push_json(&json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "text", "text": "Hi"}}));
    out.extend(t.finish());
    let first: Value = serde_json::from_slice(out[0].strip_prefix(b"data: ").unwrap()).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], json!("assistant"));
    let second: Value = serde_json::from_slice(out[1].strip_prefix(b"data: ").unwrap()).unwrap();
    assert_eq!(second["choices"][0]["delta"]["content"], json!("Hi"));
    assert_eq!(first["id"], second["id"]);
    assert!(first["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(t.reported_usage(), None);
}

#[test]
fn messages_stream_usage_accumulator() {
    let events = vec![
        message_start(40, 1000),
        json!({"type": "message_delta", "delta": {"stop_reason": null}, "usage": {"output_tokens": 10}}),
        // Newer API versions repeat (cumulative) input counts in message_delta; they must not be double-counted.
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
               "usage": {"input_tokens": 40, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 0,
                         "output_tokens": 25}}),
        json!({"type": "message_stop"}),
    ];
    let mut parser = SseParser::new();
    let mut acc = MessagesStreamUsage::new();
    for ev in parser.push(&anthropic_sse(&events)).unwrap() {
        acc.push(&ev);
        if acc.saw_message_stop() {
            break;
        }
    }
    assert_eq!(
        acc.usage(),
        Some(Usage {
            input_tokens: 1040,
            output_tokens: 25,
            cached_input_tokens: 1000,
            ..Usage::default()
        })
    );
    assert_eq!(acc.stop_reason(), Some("end_turn"));
    assert!(acc.saw_message_stop());
    assert_eq!(MessagesStreamUsage::new().usage(), None);
}

#[test]
fn anthropic_usage_object_table() {
    let cases = vec![
        (
            json!({"input_tokens": 5, "output_tokens": 2}),
            Some(Usage {
                input_tokens: 5,
                output_tokens: 2,
                ..Usage::default()
            }),
        ),
        (
            json!({"input_tokens": 5, "cache_creation_input_tokens": 7, "output_tokens": 0}),
            Some(Usage {
                input_tokens: 12,
                cache_write_input_tokens: 7,
                ..Usage::default()
            }),
        ),
        (
            json!({"input_tokens": null, "cache_read_input_tokens": null, "output_tokens": 3}),
            Some(Usage {
                output_tokens: 3,
                ..Usage::default()
            }),
        ),
        (json!({}), None),
        (json!([]), None),
        (json!(7), None),
    ];
    for (u, want) in cases {
        assert_eq!(usage_from_anthropic_usage(&u), want, "{u}");
    }
}

#[test]
fn garbage_events_never_panic() {
    let garbage = [
        json!(null),
        json!([]),
        json!({"type": 5}),
        json!({"type": "content_block_start"}),
        json!({"type": "content_block_start", "index": "x", "content_block": 3}),
        json!({"type": "content_block_delta", "index": 0}),
        json!({"type": "content_block_delta", "index": 99, "delta": {"type": "text_delta", "text": "x"}}),
        json!({"type": "message_delta", "delta": null, "usage": "lots"}),
        json!({"type": "message_start", "message": {"usage": {"input_tokens": -1}}}),
        json!({"type": "error"}),
    ];
    let mut t = StreamTranslator::new("m", true);
    for g in &garbage {
        let _ = t.push_json(g);
    }
    let _ = t.finish();
}

proptest::proptest! {
    #[test]
    fn random_bytes_through_parser_and_translator_never_panic(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
    ) {
        let mut parser = SseParser::with_max_frame_bytes(1024);
        let mut t = StreamTranslator::new("m", true);
        let mut acc = MessagesStreamUsage::new();
        if let Ok(evs) = parser.push(&data) {
            for ev in evs {
                let _ = t.push(&ev);
                acc.push(&ev);
            }
        }
        let _ = t.finish();
        let _ = acc.usage();
        let _ = error_body_to_openai(500, &data);
    }

    #[test]
    fn random_event_sequences_never_panic(
        picks in proptest::collection::vec(0usize..14, 0..40),
    ) {
        let pool = [
            message_start(3, 1),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}}),
            json!({"type": "message_stop"}),
            json!({"type": "ping"}),
            json!({"type": "error", "error": {"type": "api_error", "message": "x"}}),
            json!({"type": "unknown_future_event"}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "t"}}),
        ];
        let mut t = StreamTranslator::new("m", true);
        let mut dones = 0;
        for i in picks {
            for f in t.push_json(&pool[i]) {
                if &f[..] == crate::sse::DONE_FRAME { dones += 1; }
            }
        }
        for f in t.finish() {
            if &f[..] == crate::sse::DONE_FRAME { dones += 1; }
        }
        proptest::prop_assert!(dones <= 1, "at most one [DONE]");
        proptest::prop_assert!(t.is_done());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Fixtures (tests/fixtures/anthropic)
// ---------------------------------------------------------------------------------------------------------------

const FIX_STREAM_TEXT: &[u8] = include_bytes!("../../../tests/fixtures/anthropic/stream_text.sse");
const FIX_STREAM_TOOL: &[u8] = include_bytes!("../../../tests/fixtures/anthropic/stream_tool_use.sse");
const FIX_STREAM_ERROR: &[u8] =
    include_bytes!("../../../tests/fixtures/anthropic/stream_error_overloaded.sse");
const FIX_MESSAGE_TEXT: &[u8] = include_bytes!("../../../tests/fixtures/anthropic/message_text.json");
const FIX_MESSAGE_TOOL: &[u8] = include_bytes!("../../../tests/fixtures/anthropic/message_tool_use.json");
const FIX_ERROR_429: &[u8] = include_bytes!("../../../tests/fixtures/anthropic/error_rate_limit.json");

#[test]
fn fixture_stream_text() {
    let (frames, t) = run_stream(FIX_STREAM_TEXT, 13, true, true);
    let text: String = frames
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["content"].as_str())
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(text, "The capital of France is Paris — \"la Ville Lumière\".\n");
    assert_eq!(frames.last(), Some(&json!("[DONE]")));
    let usage = &frames[frames.len() - 2]["usage"];
    assert_eq!(usage["prompt_tokens"], json!(472 + 1840));
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], json!(1840));
    assert_eq!(usage["completion_tokens"], json!(17));
    assert!(t.saw_stop());
    // Every frame shares one id derived from Anthropic's message id.
    let ids: std::collections::BTreeSet<&str> = frames.iter().filter_map(|f| f["id"].as_str()).collect();
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        vec!["chatcmpl-msg_01TXa6vR1c2oW1vYtWyAc3Hq"]
    );

    // The passthrough accumulator reads the same numbers from the raw Messages stream.
    let mut p = SseParser::new();
    let mut acc = MessagesStreamUsage::new();
    for ev in p.push(FIX_STREAM_TEXT).unwrap() {
        acc.push(&ev);
    }
    assert_eq!(acc.usage(), Some(t.usage()));
    assert!(acc.saw_message_stop());
}

#[test]
fn fixture_stream_tool_use() {
    let (frames, t) = run_stream(FIX_STREAM_TOOL, 5, false, true);
    let args: String = frames
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
    );
    let first_call = frames
        .iter()
        .find(|f| f["choices"][0]["delta"]["tool_calls"][0]["id"].is_string())
        .unwrap();
    assert_eq!(
        first_call["choices"][0]["delta"]["tool_calls"][0],
        json!({"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
               "function": {"name": "get_weather", "arguments": ""}})
    );
    assert_eq!(
        frames[frames.len() - 2]["choices"][0]["finish_reason"],
        json!("tool_calls")
    );
    assert_eq!(
        t.usage(),
        Usage {
            input_tokens: 472,
            output_tokens: 89,
            ..Usage::default()
        }
    );
}

#[test]
fn fixture_stream_error() {
    let (frames, t) = run_stream(FIX_STREAM_ERROR, 64, true, true);
    assert_eq!(frames.last().unwrap()["error"]["code"], json!("overloaded"));
    assert!(!frames.contains(&json!("[DONE]")));
    assert!(!t.saw_stop());
    assert_eq!(
        t.usage(),
        Usage {
            input_tokens: 1200,
            output_tokens: 1,
            ..Usage::default()
        }
    );
}

#[test]
fn fixture_messages() {
    let text: Value = serde_json::from_slice(FIX_MESSAGE_TEXT).unwrap();
    let out = messages_response_to_chat(&text, "claude-sonnet").unwrap();
    assert_eq!(
        out["choices"][0]["message"]["content"],
        json!("Hi! My name is Claude.")
    );
    assert_eq!(out["usage"]["prompt_tokens"], json!(2095 + 2048));
    assert_eq!(
        messages_usage_from_json(&text),
        Some(Usage {
            input_tokens: 4143,
            output_tokens: 503,
            cached_input_tokens: 0,
            cache_write_input_tokens: 2048,
            reasoning_tokens: 0
        })
    );
    assert_eq!(
        messages_usage_from_json(&text).unwrap().uncached_input_tokens(),
        2095
    );

    let tool: Value = serde_json::from_slice(FIX_MESSAGE_TOOL).unwrap();
    let out = messages_response_to_chat(&tool, "claude-haiku").unwrap();
    assert_eq!(out["choices"][0]["finish_reason"], json!("tool_calls"));
    assert_eq!(
        out["choices"][0]["message"]["content"],
        json!("I'll check the current weather in San Francisco for you.")
    );
    assert_eq!(
        out["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        json!("get_weather")
    );

    let err = error_body_to_openai(429, FIX_ERROR_429);
    assert_eq!(err["error"]["type"], json!("rate_limit_error"));
    assert!(
        !err.to_string().contains("req_011"),
        "upstream request ids are not echoed"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// No panics on arbitrary JSON
// ---------------------------------------------------------------------------------------------------------------

mod arbitrary {
    use super::*;
    use proptest::prelude::*;

    /// Keys and strings drawn from the vocabulary the translators look at, so random documents reach deep paths.
    const WORDS: &[&str] = &[
        "role",
        "content",
        "type",
        "text",
        "image_url",
        "url",
        "tool_calls",
        "id",
        "function",
        "name",
        "arguments",
        "tool_call_id",
        "messages",
        "tools",
        "tool_choice",
        "stop",
        "max_tokens",
        "n",
        "user",
        "input",
        "index",
        "delta",
        "partial_json",
        "usage",
        "stop_reason",
        "message",
        "content_block",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "parameters",
        "file",
        "file_data",
        "system",
        "assistant",
        "tool",
        "developer",
        "auto",
        "required",
        "none",
        "tool_use",
        "text_delta",
        "input_json_delta",
        "thinking",
        "thinking_delta",
        "message_start",
        "content_block_start",
        "content_block_delta",
        "message_delta",
        "message_stop",
        "error",
        "temperature",
        "response_format",
        "json_object",
        "data:image/png;base64,AA",
        "data:application/pdf;base64,AA",
        "https://x.test/a.png",
        "{}",
        "{\"a\":1}",
        "",
        " ",
    ];

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![4 => proptest::sample::select(WORDS).prop_map(str::to_owned), 1 => ".{0,6}"]
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..5000).prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            word().prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map(word(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn translators_never_panic(v in arb_json(), msgs in proptest::collection::vec(arb_json(), 0..4)) {
            if let Value::Object(m) = &v {
                let _ = chat_request_to_messages(m, "m");
                let mut with_msgs = m.clone();
                with_msgs.insert("messages".into(), Value::Array(msgs.clone()));
                let _ = chat_request_to_messages(&with_msgs, "m");
            }
            let _ = messages_response_to_chat(&v, "m");
            let _ = messages_usage_from_json(&v);
            let _ = error_object_to_openai(&v, Some(500));
            let _ = crate::usage::Usage::from_openai_json(&v);
            let _ = crate::usage::is_usage_only_chunk(&v);
            let mut t = StreamTranslator::new("m", true);
            let _ = t.push_json(&v);
            for m in &msgs {
                let _ = t.push_json(m);
            }
            let _ = t.finish();
            let _ = t.usage();
        }
    }
}
