//! The client's JSON body, parsed once: the object as a `serde_json::Map` (so unknown fields survive), and whether
//! any object in it names a key twice.
//!
//! JSON leaves repeated keys to the parser: serde_json keeps the last value, other parsers keep the first or refuse
//! the document. Switchyard routes, reserves and bills by what it parsed, so it forwards the client's bytes
//! unchanged only when no key repeats; otherwise the upstream gets the re-serialised map, which says exactly what
//! was billed.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A parsed request body.
pub struct ClientBody {
    pub object: Map<String, Value>,
    /// Whether some object in the body, at any depth, repeats a key.
    pub repeats_a_key: bool,
}

/// Why a body is not a request.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("the body is not a JSON object")]
    NotAnObject,
}

/// Parses `bytes` as a JSON object, noting repeated keys; the same cost as parsing into a `Value`.
pub fn parse(bytes: &[u8]) -> Result<ClientBody, BodyError> {
    let mut repeats_a_key = false;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Tracked(&mut repeats_a_key).deserialize(&mut de)?;
    de.end()?;
    match value {
        Value::Object(object) => Ok(ClientBody {
            object,
            repeats_a_key,
        }),
        _ => Err(BodyError::NotAnObject),
    }
}

/// Builds a `Value` like serde_json's own visitor, and sets the flag when an object repeats a key.
struct Tracked<'a>(&'a mut bool);

impl<'de> DeserializeSeed<'de> for Tracked<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Tracked<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(Tracked(&mut *self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Tracked(&mut *self.0))?;
            if object.insert(key, value).is_some() {
                *self.0 = true;
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_serde_json_and_notes_repeated_keys_at_any_depth() {
        let cases = [
            (
                r#"{"model": "m", "n": [1, -2, 3.5, true, null, "x\u00e9"], "o": {"a": {}}}"#,
                false,
            ),
            (r#"{"model": "a", "model": "b"}"#, true),
            (
                r#"{"stream_options": {"include_usage": false, "include_usage": true}}"#,
                true,
            ),
            (r#"{"messages": [{"role": "user", "role": "system"}]}"#, true),
            (r#"{"a": {"k": 1}, "b": {"k": 2}}"#, false),
        ];
        for (text, repeats) in cases {
            let body = parse(text.as_bytes()).unwrap();
            let expected: Value = serde_json::from_str(text).unwrap();
            assert_eq!(Value::Object(body.object), expected, "{text}");
            assert_eq!(body.repeats_a_key, repeats, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_one_json_object() {
        for text in ["[1]", "\"x\"", "{\"a\": 1} {}", "{\"a\": }", ""] {
            assert!(parse(text.as_bytes()).is_err(), "{text}");
        }
    }
}
