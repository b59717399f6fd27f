//! The trait every signature scheme implements, and what a verification returns.

use std::fmt;
use std::time::SystemTime;

use http::request::Parts;
use http::{HeaderMap, HeaderName};

use super::{DeliveryId, Handshake, VerifyError};

/// How one sender signs its webhooks.
///
/// Implementations check the signature and timestamp of a delivery against its raw body. They
/// must compare signatures in constant time, try every configured secret, and never put a
/// secret or an expected signature into an error.
///
/// ```
/// use std::time::SystemTime;
/// use http::{HeaderMap, HeaderName, HeaderValue};
/// use tower_webhook::scheme::{DeliveryId, Scheme, Verified, VerifyError, VerifyErrorKind};
///
/// /// A sender that puts a shared token in a header (no signature: a weak scheme, but real).
/// #[derive(Debug)]
/// struct SharedToken(String);
///
/// impl Scheme for SharedToken {
///     fn name(&self) -> &'static str {
///         "shared-token"
///     }
///
///     fn verify(&self, headers: &HeaderMap, _body: &[u8], _now: SystemTime) -> Result<Verified, VerifyError> {
///         let name = HeaderName::from_static("x-token");
///         let token = headers
///             .get(&name)
///             .ok_or_else(|| VerifyError::missing_header(name.clone()))?;
///         // Compare in constant time in real code (`subtle::ConstantTimeEq`).
///         if token.as_bytes() != self.0.as_bytes() {
///             return Err(VerifyError::new(VerifyErrorKind::NoMatchingSignature));
///         }
///         // No allocation: kept in place, or sharing the header's bytes.
///         let id = headers.get("x-delivery").and_then(DeliveryId::from_header);
///         Ok(id.map_or_else(Verified::new, |id| Verified::new().with_id(id)))
///     }
/// }
/// ```
pub trait Scheme: fmt::Debug + Send + Sync + 'static {
    /// A short, stable name for the scheme, such as `"standard-webhooks"`.
    fn name(&self) -> &'static str;

    /// Verifies one delivery.
    ///
    /// `body` is the raw body exactly as received; `now` is the layer's clock.
    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError>;

    /// Verifies one delivery, with its request line too: the layer calls this one. Schemes
    /// that sign the URL or the method (Twilio, Square, HubSpot) read them here; the default
    /// is [`verify`](Self::verify) on the request's headers.
    fn verify_request(
        &self,
        request: &Parts,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        self.verify(&request.headers, body, now)
    }

    /// The id of a verified delivery, where [`IdSource::scheme`](crate::IdSource::scheme)
    /// asks the scheme for it (the default).
    ///
    /// Runs after [`verify`](Self::verify) succeeded, and only when the id is needed, so that
    /// a scheme whose id lies in the body (Stripe's `id` field) does not parse the body during
    /// verification. The default is the id [`verify`](Self::verify) found.
    fn identify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        verified: &Verified,
    ) -> Option<DeliveryId> {
        let _ = (headers, body);
        verified.id.clone()
    }

    /// The kind of event of a verified delivery (`invoice.paid`, `push`), where the sender
    /// names it: [`Event::event_type`](crate::Event::event_type), the inbox's type column
    /// and filters, and the delivery's log line.
    ///
    /// Runs after [`verify`](Self::verify) succeeded, as [`identify`](Self::identify) does,
    /// so that verification never parses the body. The default is the type
    /// [`verify`](Self::verify) found in a header; the built-in schemes whose senders put it
    /// in the body (Standard Webhooks' and Stripe's `type`, Paddle's `event_type`, ...) read
    /// it there. [`EventTypeSource`](crate::EventTypeSource) chooses another per layer.
    fn event_type(&self, headers: &HeaderMap, body: &[u8], verified: &Verified) -> Option<String> {
        let _ = (headers, body);
        verified.event_type.clone()
    }

    /// Whether the request header `name` carries a credential of this sender (a token that
    /// proves who sent it, as GitLab's `X-Gitlab-Token`), not a signature: an inbox never
    /// stores it, so neither a worker, the console nor the command line ever shows it. The
    /// default is [`is_common_credential`]: `Authorization`, `Proxy-Authorization`,
    /// `Cookie`, `Set-Cookie`, `X-Api-Key` and `X-Auth-Token`. A scheme that reads a
    /// secret from a header of its own names it here, and keeps the common ones.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_webhook::scheme::{is_common_credential, Scheme, SharedToken};
    ///
    /// let gitlab = SharedToken::gitlab("a token")?;
    /// assert!(gitlab.is_credential_header(&HeaderName::from_static("x-gitlab-token")));
    /// assert!(gitlab.is_credential_header(&http::header::AUTHORIZATION));
    /// assert!(!gitlab.is_credential_header(&HeaderName::from_static("x-gitlab-event")));
    /// assert!(is_common_credential(&http::header::COOKIE));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    fn is_credential_header(&self, name: &HeaderName) -> bool {
        is_common_credential(name)
    }

    /// The fields of the JSON body that hold a secret of the sender's (Microsoft Graph's
    /// `clientState`, Slack's legacy verification `token`), at any depth. The body is stored
    /// as it was verified, since a worker's handler gets the same bytes as an inline one;
    /// the console and the command line show these fields' values as `[redacted]`. The
    /// default is none.
    fn secret_body_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether the signature covers the id that [`identify`](Self::identify) returns: it is
    /// part of the signed content, or it is read from the (signed) body.
    ///
    /// Where it is not, the layer's default dedup key covers a hash of the body as well, so
    /// that a captured delivery replayed under another delivery's id cannot make that
    /// delivery a "duplicate" (see [`IdSource::with_body_hash`](crate::IdSource::with_body_hash)).
    /// The default is `false`, the safe answer: a scheme that signs its id says so.
    fn signs_id(&self) -> bool {
        false
    }

    /// The layer's own answer where `request` is one of the sender's handshakes (Slack's
    /// `url_verification`, Zoom's `endpoint.url_validation`, Meta's `GET` subscription
    /// check): answered before any store, inbox or handler, never deduplicated.
    ///
    /// The layer asks twice: before verifying, with `verified` `None`, for the handshakes
    /// the sender does not sign (a `GET` with a challenge in its query); then after, with
    /// the verified delivery, for the signed ones. A request answered by neither is a
    /// delivery, verified as any other: a forged handshake is refused like a forged
    /// delivery. The default answers none.
    fn handshake(
        &self,
        request: &Parts,
        body: &[u8],
        verified: Option<&Verified>,
    ) -> Option<Handshake> {
        let _ = (request, body, verified);
        None
    }
}

/// A scheme chosen at run time, such as one picked from configuration.
impl<S: Scheme + ?Sized> Scheme for Box<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        (**self).verify(headers, body, now)
    }

    fn verify_request(
        &self,
        request: &Parts,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        (**self).verify_request(request, body, now)
    }

    fn identify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        verified: &Verified,
    ) -> Option<DeliveryId> {
        (**self).identify(headers, body, verified)
    }

    fn event_type(&self, headers: &HeaderMap, body: &[u8], verified: &Verified) -> Option<String> {
        (**self).event_type(headers, body, verified)
    }

    fn is_credential_header(&self, name: &HeaderName) -> bool {
        (**self).is_credential_header(name)
    }

    fn secret_body_fields(&self) -> &'static [&'static str] {
        (**self).secret_body_fields()
    }

    fn signs_id(&self) -> bool {
        (**self).signs_id()
    }

    fn handshake(
        &self,
        request: &Parts,
        body: &[u8],
        verified: Option<&Verified>,
    ) -> Option<Handshake> {
        (**self).handshake(request, body, verified)
    }
}

/// Whether `name` is a header that carries a credential whatever the sender:
/// `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key` or
/// `X-Auth-Token`. What [`Scheme::is_credential_header`] answers by default.
pub fn is_common_credential(name: &HeaderName) -> bool {
    use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, SET_COOKIE};
    [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE, SET_COOKIE].contains(name)
        || matches!(name.as_str(), "x-api-key" | "x-auth-token")
}

/// What a scheme learned from a delivery it verified.
///
/// ```
/// use tower_webhook::scheme::Verified;
///
/// let verified = Verified::new()
///     .with_id("msg_1")
///     .with_timestamp(1_700_000_000)
///     .with_event_type("user.created");
/// assert_eq!(verified.id.as_deref(), Some("msg_1"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The delivery's id, where the scheme carries one (Standard Webhooks: `webhook-id`).
    pub id: Option<DeliveryId>,
    /// The signed timestamp, in seconds since the Unix epoch, where the scheme has one.
    pub timestamp: Option<i64>,
    /// The kind of event, where the sender names it in a header (GitHub's `X-GitHub-Event`,
    /// Shopify's `X-Shopify-Topic`). One in the body is read after verification, by
    /// [`Scheme::event_type`].
    pub event_type: Option<String>,
}

impl Verified {
    /// A verified delivery with neither id nor timestamp.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the id the scheme found.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<DeliveryId>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the signed timestamp, in seconds since the Unix epoch.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Sets the kind of event.
    #[must_use]
    pub fn with_event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }
}
