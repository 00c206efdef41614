//! OpenAI Chat Completions request → Anthropic Messages request.

use serde_json::{Map, Value, json};

use super::DEFAULT_MAX_TOKENS;
use crate::providers::TranslateError;

/// Image media types the Messages API accepts in base64 sources.
const IMAGE_MEDIA_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// OpenAI request fields that have no Anthropic counterpart and are dropped silently because ignoring them cannot
/// change what the client gets back in a way it relies on (sampling penalties, storage, caching hints, tiers).
/// Everything else unknown is dropped too (the Messages API rejects unknown fields), but logged at debug level.
const IGNORED_FIELDS: [&str; 12] = [
    "model",
    "stream_options",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "store",
    "metadata",
    "service_tier",
    "reasoning_effort",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
];

/// Anthropic-native fields a client may send through the OpenAI endpoint; they are forwarded unchanged.
const NATIVE_FIELDS: [&str; 2] = ["top_k", "thinking"];

/// Translates an OpenAI Chat Completions request body into an Anthropic Messages request for `upstream_model`.
///
/// Mapping decisions (each one tested):
/// - `system` and `developer` messages, wherever they appear, become the top-level `system` text blocks in order
///   (the Messages API has no mid-conversation system turn).
/// - `tool` messages become `tool_result` blocks in a user turn; consecutive turns of the same role are merged, and
///   within a user turn `tool_result` blocks are moved first, as the Messages API requires.
/// - `max_completion_tokens` wins over `max_tokens`; without either, [`DEFAULT_MAX_TOKENS`] (plus any
///   `thinking.budget_tokens`) is sent because the Messages API requires a value.
/// - `temperature` is clamped to Anthropic's `[0, 1]` range (OpenAI allows up to 2): a request routed to Claude by
///   `model: "auto"` should not fail for a value that is valid on the model the client had in mind. When both
///   `temperature` and `top_p` are given only `temperature` is sent, because recent Claude models reject both.
/// - `user` (or else `safety_identifier`) becomes `metadata.user_id`.
/// - `parallel_tool_calls: false` becomes `disable_parallel_tool_use: true` on the tool choice.
/// - Features Anthropic cannot provide (`n > 1`, `logprobs`, `top_logprobs`, JSON `response_format`, audio,
///   non-empty `logit_bias`, legacy `functions`, `prediction`, `web_search_options`) fail with
///   [`TranslateError::Unsupported`] naming the parameter, so the client gets a 400 rather than a silently wrong
///   answer.
pub fn chat_request_to_messages(
    req: &Map<String, Value>,
    upstream_model: &str,
) -> Result<Value, TranslateError> {
    reject_unsupported(req)?;

    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("max_tokens".into(), json!(max_tokens(req)?));

    let (system, messages) = translate_messages(req)?;
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }

    if let Some(t) = non_null(req, "temperature") {
        let t = t
            .as_f64()
            .ok_or_else(|| TranslateError::invalid("temperature", "temperature must be a number"))?;
        out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    } else if let Some(p) = non_null(req, "top_p") {
        let p = p
            .as_f64()
            .ok_or_else(|| TranslateError::invalid("top_p", "top_p must be a number"))?;
        out.insert("top_p".into(), json!(p));
    }

    if let Some(stop) = stop_sequences(req)? {
        out.insert("stop_sequences".into(), stop);
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
    }

    let user = non_null(req, "user").or_else(|| non_null(req, "safety_identifier"));
    if let Some(user) = user {
        let user = user
            .as_str()
            .ok_or_else(|| TranslateError::invalid("user", "user must be a string"))?;
        if !user.is_empty() {
            out.insert("metadata".into(), json!({ "user_id": user }));
        }
    }

    translate_tools(req, &mut out)?;

    for key in NATIVE_FIELDS {
        if let Some(v) = non_null(req, key) {
            out.insert(key.into(), v.clone());
        }
    }
    for key in req.keys() {
        let known = IGNORED_FIELDS.contains(&key.as_str())
            || NATIVE_FIELDS.contains(&key.as_str())
            || HANDLED_FIELDS.contains(&key.as_str());
        if !known {
            tracing::debug!(field = %key, "dropping request field the Messages API does not accept");
        }
    }
    Ok(Value::Object(out))
}

/// Fields this module reads (or checks and rejects); used only to decide what to log as dropped.
const HANDLED_FIELDS: [&str; 22] = [
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "user",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "n",
    "logprobs",
    "top_logprobs",
    "response_format",
    "audio",
    "modalities",
    "logit_bias",
    "functions",
    "function_call",
    "prediction",
    "web_search_options",
];

fn non_null<'a>(req: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    req.get(key).filter(|v| !v.is_null())
}

fn reject_unsupported(req: &Map<String, Value>) -> Result<(), TranslateError> {
    if non_null(req, "n").is_some_and(|n| n.as_u64() != Some(1)) {
        return Err(TranslateError::unsupported(
            "n",
            "Anthropic models return a single choice; `n` must be 1",
        ));
    }
    if req.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(TranslateError::unsupported(
            "logprobs",
            "Anthropic models do not return log probabilities",
        ));
    }
    if non_null(req, "top_logprobs").is_some_and(|v| v.as_u64() != Some(0)) {
        return Err(TranslateError::unsupported(
            "top_logprobs",
            "Anthropic models do not return log probabilities",
        ));
    }
    if let Some(rf) = non_null(req, "response_format") {
        let kind = rf.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "text" {
            return Err(TranslateError::unsupported(
                "response_format",
                format!(
                    "response_format type `{kind}` is not supported by Anthropic models through this endpoint; \
                     ask for JSON in the prompt or use a tool"
                ),
            ));
        }
    }
    if non_null(req, "audio").is_some() {
        return Err(TranslateError::unsupported(
            "audio",
            "Anthropic models do not produce audio",
        ));
    }
    if non_null(req, "modalities")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x != "text"))
    {
        return Err(TranslateError::unsupported(
            "modalities",
            "Anthropic models produce text only",
        ));
    }
    if non_null(req, "logit_bias").is_some_and(|v| v.as_object().is_none_or(|o| !o.is_empty())) {
        return Err(TranslateError::unsupported(
            "logit_bias",
            "Anthropic models do not support logit_bias",
        ));
    }
    for key in ["functions", "function_call"] {
        if non_null(req, key).is_some() {
            return Err(TranslateError::unsupported(
                key,
                "the legacy `functions` API is not supported for Anthropic models; use `tools`",
            ));
        }
    }
    for key in ["prediction", "web_search_options"] {
        if non_null(req, key).is_some() {
            return Err(TranslateError::unsupported(
                key,
                format!("`{key}` is not supported by Anthropic models"),
            ));
        }
    }
    Ok(())
}

fn max_tokens(req: &Map<String, Value>) -> Result<u64, TranslateError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = non_null(req, key) {
            return match v.as_u64() {
                Some(n) if n > 0 => Ok(n),
                _ => Err(TranslateError::invalid(
                    key,
                    format!("`{key}` must be a positive integer"),
                )),
            };
        }
    }
    // With extended thinking the Messages API requires `max_tokens` above `thinking.budget_tokens`; the default
    // leaves the usual room for the visible answer on top of the thinking budget.
    let budget = req
        .get("thinking")
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(DEFAULT_MAX_TOKENS.saturating_add(budget))
}

fn stop_sequences(req: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let bad = || TranslateError::invalid("stop", "`stop` must be a string or an array of strings");
    let list: Vec<Value> = match non_null(req, "stop") {
        None => return Ok(None),
        Some(Value::String(s)) => vec![json!(s)],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(|s| json!(s)).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    // The Messages API rejects stop sequences made only of whitespace; OpenAI ignores empty ones.
    let list: Vec<Value> = list
        .into_iter()
        .filter(|s| s.as_str().is_some_and(|s| !s.trim().is_empty()))
        .collect();
    Ok((!list.is_empty()).then_some(Value::Array(list)))
}

fn translate_tools(req: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), TranslateError> {
    let tools = match non_null(req, "tools") {
        None => return Ok(()),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(TranslateError::invalid("tools", "`tools` must be an array")),
    };
    if tools.is_empty() {
        return Ok(());
    }
    let mut converted = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("function");
        if kind != "function" {
            return Err(TranslateError::unsupported(
                format!("tools[{i}].type"),
                format!("tool type `{kind}` is not supported for Anthropic models"),
            ));
        }
        let f = tool.get("function").and_then(Value::as_object).ok_or_else(|| {
            TranslateError::invalid(
                format!("tools[{i}].function"),
                "each tool needs a `function` object",
            )
        })?;
        let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
            TranslateError::invalid(format!("tools[{i}].function.name"), "each tool needs a `name`")
        })?;
        let mut t = Map::new();
        t.insert("name".into(), json!(name));
        if let Some(d) = f.get("description").filter(|d| d.is_string()) {
            t.insert("description".into(), d.clone());
        }
        // OpenAI allows omitting `parameters` for a no-argument function; Anthropic requires a schema.
        let schema = f
            .get("parameters")
            .filter(|p| p.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        t.insert("input_schema".into(), schema);
        if let Some(cc) = tool.get("cache_control").or_else(|| f.get("cache_control")) {
            t.insert("cache_control".into(), cc.clone());
        }
        converted.push(Value::Object(t));
    }
    out.insert("tools".into(), Value::Array(converted));

    let mut choice = match non_null(req, "tool_choice") {
        None => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            other => {
                return Err(TranslateError::invalid(
                    "tool_choice",
                    format!("tool_choice `{other}` is not one of none, auto, required"),
                ));
            }
        },
        Some(v @ Value::Object(_)) => {
            let name = v
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    TranslateError::invalid("tool_choice", "a named tool_choice needs `function.name`")
                })?;
            Some(json!({"type": "tool", "name": name}))
        }
        Some(_) => {
            return Err(TranslateError::invalid(
                "tool_choice",
                "`tool_choice` must be a string or object",
            ));
        }
    };
    if req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false) {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none"
            && let Some(obj) = c.as_object_mut()
        {
            obj.insert("disable_parallel_tool_use".into(), json!(true));
        }
    }
    if let Some(c) = choice {
        out.insert("tool_choice".into(), c);
    }
    Ok(())
}

/// Returns (system blocks, merged Anthropic messages).
fn translate_messages(req: &Map<String, Value>) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let msgs = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("messages", "`messages` must be an array"))?;
    let mut system = Vec::new();
    // (role, content blocks) before merging.
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
            TranslateError::invalid(format!("messages[{i}].role"), "each message needs a role")
        })?;
        let content = m.get("content").filter(|c| !c.is_null());
        match role {
            "system" | "developer" => {
                if let Some(c) = content {
                    system.extend(text_blocks(c, &format!("messages[{i}].content"))?);
                }
            }
            "user" => {
                let blocks = match content {
                    Some(c) => user_blocks(c, i)?,
                    None => Vec::new(),
                };
                turns.push(("user", blocks));
            }
            "assistant" => turns.push(("assistant", assistant_blocks(m, content, i)?)),
            "tool" => turns.push(("user", vec![tool_result_block(m, content, i)?])),
            "function" => {
                return Err(TranslateError::unsupported(
                    format!("messages[{i}].role"),
                    "legacy `function` messages are not supported for Anthropic models; use `tool` messages",
                ));
            }
            other => {
                return Err(TranslateError::invalid(
                    format!("messages[{i}].role"),
                    format!("unknown message role `{other}`"),
                ));
            }
        }
    }

    let mut merged: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (role, blocks) in turns {
        // A message that translated to nothing (empty content) would be rejected by the Messages API.
        if blocks.is_empty() {
            continue;
        }
        match merged.last_mut() {
            Some((last_role, last)) if *last_role == role => last.extend(blocks),
            _ => merged.push((role, blocks)),
        }
    }
    let messages = merged
        .into_iter()
        .map(|(role, mut blocks)| {
            if role == "user" {
                // Stable: tool results keep their order, and so does the rest.
                blocks.sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
            }
            json!({"role": role, "content": blocks})
        })
        .collect();
    Ok((system, messages))
}

/// Text-only content (system, tool results, assistant text): a string or an array of `text` (or `refusal`) parts.
fn text_blocks(content: &Value, param: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        Value::String(s) => Ok(text_block(s, None).into_iter().collect()),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                let text = match kind {
                    "text" => part.get("text"),
                    "refusal" => part.get("refusal"),
                    _ => {
                        return Err(TranslateError::unsupported(
                            format!("{param}[{j}].type"),
                            format!("content part type `{kind}` is not allowed here"),
                        ));
                    }
                };
                let text = text.and_then(Value::as_str).ok_or_else(|| {
                    TranslateError::invalid(format!("{param}[{j}].text"), "text parts need a string `text`")
                })?;
                out.extend(text_block(text, part.get("cache_control")));
            }
            Ok(out)
        }
        _ => Err(TranslateError::invalid(
            param,
            "content must be a string or an array of parts",
        )),
    }
}

/// A text block, or nothing for empty text (the Messages API rejects empty text blocks). A client's
/// `cache_control` (an Anthropic prompt-caching hint some OpenAI clients send on parts) is kept.
fn text_block(text: &str, cache_control: Option<&Value>) -> Option<Value> {
    if text.is_empty() {
        return None;
    }
    let mut b = json!({"type": "text", "text": text});
    if let (Some(cc), Some(obj)) = (cache_control, b.as_object_mut()) {
        obj.insert("cache_control".into(), cc.clone());
    }
    Some(b)
}

fn user_blocks(content: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    let param = format!("messages[{i}].content");
    let parts = match content {
        Value::Array(parts) => parts,
        _ => return text_blocks(content, &param),
    };
    let mut out = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let p = format!("{param}[{j}]");
        match part.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => {
                let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                    TranslateError::invalid(format!("{p}.text"), "text parts need a string `text`")
                })?;
                out.extend(text_block(text, part.get("cache_control")));
            }
            "image_url" => out.push(image_block(part, &p)?),
            "file" => out.push(file_block(part, &p)?),
            "input_audio" => {
                return Err(TranslateError::unsupported(
                    format!("{p}.type"),
                    "Anthropic models do not accept audio input",
                ));
            }
            other => {
                return Err(TranslateError::unsupported(
                    format!("{p}.type"),
                    format!("content part type `{other}` is not supported for Anthropic models"),
                ));
            }
        }
    }
    Ok(out)
}

fn image_block(part: &Value, p: &str) -> Result<Value, TranslateError> {
    let url = match part.get("image_url") {
        Some(Value::String(s)) => s.as_str(),
        Some(v) => v.get("url").and_then(Value::as_str).unwrap_or(""),
        None => "",
    };
    let source = if url.starts_with("data:") {
        let (media_type, data) = parse_data_url(url).ok_or_else(|| {
            TranslateError::invalid(format!("{p}.image_url.url"), "malformed base64 data: URL")
        })?;
        if !IMAGE_MEDIA_TYPES.contains(&media_type) {
            return Err(TranslateError::unsupported(
                format!("{p}.image_url.url"),
                format!("image type `{media_type}` is not supported; use JPEG, PNG, GIF or WebP"),
            ));
        }
        json!({"type": "base64", "media_type": media_type, "data": data})
    } else if url.starts_with("https://") || url.starts_with("http://") {
        json!({"type": "url", "url": url})
    } else {
        return Err(TranslateError::invalid(
            format!("{p}.image_url.url"),
            "image_url.url must be an http(s) URL or a base64 data: URL",
        ));
    };
    let mut b = json!({"type": "image", "source": source});
    if let (Some(cc), Some(obj)) = (part.get("cache_control"), b.as_object_mut()) {
        obj.insert("cache_control".into(), cc.clone());
    }
    Ok(b)
}

/// OpenAI `file` parts carrying a base64 PDF become Anthropic `document` blocks; uploaded file ids cannot be
/// resolved (they live in OpenAI's file store).
fn file_block(part: &Value, p: &str) -> Result<Value, TranslateError> {
    let data_url = part
        .pointer("/file/file_data")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            TranslateError::unsupported(
                format!("{p}.file"),
                "only inline `file_data` (base64 PDF) files are supported for Anthropic models",
            )
        })?;
    match parse_data_url(data_url) {
        Some(("application/pdf", data)) => Ok(json!({
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": data}
        })),
        _ => Err(TranslateError::unsupported(
            format!("{p}.file.file_data"),
            "only base64 data: URLs of PDF files are supported for Anthropic models",
        )),
    }
}

/// `data:<media type>[;params];base64,<data>` → (media type, data).
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mut params = meta.split(';');
    let media_type = params.next()?;
    if !params.any(|p| p == "base64") || media_type.is_empty() || data.is_empty() {
        return None;
    }
    Some((media_type, data))
}

fn assistant_blocks(m: &Value, content: Option<&Value>, i: usize) -> Result<Vec<Value>, TranslateError> {
    let mut out = match content {
        Some(c) => text_blocks(c, &format!("messages[{i}].content"))?,
        None => Vec::new(),
    };
    if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
        let calls = calls.as_array().ok_or_else(|| {
            TranslateError::invalid(
                format!("messages[{i}].tool_calls"),
                "`tool_calls` must be an array",
            )
        })?;
        for (j, call) in calls.iter().enumerate() {
            let p = format!("messages[{i}].tool_calls[{j}]");
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::invalid(format!("{p}.id"), "tool calls need an `id`"))?;
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    TranslateError::invalid(format!("{p}.function.name"), "tool calls need a name")
                })?;
            let args = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("");
            // Models sometimes emit empty arguments for no-argument tools; the Messages API needs an object.
            let input = if args.trim().is_empty() {
                json!({})
            } else {
                match serde_json::from_str::<Value>(args) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        return Err(TranslateError::invalid(
                            format!("{p}.function.arguments"),
                            "tool call arguments must be a JSON object",
                        ));
                    }
                }
            };
            out.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
    }
    Ok(out)
}

fn tool_result_block(m: &Value, content: Option<&Value>, i: usize) -> Result<Value, TranslateError> {
    let id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
        TranslateError::invalid(
            format!("messages[{i}].tool_call_id"),
            "tool messages need a `tool_call_id`",
        )
    })?;
    let mut b = json!({"type": "tool_result", "tool_use_id": id});
    let blocks = match content {
        Some(c) => text_blocks(c, &format!("messages[{i}].content"))?,
        None => Vec::new(),
    };
    if let (Some(obj), false) = (b.as_object_mut(), blocks.is_empty()) {
        obj.insert("content".into(), Value::Array(blocks));
    }
    Ok(b)
}
