//! Where the id that deduplicates a delivery comes from.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::HeaderName;
use serde_json::Value;

use crate::json;
use crate::scheme::engine::body_hash;
use crate::scheme::{Scheme, Verified};

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
    with_body_hash: bool,
}

#[derive(Clone)]
enum Source {
    Scheme,
    BodyHash,
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
        Self::from(Source::Scheme)
    }

    /// The value of a request header. Prefer a header the signature covers: one it does not
    /// cover can be changed by anyone who replays a delivery.
    pub fn header(name: HeaderName) -> Self {
        Self::from(Source::Header(name))
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
        Self::from(Source::Json {
            fields: fields.into_iter().map(Into::into).collect(),
            separator: Arc::from(separator),
        })
    }

    /// Whatever `f` makes of the verified request's head and raw body; `None` for no id.
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(&Parts, &[u8]) -> Option<String> + Send + Sync + 'static,
    {
        Self::from(Source::Custom(Arc::new(f)))
    }

    /// `sha256:` and the hex SHA-256 of the body: for senders whose deliveries carry no id,
    /// and whose retries resend the same bytes.
    pub fn body_hash() -> Self {
        Self::from(Source::BodyHash)
    }

    /// Dedupes on this id and a hash of the body together, while [`Event::id`] stays the id.
    ///
    /// For senders that do not sign their id header (GitHub, Shopify): anyone can send a
    /// captured body again under another delivery's id. Keyed on the id alone, that forgery
    /// would be handled under the real delivery's id, and the real delivery then answered as a
    /// duplicate without running the handler. Keyed on both, it cannot block anything.
    ///
    /// [`Event::id`]: crate::Event::id
    #[must_use]
    pub fn with_body_hash(mut self) -> Self {
        self.with_body_hash = true;
        self
    }

    fn from(source: Source) -> Self {
        Self {
            source,
            with_body_hash: false,
        }
    }

    /// The id of one verified delivery, if it has a non-empty one.
    pub(crate) fn resolve(
        &self,
        scheme: &dyn Scheme,
        parts: &Parts,
        body: &[u8],
        verified: &Verified,
    ) -> Option<String> {
        let id = match &self.source {
            Source::Scheme => scheme.identify(&parts.headers, body, verified),
            Source::BodyHash => Some(body_hash(body)),
            Source::Header(name) => std::str::from_utf8(parts.headers.get(name)?.as_bytes())
                .ok()
                .map(String::from),
            Source::Json { fields, separator } => json_id(body, fields, separator),
            Source::Custom(f) => f(parts, body),
        }?;
        (!id.is_empty()).then_some(id)
    }

    /// The key a delivery with `id` is claimed under.
    pub(crate) fn dedup_key(&self, id: &Arc<str>, body: &[u8]) -> Arc<str> {
        if self.with_body_hash {
            Arc::from(format!("{id}:{}", body_hash(body)))
        } else {
            Arc::clone(id)
        }
    }
}

impl Default for IdSource {
    fn default() -> Self {
        Self::scheme()
    }
}

impl fmt::Debug for IdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.with_body_hash {
            f.write_str("with_body_hash ")?;
        }
        match &self.source {
            Source::Scheme => f.write_str("IdSource::Scheme"),
            Source::BodyHash => f.write_str("IdSource::BodyHash"),
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
    let values = if fields.iter().any(|field| field.starts_with('/')) {
        let root: Value = serde_json::from_slice(body).ok()?;
        fields
            .iter()
            .map(|field| {
                if field.starts_with('/') {
                    root.pointer(field)
                } else {
                    root.get(field)
                }
                .cloned()
            })
            .collect()
    } else {
        let names: Vec<&str> = fields.iter().map(String::as_str).collect();
        json::top_level(body, &names)?
    };
    let mut id = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            id.push_str(separator);
        }
        id.push_str(&json::id_text(value.as_ref()?)?);
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(source: &IdSource, body: &str) -> Option<String> {
        let (parts, ()) = http::Request::new(()).into_parts();
        let scheme = crate::scheme::StandardWebhooks::from_key(b"k").unwrap();
        source.resolve(
            &scheme,
            &parts,
            body.as_bytes(),
            &Verified::new().with_id("hdr"),
        )
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

    #[test]
    fn body_hashes() {
        let hashed = resolve(&IdSource::body_hash(), "token=x&command=/deploy").unwrap();
        assert_eq!(hashed.len(), "sha256:".len() + 64);
        assert_ne!(
            resolve(&IdSource::body_hash(), "token=x&command=/undo").unwrap(),
            hashed
        );
        let keyed = IdSource::scheme().with_body_hash();
        let id: Arc<str> = Arc::from("delivery-1");
        let a = keyed.dedup_key(&id, b"body a");
        assert!(a.starts_with("delivery-1:sha256:"), "{a}");
        assert_ne!(a, keyed.dedup_key(&id, b"body b"));
        assert_eq!(IdSource::scheme().dedup_key(&id, b"body a"), id);
    }
}
