//! Where the id that deduplicates a delivery comes from.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::HeaderName;

mod resolve;

pub(crate) use resolve::NoId;

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
