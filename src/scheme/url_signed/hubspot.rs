//! HubSpot (signature v3): the method, the URL it called, the body and a timestamp,
//! HMAC-SHA256.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Method};
use sha2::Sha256;

use super::{decoded, keyed, url_unknown};
use crate::scheme::engine::body_hash;
use crate::scheme::headers::required as one;
use crate::scheme::secret::any_mac;
use crate::scheme::timestamp::{check_time, TimeText};
use crate::scheme::url::SenderUrl;
use crate::scheme::{DeliveryId, InvalidScheme, Scheme, Verified, VerifyError, VerifyErrorKind};

/// HubSpot (signature v3): `X-HubSpot-Signature-v3`, the base64 HMAC-SHA256, keyed with the
/// app's client secret, of the method, the URL HubSpot called, the body and
/// `X-HubSpot-Request-Timestamp` (milliseconds), concatenated; the timestamp within 300 s, as
/// HubSpot asks; the id is a hash of the body (a batch of events, each with its own
/// `eventId`).
///
/// HubSpot signs the URL with some of its characters percent-decoded (`%3A` `%2F` `%3F`
/// `%40` `%21` `%24` `%27` `%28` `%29` `%2A` `%2C` `%3B`); the scheme decodes the same. As
/// for [`Twilio`](super::Twilio), the URL is the endpoint's public one with the request's query, or the
/// forwarded one.
///
/// ```
/// use tower_webhook::scheme::HubSpot;
///
/// let hubspot = HubSpot::new("client secret", "https://example.com/hubspot")?;
/// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
/// ```
#[derive(Clone)]
pub struct HubSpot {
    url: SenderUrl,
    keys: Vec<Hmac<Sha256>>,
    tolerance: Duration,
}

const HUBSPOT_SIGNATURE: HeaderName = HeaderName::from_static("x-hubspot-signature-v3");
const HUBSPOT_TIMESTAMP: HeaderName = HeaderName::from_static("x-hubspot-request-timestamp");

impl HubSpot {
    /// Verifies with the app's `client_secret`, for the endpoint HubSpot calls at
    /// `public_url`.
    pub fn new(client_secret: &str, public_url: &str) -> Result<Self, InvalidScheme> {
        Ok(Self {
            url: SenderUrl::fixed(public_url)?,
            keys: vec![keyed(client_secret)?],
            tolerance: Duration::from_secs(300),
        })
    }

    /// Adds another client secret (a rotation).
    pub fn with_client_secret(mut self, client_secret: &str) -> Result<Self, InvalidScheme> {
        self.keys.push(keyed(client_secret)?);
        Ok(self)
    }

    /// Reads the URL from `X-Forwarded-Proto` and `X-Forwarded-Host`; see
    /// [`Twilio::with_forwarded_url`](super::Twilio::with_forwarded_url) for when that is safe.
    #[must_use]
    pub fn with_forwarded_url(mut self) -> Self {
        self.url = SenderUrl::Forwarded;
        self
    }

    /// Sets how far the timestamp may lie from now (300 s by default).
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// HubSpot's signature of a `method` request to `url` with `body` at `timestamp_ms`, with
    /// the first secret: for tests.
    pub fn signature(&self, method: &Method, url: &str, body: &[u8], timestamp_ms: i64) -> String {
        let mut mac = self.keys[0].clone();
        feed_hubspot(
            &mut mac,
            method,
            &hubspot_url(url),
            body,
            timestamp_ms.to_string().as_bytes(),
        );
        STANDARD.encode(mac.finalize().into_bytes())
    }

    fn check(
        &self,
        method: &Method,
        url: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let timestamp = one(headers, &HUBSPOT_TIMESTAMP)?.as_bytes();
        let seconds = check_time(
            timestamp,
            TimeText::Millis,
            &HUBSPOT_TIMESTAMP,
            now,
            self.tolerance,
        )?;
        let expected = decoded::<32>(one(headers, &HUBSPOT_SIGNATURE)?)
            .ok_or_else(|| VerifyError::new(VerifyErrorKind::NoSupportedSignature))?;
        let url = hubspot_url(url);
        if any_mac(&self.keys, &expected, |mac| {
            feed_hubspot(mac, method, &url, body, timestamp);
        }) {
            Ok(Verified::new().with_timestamp(seconds))
        } else {
            Err(VerifyError::new(VerifyErrorKind::NoMatchingSignature))
        }
    }
}

fn feed_hubspot(mac: &mut Hmac<Sha256>, method: &Method, url: &str, body: &[u8], timestamp: &[u8]) {
    mac.update(method.as_str().as_bytes());
    mac.update(url.as_bytes());
    mac.update(body);
    mac.update(timestamp);
}

/// `url` with the characters HubSpot decodes before signing decoded.
fn hubspot_url(url: &str) -> Cow<'_, str> {
    const DECODED: [(&str, char); 12] = [
        ("%3A", ':'),
        ("%2F", '/'),
        ("%3F", '?'),
        ("%40", '@'),
        ("%21", '!'),
        ("%24", '$'),
        ("%27", '\''),
        ("%28", '('),
        ("%29", ')'),
        ("%2A", '*'),
        ("%2C", ','),
        ("%3B", ';'),
    ];
    if !url.contains('%') {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3);
        if let Some((_, decoded)) =
            code.and_then(|code| DECODED.iter().find(|(c, _)| c.eq_ignore_ascii_case(code)))
        {
            out.push(*decoded);
            rest = &rest[at + 3..];
        } else {
            out.push('%');
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

impl Scheme for HubSpot {
    fn name(&self) -> &'static str {
        "hubspot"
    }

    /// Without the request: a `POST` to the public URL with no query.
    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let url = self.url.without_request().ok_or_else(url_unknown)?;
        self.check(&Method::POST, url, headers, body, now)
    }

    fn verify_request(
        &self,
        request: &Parts,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let url = self.url.of(request).ok_or_else(url_unknown)?;
        self.check(&request.method, &url, &request.headers, body, now)
    }

    fn identify(&self, _: &HeaderMap, body: &[u8], _: &Verified) -> Option<DeliveryId> {
        Some(body_hash(body).into())
    }

    /// The first event's `subscriptionType` (`contact.creation`): HubSpot sends a batch.
    fn event_type(&self, _: &HeaderMap, body: &[u8], _: &Verified) -> Option<String> {
        crate::json::text_at(body, &["0", "subscriptionType"])
    }

    fn signs_id(&self) -> bool {
        true
    }
}

impl fmt::Debug for HubSpot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpot")
            .field("url", &self.url)
            .field("client_secrets", &self.keys.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::hubspot_url;

    #[test]
    fn hubspot_decodes_its_characters_only() {
        assert_eq!(
            hubspot_url("https://e.com/a%3Ab%2fc?x=%40%26%3D%2C%zz%"),
            "https://e.com/a:b/c?x=@%26%3D,%zz%"
        );
    }
}
