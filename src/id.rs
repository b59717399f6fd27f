//! Where the id that deduplicates a delivery comes from.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::HeaderName;
use serde_json::Value;

use crate::scheme::Verified;

type Custom = dyn Fn(&Parts, &[u8]) -> Option<String> + Send + Sync;

/// Where the layer takes a delivery's id from: the id it deduplicates on and that
/// [`Event::id`](crate::Event::id) returns.
///
/// The default is the id the scheme verified (Standard Webhooks: the signed `webhook-id`).
/// Some senders ask receivers to dedupe on fields of the payload instead: Self, for one,
/// on `"{verification_id}-{type}"`.
///
/// ```
/// use tower_webhook::IdSource;
///
/// // Self: "{verification_id}-{type}" of the JSON body.
/// let self_id = IdSource::json_fields(["verification_id", "type"], "-");
/// // A nested field, as a JSON Pointer.
/// let nested = IdSource::json_field("/data/object/id");
/// // Anything else.
/// let custom = IdSource::custom(|parts, _body| {
///     parts.headers.get("x-request-id")?.to_str().ok().map(String::from)
/// });
/// ```
///
/// An id that is missing or empty makes the delivery a `400 Bad Request`: it verified, but the
/// layer cannot tell its copies apart.
#[derive(Clone)]
pub struct IdSource {
    source: Source,
}

#[derive(Clone)]
enum Source {
    Scheme,
    Header(HeaderName),
    Json {
        fields: Arc<[String]>,
        separator: Arc<str>,
    },
    Custom(Arc<Custom>),
}

impl IdSource {
    /// The id the scheme verified. The default.
    pub fn scheme() -> Self {
        Self {
            source: Source::Scheme,
        }
    }

    /// The value of a request header. Prefer a header the signature covers: one it does not
    /// cover can be changed by anyone who replays a delivery.
    pub fn header(name: HeaderName) -> Self {
        Self {
            source: Source::Header(name),
        }
    }

    /// One field of the JSON body: a top-level key, or a JSON Pointer such as `/data/id`.
    /// Strings are taken as they are; numbers and booleans as their JSON text.
    pub fn json_field(field: impl Into<String>) -> Self {
        Self::json_fields([field], "")
    }

    /// Several fields of the JSON body, each as in [`json_field`](Self::json_field), joined
    /// with `separator`. Every field must be present.
    pub fn json_fields<I>(fields: I, separator: &str) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self {
            source: Source::Json {
                fields: fields.into_iter().map(Into::into).collect(),
                separator: Arc::from(separator),
            },
        }
    }

    /// Whatever `f` makes of the verified request's head and raw body; `None` for no id.
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(&Parts, &[u8]) -> Option<String> + Send + Sync + 'static,
    {
        Self {
            source: Source::Custom(Arc::new(f)),
        }
    }

    /// The id of one verified delivery, if it has a non-empty one.
    pub(crate) fn resolve(
        &self,
        parts: &Parts,
        body: &[u8],
        verified: &Verified,
    ) -> Option<String> {
        let id = match &self.source {
            Source::Scheme => verified.id.clone(),
            Source::Header(name) => std::str::from_utf8(parts.headers.get(name)?.as_bytes())
                .ok()
                .map(String::from),
            Source::Json { fields, separator } => json_id(body, fields, separator),
            Source::Custom(f) => f(parts, body),
        }?;
        (!id.is_empty()).then_some(id)
    }
}

impl Default for IdSource {
    fn default() -> Self {
        Self::scheme()
    }
}

impl fmt::Debug for IdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Scheme => f.write_str("IdSource::Scheme"),
            Source::Header(name) => f.debug_tuple("IdSource::Header").field(name).finish(),
            Source::Json { fields, separator } => f
                .debug_struct("IdSource::Json")
                .field("fields", fields)
                .field("separator", separator)
                .finish(),
            Source::Custom(_) => f.write_str("IdSource::Custom(..)"),
        }
    }
}

fn json_id(body: &[u8], fields: &[String], separator: &str) -> Option<String> {
    let root: Value = serde_json::from_slice(body).ok()?;
    let mut id = String::new();
    for (i, field) in fields.iter().enumerate() {
        let value = if field.starts_with('/') {
            root.pointer(field)
        } else {
            root.get(field)
        }?;
        if i > 0 {
            id.push_str(separator);
        }
        match value {
            Value::String(text) => id.push_str(text),
            Value::Number(_) | Value::Bool(_) => id.push_str(&value.to_string()),
            Value::Null | Value::Array(_) | Value::Object(_) => return None,
        }
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(source: &IdSource, body: &str) -> Option<String> {
        let (parts, ()) = http::Request::new(()).into_parts();
        source.resolve(&parts, body.as_bytes(), &Verified::new().with_id("hdr"))
    }

    #[test]
    fn self_style_joined_fields() {
        let source = IdSource::json_fields(["verification_id", "type"], "-");
        assert_eq!(
            resolve(&source, r#"{"verification_id":"v_1","type":"done","x":1}"#).as_deref(),
            Some("v_1-done")
        );
        assert_eq!(resolve(&source, r#"{"verification_id":"v_1"}"#), None);
        assert_eq!(
            resolve(&source, r#"{"verification_id":null,"type":"a"}"#),
            None
        );
        assert_eq!(resolve(&source, "not json"), None);
    }

    #[test]
    fn pointers_numbers_and_empty_ids() {
        let nested = IdSource::json_field("/data/id");
        assert_eq!(
            resolve(&nested, r#"{"data":{"id":42}}"#).as_deref(),
            Some("42")
        );
        assert_eq!(resolve(&IdSource::json_field("id"), r#"{"id":""}"#), None);
        assert_eq!(resolve(&IdSource::scheme(), "").as_deref(), Some("hdr"));
    }
}
