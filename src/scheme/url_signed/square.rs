//! Square: the notification URL and the body, HMAC-SHA256.

use std::fmt;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{HeaderMap, HeaderName};
use sha2::Sha256;

use super::{decoded, keyed, url_unknown};
use crate::scheme::engine::json_field;
use crate::scheme::headers::required as one;
use crate::scheme::secret::any_mac;
use crate::scheme::url::SenderUrl;
use crate::scheme::{DeliveryId, InvalidScheme, Scheme, Verified, VerifyError, VerifyErrorKind};

/// Square: `x-square-hmacsha256-signature`, the base64 HMAC-SHA256, keyed with the
/// subscription's signature key, of the notification URL followed by the body; no
/// timestamp; the id is the `event_id` of the JSON body.
///
/// The notification URL is the one entered in Square's developer console, exactly: behind
/// a proxy, the URL the layer sees is another. Give it here; behind a proxy that sets
/// `X-Forwarded-*`, [`with_forwarded_url`](Self::with_forwarded_url) instead.
///
/// ```
/// use tower_webhook::scheme::Square;
///
/// let square = Square::new("signature key", "https://example.com/square/webhooks")?;
/// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
/// ```
#[derive(Clone)]
pub struct Square {
    url: SenderUrl,
    keys: Vec<Hmac<Sha256>>,
}

const SQUARE_SIGNATURE: HeaderName = HeaderName::from_static("x-square-hmacsha256-signature");

impl Square {
    /// Verifies with `signature_key`, for the subscription's `notification_url`.
    pub fn new(signature_key: &str, notification_url: &str) -> Result<Self, InvalidScheme> {
        Ok(Self {
            url: SenderUrl::fixed(notification_url)?,
            keys: vec![keyed(signature_key)?],
        })
    }

    /// Adds another signature key (a rotation).
    pub fn with_signature_key(mut self, signature_key: &str) -> Result<Self, InvalidScheme> {
        self.keys.push(keyed(signature_key)?);
        Ok(self)
    }

    /// Reads the URL from `X-Forwarded-Proto` and `X-Forwarded-Host`; see
    /// [`Twilio::with_forwarded_url`](super::Twilio::with_forwarded_url) for when that is safe.
    #[must_use]
    pub fn with_forwarded_url(mut self) -> Self {
        self.url = SenderUrl::Forwarded;
        self
    }

    /// Square's signature of `body` sent to `url`, with the first key: for tests.
    pub fn signature(&self, url: &str, body: &[u8]) -> String {
        let mut mac = self.keys[0].clone();
        mac.update(url.as_bytes());
        mac.update(body);
        STANDARD.encode(mac.finalize().into_bytes())
    }

    fn check(&self, url: &str, headers: &HeaderMap, body: &[u8]) -> Result<Verified, VerifyError> {
        let expected = decoded::<32>(one(headers, &SQUARE_SIGNATURE)?)
            .ok_or_else(|| VerifyError::new(VerifyErrorKind::NoSupportedSignature))?;
        if any_mac(&self.keys, &expected, |mac| {
            mac.update(url.as_bytes());
            mac.update(body);
        }) {
            Ok(Verified::new())
        } else {
            Err(VerifyError::new(VerifyErrorKind::NoMatchingSignature))
        }
    }
}

impl Scheme for Square {
    fn name(&self) -> &'static str {
        "square"
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        _now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let url = self.url.without_request().ok_or_else(url_unknown)?;
        self.check(url, headers, body)
    }

    /// Square signs the notification URL as registered, without the request's query.
    fn verify_request(
        &self,
        request: &Parts,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        match &self.url {
            SenderUrl::Fixed(_) => self.verify(&request.headers, body, now),
            SenderUrl::Forwarded => {
                let url = self.url.of(request).ok_or_else(url_unknown)?;
                self.check(&url, &request.headers, body)
            }
        }
    }

    fn identify(&self, _: &HeaderMap, body: &[u8], _: &Verified) -> Option<DeliveryId> {
        json_field(body, "event_id").map(DeliveryId::from)
    }

    /// The body's `type` (`payment.updated`).
    fn event_type(&self, _: &HeaderMap, body: &[u8], _: &Verified) -> Option<String> {
        json_field(body, "type")
    }

    fn signs_id(&self) -> bool {
        true
    }
}

impl fmt::Debug for Square {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Square")
            .field("url", &self.url)
            .field("signature_keys", &self.keys.len())
            .finish()
    }
}
