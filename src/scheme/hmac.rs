//! `HmacScheme`: Stripe, GitHub, Shopify, Slack, Paddle, and any other HMAC-SHA256 sender.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::request::Parts;
use http::{HeaderMap, HeaderName};

pub use super::engine::Encoding;
use super::engine::{Engine, Format, Header, IdFrom, TimestampFrom, TypeFrom};
use super::handshake::{Answers, Handshake};
use super::signature::{self, Alg};
use super::{
    DeliveryId, HmacSchemeBuilder, InvalidSecret, Scheme, SignError, Verified, VerifyError,
};

pub(crate) const FIVE_MINUTES: Duration = Duration::from_secs(5 * 60);

/// A sender that signs with HMAC-SHA256: the built-in Stripe, GitHub, Shopify, Slack and
/// Paddle schemes, and any other sender through [`builder`](Self::builder).
///
/// Every scheme tries every signature in its header against every secret, in constant time,
/// and checks the timestamp where the sender signs one. Add the secret a sender is rotating
/// away from with [`with_secret`](Self::with_secret), so both verify during the rotation.
///
/// | scheme | signature header | signed content | tolerance | id |
/// | --- | --- | --- | --- | --- |
/// | [`stripe`](Self::stripe) | `Stripe-Signature: t=<unix>,v1=<hex>,...` | `{t}.{body}` | 300 s | `id` of the JSON body |
/// | [`github`](Self::github) | `X-Hub-Signature-256: sha256=<hex>` | `{body}` | none | `X-GitHub-Delivery` (unsigned: keyed with the body) |
/// | [`shopify`](Self::shopify) | `X-Shopify-Hmac-Sha256: <base64>` | `{body}` | none | `X-Shopify-Webhook-Id` (unsigned: keyed with the body) |
/// | [`slack`](Self::slack) | `X-Slack-Signature: v0=<hex>` | `v0:{X-Slack-Request-Timestamp}:{body}` | 300 s | `event_id` of the body, else a hash of the body |
/// | [`paddle`](Self::paddle) | `Paddle-Signature: ts=<unix>;h1=<hex>;...` | `{ts}:{body}` | 300 s | `event_id` of the JSON body |
///
/// ```
/// use tower_webhook::{scheme::HmacScheme, store::MemoryStore, VerifyWebhookLayer};
///
/// let stripe = VerifyWebhookLayer::new(HmacScheme::stripe("whsec_...from the Stripe dashboard")?)
///     .with_store(MemoryStore::new());
/// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
/// ```
#[derive(Clone)]
pub struct HmacScheme {
    engine: Engine,
    answers: Answers,
}

impl HmacScheme {
    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, each `v1` an HMAC-SHA256
    /// of `"{t}.{body}"`; a 300 s tolerance; the id is the `id` field of the JSON body.
    ///
    /// The key is the UTF-8 bytes of the whole `whsec_...` signing secret. Stripe's secrets
    /// share Svix's `whsec_` prefix but are **not** base64-decoded. Every `v1` entry is tried,
    /// not only the last.
    ///
    /// ```
    /// use tower_webhook::scheme::{HmacScheme, Scheme};
    ///
    /// let stripe = HmacScheme::stripe("whsec_test_secret")?;
    /// let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    /// let headers = stripe.sign("", 1_700_000_000, body)?; // Stripe-Signature: t=...,v1=...
    /// # let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    /// let verified = stripe.verify(&headers, body, now)?;
    /// assert_eq!(stripe.identify(&headers, body, &verified).as_deref(), Some("evt_1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stripe(secret: &str) -> Result<Self, InvalidSecret> {
        Self::preset(
            Engine {
                name: "stripe",
                signature: Header::new(HeaderName::from_static("stripe-signature")),
                format: Format::List {
                    entries: b',',
                    pair: b'=',
                    versions: &[("v1", Alg::HmacSha256)],
                    timestamp: Some("t"),
                },
                encoding: Encoding::Hex,
                template: signature::builtin_template("{timestamp}.{body}"),
                timestamp: Some(TimestampFrom::SignatureHeader),
                tolerance: FIVE_MINUTES,
                id: Some(IdFrom::JsonField("id")),
                event_type: Some(TypeFrom::json(&["type"])),
                keys: Vec::new(),
            },
            secret,
        )
    }

    /// GitHub: `X-Hub-Signature-256: sha256=<hex>`, an HMAC-SHA256 of the body; no timestamp;
    /// the id is `X-GitHub-Delivery` and the event type `X-GitHub-Event`
    /// ([`Event::event_type`](crate::Event::event_type)).
    ///
    /// A delivery signed only with the legacy SHA-1 `X-Hub-Signature` is refused.
    ///
    /// GitHub signs neither the delivery id nor a timestamp. Anyone who captured one delivery
    /// can send its body again under a new id, at any time, and it verifies. The layer's
    /// default key is therefore the id and a hash of the body together (see
    /// [`IdSource::with_body_hash`](crate::IdSource::with_body_hash)), so a forged id cannot
    /// block a real event. Make your handler idempotent on the payload itself where a replay
    /// would do harm.
    ///
    /// ```
    /// use tower_webhook::{scheme::HmacScheme, store::MemoryStore, VerifyWebhookLayer};
    ///
    /// // Keyed on X-GitHub-Delivery and the body: nothing to configure.
    /// let layer = VerifyWebhookLayer::new(HmacScheme::github("It's a Secret to Everybody")?)
    ///     .with_store(MemoryStore::new());
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn github(secret: &str) -> Result<Self, InvalidSecret> {
        Self::preset(
            Engine {
                name: "github",
                signature: Header::new(HeaderName::from_static("x-hub-signature-256")),
                format: Format::Single {
                    prefix: "sha256=".to_owned(),
                    alg: Alg::HmacSha256,
                },
                encoding: Encoding::Hex,
                template: signature::builtin_template("{body}"),
                timestamp: None,
                tolerance: Duration::ZERO,
                id: Some(IdFrom::Header(Header::new(HeaderName::from_static(
                    "x-github-delivery",
                )))),
                event_type: Some(TypeFrom::header("x-github-event")),
                keys: Vec::new(),
            },
            secret,
        )
    }

    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>`, an HMAC-SHA256 of the body; no timestamp;
    /// the id is `X-Shopify-Webhook-Id` and the event type `X-Shopify-Topic`.
    ///
    /// Shopify signs neither the id nor a timestamp: see [`github`](Self::github) for what
    /// that allows. As for GitHub, the layer keys each delivery on the id and a hash of the
    /// body by default.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let shopify = HmacScheme::shopify("shpss_0123456789abcdef")?;
    /// let headers = shopify.sign("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", 0, br#"{"id":1}"#)?;
    /// assert!(headers.contains_key("x-shopify-hmac-sha256"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shopify(secret: &str) -> Result<Self, InvalidSecret> {
        Self::preset(
            Engine {
                name: "shopify",
                signature: Header::new(HeaderName::from_static("x-shopify-hmac-sha256")),
                format: Format::Single {
                    prefix: String::new(),
                    alg: Alg::HmacSha256,
                },
                encoding: Encoding::Base64,
                template: signature::builtin_template("{body}"),
                timestamp: None,
                tolerance: Duration::ZERO,
                id: Some(IdFrom::Header(Header::new(HeaderName::from_static(
                    "x-shopify-webhook-id",
                )))),
                event_type: Some(TypeFrom::header("x-shopify-topic")),
                keys: Vec::new(),
            },
            secret,
        )
    }

    /// Slack: `X-Slack-Signature: v0=<hex>`, an HMAC-SHA256 of
    /// `"v0:{X-Slack-Request-Timestamp}:{body}"`; a 300 s tolerance.
    ///
    /// The layer answers Slack's signed `url_verification` itself, with the `challenge` as
    /// text.
    ///
    /// Bodies are JSON (Events API) or form-encoded (slash commands, interactivity). The id is
    /// the `event_id` of an Events API body. A body without one dedupes on a hash of the body,
    /// so that Slack's retries (`X-Slack-Retry-Num`), which resend the same bytes, are still
    /// caught.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let slack = HmacScheme::slack("8f742231b10e8888abcd99yyyzzz85a5")?;
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn slack(signing_secret: &str) -> Result<Self, InvalidSecret> {
        Self::preset(
            Engine {
                name: "slack",
                signature: Header::new(HeaderName::from_static("x-slack-signature")),
                format: Format::Single {
                    prefix: "v0=".to_owned(),
                    alg: Alg::HmacSha256,
                },
                encoding: Encoding::Hex,
                template: signature::builtin_template("v0:{timestamp}:{body}"),
                timestamp: Some(TimestampFrom::seconds(Header::new(
                    HeaderName::from_static("x-slack-request-timestamp"),
                ))),
                tolerance: FIVE_MINUTES,
                id: Some(IdFrom::JsonFieldOrBodyHash("event_id")),
                event_type: Some(TypeFrom::json(&["event", "type"])),
                keys: Vec::new(),
            },
            signing_secret,
        )
        .map(|slack| slack.answering(Answers::Slack))
    }

    /// Paddle (Billing): `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>...]`, each `h1` an
    /// HMAC-SHA256 of `"{ts}:{body}"` with the notification destination's secret key; a 300 s
    /// tolerance by default; the id is the `event_id` of the JSON body.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let paddle = HmacScheme::paddle("pdl_ntfset_01h..._secret")?.with_tolerance(Duration::from_secs(5));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn paddle(secret: &str) -> Result<Self, InvalidSecret> {
        Self::preset(
            Engine {
                name: "paddle",
                signature: Header::new(HeaderName::from_static("paddle-signature")),
                format: Format::List {
                    entries: b';',
                    pair: b'=',
                    versions: &[("h1", Alg::HmacSha256)],
                    timestamp: Some("ts"),
                },
                encoding: Encoding::Hex,
                template: signature::builtin_template("{timestamp}:{body}"),
                timestamp: Some(TimestampFrom::SignatureHeader),
                tolerance: FIVE_MINUTES,
                id: Some(IdFrom::JsonField("event_id")),
                event_type: Some(TypeFrom::json(&["event_type"])),
                keys: Vec::new(),
            },
            secret,
        )
    }

    /// A scheme for any other sender that signs with HMAC-SHA256.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::scheme::{Encoding, HmacScheme};
    ///
    /// // X-Acme-Signature: sha256=<hex of HMAC("{timestamp}.{body}")>
    /// let acme = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .prefix("sha256=")
    ///     .encoding(Encoding::Hex)
    ///     .signs("{timestamp}.{body}")
    ///     .timestamp_header("x-acme-timestamp")
    ///     .tolerance(Duration::from_secs(300))
    ///     .id_header("x-acme-delivery")
    ///     .secret("acme secret")
    ///     .build()?;
    /// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
    /// ```
    pub fn builder(name: &'static str) -> HmacSchemeBuilder {
        HmacSchemeBuilder::new(name)
    }

    pub(crate) fn from_engine(engine: Engine) -> Self {
        Self {
            engine,
            answers: Answers::None,
        }
    }

    #[cfg(feature = "test-util")]
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(super) fn preset(engine: Engine, secret: &str) -> Result<Self, InvalidSecret> {
        Self::from_engine(engine).with_secret(secret)
    }

    /// The same scheme, answering these handshakes.
    pub(super) fn answering(mut self, answers: Answers) -> Self {
        self.answers = answers;
        self
    }

    /// Adds another secret, as the sender shows it: its UTF-8 bytes, without surrounding
    /// whitespace (a newline from a secrets file), are the key. A delivery signed with any of
    /// the secrets verifies. A blank secret is refused: an HMAC keyed with it proves nothing.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// // During a rotation both secrets verify.
    /// let github = HmacScheme::github("the new secret")?.with_secret("the old secret")?;
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_secret(self, secret: &str) -> Result<Self, InvalidSecret> {
        self.with_key(secret.trim().as_bytes())
    }

    /// Adds another secret given as raw key bytes.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let shopify = HmacScheme::shopify("shpss_current")?.with_key([0x5e_u8; 32])?;
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_key(mut self, key: impl AsRef<[u8]>) -> Result<Self, InvalidSecret> {
        self.engine.add_hmac_key(key.as_ref())?;
        Ok(self)
    }

    /// Sets how far the signed timestamp may lie from now, either way. Schemes without a
    /// timestamp ignore it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let slack = HmacScheme::slack("8f742231b10e8888abcd99yyyzzz85a5")?.with_tolerance(Duration::from_secs(60));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.engine.tolerance = tolerance;
        self
    }

    /// The headers the sender would attach to a delivery of `body`, signed with the first
    /// secret, for tests of your own handlers. `id` goes into the scheme's id header, where it
    /// has one (GitHub, Shopify); `timestamp` is signed where the scheme signs one.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let github = HmacScheme::github("It's a Secret to Everybody")?;
    /// let headers = github.sign("d0b2c1a0-0000-4000-8000-000000000001", 0, b"Hello, World!")?;
    /// // GitHub's documented example signature for this secret and body.
    /// assert_eq!(
    ///     headers["x-hub-signature-256"],
    ///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<HeaderMap, SignError> {
        self.engine.sign(id, timestamp, body)
    }
}

impl Scheme for HmacScheme {
    fn name(&self) -> &'static str {
        self.engine.name
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        self.engine.verify(headers, body, now)
    }

    fn identify(
        &self,
        _headers: &HeaderMap,
        body: &[u8],
        verified: &Verified,
    ) -> Option<DeliveryId> {
        self.engine.identify(body, verified)
    }

    fn event_type(&self, _headers: &HeaderMap, body: &[u8], verified: &Verified) -> Option<String> {
        self.engine.event_type(body, verified)
    }

    fn secret_body_fields(&self) -> &'static [&'static str] {
        match self.answers {
            // Slack still sends its deprecated verification token in every Events API body.
            Answers::Slack => &["token"],
            _ => &[],
        }
    }

    fn signs_id(&self) -> bool {
        self.engine.signs_id()
    }

    fn handshake(
        &self,
        request: &Parts,
        body: &[u8],
        verified: Option<&Verified>,
    ) -> Option<Handshake> {
        self.answers
            .answer(request, body, verified, self.engine.keys.first())
    }
}

impl fmt::Debug for HmacScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.engine.debug(f, "HmacScheme")
    }
}
