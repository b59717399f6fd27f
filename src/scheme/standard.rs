//! Standard Webhooks, the scheme of Svix and every sender built on it.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use http::{HeaderMap, HeaderName};

use super::engine::{Encoding, Engine, Format, Header, IdFrom, TimestampFrom, TypeFrom};
#[cfg(feature = "ed25519")]
use super::signature::Key;
use super::signature::{self, Alg};
use super::{InvalidSecret, InvalidSecretKind, Scheme, SignError, Verified, VerifyError};

const SECRET_PREFIX: &str = "whsec_";

/// The signature versions: `v1` (HMAC-SHA256), and with the `ed25519` feature `v1a`.
#[cfg(not(feature = "ed25519"))]
const VERSIONS: &[(&str, Alg)] = &[("v1", Alg::HmacSha256)];
#[cfg(feature = "ed25519")]
const VERSIONS: &[(&str, Alg)] = &[("v1", Alg::HmacSha256), ("v1a", Alg::Ed25519)];

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
/// With the `ed25519` feature, `v1a,<base64>` entries, Ed25519 signatures of the same content,
/// verify against `whpk_` public keys ([`from_public_key`](Self::from_public_key)).
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
    engine: Engine,
}

impl StandardWebhooks {
    /// The default timestamp tolerance: five minutes either way.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

    fn empty() -> Self {
        let header = |name, fallback| Header {
            name: HeaderName::from_static(name),
            fallback: Some(HeaderName::from_static(fallback)),
        };
        Self {
            engine: Engine {
                name: "standard-webhooks",
                signature: header("webhook-signature", "svix-signature"),
                format: Format::List {
                    entries: b' ',
                    pair: b',',
                    versions: VERSIONS,
                    timestamp: None,
                },
                encoding: Encoding::Base64,
                template: signature::builtin_template("{id}.{timestamp}.{body}"),
                timestamp: Some(TimestampFrom::seconds(header(
                    "webhook-timestamp",
                    "svix-timestamp",
                ))),
                tolerance: Self::DEFAULT_TOLERANCE,
                id: Some(IdFrom::Header(header("webhook-id", "svix-id"))),
                event_type: Some(TypeFrom::json(&["type"])),
                keys: Vec::new(),
            },
        }
    }

    /// A scheme with one secret, as shown by the sender: `whsec_` and the base64 of the key.
    /// The prefix is optional.
    ///
    /// ```
    /// use tower_webhook::scheme::StandardWebhooks;
    ///
    /// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    /// // The prefix is optional, padding too.
    /// let same = StandardWebhooks::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn new(secret: &str) -> Result<Self, InvalidSecret> {
        Self::empty().with_secret(secret)
    }

    /// A scheme with one secret given as the raw key bytes.
    ///
    /// ```
    /// use tower_webhook::scheme::StandardWebhooks;
    ///
    /// let scheme = StandardWebhooks::from_key([0x2a_u8; 24])?;
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn from_key(key: impl AsRef<[u8]>) -> Result<Self, InvalidSecret> {
        Self::empty().with_key(key)
    }

    /// Adds another secret, in the same form as [`new`](Self::new). A delivery signed with
    /// any of the secrets verifies: use it while a secret is being rotated.
    ///
    /// ```
    /// use tower_webhook::scheme::StandardWebhooks;
    ///
    /// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?.with_secret("whsec_dGhlIG9sZCBzZWNyZXQ=")?;
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_secret(self, secret: &str) -> Result<Self, InvalidSecret> {
        self.with_key(decode(secret, SECRET_PREFIX)?)
    }

    /// Adds another secret given as raw key bytes.
    ///
    /// ```
    /// use tower_webhook::scheme::StandardWebhooks;
    ///
    /// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?.with_key([0x2a_u8; 24])?;
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_key(mut self, key: impl AsRef<[u8]>) -> Result<Self, InvalidSecret> {
        self.engine.add_hmac_key(key.as_ref())?;
        Ok(self)
    }

    /// Sets how far the signed timestamp may lie from now, in either direction.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::scheme::StandardWebhooks;
    ///
    /// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?.with_tolerance(Duration::from_secs(60));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.engine.tolerance = tolerance;
        self
    }

    /// The signature of a delivery, as its header carries it (`v1,<base64>`), made with the
    /// first key.
    ///
    /// ```
    /// use tower_webhook::scheme::StandardWebhooks;
    ///
    /// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    /// let signature = scheme.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#)?;
    /// assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignError> {
        let headers = self.sign(id, timestamp, body)?;
        let value = &headers[&self.engine.signature.name];
        Ok(String::from_utf8_lossy(value.as_bytes()).into_owned())
    }

    /// The headers a sender would attach to a delivery, signed with the first key.
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
    /// Fails if `id` cannot be a header value (it holds a control character), or if the first
    /// key is a public key, which cannot sign.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<HeaderMap, SignError> {
        self.engine.sign(id, timestamp, body)
    }
}

#[cfg(feature = "ed25519")]
#[cfg_attr(docsrs, doc(cfg(feature = "ed25519")))]
impl StandardWebhooks {
    /// A scheme that verifies `v1a` (Ed25519) signatures with a public key, as the sender
    /// shows it: `whpk_` and the base64 of the 32-byte key. The prefix is optional.
    ///
    /// ```
    /// use tower_webhook::scheme::StandardWebhooks;
    ///
    /// let scheme = StandardWebhooks::from_public_key("whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")?;
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn from_public_key(public_key: &str) -> Result<Self, InvalidSecret> {
        Self::empty().with_public_key(public_key)
    }

    /// Adds another `whpk_` public key (a rotation), or a public key beside HMAC secrets.
    ///
    /// A weak (small-order) key is refused: with one, a forged signature verifies for any
    /// body.
    ///
    /// ```
    /// use tower_webhook::scheme::StandardWebhooks;
    ///
    /// // An HMAC secret and a public key: either kind of signature verifies.
    /// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?
    ///     .with_public_key("whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")?;
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_public_key(self, public_key: &str) -> Result<Self, InvalidSecret> {
        let bytes: [u8; 32] = decode(public_key, "whpk_")?
            .try_into()
            .map_err(|_| InvalidSecret::new(InvalidSecretKind::InvalidKey))?;
        Ok(self.with(Key::ed25519_public(&bytes)?))
    }

    /// A scheme with a private key, `whsk_` and the base64 of the 32-byte seed: it verifies
    /// with the matching public key and [`sign`](Self::sign)s `v1a` signatures. For tests,
    /// and for senders; a receiver needs only the public key.
    ///
    /// ```
    /// use tower_webhook::scheme::{Scheme, StandardWebhooks};
    ///
    /// let signer = StandardWebhooks::from_signing_key("whsk_BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=")?;
    /// let headers = signer.sign("msg_1", 1_700_000_000, b"{}")?;
    /// assert!(headers["webhook-signature"].to_str()?.starts_with("v1a,"));
    /// # let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    /// assert!(signer.verify(&headers, b"{}", now).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_signing_key(signing_key: &str) -> Result<Self, InvalidSecret> {
        let seed: [u8; 32] = decode(signing_key, "whsk_")?
            .try_into()
            .map_err(|_| InvalidSecret::new(InvalidSecretKind::InvalidKey))?;
        Ok(Self::empty().with(Key::ed25519_signing(&seed)))
    }

    fn with(mut self, key: Key) -> Self {
        self.engine.keys.push(key);
        self
    }
}

impl Scheme for StandardWebhooks {
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

    fn event_type(&self, _headers: &HeaderMap, body: &[u8], verified: &Verified) -> Option<String> {
        self.engine.event_type(body, verified)
    }

    fn signs_id(&self) -> bool {
        self.engine.signs_id()
    }
}

impl fmt::Debug for StandardWebhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.engine.debug(f, "StandardWebhooks")
    }
}

/// The key bytes of a secret shown as an optional `prefix` and base64.
fn decode(secret: &str, prefix: &str) -> Result<Vec<u8>, InvalidSecret> {
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix(prefix).unwrap_or(encoded);
    LENIENT
        .decode(encoded)
        .map_err(|_| InvalidSecret::new(InvalidSecretKind::NotBase64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use http::HeaderValue;
    use std::time::UNIX_EPOCH;

    use crate::scheme::VerifyErrorKind;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn spec_now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(SPEC_TS.unsigned_abs())
    }

    fn spec_headers(prefix: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let name =
            |suffix: &str| HeaderName::from_bytes(format!("{prefix}-{suffix}").as_bytes()).unwrap();
        headers.insert(name("id"), HeaderValue::from_static(SPEC_ID));
        headers.insert(name("timestamp"), HeaderValue::from(SPEC_TS));
        headers.insert(name("signature"), HeaderValue::from_str(signature).unwrap());
        headers
    }

    #[test]
    fn spec_example_signs_and_verifies() {
        let scheme = StandardWebhooks::new(SPEC_SECRET).unwrap();
        assert_eq!(
            scheme.signature(SPEC_ID, SPEC_TS, SPEC_BODY).unwrap(),
            SPEC_SIG
        );
        let verified = scheme
            .verify(&spec_headers("webhook", SPEC_SIG), SPEC_BODY, spec_now())
            .unwrap();
        assert_eq!(verified.id.as_deref(), Some(SPEC_ID));
        assert_eq!(verified.timestamp, Some(SPEC_TS));
    }

    #[test]
    fn svix_headers_are_accepted() {
        let scheme = StandardWebhooks::new(SPEC_SECRET).unwrap();
        let verified = scheme
            .verify(&spec_headers("svix", SPEC_SIG), SPEC_BODY, spec_now())
            .unwrap();
        assert_eq!(verified.id.as_deref(), Some(SPEC_ID));
    }

    #[test]
    fn secret_forms() {
        let bare = SPEC_SECRET.strip_prefix(SECRET_PREFIX).unwrap();
        let from_bare = StandardWebhooks::new(bare).unwrap();
        assert_eq!(
            from_bare.signature(SPEC_ID, SPEC_TS, SPEC_BODY).unwrap(),
            SPEC_SIG
        );
        let key = STANDARD.decode(bare).unwrap();
        let from_key = StandardWebhooks::from_key(key).unwrap();
        assert_eq!(
            from_key.signature(SPEC_ID, SPEC_TS, SPEC_BODY).unwrap(),
            SPEC_SIG
        );

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
                .verify(
                    &spec_headers("webhook", &format!("v1,{sig}")),
                    SPEC_BODY,
                    spec_now(),
                )
                .unwrap_err();
            assert_eq!(err.kind(), VerifyErrorKind::NoSupportedSignature);
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let scheme = StandardWebhooks::new(SPEC_SECRET).unwrap();
        let shown = format!("{scheme:?}");
        assert!(!shown.contains("MfKQ"), "{shown}");
        assert!(shown.contains("keys: 1"), "{shown}");
    }
}
