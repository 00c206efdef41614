//! Integration tests of the proxy core: every endpoint and error path, against the in-process mock upstream,
//! on both store backends (SQLite and the real Postgres).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed assertion with its message"
)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::client::{get, open, post_json, read_body, send};
use common::mock::{Behavior, MockUpstream};
use common::proxy::{Db, TestProxy, UPSTREAM_KEY};
use common::sse::{openai_stream_text, parse_sse};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// Runs one test body against SQLite and against Postgres.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(Db::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(Db::Postgres).await }
        }
    )*};
}

/// Gathering a burst depends on which task runs next: on one worker thread (a proxy pinned to one core, as the
/// benchmarks run it) the upstream connection's task always runs before the stream's yield returns. With more, an
/// idle worker may steal the yielded stream and split a batch (seen here: 18 writes for 42 events once in three
/// runs on two workers), so this test runs the proxy on one.
mod a_burst_of_frames_goes_out_in_a_few_writes_and_spaced_frames_one_by_one {
    use super::*;
    #[tokio::test(flavor = "current_thread")]
    async fn sqlite() {
        super::a_burst_of_frames_goes_out_in_a_few_writes_and_spaced_frames_one_by_one(Db::Sqlite).await
    }
    #[tokio::test(flavor = "current_thread")]
    async fn postgres() {
        super::a_burst_of_frames_goes_out_in_a_few_writes_and_spaced_frames_one_by_one(Db::Postgres).await
    }
}

on_both_stores!(
    chat_passthrough_keeps_unknown_fields_and_rewrites_model,
    a_body_that_needs_no_rewrite_reaches_the_upstream_byte_for_byte,
    streaming_removes_the_usage_chunk_the_client_did_not_ask_for,
    streaming_keeps_the_usage_chunk_the_client_asked_for,
    auth_errors_use_openai_shape,
    revoked_key_stops_working_within_seconds,
    request_errors_use_openai_shape,
    upstream_errors_map_to_gateway_statuses,
    anthropic_deployments_translate_chat,
    anthropic_messages_endpoint_passes_through,
    embeddings_completions_and_models,
    client_disconnect_mid_stream_cancels_upstream,
    upstream_dying_mid_stream_reaches_the_client_as_an_error,
    a_stream_that_stalls_ends_with_an_error_one_idle_timeout_after_its_last_data,
    graceful_shutdown_lets_streams_finish,
    fallback_deployment_serves_when_the_first_is_down,
    azure_deployments_use_api_version_and_api_key,
    missing_usage_is_counted_locally_and_flagged,
    exhausted_budget_downgrades_when_the_policy_says_so,
    state_gauges_report_budget_use_and_ledger_health,
    health_and_admin_endpoints,
);

fn bearer(p: &TestProxy) -> (&'static str, String) {
    ("authorization", p.auth())
}

async fn chat_passthrough_keeps_unknown_fields_and_rewrites_model(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    let auth = p.auth();
    let r = post_json(
        &format!("{}/v1/chat/completions", p.url),
        &[("authorization", &auth), ("x-request-id", "client-id-42")],
        &json!({
            "model": "small",
            "messages": [{"role": "user", "content": "hello there proxy"}],
            "x_vendor_extension": {"keep": [1, 2, 3]},
            "temperature": 0.3
        }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("client-id-42"));
    assert_eq!(r.header("x-switchyard-model"), Some("small"));
    assert!(r.header("x-switchyard-overhead-ms").is_some());
    let body = r.json();
    assert_eq!(body["object"], "chat.completion");
    // The upstream's own answer reaches the client unchanged (including the model id the provider reported).
    assert_eq!(body["model"], "small-upstream-id");
    assert_eq!(body["usage"]["prompt_tokens"], 3);

    let seen = upstream.last_request();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.model(), Some("small-upstream-id"));
    assert_eq!(
        seen.bearer(),
        Some(UPSTREAM_KEY),
        "the deployment's key, never the client's"
    );
    assert_eq!(seen.body["x_vendor_extension"], json!({"keep": [1, 2, 3]}));
    assert_eq!(seen.body["temperature"], json!(0.3));
    assert!(
        seen.body.get("stream_options").is_none(),
        "non-stream requests are not given stream_options"
    );

    // Without a client id, one is generated.
    let r = post_json(
        &format!("{}/v1/chat/completions", p.url),
        &[("authorization", &auth)],
        &json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert!(r.header("x-request-id").is_some_and(|id| id.starts_with("req_")));
    p.stop().await;
}

async fn streaming_removes_the_usage_chunk_the_client_did_not_ask_for(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    let r = p.post("/v1/chat/completions", &json!({"model": "small", "stream": true, "messages": [{"role": "user", "content": "count to eight"}]})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("x-switchyard-model"), Some("small"));
    let events = parse_sse(&r.text());
    assert!(
        events.last().is_some_and(|e| e.is_done()),
        "stream ends with [DONE]"
    );
    assert!(!openai_stream_text(&events).is_empty());
    let usage_chunks = events
        .iter()
        .filter(|e| !e.is_done())
        .filter(|e| e.json()["choices"].as_array().is_some_and(|c| c.is_empty()))
        .count();
    assert_eq!(
        usage_chunks, 0,
        "the usage-only chunk Switchyard asked for is removed"
    );
    // Switchyard asked the upstream for usage so the ledger is exact.
    assert_eq!(
        upstream.last_request().body["stream_options"]["include_usage"],
        true
    );
    p.stop().await;
}

async fn streaming_keeps_the_usage_chunk_the_client_asked_for(db: Db) {
    let (_upstream, p) = TestProxy::with_mock(db).await;
    let r = p
        .post(
            "/v1/chat/completions",
            &json!({"model": "small", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "one two three four"}]}),
        )
        .await;
    let events = parse_sse(&r.text());
    let usage: Vec<Value> = events
        .iter()
        .filter(|e| !e.is_done())
        .map(|e| e.json())
        .filter(|j| j["choices"].as_array().is_some_and(|c| c.is_empty()))
        .collect();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["usage"]["prompt_tokens"], 4);
    assert_eq!(usage[0]["usage"]["completion_tokens"], 8);
    p.stop().await;
}

/// Streams a chat answer through the proxy and returns what the client received: the HTTP body frames as they
/// arrived (one per chunk of the chunked encoding), each with its arrival time since the request was sent.
async fn stream_frames(p: &TestProxy) -> Vec<(Duration, Bytes)> {
    let body = json!({"model": "small", "stream": true, "messages": [{"role": "user", "content": "go"}]});
    let started = std::time::Instant::now();
    let resp = open(
        Method::POST,
        &format!("{}/v1/chat/completions", p.url),
        &[("authorization", &p.auth()), ("content-type", "application/json")],
        Bytes::from(body.to_string()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("no body error").into_data() {
            frames.push((started.elapsed(), data));
        }
    }
    frames
}

/// The frames' bytes as one text.
fn joined(frames: &[(Duration, Bytes)]) -> String {
    frames.iter().map(|(_, f)| String::from_utf8_lossy(f)).collect()
}

/// An upstream that answers every request with one `write` holding the whole stream: the response head and one
/// chunk of the chunked encoding per SSE frame (`words` content chunks, the finish chunk, the usage chunk Switchyard
/// asked for, `[DONE]`). A provider that bursts, made deterministic: the in-process mock writes frame by frame.
async fn burst_upstream(words: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut frames: Vec<Value> = (0..words)
        .map(|i| json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                        "choices": [{"index": 0, "delta": {"content": format!("w{i} ")}, "finish_reason": null}]}))
        .collect();
    frames.push(
        json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    );
    frames.push(
        json!({"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [],
                       "usage": {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": words + 1}}),
    );
    let mut response =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    let sse = frames
        .iter()
        .map(|f| format!("data: {f}\n\n"))
        .chain(["data: [DONE]\n\n".to_owned()]);
    for frame in sse {
        response.extend_from_slice(format!("{:x}\r\n{frame}\r\n", frame.len()).as_bytes());
    }
    response.extend_from_slice(b"0\r\n\r\n");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // One request per connection: its head, then as many body bytes as it announces.
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

async fn a_burst_of_frames_goes_out_in_a_few_writes_and_spaced_frames_one_by_one(db: Db) {
    // 40 words (about 5 KB) in one upstream write: the proxy has them all at hand at once and writes them together.
    let p = TestProxy::start(&burst_upstream(40).await, db).await;
    let frames = stream_frames(&p).await;
    let text = joined(&frames);
    let events = parse_sse(&text);
    assert!(events.last().is_some_and(|e| e.is_done()), "{text}");
    let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    assert_eq!(
        openai_stream_text(&events).split_whitespace().collect::<Vec<_>>(),
        words
    );
    assert!(
        !text.contains("prompt_tokens"),
        "the usage chunk the client did not ask for is still removed"
    );
    assert!(
        frames.len() * 4 < events.len(),
        "{} events reached the client in {} writes",
        events.len(),
        frames.len()
    );
    p.stop().await;

    // Words 30 ms apart: each goes out when it comes, not held back for the next.
    let (upstream, p) = TestProxy::with_mock(db).await;
    upstream.push_behavior(Behavior::ok().chunks(5).chunk_delay_ms(30));
    let frames = stream_frames(&p).await;
    let text = joined(&frames);
    let events = parse_sse(&text);
    assert_eq!(openai_stream_text(&events).split_whitespace().count(), 5);
    let content_frames = frames
        .iter()
        .filter(|(_, f)| {
            parse_sse(&String::from_utf8_lossy(f)).iter().any(|e| {
                !e.is_done()
                    && e.json()["choices"][0]["delta"]["content"]
                        .as_str()
                        .is_some_and(|c| !c.is_empty())
            })
        })
        .count();
    assert_eq!(content_frames, 5, "each word in its own write: {frames:?}");
    p.stop().await;
}

fn assert_openai_error(body: &Value, code: Option<&str>) {
    let e = &body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(e["type"].is_string(), "{body}");
    assert!(
        e.as_object()
            .is_some_and(|o| o.contains_key("param") && o.contains_key("code")),
        "{body}"
    );
    if let Some(code) = code {
        assert_eq!(e["code"], code, "{body}");
    }
}

async fn auth_errors_use_openai_shape(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    let url = format!("{}/v1/chat/completions", p.url);
    let body = json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&url, &[], &body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_openai_error(&r.json(), Some("invalid_api_key"));
    let r = post_json(&url, &[("authorization", "Bearer sy-notakey")], &body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_openai_error(&r.json(), Some("invalid_api_key"));
    assert!(
        !r.text().contains("sy-notakey"),
        "the presented key is never echoed"
    );
    // Anthropic clients authenticate with x-api-key.
    let r = post_json(&url, &[("x-api-key", &p.key)], &body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        upstream.counters().requests,
        1,
        "refused requests never reach the upstream"
    );
    p.stop().await;
}

async fn revoked_key_stops_working_within_seconds(db: Db) {
    let (_upstream, p) = TestProxy::with_mock(db).await;
    let new = p
        .state
        .store
        .create_key("bob", "marketing", Some("laptop"))
        .await
        .unwrap();
    let url = format!("{}/v1/models", p.url);
    let auth = format!("Bearer {}", new.plaintext);
    assert_eq!(
        get(&url, &[("authorization", &auth)]).await.status,
        StatusCode::OK
    );
    p.state.store.revoke_key(&new.record.prefix).await.unwrap();
    let revoked_at = std::time::Instant::now();
    loop {
        let r = get(&url, &[("authorization", &auth)]).await;
        if r.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(4),
            "revoked key still accepted after 4 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.stop().await;
}

async fn request_errors_use_openai_shape(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    let (h, v) = bearer(&p);
    let url = format!("{}/v1/chat/completions", p.url);

    let r = send(
        Method::POST,
        &url,
        &[(h, &v), ("content-type", "application/json")],
        Bytes::from("{not json"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_openai_error(&r.json(), None);

    let r = post_json(&url, &[(h, &v)], &json!({"messages": []})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["param"], "model");

    let r = post_json(&url, &[(h, &v)], &json!({"model": "gpt-9000", "messages": []})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_openai_error(&r.json(), Some("model_not_found"));

    let big = "x".repeat(70_000);
    let r = post_json(
        &url,
        &[(h, &v)],
        &json!({"model": "small", "messages": [{"role": "user", "content": big}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_openai_error(&r.json(), Some("request_too_large"));

    let r = get(&format!("{}/v1/nope", p.url), &[(h, &v)]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_openai_error(&r.json(), None);

    let r = get(&url, &[(h, &v)]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_openai_error(&r.json(), None);

    assert_eq!(upstream.counters().requests, 0);
    p.stop().await;
}

async fn upstream_errors_map_to_gateway_statuses(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    let (h, v) = bearer(&p);
    let url = format!("{}/v1/chat/completions", p.url);
    let body = json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]});

    // A 4xx from the provider passes through with its own body.
    upstream.push_behavior(Behavior::error(400));
    let r = post_json(&url, &[(h, &v)], &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_openai_error(&r.json(), None);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");

    // A 429 keeps its retry-after for the client's backoff.
    upstream.push_behavior(Behavior::error(429).retry_after(7));
    let r = post_json(&url, &[(h, &v)], &body).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("7"));

    // The provider refusing the deployment's key is Switchyard's problem, not the caller's: 502, not 401.
    upstream.push_behavior(Behavior::error(401));
    let r = post_json(&url, &[(h, &v)], &body).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_openai_error(&r.json(), None);

    // 5xx becomes 502 in our shape.
    upstream.push_behavior(Behavior::error(500));
    let r = post_json(&url, &[(h, &v)], &body).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_openai_error(&r.json(), None);
    assert_eq!(r.json()["error"]["type"], "upstream_error");

    // A hanging upstream becomes 504 after the first-byte timeout.
    upstream.push_behavior(Behavior::ok().hang());
    let r = post_json(&url, &[(h, &v)], &body).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_openai_error(&r.json(), Some("timeout"));

    // A deployment whose key variable is unset fails clearly, naming the variable but no secret.
    let r = post_json(
        &url,
        &[(h, &v)],
        &json!({"model": "nokey", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.text().contains("TEST_NOT_SET"), "{}", r.text());
    assert!(!r.text().contains(UPSTREAM_KEY));
    p.stop().await;
}

async fn anthropic_deployments_translate_chat(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    let (h, v) = bearer(&p);
    let url = format!("{}/v1/chat/completions", p.url);
    let r = post_json(
        &url,
        &[(h, &v)],
        &json!({"model": "claude", "max_tokens": 100, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "three word prompt"}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 5, "system + user words");
    let seen = upstream.last_request();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some(UPSTREAM_KEY));
    assert!(seen.header("anthropic-version").is_some());
    assert_eq!(seen.body["model"], "claude-sonnet-upstream");
    assert!(
        seen.body["system"].to_string().contains("Be brief."),
        "{}",
        seen.body
    );
    assert!(
        seen.body["messages"]
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m["role"] != "system"))
    );

    // Streaming: Anthropic events become chat.completion.chunk frames ending in [DONE].
    let r = post_json(
        &url,
        &[(h, &v)],
        &json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "stream please"}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let events = parse_sse(&r.text());
    assert!(events.last().is_some_and(|e| e.is_done()));
    assert!(!openai_stream_text(&events).is_empty());
    let chunks: Vec<Value> = events.iter().filter(|e| !e.is_done()).map(|e| e.json()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert!(chunks.iter().any(|c| c["usage"]["prompt_tokens"] == 2));

    // Provider errors are translated into OpenAI's shape.
    upstream.push_behavior(Behavior::error(400));
    let r = post_json(
        &url,
        &[(h, &v)],
        &json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_openai_error(&r.json(), None);

    // What Anthropic cannot do is refused before any call, naming the parameter.
    let r = post_json(
        &url,
        &[(h, &v)],
        &json!({"model": "claude", "n": 3, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["param"], "n");
    p.stop().await;
}

async fn anthropic_messages_endpoint_passes_through(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    let url = format!("{}/v1/messages", p.url);
    let key = p.key.clone();
    let headers = [
        ("x-api-key", key.as_str()),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "test-beta"),
    ];
    let r = post_json(
        &url,
        &headers,
        &json!({"model": "claude", "max_tokens": 50, "messages": [{"role": "user", "content": "hi there"}], "metadata": {"user_id": "u1"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["type"], "message");
    assert_eq!(r.header("x-switchyard-model"), Some("claude"));
    let seen = upstream.last_request();
    assert_eq!(seen.body["model"], "claude-sonnet-upstream");
    assert_eq!(seen.body["metadata"]["user_id"], "u1");
    assert_eq!(seen.header("anthropic-beta"), Some("test-beta"));

    let r = post_json(&url, &headers, &json!({"model": "claude", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await;
    let events = parse_sse(&r.text());
    assert_eq!(
        events.first().map(|e| e.event.clone()),
        Some(Some("message_start".to_owned()))
    );
    assert_eq!(
        events.last().map(|e| e.event.clone()),
        Some(Some("message_stop".to_owned()))
    );

    // A model not served by Anthropic cannot be used on this endpoint.
    let r = post_json(
        &url,
        &headers,
        &json!({"model": "small", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    p.stop().await;
}

async fn embeddings_completions_and_models(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    let (h, v) = bearer(&p);
    let r = p
        .post("/v1/embeddings", &json!({"model": "embed", "input": "a b c"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["object"], "list");
    assert_eq!(upstream.last_request().path, "/v1/embeddings");

    let r = p
        .post(
            "/v1/completions",
            &json!({"model": "small", "prompt": "once upon"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(upstream.last_request().path, "/v1/completions");

    let r = get(&format!("{}/v1/models", p.url), &[(h, &v)]).await;
    assert_eq!(r.status, StatusCode::OK);
    let ids: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    for id in ["auto", "small", "big", "claude", "embed"] {
        assert!(ids.contains(&id.to_owned()), "{ids:?}");
    }
    let r = get(&format!("{}/v1/models/big", p.url), &[(h, &v)]).await;
    assert_eq!(r.json()["id"], "big");
    assert_eq!(
        get(&format!("{}/v1/models/none", p.url), &[(h, &v)]).await.status,
        StatusCode::NOT_FOUND
    );
    p.stop().await;
}

async fn client_disconnect_mid_stream_cancels_upstream(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    let auth = p.auth();
    let body =
        json!({"model": "small", "stream": true, "messages": [{"role": "user", "content": "long story"}]});
    upstream.push_behavior(Behavior::ok().chunk_delay_ms(50).chunks(200));
    let resp = open(
        Method::POST,
        &format!("{}/v1/chat/completions", p.url),
        &[("authorization", &auth), ("content-type", "application/json")],
        Bytes::from(body.to_string()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.expect("a first frame").expect("no error");
    assert!(first.data_ref().is_some());
    drop(body);
    // The proxy drops its upstream stream too, so the provider stops generating (and billing).
    tokio::time::timeout(Duration::from_secs(5), upstream.wait_for_cancelled_streams(1))
        .await
        .expect("upstream stream cancelled after the client left");
    let cancelled = |m: &str| {
        m.lines()
            .any(|l| l.starts_with("switchyard_requests_total") && l.contains("status=\"cancelled\""))
    };
    let metrics = p.metrics_when(cancelled).await;
    assert!(cancelled(&metrics), "{metrics}");
    p.stop().await;
}

async fn upstream_dying_mid_stream_reaches_the_client_as_an_error(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    upstream.push_behavior(Behavior::ok().drop_after(3));
    let r = p
        .post(
            "/v1/chat/completions",
            &json!({"model": "small", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let events = parse_sse(&r.text());
    assert!(!events.iter().any(|e| e.is_done()), "no [DONE] after a failure");
    let last = events.last().expect("events").json();
    assert_openai_error(&last, None);
    let failed = |m: &str| m.lines().any(|l| l.contains("status=\"failed\""));
    let metrics = p.metrics_when(failed).await;
    assert!(failed(&metrics), "{metrics}");
    p.stop().await;
}

async fn a_stream_that_stalls_ends_with_an_error_one_idle_timeout_after_its_last_data(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    // A word every 300 ms for longer than the deployment's 2 s first-byte (idle) timeout, then silence with the
    // connection left open.
    upstream.push_behavior(Behavior::ok().chunks(20).chunk_delay_ms(300).stall_after(10));
    let frames = tokio::time::timeout(Duration::from_secs(10), stream_frames(&p))
        .await
        .expect("the proxy ends a stalled stream");
    let text = joined(&frames);
    let ended = frames.last().expect("frames").0;
    let last_data = frames
        .iter()
        .rev()
        .find(|(_, f)| !String::from_utf8_lossy(f).contains("\"error\""))
        .expect("data before the error")
        .0;
    let events = parse_sse(&text);
    assert!(!events.iter().any(|e| e.is_done()), "{text}");
    assert_openai_error(&events.last().expect("events").json(), None);
    assert!(
        openai_stream_text(&events).split_whitespace().count() >= 8,
        "what came before the stall reached the client: {text}"
    );
    // Data kept the stream alive past the first 2 s; silence ended it about 2 s after the last data.
    assert!(
        last_data > Duration::from_millis(2300),
        "last data at {last_data:?}"
    );
    let silence = ended - last_data;
    assert!(
        silence >= Duration::from_millis(1900) && silence < Duration::from_millis(3500),
        "ended {silence:?} after the last data"
    );
    let failed = |m: &str| m.lines().any(|l| l.contains("status=\"failed\""));
    let metrics = p.metrics_when(failed).await;
    assert!(failed(&metrics), "{metrics}");
    p.stop().await;
}

async fn graceful_shutdown_lets_streams_finish(db: Db) {
    let upstream = MockUpstream::builder().api_key(UPSTREAM_KEY).start().await;
    let mut p = TestProxy::start(&upstream.url(), db).await;
    let auth = p.auth();
    let url = format!("{}/v1/chat/completions", p.url);
    let body = json!({"model": "small", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    upstream.push_behavior(Behavior::ok().chunk_delay_ms(40).chunks(20));
    let resp = open(
        Method::POST,
        &url,
        &[("authorization", &auth), ("content-type", "application/json")],
        Bytes::from(body.to_string()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let started = std::time::Instant::now();
    let server = p.begin_shutdown();
    let r = read_body(resp).await;
    assert!(r.body_error.is_none(), "{:?}", r.body_error);
    let events = parse_sse(&r.text());
    assert!(
        events.last().is_some_and(|e| e.is_done()),
        "the in-flight stream finished"
    );
    assert_eq!(
        openai_stream_text(&events).split_whitespace().count(),
        20,
        "every chunk arrived"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the stream really was in flight during shutdown"
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stopped")
        .unwrap()
        .unwrap();
    // New connections are refused once the server has stopped.
    let refused = common::client::client()
        .request(
            http::Request::get(format!("{}/healthz", p.url))
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert!(refused.is_err());
}

async fn a_body_that_needs_no_rewrite_reaches_the_upstream_byte_for_byte(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    let auth = p.auth();
    let url = format!("{}/v1/chat/completions", p.url);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    // Spellings a parse and re-serialisation would change: key order, `1.0`, an escaped character, spaces.
    let tail = r#""messages": [{"role": "user", "content": "caf\u00e9"}], "temperature": 1.0, "top_p": 1e0}"#;

    // "big" is known upstream by its own name: nothing to rewrite, so the client's bytes go out as they are.
    let sent = format!(r#"{{"x_first": true, "model": "big", {tail}"#);
    let r = send(Method::POST, &url, &headers, Bytes::from(sent.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(upstream.last_request().raw_body, Bytes::from(sent));

    // A stream must ask for usage, so its body is rewritten, and every field still arrives.
    let sent = format!(r#"{{"model": "big", "stream": true, {tail}"#);
    let r = send(Method::POST, &url, &headers, Bytes::from(sent.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = upstream.last_request();
    assert_ne!(seen.raw_body, Bytes::from(sent));
    assert_eq!(seen.body["stream_options"]["include_usage"], true);
    assert_eq!(seen.body["messages"][0]["content"], "café");

    // So is one whose model has another upstream id.
    let sent = format!(r#"{{"model": "small", {tail}"#);
    let r = send(Method::POST, &url, &headers, Bytes::from(sent)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(upstream.last_request().model(), Some("small-upstream-id"));

    // And one that repeats a key: a parser that keeps the first value would read "small" where Switchyard, which
    // keeps the last, routed and billed "big"; the upstream gets one "model", the one billed.
    let sent = format!(r#"{{"model": "small", "model": "big", {tail}"#);
    let r = send(Method::POST, &url, &headers, Bytes::from(sent)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-model"), Some("big"));
    let raw = upstream.last_request().raw_body;
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("\"model\"").count(), 1, "{text}");
    assert_eq!(upstream.last_request().model(), Some("big"));
    p.stop().await;
}

async fn fallback_deployment_serves_when_the_first_is_down(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    let r = p
        .post(
            "/v1/chat/completions",
            &json!({"model": "fallback", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(upstream.counters().requests, 1);
    // After five failures in a row the dead deployment's circuit opens: later requests skip it.
    for _ in 0..7 {
        let r = p
            .post(
                "/v1/chat/completions",
                &json!({"model": "fallback", "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let metrics = p.state.metrics.render();
    let connect_errors = metrics
        .lines()
        .find(|l| l.starts_with("switchyard_upstream_errors_total") && l.contains("kind=\"connect\""))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(
        connect_errors, "5",
        "the dead deployment was tried until its circuit opened, then skipped"
    );
    assert!(p.state.upstream.unhealthy().contains("dead"));
    // A 5xx on a single-deployment model is not retried elsewhere.
    upstream.push_behavior(Behavior::error(503));
    let r = p
        .post("/v1/chat/completions", &json!({"model": "small", "messages": []}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    p.stop().await;
}

async fn health_and_admin_endpoints(db: Db) {
    let (_upstream, p) = TestProxy::with_mock(db).await;
    assert_eq!(
        get(&format!("{}/healthz", p.url), &[]).await.status,
        StatusCode::OK
    );
    let r = get(&format!("{}/readyz", p.url), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["store"], "ok");
    let r = get(&format!("{}/metrics", p.url), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );

    let admin = [("authorization", "Bearer admin-secret")];
    let r = post_json(
        &format!("{}/admin/keys", p.url),
        &admin,
        &json!({"user": "carol", "team": "marketing"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sy-"));
    let r = get(&format!("{}/admin/keys?team=marketing", p.url), &admin).await;
    let listed = r.json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(!r.text().contains(&key), "listing never shows a key");
    let r = post_json(
        &format!("{}/admin/keys/{}/revoke", p.url, created["id"].as_str().unwrap()),
        &admin,
        &json!({}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = get(
        &format!("{}/v1/models", p.url),
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "revocation through the admin API is immediate"
    );

    // A user key is not an admin key.
    let auth = p.auth();
    let r = get(&format!("{}/admin/keys", p.url), &[("authorization", &auth)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_openai_error(&r.json(), None);
    p.stop().await;
}

async fn azure_deployments_use_api_version_and_api_key(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    let r = p
        .post(
            "/v1/chat/completions",
            &json!({"model": "azure-gpt-4o", "messages": [{"role": "user", "content": "hello azure"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = upstream.last_request();
    assert_eq!(seen.path, "/openai/deployments/gpt-4o-eu/chat/completions");
    assert_eq!(seen.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(seen.header("api-key"), Some(UPSTREAM_KEY));
    assert_eq!(
        seen.header("authorization"),
        None,
        "Azure takes the key in api-key only"
    );
    p.stop().await;
}

async fn missing_usage_is_counted_locally_and_flagged(db: Db) {
    let (upstream, p) = TestProxy::with_mock(db).await;
    for stream in [false, true] {
        upstream.push_behavior(Behavior::ok().omit_usage());
        let r = p
            .post(
                "/v1/chat/completions",
                &json!({"model": "small", "stream": stream,
                        "messages": [{"role": "user", "content": "count these words for me please"}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    // Both requests were priced from local tiktoken counts and flagged as estimated, never charged $0.
    let metrics = p
        .metrics_when(|m| {
            m.lines().any(|l| {
                l.starts_with("switchyard_usage_estimated_total")
                    && l.contains("model=\"small\"")
                    && l.ends_with(" 2")
            })
        })
        .await;
    let estimated = metrics
        .lines()
        .find(|l| l.starts_with("switchyard_usage_estimated_total") && l.contains("model=\"small\""))
        .unwrap_or_else(|| panic!("no estimated-usage series:\n{metrics}"));
    assert!(estimated.ends_with(" 2"), "{estimated}");
    let spent = p.state.metrics.cost_usd("engineering");
    assert!(
        spent > rust_decimal::Decimal::ZERO,
        "estimated usage must still be charged: {spent}"
    );
    p.stop().await;
}

async fn exhausted_budget_downgrades_when_the_policy_says_so(db: Db) {
    let upstream = MockUpstream::builder().api_key(UPSTREAM_KEY).start().await;
    let dir = tempfile::tempdir().unwrap();
    // A premium request reserves about $0.04 (4096 output tokens at $10/M); the cheapest model about $0.0025.
    for (file, action) in [("default.yaml", "downgrade_cheapest"), ("research.yaml", "block")] {
        std::fs::write(
            dir.path().join(file),
            format!(
                "quality: {{ dial: quality }}\nbudgets:\n  on_exhausted: {action}\n  limits:\n    - {{ scope: team, period: monthly, limit: \"0.01\", mode: hard }}\n"
            ),
        )
        .unwrap();
    }
    let yaml = common::proxy::config_yaml(&upstream.url()).replace(
        "policies_dir: tests/fixtures/policies",
        &format!("policies_dir: {}", dir.path().display()),
    );
    let p = TestProxy::start_with(&yaml, db).await;
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "hard question"}]});

    let r = p.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.header("x-switchyard-model"),
        Some("small"),
        "downgraded to the cheapest model"
    );

    // A team whose policy blocks gets the 429 naming the budget.
    let research = p
        .state
        .store
        .create_key("rita", "research", None)
        .await
        .unwrap()
        .plaintext;
    let r = post_json(
        &format!("{}/v1/chat/completions", p.url),
        &[("authorization", &format!("Bearer {research}"))],
        &body,
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "budget_exceeded");
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("team"),
        "{}",
        r.text()
    );
    p.stop().await;
}

async fn state_gauges_report_budget_use_and_ledger_health(db: Db) {
    let upstream = MockUpstream::builder().api_key(UPSTREAM_KEY).start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("engineering.yaml"),
        "budgets:\n  limits:\n    - { scope: team, period: monthly, limit: \"0.001\", mode: soft }\n",
    )
    .unwrap();
    let yaml = common::proxy::config_yaml(&upstream.url()).replace(
        "policies_dir: tests/fixtures/policies",
        &format!("policies_dir: {}", dir.path().display()),
    );
    let p = TestProxy::start_with(&yaml, db).await;
    let body =
        json!({"model": "big", "messages": [{"role": "user", "content": "spend a little money here"}]});
    assert_eq!(p.post("/v1/chat/completions", &body).await.status, StatusCode::OK);
    p.state.budgets.sync_now().await;
    // The gauges are refreshed every few seconds in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(12);
    loop {
        let metrics = p.state.metrics.render();
        let ratio = metrics
            .lines()
            .find(|l| l.starts_with("switchyard_budget_used_ratio{team=\"engineering\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        let queue = metrics
            .lines()
            .any(|l| l.starts_with("switchyard_ledger_queue_depth "));
        if let Some(ratio) = ratio
            && ratio > 0.0
            && queue
        {
            // 5 input words at $2.50/M + 8 output at $10/M = $0.0000925 of a $0.001 budget.
            assert!((ratio - 0.0925).abs() < 1e-6, "{ratio}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gauges not published:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    p.stop().await;
}
