//! SendGrid's Event Webhook: ECDSA P-256 signatures with the account's public key.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

use super::engine::body_hash;
use super::headers::required;
use super::timestamp::{check_age, TimeText};
use super::{
    DeliveryId, InvalidSecret, InvalidSecretKind, Scheme, Verified, VerifyError, VerifyErrorKind,
};

const SIGNATURE: HeaderName = HeaderName::from_static("x-twilio-email-event-webhook-signature");
const TIMESTAMP: HeaderName = HeaderName::from_static("x-twilio-email-event-webhook-timestamp");

/// The longest signature read: a DER ECDSA P-256 signature is at most 72 bytes.
const MAX_SIGNATURE: usize = 128;

/// SendGrid's signed Event Webhook: `X-Twilio-Email-Event-Webhook-Signature`, the base64 of
/// a DER ECDSA P-256 / SHA-256 signature of `"{X-Twilio-Email-Event-Webhook-Timestamp}{body}"`,
/// verified with the verification key SendGrid shows (the base64 of its DER public key); the
/// id is a hash of the body (a batch of events, each with its own `sg_event_id`).
///
/// SendGrid states no window for the timestamp, so none is checked by default; set one with
/// [`with_tolerance`](Self::with_tolerance) if SendGrid's retries suit it. Replays of the
/// same bytes are duplicates either way.
///
/// ```
/// use tower_webhook::scheme::SendGrid;
///
/// let sendgrid = SendGrid::new(
///     "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZ+hgshnB6id1sPPNMe81HUDiXRcP9S3BuJXOztZgukUKBKUJkaj9qxT+u8/2Sp+LuLNqVKdeZYjF/Yc0xXKOtg==",
/// )?;
/// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
/// ```
#[derive(Clone)]
pub struct SendGrid {
    keys: Vec<VerifyingKey>,
    tolerance: Option<Duration>,
}

impl SendGrid {
    /// Verifies with SendGrid's verification key: the base64 of a DER P-256 public key, as
    /// SendGrid shows it.
    pub fn new(verification_key: &str) -> Result<Self, InvalidSecret> {
        Self {
            keys: Vec::new(),
            tolerance: None,
        }
        .with_verification_key(verification_key)
    }

    /// Adds another verification key (a second subuser or account on the endpoint).
    pub fn with_verification_key(mut self, verification_key: &str) -> Result<Self, InvalidSecret> {
        let invalid = || InvalidSecret::new(InvalidSecretKind::InvalidKey);
        let der = STANDARD
            .decode(verification_key.trim())
            .map_err(|_| invalid())?;
        self.keys
            .push(VerifyingKey::from_public_key_der(&der).map_err(|_| invalid())?);
        Ok(self)
    }

    /// Refuses deliveries whose timestamp lies further than `tolerance` from now.
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }
}

/// The header's one value, trimmed, not blank.
fn one<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<&'h [u8], VerifyError> {
    Ok(required(headers, name)?.as_bytes().trim_ascii())
}

impl Scheme for SendGrid {
    fn name(&self) -> &'static str {
        "sendgrid"
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let timestamp = one(headers, &TIMESTAMP)?;
        let seconds = TimeText::Seconds
            .parse(timestamp)
            .ok_or_else(|| VerifyError::invalid_header(TIMESTAMP))?;
        if let Some(tolerance) = self.tolerance {
            check_age(seconds, now, tolerance)?;
        }
        let encoded = one(headers, &SIGNATURE)?;
        if encoded.len() > MAX_SIGNATURE {
            return Err(VerifyError::invalid_header(SIGNATURE).with_detail("too long"));
        }
        let unsupported = || VerifyError::new(VerifyErrorKind::NoSupportedSignature);
        let der = STANDARD.decode(encoded).map_err(|_| unsupported())?;
        let signature = Signature::from_der(&der).map_err(|_| unsupported())?;
        // Either form of `s` is SendGrid's: its signer does not normalise it.
        let signature = signature.normalize_s().unwrap_or(signature);
        let mut message = Vec::with_capacity(timestamp.len() + body.len());
        message.extend_from_slice(timestamp);
        message.extend_from_slice(body);
        if self
            .keys
            .iter()
            .any(|key| key.verify(&message, &signature).is_ok())
        {
            Ok(Verified::new().with_timestamp(seconds))
        } else {
            Err(VerifyError::new(VerifyErrorKind::NoMatchingSignature))
        }
    }

    fn identify(&self, _: &HeaderMap, body: &[u8], _: &Verified) -> Option<DeliveryId> {
        Some(body_hash(body).into())
    }

    fn signs_id(&self) -> bool {
        true
    }
}

/// Shows how many keys there are, and the window.
impl fmt::Debug for SendGrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGrid")
            .field("verification_keys", &self.keys.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}
