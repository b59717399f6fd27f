//! Signature schemes: how one sender signs its deliveries.
//!
//! The layer knows nothing of any sender's headers. It hands the request headers, the raw body
//! and the current time to a [`Scheme`], and goes on only if the scheme answers with
//! [`Verified`]. A new sender is a new `Scheme`; the layer does not change.
//!
//! | sender | scheme |
//! | --- | --- |
//! | Svix and every Standard Webhooks sender (Clerk, Resend, Crossmint, Self, ...) | [`StandardWebhooks`] |
//! | Stripe | [`HmacScheme::stripe`] |
//! | GitHub | [`HmacScheme::github`] |
//! | Shopify | [`HmacScheme::shopify`] |
//! | Slack | [`HmacScheme::slack`] |
//! | Paddle | [`HmacScheme::paddle`] |
//! | anyone else who signs with HMAC-SHA256 | [`HmacScheme::builder`] |
//!
//! All of them run on one verification core: a signature header in one of two shapes, a
//! template of what is signed, a timestamp rule and an id rule.

mod delivery_id;
pub(crate) mod engine;
mod headers;
mod hmac;
mod standard;

pub use self::hmac::{Encoding, HmacScheme, HmacSchemeBuilder, InvalidScheme, InvalidSchemeKind};
pub use delivery_id::DeliveryId;
pub use standard::StandardWebhooks;

use std::error::Error;
use std::fmt;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName};

use crate::clock::unix_seconds;

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

    fn identify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        verified: &Verified,
    ) -> Option<DeliveryId> {
        (**self).identify(headers, body, verified)
    }

    fn signs_id(&self) -> bool {
        (**self).signs_id()
    }
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
    /// Shopify's `X-Shopify-Topic`).
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

/// Why a delivery failed verification. It becomes a `400 Bad Request`.
///
/// Its `Display` is the short reason sent back to the sender, such as
/// `missing webhook-signature` or `no matching signature`: never a secret or an expected
/// signature.
///
/// ```
/// use http::HeaderName;
/// use tower_webhook::scheme::{VerifyError, VerifyErrorKind};
///
/// let missing = VerifyError::missing_header(HeaderName::from_static("x-acme-signature"));
/// assert_eq!(missing.to_string(), "missing x-acme-signature");
/// assert_eq!(missing.kind(), VerifyErrorKind::MissingHeader);
/// let malformed = VerifyError::invalid_header(HeaderName::from_static("x-acme-timestamp"))
///     .with_detail("not a number");
/// assert_eq!(malformed.to_string(), "invalid x-acme-timestamp: not a number");
/// assert_eq!(malformed.header().map(|h| h.as_str()), Some("x-acme-timestamp"));
/// let forged = VerifyError::new(VerifyErrorKind::NoMatchingSignature);
/// assert_eq!(forged.to_string(), "no matching signature");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyError(
    // Boxed: a verification passes through a dozen `Result`s, and with a one-pointer error
    // each comes back in registers rather than through memory. The box is paid for only
    // by a delivery that fails.
    Box<VerifyErrorInner>,
);

#[derive(Clone, PartialEq, Eq)]
struct VerifyErrorInner {
    kind: VerifyErrorKind,
    header: Option<HeaderName>,
    detail: Option<&'static str>,
}

impl fmt::Debug for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyError")
            .field("kind", &self.0.kind)
            .field("header", &self.0.header)
            .field("detail", &self.0.detail)
            .finish()
    }
}

/// The kind of a [`VerifyError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VerifyErrorKind {
    /// A header the scheme needs is absent or empty.
    MissingHeader,
    /// A header is present but cannot be read (not text, not a number, malformed).
    InvalidHeader,
    /// The signed timestamp is older than the tolerance allows.
    TimestampTooOld,
    /// The signed timestamp is further in the future than the tolerance allows.
    TimestampTooNew,
    /// The signature header holds no signature of a version this scheme checks.
    NoSupportedSignature,
    /// No signature matches any configured secret.
    NoMatchingSignature,
}

impl VerifyError {
    /// A required header is absent or empty.
    pub fn missing_header(name: HeaderName) -> Self {
        Self::of(VerifyErrorKind::MissingHeader, Some(name))
    }

    /// A header is present but malformed.
    pub fn invalid_header(name: HeaderName) -> Self {
        Self::of(VerifyErrorKind::InvalidHeader, Some(name))
    }

    /// An error of a kind that names no header.
    pub fn new(kind: VerifyErrorKind) -> Self {
        Self::of(kind, None)
    }

    fn of(kind: VerifyErrorKind, header: Option<HeaderName>) -> Self {
        Self(Box::new(VerifyErrorInner {
            kind,
            header,
            detail: None,
        }))
    }

    /// Adds what exactly is wrong, shown after the reason (`invalid stripe-signature: no
    /// timestamp`).
    #[must_use]
    pub fn with_detail(mut self, detail: &'static str) -> Self {
        self.0.detail = Some(detail);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> VerifyErrorKind {
        self.0.kind
    }

    /// The header at fault, for the kinds that have one.
    pub fn header(&self) -> Option<&HeaderName> {
        self.0.header.as_ref()
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = self.0.header.as_ref().map_or("header", HeaderName::as_str);
        match self.0.kind {
            VerifyErrorKind::MissingHeader => write!(f, "missing {header}"),
            VerifyErrorKind::InvalidHeader => write!(f, "invalid {header}"),
            VerifyErrorKind::TimestampTooOld => f.write_str("timestamp too old"),
            VerifyErrorKind::TimestampTooNew => f.write_str("timestamp too far in the future"),
            VerifyErrorKind::NoSupportedSignature => f.write_str("no supported signature"),
            VerifyErrorKind::NoMatchingSignature => f.write_str("no matching signature"),
        }?;
        if let Some(detail) = self.0.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl Error for VerifyError {}

/// Why a scheme could not sign a delivery (a test helper's error).
///
/// ```
/// use tower_webhook::scheme::{SignErrorKind, StandardWebhooks};
///
/// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// let err = scheme.sign("an id\nwith a newline", 0, b"{}").unwrap_err();
/// assert_eq!(err.kind(), SignErrorKind::InvalidHeaderValue);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignError {
    kind: SignErrorKind,
}

/// The kind of a [`SignError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignErrorKind {
    /// The id (or the timestamp) cannot be a header value: it holds a control character.
    InvalidHeaderValue,
    /// The scheme only holds a public key, which verifies but cannot sign.
    NoSigningKey,
}

impl SignError {
    pub(crate) fn new(kind: SignErrorKind) -> Self {
        Self { kind }
    }

    /// Why signing failed.
    pub fn kind(&self) -> SignErrorKind {
        self.kind
    }
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            SignErrorKind::InvalidHeaderValue => "the id cannot be a header value",
            SignErrorKind::NoSigningKey => "the scheme has no key that can sign",
        })
    }
}

impl Error for SignError {}

impl From<http::header::InvalidHeaderValue> for SignError {
    fn from(_: http::header::InvalidHeaderValue) -> Self {
        Self::new(SignErrorKind::InvalidHeaderValue)
    }
}

/// A secret or key that cannot be used, found when the scheme is built.
///
/// ```
/// use tower_webhook::scheme::{HmacScheme, InvalidSecretKind, StandardWebhooks};
///
/// assert_eq!(StandardWebhooks::new("whsec_not base64!").unwrap_err().kind(), InvalidSecretKind::NotBase64);
/// assert_eq!(HmacScheme::github(" \n").unwrap_err().kind(), InvalidSecretKind::Empty);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSecret {
    kind: InvalidSecretKind,
}

/// The kind of an [`InvalidSecret`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidSecretKind {
    /// The secret or key (after any prefix such as `whsec_`) is not valid base64.
    NotBase64,
    /// The secret is empty or blank: an HMAC with such a key proves nothing.
    Empty,
    /// The public or private key is not a valid Ed25519 key.
    InvalidKey,
    /// The public key is a weak (small-order) Ed25519 point, with which forged signatures
    /// verify.
    WeakKey,
}

impl InvalidSecret {
    pub(crate) fn new(kind: InvalidSecretKind) -> Self {
        Self { kind }
    }

    /// What is wrong with the secret.
    pub fn kind(&self) -> InvalidSecretKind {
        self.kind
    }
}

impl fmt::Display for InvalidSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            InvalidSecretKind::NotBase64 => {
                f.write_str("webhook secret or key is not valid base64 after its prefix (`whsec_`, `whpk_`, `whsk_`)")
            }
            InvalidSecretKind::Empty => f.write_str("webhook secret is empty or blank"),
            InvalidSecretKind::InvalidKey => f.write_str("not a valid Ed25519 key"),
            InvalidSecretKind::WeakKey => {
                f.write_str("a weak (small-order) Ed25519 public key, which anyone can forge for")
            }
        }
    }
}

impl Error for InvalidSecret {}

/// An optional `-` and ASCII digits as an `i64`; `None` for anything else, or a number out
/// of range (what `str::parse` accepts of that form, and no more).
fn parse_seconds(text: &[u8]) -> Option<i64> {
    /// The most digits that cannot overflow an `i64` (it holds 10^18, and not 10^19).
    const SAFE_DIGITS: usize = 18;
    let (negative, digits) = match text {
        [b'-', digits @ ..] => (true, digits),
        digits => (false, digits),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() <= SAFE_DIGITS {
        // A timestamp's ten digits summed without overflow checks: two `lea`s a digit, where
        // a checked multiplication waits on `imul` and a branch.
        let value = digits
            .iter()
            .fold(0i64, |value, &digit| value * 10 + i64::from(digit - b'0'));
        return Some(if negative { -value } else { value });
    }
    digits.iter().try_fold(0i64, |value, &digit| {
        let digit = i64::from(digit - b'0');
        // Counted towards the sign, so that i64::MIN parses as it does with `str::parse`.
        let value = value.checked_mul(10)?;
        if negative {
            value.checked_sub(digit)
        } else {
            value.checked_add(digit)
        }
    })
}

/// Parses a Unix timestamp in seconds and checks it lies within `tolerance` of `now`.
///
/// Only an optional `-` and ASCII digits are accepted: the signed text must be the number
/// itself, so `+17` or ` 17` are malformed rather than quietly normalised.
pub(crate) fn check_timestamp(
    text: &[u8],
    header: &HeaderName,
    now: SystemTime,
    tolerance: Duration,
) -> Result<i64, VerifyError> {
    let timestamp =
        parse_seconds(text).ok_or_else(|| VerifyError::invalid_header(header.clone()))?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    let now = unix_seconds(now);
    // i128 so that no pair of i64 values can overflow the difference.
    let age = i128::from(now) - i128::from(timestamp);
    if age > i128::from(tolerance) {
        Err(VerifyError::new(VerifyErrorKind::TimestampTooOld))
    } else if -age > i128::from(tolerance) {
        Err(VerifyError::new(VerifyErrorKind::TimestampTooNew))
    } else {
        Ok(timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const H: HeaderName = HeaderName::from_static("webhook-timestamp");

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn seconds_parse_as_str_parse_does_for_digits() {
        for text in [
            "0",
            "1700000000",
            "-1",
            "-0",
            "0001700000000",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            // Either side of the 18 digits summed without checks.
            "999999999999999999",
            "-999999999999999999",
            "1000000000000000000",
            "-1000000000000000000",
            "0000000000000000001700000000",
        ] {
            assert_eq!(
                parse_seconds(text.as_bytes()),
                text.parse::<i64>().ok(),
                "{text}"
            );
        }
        for text in ["", "-", "+1", " 1", "1 ", "1.0", "1e9", "--1", "1-", "١٢"] {
            assert_eq!(parse_seconds(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn timestamps_within_tolerance_both_ways() {
        let tol = Duration::from_secs(300);
        assert_eq!(check_timestamp(b"1000", &H, at(1300), tol), Ok(1000));
        assert_eq!(check_timestamp(b"1300", &H, at(1000), tol), Ok(1300));
        assert_eq!(
            check_timestamp(b"999", &H, at(1300), tol)
                .unwrap_err()
                .kind(),
            VerifyErrorKind::TimestampTooOld
        );
        assert_eq!(
            check_timestamp(b"1301", &H, at(1000), tol)
                .unwrap_err()
                .kind(),
            VerifyErrorKind::TimestampTooNew
        );
    }

    #[test]
    fn malformed_timestamps() {
        let tol = Duration::from_secs(300);
        for text in [
            "",
            "-",
            "+1000",
            " 1000",
            "1e3",
            "10.5",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(
                check_timestamp(text.as_bytes(), &H, at(1000), tol)
                    .unwrap_err()
                    .kind(),
                VerifyErrorKind::InvalidHeader,
                "{text:?}"
            );
        }
        assert_eq!(
            check_timestamp(b"-9223372036854775808", &H, at(1000), tol)
                .unwrap_err()
                .kind(),
            VerifyErrorKind::TimestampTooOld
        );
        assert_eq!(
            check_timestamp(b"9223372036854775807", &H, at(1000), Duration::MAX).map(|_| ()),
            Ok(())
        );
    }
}
