//! The `openai` provider kind: OpenAI itself and every OpenAI-compatible server (Azure OpenAI, Gemini's OpenAI
//! endpoint, Groq, Together, Mistral, Ollama, vLLM, llama.cpp). Requests pass through as JSON objects so fields
//! Switchyard does not know reach the upstream untouched; only `model` and, for streams, `stream_options` change.

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use serde_json::{Map, Value};

use crate::config::Deployment;
use crate::error::Error;

/// Sets the upstream model id and, for streams, asks for the usage chunk so spend is exact (the proxy removes
/// that chunk again when the client did not ask for it).
pub fn prepare_body(body: &mut Map<String, Value>, upstream_model: &str, azure: bool) {
    // Azure selects the model by deployment URL and ignores the field; keep the caller's there.
    if !azure {
        body.insert("model".to_owned(), Value::String(upstream_model.to_owned()));
    }
    crate::usage::request_stream_usage(body);
}

/// Whether [`prepare_body`] would change `body`: the upstream knows the model by another id, or a stream does not
/// ask for usage yet. When it would not, the client's bytes can be sent as they are.
pub fn needs_rewrite(body: &Map<String, Value>, upstream_model: &str, azure: bool) -> bool {
    let renamed = !azure && body.get("model").and_then(Value::as_str) != Some(upstream_model);
    let adds_usage =
        body.get("stream").and_then(Value::as_bool) == Some(true) && !crate::usage::wants_stream_usage(body);
    renamed || adds_usage
}

/// Builds the upstream request for `path` (e.g. `/chat/completions`).
pub fn build_request(
    deployment: &Deployment,
    path: &str,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, Error> {
    let mut uri = format!("{}{}", deployment.base_url, path);
    if let Some(version) = &deployment.azure_api_version {
        uri.push_str("?api-version=");
        uri.push_str(version);
    }
    let builder =
        super::post_builder(deployment, uri).header(header::ACCEPT, "application/json, text/event-stream");
    super::with_body(builder, deployment, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stream_requests_ask_for_usage_and_keep_unknown_fields() {
        let mut body = json!({"model": "auto", "stream": true, "x_unknown": {"a": 1}});
        prepare_body(body.as_object_mut().unwrap(), "gpt-4o-mini-2024-07-18", false);
        assert_eq!(body["model"], "gpt-4o-mini-2024-07-18");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["x_unknown"], json!({"a": 1}));

        let mut body = json!({"model": "m"});
        prepare_body(body.as_object_mut().unwrap(), "m", false);
        assert!(
            body.get("stream_options").is_none(),
            "non-stream requests are left alone"
        );

        let mut body = json!({"model": "azure-name", "stream": false});
        prepare_body(body.as_object_mut().unwrap(), "gpt-4o", true);
        assert_eq!(
            body["model"], "azure-name",
            "Azure picks the model by URL; the field is left as sent"
        );
    }

    #[test]
    fn needs_rewrite_is_true_exactly_when_prepare_body_changes_the_body() {
        let cases = [
            (json!({"model": "m"}), "m", false, false),
            (json!({"model": "m"}), "m-upstream", false, true),
            (json!({"model": "m"}), "m-upstream", true, false),
            (json!({"messages": []}), "m", false, true),
            (json!({"model": "m", "stream": false}), "m", false, false),
            (json!({"model": "m", "stream": true}), "m", false, true),
            (json!({"model": "m", "stream": true}), "other", true, true),
            (
                json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}}),
                "m",
                false,
                false,
            ),
            (
                json!({"model": "m", "stream": true, "stream_options": {"include_usage": false}}),
                "m",
                false,
                true,
            ),
            (
                json!({"model": "m", "stream": true, "stream_options": "x"}),
                "m",
                false,
                true,
            ),
            (json!({"model": 7, "stream": "yes"}), "m", false, true),
        ];
        for (body, upstream, azure, expected) in cases {
            let map = body.as_object().unwrap().clone();
            let mut prepared = map.clone();
            prepare_body(&mut prepared, upstream, azure);
            assert_eq!(prepared != map, expected, "{body} → {upstream} (azure {azure})");
            assert_eq!(
                needs_rewrite(&map, upstream, azure),
                expected,
                "{body} → {upstream} (azure {azure})"
            );
        }
    }
}
