//! Discord's interactions endpoint: Ed25519 signatures with the application's public key.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::request::Parts;
use http::{HeaderMap, HeaderName};

use super::engine::{Encoding, Engine, Format, Header, IdFrom, TimestampFrom, TypeFrom};
use super::signature::{self, Alg, Key};
use super::{
    DeliveryId, Handshake, InvalidSecret, InvalidSecretKind, Scheme, SignError, Verified,
    VerifyError,
};
use crate::json;

/// Discord's interactions endpoint: `X-Signature-Ed25519: <hex>`, an Ed25519 signature of
/// `"{X-Signature-Timestamp}{body}"` made with the application's key, verified with its
/// **public key** (hex, as the developer portal shows it); the timestamp, Unix seconds, within
/// 300 s (Discord states no window; its requests are sent as they happen); the id is the
/// interaction's `id` in the JSON body.
///
/// The layer answers Discord's signed `PING` (`{"type":1}`) itself with `{"type":1}`, as
/// Discord requires before it saves the endpoint. Every other interaction reaches the
/// handler, whose answer is the interaction's response.
///
/// ```
/// use tower_webhook::{scheme::Discord, store::MemoryStore, VerifyWebhookLayer};
///
/// let layer = VerifyWebhookLayer::new(Discord::new(
///     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
/// )?)
/// .with_store(MemoryStore::new());
/// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
/// ```
#[derive(Clone)]
pub struct Discord {
    engine: Engine,
}

impl Discord {
    fn empty() -> Self {
        Self {
            engine: Engine {
                name: "discord",
                signature: Header::new(HeaderName::from_static("x-signature-ed25519")),
                format: Format::Single {
                    prefix: String::new(),
                    alg: Alg::Ed25519,
                },
                encoding: Encoding::Hex,
                template: signature::builtin_template("{timestamp}{body}"),
                timestamp: Some(TimestampFrom::seconds(Header::new(
                    HeaderName::from_static("x-signature-timestamp"),
                ))),
                tolerance: Duration::from_secs(300),
                id: Some(IdFrom::JsonField("id")),
                event_type: Some(TypeFrom::json(&["type"])),
                keys: Vec::new(),
            },
        }
    }

    /// Verifies with the application's public key: 64 hex digits. A weak (small-order) key is
    /// refused: with one, a forged signature verifies for any body.
    pub fn new(public_key: &str) -> Result<Self, InvalidSecret> {
        Self::empty().with_public_key(public_key)
    }

    /// Adds another public key (a second application on the same endpoint).
    ///
    /// ```
    /// use tower_webhook::scheme::Discord;
    ///
    /// let two = Discord::new("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")?
    ///     .with_public_key("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")?;
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_public_key(mut self, public_key: &str) -> Result<Self, InvalidSecret> {
        let invalid = || InvalidSecret::new(InvalidSecretKind::InvalidKey);
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(public_key.trim(), &mut bytes).map_err(|_| invalid())?;
        self.engine.keys.push(Key::ed25519_public(&bytes)?);
        Ok(self)
    }

    /// A scheme that also signs, from the 32-byte private seed in hex: for tests of your own
    /// handlers ([`sign`](Self::sign)). A receiver needs only the public key.
    ///
    /// ```
    /// use tower_webhook::scheme::{Discord, Scheme};
    ///
    /// let signer = Discord::from_signing_key(&"07".repeat(32))?;
    /// let headers = signer.sign(1_700_000_000, br#"{"id":"1","type":2}"#)?;
    /// # let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    /// assert!(signer.verify(&headers, br#"{"id":"1","type":2}"#, now).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_signing_key(seed: &str) -> Result<Self, InvalidSecret> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(seed.trim(), &mut bytes)
            .map_err(|_| InvalidSecret::new(InvalidSecretKind::InvalidKey))?;
        let mut scheme = Self::empty();
        scheme.engine.keys.push(Key::ed25519_signing(&bytes));
        Ok(scheme)
    }

    /// Sets how far the signed timestamp may lie from now, either way (300 s by default).
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.engine.tolerance = tolerance;
        self
    }

    /// The headers Discord would send with `body`, signed with the private key of
    /// [`from_signing_key`](Self::from_signing_key).
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> Result<HeaderMap, SignError> {
        self.engine.sign("", timestamp, body)
    }
}

impl Scheme for Discord {
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

    /// An interaction's `token` answers it for 15 minutes: shown redacted, as a secret.
    fn secret_body_fields(&self) -> &'static [&'static str] {
        &["token"]
    }

    fn signs_id(&self) -> bool {
        self.engine.signs_id()
    }

    /// Discord's `PING` (interaction type 1), signed: answered `{"type":1}`.
    fn handshake(
        &self,
        _request: &Parts,
        body: &[u8],
        verified: Option<&Verified>,
    ) -> Option<Handshake> {
        verified?;
        // A PING is a few hundred bytes; an interaction is not parsed twice.
        if body.len() > 4096 {
            return None;
        }
        let kind = json::top_level(body, &["type"])?.into_iter().next()??;
        (kind.as_u64() == Some(1)).then(|| Handshake::json(&serde_json::json!({ "type": 1 })))
    }
}

impl fmt::Debug for Discord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.engine.debug(f, "Discord")
    }
}
