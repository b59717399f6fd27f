//! The senders that sign the URL they called, one file each: Twilio, Square and HubSpot (v3),
//! and what they share.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::Mac;
use http::HeaderValue;

use super::secret::hmac_key;
use super::{InvalidScheme, InvalidSchemeKind, VerifyError, VerifyErrorKind};

mod hubspot;
mod square;
mod twilio;

pub use hubspot::HubSpot;
pub use square::Square;
pub use twilio::Twilio;

/// A base64 MAC of `N` bytes from a header, decoded; `None` if it is not one.
pub(super) fn decoded<const N: usize>(value: &HeaderValue) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    (STANDARD.decode_slice(value.as_bytes().trim_ascii(), &mut out) == Ok(N)).then_some(out)
}

pub(super) fn url_unknown() -> VerifyError {
    VerifyError::new(VerifyErrorKind::InvalidHeader).with_detail("the URL the sender called")
}

/// The key of a secret, refused where blank.
pub(super) fn keyed<M: Mac + hmac::digest::KeyInit>(secret: &str) -> Result<M, InvalidScheme> {
    hmac_key(secret).ok_or(InvalidScheme::new(InvalidSchemeKind::EmptySecret))
}
