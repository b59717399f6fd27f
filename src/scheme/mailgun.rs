//! Mailgun: the signature is in the JSON body, and covers a token and a time, not the body.

use std::fmt;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde_json::Value;
use sha2::Sha256;

use super::secret::{any_mac, hmac_key};
use super::timestamp::{check_age, TimeText};
use super::{
    DeliveryId, InvalidSecret, InvalidSecretKind, Scheme, Verified, VerifyError, VerifyErrorKind,
};
use crate::json;

/// Mailgun's webhooks (the JSON ones): the body's `signature` object holds `timestamp`,
/// `token` and `signature`, the hex HMAC-SHA256 of `"{timestamp}{token}"` keyed with the
/// domain's HTTP webhook signing key; the timestamp within 300 s; the id is the `token`,
/// which is signed and new on every request; the event type is `event-data.event`
/// (`delivered`).
///
/// **Mailgun's signature does not cover the body**: the `event-data` is not authenticated.
/// Anyone who saw one request can send its `signature` object with any `event-data` until
/// the timestamp is stale. Keying on the signed token makes every such copy a duplicate of
/// the request it was taken from, and the time window bounds how long it can be tried; treat
/// `event-data` as a hint, and fetch what matters from Mailgun's API.
///
/// Mailgun signs every attempt anew, so its retries have new tokens: a retry of a delivery
/// that failed runs the handler again, which the handler must take (it is idempotent).
///
/// ```
/// use tower_webhook::{scheme::Mailgun, store::MemoryStore, VerifyWebhookLayer};
///
/// let layer = VerifyWebhookLayer::new(Mailgun::new("key-webhook-signing-key")?)
///     .with_store(MemoryStore::new());
/// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
/// ```
#[derive(Clone)]
pub struct Mailgun {
    keys: Vec<Hmac<Sha256>>,
    tolerance: Duration,
}

impl Mailgun {
    /// Verifies with the domain's HTTP webhook signing key.
    pub fn new(signing_key: &str) -> Result<Self, InvalidSecret> {
        Self {
            keys: Vec::new(),
            tolerance: Duration::from_secs(300),
        }
        .with_signing_key(signing_key)
    }

    /// Adds another signing key (a rotation).
    pub fn with_signing_key(mut self, signing_key: &str) -> Result<Self, InvalidSecret> {
        let key = hmac_key(signing_key).ok_or(InvalidSecret::new(InvalidSecretKind::Empty))?;
        self.keys.push(key);
        Ok(self)
    }

    /// Sets how far the timestamp may lie from now, either way (300 s by default).
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The `signature` object Mailgun would send at `timestamp` with `token`, signed with the
    /// first key: for tests of your own handlers.
    pub fn signature(&self, timestamp: i64, token: &str) -> Value {
        let timestamp = timestamp.to_string();
        let mut mac = self.keys[0].clone();
        mac.update(timestamp.as_bytes());
        mac.update(token.as_bytes());
        serde_json::json!({
            "timestamp": timestamp,
            "token": token,
            "signature": hex::encode(mac.finalize().into_bytes()),
        })
    }
}

/// `name` of `object` as text.
fn text<'v>(object: &'v Value, name: &str) -> Option<&'v str> {
    object.get(name)?.as_str().filter(|text| !text.is_empty())
}

impl Scheme for Mailgun {
    fn name(&self) -> &'static str {
        "mailgun"
    }

    fn verify(
        &self,
        _headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let unsigned = || {
            VerifyError::new(VerifyErrorKind::NoSupportedSignature)
                .with_detail("no signature object in the body")
        };
        let mut fields = json::top_level(body, &["signature", "event-data"])
            .ok_or_else(unsigned)?
            .into_iter();
        let signature = fields.next().flatten().ok_or_else(unsigned)?;
        let event_data = fields.next().flatten();
        let timestamp = text(&signature, "timestamp").ok_or_else(unsigned)?;
        let token = text(&signature, "token").ok_or_else(unsigned)?;
        let mut expected = [0u8; 32];
        hex::decode_to_slice(
            text(&signature, "signature").ok_or_else(unsigned)?,
            &mut expected,
        )
        .map_err(|_| VerifyError::new(VerifyErrorKind::NoSupportedSignature))?;
        let seconds = TimeText::Seconds
            .parse(timestamp.as_bytes())
            .ok_or_else(unsigned)?;
        let seconds = check_age(seconds, now, self.tolerance)?;
        let matched = any_mac(&self.keys, &expected, |mac| {
            mac.update(timestamp.as_bytes());
            mac.update(token.as_bytes());
        });
        if !matched {
            return Err(VerifyError::new(VerifyErrorKind::NoMatchingSignature));
        }
        let mut verified = Verified::new()
            .with_id(DeliveryId::from(token.to_owned()))
            .with_timestamp(seconds);
        if let Some(event) = event_data.as_ref().and_then(|data| text(data, "event")) {
            verified = verified.with_event_type(event);
        }
        Ok(verified)
    }

    /// The token is signed.
    fn signs_id(&self) -> bool {
        true
    }
}

/// Shows how many keys there are; never a key.
impl fmt::Debug for Mailgun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailgun")
            .field("signing_keys", &self.keys.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}
