//! Standard Webhooks, the scheme of Svix and every sender built on it.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{
    check_timestamp, header_str, InvalidSecret, InvalidSecretKind, Scheme, Verified, VerifyError,
    VerifyErrorKind,
};

static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
static SVIX_ID: HeaderName = HeaderName::from_static("svix-id");
static SVIX_TIMESTAMP: HeaderName = HeaderName::from_static("svix-timestamp");
static SVIX_SIGNATURE: HeaderName = HeaderName::from_static("svix-signature");

const SECRET_PREFIX: &str = "whsec_";
const TAG_LEN: usize = 32;

/// Secrets are shown with and without padding by different dashboards; both are accepted.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The [Standard Webhooks](https://www.standardwebhooks.com/) scheme, used by Svix and the
/// senders built on it (Clerk, Resend, Crossmint, Self, ...).
///
/// A delivery carries `webhook-id`, `webhook-timestamp` and `webhook-signature` (or the same
/// with the `svix-` prefix). The signature header holds space-separated `v1,<base64>` entries,
/// each an HMAC-SHA256 over `"{id}.{timestamp}.{body}"`. Every `v1` entry is tried against
/// every configured secret, in constant time; entries of other versions are ignored. The
/// timestamp must lie within five minutes of now, either way, unless configured otherwise.
///
/// ```
/// use std::time::Duration;
/// use tower_webhook::scheme::StandardWebhooks;
///
/// // The secret as the sender's dashboard shows it.
/// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?
///     // During a rotation, the old secret too.
///     .with_secret("whsec_dGhlIG9sZCBzZWNyZXQ=")?
///     .with_tolerance(Duration::from_secs(120));
/// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
/// ```
#[derive(Clone)]
pub struct StandardWebhooks {
    /// One HMAC state per secret, already keyed, so a request only clones it.
    keys: Vec<Hmac<Sha256>>,
    tolerance: Duration,
}

impl StandardWebhooks {
    /// The default timestamp tolerance: five minutes either way.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

    /// A scheme with one secret, as shown by the sender: `whsec_` and the base64 of the key.
    /// The prefix is optional.
    pub fn new(secret: &str) -> Result<Self, InvalidSecret> {
        Self::from_key(decode_secret(secret)?)
    }

    /// A scheme with one secret given as the raw key bytes.
    pub fn from_key(key: impl AsRef<[u8]>) -> Result<Self, InvalidSecret> {
        Ok(Self {
            keys: vec![keyed(key.as_ref())?],
            tolerance: Self::DEFAULT_TOLERANCE,
        })
    }

    /// Adds another secret, in the same form as [`new`](Self::new). A delivery signed with
    /// any of the secrets verifies: use it while a secret is being rotated.
    pub fn with_secret(self, secret: &str) -> Result<Self, InvalidSecret> {
        self.with_key(decode_secret(secret)?)
    }

    /// Adds another secret given as raw key bytes.
    pub fn with_key(mut self, key: impl AsRef<[u8]>) -> Result<Self, InvalidSecret> {
        self.keys.push(keyed(key.as_ref())?);
        Ok(self)
    }

    /// Sets how far the signed timestamp may lie from now, in either direction.
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The `v1,<base64>` signature of a delivery, made with the first secret.
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = tag(&self.keys[0], id, &timestamp.to_string(), body);
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// The headers a sender would attach to a delivery, signed with the first secret.
    ///
    /// For tests of your own handlers: build a request with these headers and the same body.
    ///
    /// ```
    /// use tower_webhook::scheme::StandardWebhooks;
    ///
    /// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    /// let headers = scheme.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#)?;
    /// assert_eq!(headers["webhook-signature"], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Fails only if `id` cannot be a header value (it holds a control character).
    pub fn sign(
        &self,
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<HeaderMap, http::header::InvalidHeaderValue> {
        let mut headers = HeaderMap::with_capacity(3);
        headers.insert(WEBHOOK_ID.clone(), HeaderValue::from_str(id)?);
        headers.insert(WEBHOOK_TIMESTAMP.clone(), HeaderValue::from(timestamp));
        headers.insert(
            WEBHOOK_SIGNATURE.clone(),
            HeaderValue::from_str(&self.signature(id, timestamp, body))?,
        );
        Ok(headers)
    }
}

impl Scheme for StandardWebhooks {
    fn name(&self) -> &'static str {
        "standard-webhooks"
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let id = header_str(headers, pick(headers, &WEBHOOK_ID, &SVIX_ID))?;
        let timestamp_header = pick(headers, &WEBHOOK_TIMESTAMP, &SVIX_TIMESTAMP);
        let timestamp_text = header_str(headers, timestamp_header)?;
        let signature_header = pick(headers, &WEBHOOK_SIGNATURE, &SVIX_SIGNATURE);
        header_str(headers, signature_header)?;
        let timestamp = check_timestamp(timestamp_text, timestamp_header, now, self.tolerance)?;

        let candidates = signatures(headers, signature_header)?;
        if candidates.is_empty() {
            return Err(VerifyError::new(VerifyErrorKind::NoSupportedSignature));
        }
        for key in &self.keys {
            let expected = tag(key, id, timestamp_text, body);
            if candidates
                .iter()
                .any(|candidate| bool::from(candidate.ct_eq(&expected)))
            {
                return Ok(Verified::new().with_id(id).with_timestamp(timestamp));
            }
        }
        Err(VerifyError::new(VerifyErrorKind::NoMatchingSignature))
    }
}

impl fmt::Debug for StandardWebhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardWebhooks")
            .field("secrets", &self.keys.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

fn decode_secret(secret: &str) -> Result<Vec<u8>, InvalidSecret> {
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix(SECRET_PREFIX).unwrap_or(encoded);
    LENIENT
        .decode(encoded)
        .map_err(|_| InvalidSecret::new(InvalidSecretKind::NotBase64))
}

fn keyed(key: &[u8]) -> Result<Hmac<Sha256>, InvalidSecret> {
    if key.is_empty() {
        return Err(InvalidSecret::new(InvalidSecretKind::Empty));
    }
    Hmac::new_from_slice(key).map_err(|_| InvalidSecret::new(InvalidSecretKind::Empty))
}

/// The HMAC of `"{id}.{timestamp}.{body}"`, fed in pieces so the body is read once, in place.
fn tag(key: &Hmac<Sha256>, id: &str, timestamp: &str, body: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = key.clone();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The `webhook-` header, or its `svix-` twin where only that one was sent. Errors about a
/// header absent under both names name the `webhook-` one.
fn pick(
    headers: &HeaderMap,
    primary: &'static HeaderName,
    fallback: &'static HeaderName,
) -> &'static HeaderName {
    if !headers.contains_key(primary) && headers.contains_key(fallback) {
        fallback
    } else {
        primary
    }
}

/// Every well-formed `v1` signature in every value of the signature header.
///
/// Entries of other versions, and `v1` entries that are not base64 of 32 bytes, cannot match
/// and are skipped: a sender may add new versions, and one bad entry must not hide a good one.
fn signatures(headers: &HeaderMap, name: &HeaderName) -> Result<Vec<[u8; TAG_LEN]>, VerifyError> {
    let mut found = Vec::new();
    for value in headers.get_all(name) {
        let text = value
            .to_str()
            .map_err(|_| VerifyError::invalid_header(name.clone()))?;
        for entry in text.split_ascii_whitespace() {
            let Some(("v1", encoded)) = entry.split_once(',') else {
                continue;
            };
            // Room for a little more than a tag, so an over-long value fails to decode
            // instead of being cut short.
            let mut buf = [0u8; TAG_LEN + 3];
            if let Ok(TAG_LEN) = STANDARD.decode_slice(encoded, &mut buf) {
                let mut tag = [0u8; TAG_LEN];
                tag.copy_from_slice(&buf[..TAG_LEN]);
                found.push(tag);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn spec_now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(SPEC_TS.unsigned_abs())
    }

    fn spec_headers(signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(WEBHOOK_ID.clone(), HeaderValue::from_static(SPEC_ID));
        headers.insert(WEBHOOK_TIMESTAMP.clone(), HeaderValue::from(SPEC_TS));
        headers.insert(
            WEBHOOK_SIGNATURE.clone(),
            HeaderValue::from_str(signature).unwrap(),
        );
        headers
    }

    #[test]
    fn spec_example_signs_and_verifies() {
        let scheme = StandardWebhooks::new(SPEC_SECRET).unwrap();
        assert_eq!(scheme.signature(SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
        let verified = scheme
            .verify(&spec_headers(SPEC_SIG), SPEC_BODY, spec_now())
            .unwrap();
        assert_eq!(verified.id.as_deref(), Some(SPEC_ID));
        assert_eq!(verified.timestamp, Some(SPEC_TS));
    }

    #[test]
    fn svix_headers_are_accepted() {
        let scheme = StandardWebhooks::new(SPEC_SECRET).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(SVIX_ID.clone(), HeaderValue::from_static(SPEC_ID));
        headers.insert(SVIX_TIMESTAMP.clone(), HeaderValue::from(SPEC_TS));
        headers.insert(SVIX_SIGNATURE.clone(), HeaderValue::from_static(SPEC_SIG));
        assert!(scheme.verify(&headers, SPEC_BODY, spec_now()).is_ok());
    }

    #[test]
    fn secret_forms() {
        let bare = SPEC_SECRET.strip_prefix(SECRET_PREFIX).unwrap();
        let from_bare = StandardWebhooks::new(bare).unwrap();
        assert_eq!(from_bare.signature(SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
        let key = STANDARD.decode(bare).unwrap();
        let from_key = StandardWebhooks::from_key(key).unwrap();
        assert_eq!(from_key.signature(SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);

        assert_eq!(
            StandardWebhooks::new("whsec_not base64!")
                .unwrap_err()
                .kind(),
            InvalidSecretKind::NotBase64
        );
        assert_eq!(
            StandardWebhooks::new("whsec_").unwrap_err().kind(),
            InvalidSecretKind::Empty
        );
        assert_eq!(
            StandardWebhooks::from_key([]).unwrap_err().kind(),
            InvalidSecretKind::Empty
        );
    }

    #[test]
    fn over_long_and_short_signatures_do_not_match() {
        let scheme = StandardWebhooks::new(SPEC_SECRET).unwrap();
        let tag = STANDARD
            .decode(SPEC_SIG.strip_prefix("v1,").unwrap())
            .unwrap();
        let mut longer = tag.clone();
        longer.push(0);
        let shorter = &tag[..31];
        for sig in [STANDARD.encode(longer), STANDARD.encode(shorter)] {
            let err = scheme
                .verify(&spec_headers(&format!("v1,{sig}")), SPEC_BODY, spec_now())
                .unwrap_err();
            assert_eq!(err.kind(), VerifyErrorKind::NoSupportedSignature);
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let scheme = StandardWebhooks::new(SPEC_SECRET).unwrap();
        let shown = format!("{scheme:?}");
        assert!(!shown.contains("MfKQ"), "{shown}");
        assert!(shown.contains("secrets: 1"), "{shown}");
    }
}
