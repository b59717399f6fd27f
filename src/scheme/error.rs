//! Why a delivery failed verification, why signing failed, why a secret was refused.

use std::error::Error;
use std::fmt;

use http::HeaderName;

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

/// Settings an [`HmacSchemeBuilder`](super::HmacSchemeBuilder) cannot build a scheme from.
///
/// ```
/// use tower_webhook::scheme::{HmacScheme, InvalidSchemeKind};
///
/// let err = HmacScheme::builder("acme").secret("s").build().unwrap_err();
/// assert_eq!(err.kind(), InvalidSchemeKind::NoSignatureHeader);
/// assert_eq!(err.to_string(), "no signature header was set");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidScheme {
    kind: InvalidSchemeKind,
    detail: Option<&'static str>,
}

/// The kind of an [`InvalidScheme`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidSchemeKind {
    /// No signature header was set.
    NoSignatureHeader,
    /// A header name is not a valid HTTP header name.
    HeaderName,
    /// The template of the signed content is malformed.
    Template,
    /// No secret was given.
    NoSecret,
    /// A secret is empty or blank.
    EmptySecret,
    /// A timestamp header is set but the template does not sign `{timestamp}`: checking a
    /// timestamp anyone can set protects nothing.
    UnsignedTimestamp,
    /// The endpoint's public URL is not an `http` or `https` URL with a host.
    InvalidUrl,
}

impl InvalidScheme {
    pub(crate) fn new(kind: InvalidSchemeKind) -> Self {
        Self { kind, detail: None }
    }

    pub(crate) fn template(detail: &'static str) -> Self {
        Self {
            kind: InvalidSchemeKind::Template,
            detail: Some(detail),
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> InvalidSchemeKind {
        self.kind
    }
}

impl fmt::Display for InvalidScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            InvalidSchemeKind::NoSignatureHeader => "no signature header was set",
            InvalidSchemeKind::HeaderName => "invalid header name",
            InvalidSchemeKind::Template => "invalid template of the signed content",
            InvalidSchemeKind::NoSecret => "no secret was given",
            InvalidSchemeKind::EmptySecret => "a secret is empty or blank",
            InvalidSchemeKind::InvalidUrl => "the endpoint's URL is not an http(s) URL with a host",
            InvalidSchemeKind::UnsignedTimestamp => {
                "the timestamp header is not signed: add {timestamp} to the template"
            }
        })?;
        if let Some(detail) = self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl Error for InvalidScheme {}
