//! Where the id that deduplicates a delivery comes from.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::HeaderName;
use serde_json::Value;

use crate::json;
use crate::pipeline::key::dedup_key;
use crate::scheme::engine::body_hash;
use crate::scheme::{DeliveryId, Scheme, Verified};

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
/// // Self's key where the body has it, else the signed webhook-id (a `{"type":"ping"}` test).
/// let with_fallback = IdSource::json_fields(["verification_id", "type"], "-").or(IdSource::scheme());
/// ```
///
/// An id that is missing or empty makes the delivery a `400 Bad Request` (`missing event id`,
/// or `body is not a JSON object` where the id is read from the body): it verified, but the
/// layer cannot tell its copies apart. Senders that drop every 4xx (Self does) would drop such
/// a delivery; give them a fallback with [`or`](Self::or).
///
/// # The dedup key
///
/// The layer claims a delivery under a key made of the layer's
/// [name](crate::VerifyWebhookLayer::with_name) and the id, so that layers sharing one store
/// never see each other's deliveries. The key is always bounded in length (a long id is
/// stored as its SHA-256) and never confuses two different ids: the fields of
/// [`json_fields`](Self::json_fields) are keyed by their JSON values, so `("v-1", "done")`
/// and `("v", "1-done")`, or `1` and `"1"`, stay apart even where the id a handler sees is
/// the same text.
///
/// Where the id is not covered by the signature (GitHub's and Shopify's id headers, any
/// [`header`](Self::header)), the key also covers a hash of the body by default: see
/// [`with_body_hash`](Self::with_body_hash) and [`without_body_hash`](Self::without_body_hash).
#[derive(Clone)]
pub struct IdSource {
    source: Source,
    body_hash: BodyHash,
}

/// Whether the dedup key covers a hash of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyHash {
    /// Where the id is not signed: the scheme's id when the scheme does not sign it, and
    /// any header.
    Unsigned,
    Always,
    Never,
}

/// The id of one delivery, the text its dedup key is made from where that differs (the JSON
/// values of body fields, which stay apart where their joined text would not), and whether
/// the key covers the body.
#[derive(Debug)]
pub(crate) struct Identified {
    pub(crate) id: DeliveryId,
    material: Option<String>,
    covers_body: bool,
}

impl Identified {
    /// Marks which source of an [`IdSource::or`] found the id, so that the two sources'
    /// keys never meet.
    fn found_by(mut self, branch: char) -> Self {
        let material = self.material.as_deref().unwrap_or(&self.id);
        self.material = Some(format!("{branch}:{material}"));
        self
    }
}

/// Why a verified delivery has no id, the more telling reason greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum NoId {
    /// The source found nothing, or an empty id.
    Missing,
    /// The id is read from the body, and the body is not a JSON object.
    NotJson,
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
    Or(Box<IdSource>, Box<IdSource>),
}

impl IdSource {
    /// The id the scheme verified. The default.
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, IdSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     .with_id_source(IdSource::scheme()); // the default: the signed webhook-id
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn scheme() -> Self {
        Self::from(Source::Scheme)
    }

    /// The value of a request header. The layer cannot know whether the signature covers a
    /// header, so the dedup key covers a hash of the body as well, unless
    /// [`without_body_hash`](Self::without_body_hash) says otherwise.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_webhook::{scheme::StandardWebhooks, IdSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     .with_id_source(IdSource::header(HeaderName::from_static("x-request-id")));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn header(name: HeaderName) -> Self {
        Self::from(Source::Header(name))
    }

    /// One field of the JSON body: a top-level key, or a JSON Pointer such as `/data/id`.
    /// Strings are taken as they are; numbers and booleans as their JSON text.
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, IdSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     // A nested field, as a JSON Pointer; a top-level key works as it is ("id").
    ///     .with_id_source(IdSource::json_field("/data/object/id"));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn json_field(field: impl Into<String>) -> Self {
        Self::json_fields([field], "")
    }

    /// Several fields of the JSON body, each as in [`json_field`](Self::json_field), joined
    /// with `separator` into the id a handler sees. Every field must be present. The dedup
    /// key is made from the fields' JSON values, not the joined text, so no two different
    /// combinations share a key whatever the separator.
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, IdSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     // Self: "{verification_id}-{type}"; the id a handler sees is "ver_1-verification.completed".
    ///     .with_id_source(IdSource::json_fields(["verification_id", "type"], "-"));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
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
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, IdSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     .with_id_source(IdSource::custom(|parts, body| {
    ///         // Anything the verified request tells: here, a header and the body's length.
    ///         let request = parts.headers.get("x-request-id")?.to_str().ok()?;
    ///         Some(format!("{request}/{}", body.len()))
    ///     }));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(&Parts, &[u8]) -> Option<String> + Send + Sync + 'static,
    {
        Self::from(Source::Custom(Arc::new(f)))
    }

    /// `sha256:` and the hex SHA-256 of the body: for senders whose deliveries carry no id,
    /// and whose retries resend the same bytes.
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, IdSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     // A sender with no ids, whose retries resend the same bytes.
    ///     .with_id_source(IdSource::body_hash());
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn body_hash() -> Self {
        Self::from(Source::BodyHash)
    }

    /// Dedupes on this id and a hash of the body together, while [`Event::id`] stays the id.
    ///
    /// This is already the default where the id is not signed: the scheme's id for schemes
    /// that do not sign it (GitHub, Shopify; see
    /// [`Scheme::signs_id`](crate::scheme::Scheme::signs_id)), and any
    /// [`header`](Self::header). Anyone can send a captured body again under another
    /// delivery's id. Keyed on the id alone, that forgery would be handled under the real
    /// delivery's id, and the real delivery then answered as a duplicate without running the
    /// handler: a lost event. Keyed on both, it cannot block anything.
    ///
    /// [`Event::id`]: crate::Event::id
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, IdSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     // Keyed on the id and the body, even though Standard Webhooks signs its id.
    ///     .with_id_source(IdSource::scheme().with_body_hash());
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    #[must_use]
    pub fn with_body_hash(mut self) -> Self {
        self.body_hash = BodyHash::Always;
        self
    }

    /// Dedupes on the id alone, even where the signature does not cover it.
    ///
    /// An explicit opt-in to the weaker key, for a sender whose retries of one delivery may
    /// carry different bytes under one id. Anyone who captured one delivery can then make a
    /// later delivery answer "duplicate" by replaying the capture under the later id, before
    /// the real one arrives: its handler never runs. Make sure your handler can tell such a
    /// replay from the real event before choosing this.
    ///
    /// ```
    /// use tower_webhook::{scheme::HmacScheme, IdSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(HmacScheme::github("It's a Secret to Everybody")?)
    ///     .with_id_source(IdSource::scheme().without_body_hash());
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    #[must_use]
    pub fn without_body_hash(mut self) -> Self {
        self.body_hash = BodyHash::Never;
        self
    }

    /// This source, or where it finds no id (the field is missing, the body is not JSON),
    /// `fallback`.
    ///
    /// For senders whose key lies in the body of most events but not all: Self keys its
    /// verification events on `"{verification_id}-{type}"`, while its test events carry
    /// neither; and Self drops every 4xx, so a `400 missing event id` would lose them.
    /// Keys found by the two sources never meet, even for equal ids.
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, IdSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     .with_id_source(
    ///         IdSource::json_fields(["verification_id", "type"], "-").or(IdSource::scheme()),
    ///     );
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    #[must_use]
    pub fn or(self, fallback: IdSource) -> Self {
        Self::from(Source::Or(Box::new(self), Box::new(fallback)))
    }

    fn from(source: Source) -> Self {
        Self {
            source,
            body_hash: BodyHash::Unsigned,
        }
    }

    /// The id of one verified delivery, if it has a non-empty one; else why not.
    pub(crate) fn resolve(
        &self,
        scheme: &dyn Scheme,
        parts: &Parts,
        body: &[u8],
        verified: &Verified,
    ) -> Result<Identified, NoId> {
        let missing = NoId::Missing;
        let (id, material) = match &self.source {
            Source::Scheme => (
                scheme
                    .identify(&parts.headers, body, verified)
                    .ok_or(missing)?,
                None,
            ),
            Source::BodyHash => (body_hash(body).into(), None),
            Source::Header(name) => {
                let value = parts.headers.get(name).ok_or(missing)?;
                (DeliveryId::from_header(value).ok_or(missing)?, None)
            }
            Source::Json { fields, separator } => {
                let (id, material) = json_id(body, fields, separator)?;
                (id.into(), Some(material))
            }
            Source::Custom(f) => (f(parts, body).ok_or(missing)?.into(), None),
            Source::Or(first, fallback) => {
                let found = match first.resolve(scheme, parts, body, verified) {
                    Ok(found) => found.found_by('0'),
                    Err(first_failed) => fallback
                        .resolve(scheme, parts, body, verified)
                        // "not JSON" says more than "missing" about why neither found one.
                        .map_err(|failed| first_failed.max(failed))?
                        .found_by('1'),
                };
                let covers_body = self.covers_body(found.covers_body);
                return Ok(Identified {
                    covers_body,
                    ..found
                });
            }
        };
        if id.is_empty() {
            return Err(missing);
        }
        let unsigned = match self.source {
            Source::Scheme => !scheme.signs_id(),
            Source::Header(_) => true,
            _ => false,
        };
        Ok(Identified {
            id,
            material,
            covers_body: self.covers_body(unsigned),
        })
    }

    /// Whether the key covers the body: as set, or where the id is `unsigned`.
    fn covers_body(&self, unsigned: bool) -> bool {
        match self.body_hash {
            BodyHash::Always => true,
            BodyHash::Never => false,
            BodyHash::Unsigned => unsigned,
        }
    }

    /// The key a delivery is claimed under, in the layer's (escaped) `namespace`.
    pub(crate) fn dedup_key(namespace: &str, identified: &Identified, body: &[u8]) -> Arc<str> {
        let material = identified.material.as_deref().unwrap_or(&identified.id);
        dedup_key(namespace, material, identified.covers_body.then_some(body))
    }
}

impl Default for IdSource {
    fn default() -> Self {
        Self::scheme()
    }
}

impl fmt::Debug for IdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.body_hash {
            BodyHash::Unsigned => {}
            BodyHash::Always => f.write_str("with_body_hash ")?,
            BodyHash::Never => f.write_str("without_body_hash ")?,
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
            Source::Or(first, fallback) => f
                .debug_tuple("IdSource::Or")
                .field(first)
                .field(fallback)
                .finish(),
        }
    }
}

/// The id of `fields` joined with `separator`, and the fields' JSON values joined with `,`:
/// each value's JSON text ends where it ends, so the second is injective.
fn json_id(body: &[u8], fields: &[String], separator: &str) -> Result<(String, String), NoId> {
    let values = if fields.iter().any(|field| field.starts_with('/')) {
        let root: Value = serde_json::from_slice(body).map_err(|_| NoId::NotJson)?;
        if !root.is_object() {
            return Err(NoId::NotJson);
        }
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
        json::top_level(body, &names).ok_or(NoId::NotJson)?
    };
    let mut id = String::new();
    let mut material = String::new();
    for (i, value) in values.iter().enumerate() {
        let value = value.as_ref().ok_or(NoId::Missing)?;
        if i > 0 {
            id.push_str(separator);
            material.push(',');
        }
        id.push_str(&json::id_text(value).ok_or(NoId::Missing)?);
        material.push_str(&value.to_string());
    }
    Ok((id, material))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identify(source: &IdSource, body: &str) -> Option<Identified> {
        try_identify(source, body).ok()
    }

    fn try_identify(source: &IdSource, body: &str) -> Result<Identified, NoId> {
        let (parts, ()) = http::Request::new(()).into_parts();
        let scheme = crate::scheme::StandardWebhooks::from_key(b"k").unwrap();
        source.resolve(
            &scheme,
            &parts,
            body.as_bytes(),
            &Verified::new().with_id("hdr"),
        )
    }

    fn resolve(source: &IdSource, body: &str) -> Option<String> {
        identify(source, body).map(|identified| identified.id.into())
    }

    fn key(source: &IdSource, body: &str) -> Arc<str> {
        let identified = identify(source, body).unwrap();
        IdSource::dedup_key("ns", &identified, body.as_bytes())
    }

    #[test]
    fn a_fallback_when_the_body_has_no_id() {
        let self_id = IdSource::json_fields(["verification_id", "type"], "-");
        let with_fallback = self_id.clone().or(IdSource::scheme());
        let ping = r#"{"type":"ping"}"#;
        assert_eq!(try_identify(&self_id, ping).unwrap_err(), NoId::Missing);
        assert_eq!(
            try_identify(&self_id, "not json").unwrap_err(),
            NoId::NotJson
        );
        assert_eq!(try_identify(&self_id, "[1]").unwrap_err(), NoId::NotJson);
        assert_eq!(resolve(&with_fallback, ping).as_deref(), Some("hdr"));
        assert_eq!(resolve(&with_fallback, "not json").as_deref(), Some("hdr"));
        let done = r#"{"verification_id":"v_1","type":"done"}"#;
        assert_eq!(resolve(&with_fallback, done).as_deref(), Some("v_1-done"));
        // Where neither finds one, the reason that says more wins.
        let neither = IdSource::json_field("id").or(IdSource::json_field("/other"));
        assert_eq!(try_identify(&neither, "x").unwrap_err(), NoId::NotJson);
        // The two sources' keys never meet, even for the same text.
        let a = IdSource::json_field("id").or(IdSource::scheme());
        assert_ne!(key(&a, r#"{"id":"hdr"}"#), key(&a, r#"{"x":1}"#));
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
    fn joined_fields_key_apart_where_their_text_does_not() {
        let source = IdSource::json_fields(["verification_id", "type"], "-");
        let a = r#"{"verification_id":"v-1","type":"done"}"#;
        let b = r#"{"verification_id":"v","type":"1-done"}"#;
        assert_eq!(resolve(&source, a), resolve(&source, b));
        assert_ne!(key(&source, a), key(&source, b));
        let single = IdSource::json_field("id");
        assert_eq!(resolve(&single, r#"{"id":1}"#).as_deref(), Some("1"));
        assert_eq!(resolve(&single, r#"{"id":"1"}"#).as_deref(), Some("1"));
        assert_ne!(key(&single, r#"{"id":1}"#), key(&single, r#"{"id":"1"}"#));
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
        // Standard Webhooks signs its id: the key is the id alone, unless asked.
        assert_eq!(&*key(&IdSource::scheme(), "body a"), "ns:i:hdr");
        let keyed = IdSource::scheme().with_body_hash();
        let a = key(&keyed, "body a");
        assert!(a.starts_with("ns:ib:") && a.ends_with(":hdr"), "{a}");
        assert_ne!(a, key(&keyed, "body b"));
    }
}
