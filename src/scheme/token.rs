//! `SharedToken`: a sender that proves itself with a secret token in a header (GitLab), not
//! with a signature.

use std::fmt;
use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::headers::single;
use super::secret::Digests;
use super::{
    DeliveryId, InvalidSecret, InvalidSecretKind, Scheme, Verified, VerifyError, VerifyErrorKind,
};

/// A sender that sends a shared secret token in a header, compared in constant time: GitLab's
/// `X-Gitlab-Token`.
///
/// A token proves who sent the request but not what it holds: it does not cover the body, and
/// there is no timestamp, so anyone who can read one delivery (a log of request headers) can
/// send anything. Prefer a signing sender where there is a choice; where there is none, keep
/// the token out of logs and serve the endpoint over HTTPS only.
///
/// Each token is kept as its SHA-256, and a delivery's token is hashed and compared with
/// each in constant time: neither its bytes nor its length shows in the time taken.
///
/// ```
/// use std::time::SystemTime;
/// use http::{HeaderMap, HeaderValue};
/// use tower_webhook::scheme::{Scheme, SharedToken};
///
/// let gitlab = SharedToken::gitlab("a long random token")?;
/// let mut headers = HeaderMap::new();
/// headers.insert("x-gitlab-token", HeaderValue::from_static("a long random token"));
/// headers.insert("x-gitlab-event", HeaderValue::from_static("Push Hook"));
/// headers.insert("idempotency-key", HeaderValue::from_static("f1b5e4b2-0000-4000-8000-1"));
/// let verified = gitlab.verify(&headers, b"{}", SystemTime::now())?;
/// assert_eq!(verified.id.as_deref(), Some("f1b5e4b2-0000-4000-8000-1"));
/// assert_eq!(verified.event_type.as_deref(), Some("Push Hook"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SharedToken {
    name: &'static str,
    header: HeaderName,
    /// The id's headers, the first one present wins.
    id: &'static [&'static str],
    event_type: Option<HeaderName>,
    tokens: Digests,
}

/// Shows the settings and how many tokens there are; never a token.
impl fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedToken")
            .field("name", &self.name)
            .field("header", &self.header)
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl SharedToken {
    /// GitLab: `X-Gitlab-Token`, the webhook's secret token as set in the project's settings;
    /// the id is `Idempotency-Key` (GitLab 17.4 and later: the same on every retry of an
    /// event), else `X-Gitlab-Event-UUID`; the event type is `X-Gitlab-Event` (`Push Hook`).
    ///
    /// Neither id is covered by the token: the layer keys each delivery on the id and a hash
    /// of the body, as for [`HmacScheme::github`](super::HmacScheme::github).
    ///
    /// ```
    /// use tower_webhook::{scheme::SharedToken, store::MemoryStore, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(SharedToken::gitlab("a long random token")?)
    ///     .with_store(MemoryStore::new());
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn gitlab(token: &str) -> Result<Self, InvalidSecret> {
        Self {
            name: "gitlab",
            header: HeaderName::from_static("x-gitlab-token"),
            id: &["idempotency-key", "x-gitlab-event-uuid"],
            event_type: Some(HeaderName::from_static("x-gitlab-event")),
            tokens: Digests::default(),
        }
        .with_token(token)
    }

    /// Adds another accepted token, for a rotation. Surrounding whitespace (a newline from a
    /// secrets file) is not part of it; a blank token is refused.
    ///
    /// ```
    /// use tower_webhook::scheme::SharedToken;
    ///
    /// let gitlab = SharedToken::gitlab("the new token")?.with_token("the old token")?;
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_token(mut self, token: &str) -> Result<Self, InvalidSecret> {
        let token = token.trim();
        if token.is_empty() {
            return Err(InvalidSecret::new(InvalidSecretKind::Empty));
        }
        self.tokens.add(token.as_bytes());
        Ok(self)
    }
}

impl Scheme for SharedToken {
    fn name(&self) -> &'static str {
        self.name
    }

    /// The token's header is the secret itself: never stored, shown or logged.
    fn is_credential_header(&self, name: &HeaderName) -> bool {
        *name == self.header || super::is_common_credential(name)
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        _body: &[u8],
        _now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let token = single(headers, &self.header)?
            .map(HeaderValue::as_bytes)
            .map(<[u8]>::trim_ascii)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| VerifyError::missing_header(self.header.clone()))?;
        if !self.tokens.matches(token) {
            return Err(VerifyError::new(VerifyErrorKind::NoMatchingSignature));
        }
        let mut verified = Verified::new();
        for name in self.id {
            let name = HeaderName::from_static(name);
            if let Some(value) = single(headers, &name)? {
                let id = DeliveryId::from_header(value)
                    .filter(|id| !id.as_str().is_empty())
                    .ok_or_else(|| VerifyError::invalid_header(name.clone()))?;
                verified = verified.with_id(id);
                break;
            }
        }
        if let Some(name) = &self.event_type {
            if let Some(value) = single(headers, name)? {
                let text = value
                    .to_str()
                    .map_err(|_| VerifyError::invalid_header(name.clone()))?;
                verified = verified.with_event_type(text);
            }
        }
        Ok(verified)
    }
}
