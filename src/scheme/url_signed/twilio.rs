//! Twilio: the URL it called and the form's parameters, HMAC-SHA1.

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{HeaderMap, HeaderName};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{decoded, keyed, url_unknown};
use crate::scheme::engine::body_hash;
use crate::scheme::headers::required as one;
use crate::scheme::secret::any_mac;
use crate::scheme::url::{other_port_form, SenderUrl};
use crate::scheme::{DeliveryId, InvalidScheme, Scheme, Verified, VerifyError, VerifyErrorKind};

/// Twilio: `X-Twilio-Signature`, the base64 HMAC-**SHA1**, keyed with the account's auth
/// token, of the URL Twilio called followed by the form parameters of the body, sorted by
/// name, each name then value; for a JSON body, of the URL alone, whose `bodySHA256` query
/// parameter must be the body's SHA-256. Twilio signs no timestamp; the id is
/// `I-Twilio-Idempotency-Token` where Twilio sends one (not signed: keyed with a hash of the
/// body), else a hash of the body.
///
/// The URL is part of what is signed, so it must be the one Twilio called, not the one a
/// proxy passed on: give the endpoint's public URL, as entered in Twilio's console (the
/// request's query is appended), or, behind a proxy that sets them,
/// [`with_forwarded_url`](Self::with_forwarded_url). As Twilio's own libraries do, the URL
/// is tried with and without its default port.
///
/// ```
/// use tower_webhook::scheme::Twilio;
///
/// let twilio = Twilio::new("your auth token", "https://example.com/twilio/sms")?;
/// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
/// ```
#[derive(Clone)]
pub struct Twilio {
    url: SenderUrl,
    /// Each secret keyed for the legacy HMAC-SHA1 and for HMAC-SHA256.
    keys: Vec<Hmac<Sha1>>,
    keys_sha256: Vec<Hmac<Sha256>>,
}

const TWILIO_SIGNATURE: HeaderName = HeaderName::from_static("x-twilio-signature");
const TWILIO_SETTINGS: HeaderName = HeaderName::from_static("x-twilio-webhooks-signature-settings");
const TWILIO_IDEMPOTENCY: HeaderName = HeaderName::from_static("i-twilio-idempotency-token");

impl Twilio {
    /// Verifies with `auth_token`, for the endpoint Twilio calls at `public_url`.
    pub fn new(auth_token: &str, public_url: &str) -> Result<Self, InvalidScheme> {
        Self {
            url: SenderUrl::fixed(public_url)?,
            keys: Vec::new(),
            keys_sha256: Vec::new(),
        }
        .with_auth_token(auth_token)
    }

    /// Adds another secret: the secondary auth token during a rotation, or a webhooks
    /// `SharedKey` secret (deliveries whose `X-Twilio-Webhooks-Signature-Settings` names
    /// `algorithm=HMAC_SHA256` are signed with one, in HMAC-SHA256).
    pub fn with_auth_token(mut self, auth_token: &str) -> Result<Self, InvalidScheme> {
        self.keys.push(keyed(auth_token)?);
        self.keys_sha256.push(keyed(auth_token)?);
        Ok(self)
    }

    /// Reads the URL Twilio called from `X-Forwarded-Proto` and `X-Forwarded-Host` (else
    /// `Host`) and the request's path and query, instead of the public URL. Only behind a
    /// proxy that sets these headers and drops any the client sent: otherwise a sender
    /// chooses the URL that is checked.
    #[must_use]
    pub fn with_forwarded_url(mut self) -> Self {
        self.url = SenderUrl::Forwarded;
        self
    }

    /// Twilio's signature of a delivery of `body` to `url` with the first auth token, as a
    /// header value: for tests of your own handlers.
    pub fn signature(&self, url: &str, body: &[u8]) -> String {
        let mut mac = self.keys[0].clone();
        feed_twilio(
            &mut mac,
            url,
            &twilio_params(body_sha256(url).is_some(), body),
        );
        STANDARD.encode(mac.finalize().into_bytes())
    }

    fn check(&self, url: &str, headers: &HeaderMap, body: &[u8]) -> Result<Verified, VerifyError> {
        let signature = one(headers, &TWILIO_SIGNATURE)?;
        let sha256 = match headers.get(TWILIO_SETTINGS) {
            None => false,
            Some(settings) => match signature_algorithm(settings.as_bytes()) {
                Some("HMAC_SHA1") => false,
                Some("HMAC_SHA256") => true,
                _ => return Err(VerifyError::new(VerifyErrorKind::NoSupportedSignature)),
            },
        };
        let sent_hash = body_sha256(url);
        if let Some(sent) = &sent_hash {
            let hash = hex::encode(Sha256::digest(body));
            if !bool::from(hash.as_bytes().ct_eq(sent.as_bytes())) {
                return Err(VerifyError::new(VerifyErrorKind::NoMatchingSignature));
            }
        }
        let params = twilio_params(sent_hash.is_some(), body);
        let unsupported = || VerifyError::new(VerifyErrorKind::NoSupportedSignature);
        let matches = |url: &str| -> Result<bool, VerifyError> {
            Ok(if sha256 {
                let expected = decoded::<32>(signature).ok_or_else(unsupported)?;
                any_mac(&self.keys_sha256, &expected, |mac| {
                    feed_twilio(mac, url, &params);
                })
            } else {
                let expected = decoded::<20>(signature).ok_or_else(unsupported)?;
                any_mac(&self.keys, &expected, |mac| feed_twilio(mac, url, &params))
            })
        };
        // The other port form only where the URL as it is fails: one MAC per good delivery.
        if matches(url)? || other_port_form(url).is_some_and(|other| matches(&other) == Ok(true)) {
            let id = headers
                .get(TWILIO_IDEMPOTENCY)
                .and_then(DeliveryId::from_header)
                .filter(|id| !id.as_str().is_empty());
            Ok(id.map_or_else(Verified::new, |id| Verified::new().with_id(id)))
        } else {
            Err(VerifyError::new(VerifyErrorKind::NoMatchingSignature))
        }
    }
}

/// The `bodySHA256` query parameter of `url`, where Twilio sends a JSON body.
fn body_sha256(url: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "bodySHA256")
        .map(|(_, value)| value.into_owned())
}

/// The signed parameters: none for a JSON body (`hashed`: its hash is in the URL), else the
/// body's form fields, sorted by name and value, each pair once (as Twilio's libraries do).
/// A field borrows the body where it needs no decoding.
fn twilio_params(hashed: bool, body: &[u8]) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    if hashed {
        return Vec::new();
    }
    let mut params = form_fields(body);
    params.sort_unstable();
    params.dedup();
    params
}

/// The fields of a form body, decoded as `application/x-www-form-urlencoded` says (`+` a
/// space, `%XX` a byte, text read as UTF-8, lossily): what `form_urlencoded::parse` gives,
/// with the usual field (neither `+` nor `%`) borrowed after one UTF-8 check instead of
/// three passes a byte at a time. Measured at 1 KiB: 2.9 µs for Twilio's verification with
/// `form_urlencoded::parse`, most of it the parse.
fn form_fields(body: &[u8]) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    fn decode(part: &[u8]) -> Cow<'_, str> {
        if memchr::memchr2(b'+', b'%', part).is_none() {
            if let Ok(text) = std::str::from_utf8(part) {
                return Cow::Borrowed(text);
            }
        }
        let spaced: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        let decoded: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
        Cow::Owned(String::from_utf8_lossy(&decoded).into_owned())
    }
    // The fields' ends found by memchr: a split that tests each byte costs half a
    // nanosecond a byte, as much as the MAC.
    let mut fields = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'&', body).chain(std::iter::once(body.len())) {
        let field = &body[start..end];
        start = end + 1;
        if field.is_empty() {
            continue;
        }
        fields.push(match memchr::memchr(b'=', field) {
            Some(at) => (decode(&field[..at]), decode(&field[at + 1..])),
            None => (decode(field), Cow::Borrowed("")),
        });
    }
    fields
}

/// The `algorithm=` of `X-Twilio-Webhooks-Signature-Settings` (`key=...,algorithm=...`);
/// none named is the legacy HMAC-SHA1.
fn signature_algorithm(settings: &[u8]) -> Option<&str> {
    let settings = std::str::from_utf8(settings).ok()?;
    let named = settings.split(',').find_map(|part| {
        let (name, value) = part.split_once('=')?;
        (name.trim() == "algorithm" && !value.trim().is_empty()).then(|| value.trim())
    });
    Some(named.unwrap_or("HMAC_SHA1"))
}

fn feed_twilio<M: Mac>(mac: &mut M, url: &str, params: &[(Cow<'_, str>, Cow<'_, str>)]) {
    mac.update(url.as_bytes());
    for (name, value) in params {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
}

impl Scheme for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    /// Without the request, the public URL with no query.
    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        _now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let url = self.url.without_request().ok_or_else(url_unknown)?;
        self.check(url, headers, body)
    }

    fn verify_request(
        &self,
        request: &Parts,
        body: &[u8],
        _now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let url = self.url.of(request).ok_or_else(url_unknown)?;
        self.check(&url, &request.headers, body)
    }

    fn identify(&self, _: &HeaderMap, body: &[u8], verified: &Verified) -> Option<DeliveryId> {
        Some(
            verified
                .id
                .clone()
                .unwrap_or_else(|| body_hash(body).into()),
        )
    }
}

/// Shows the URL and how many tokens there are; never a token.
impl fmt::Debug for Twilio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Twilio")
            .field("url", &self.url)
            .field("auth_tokens", &self.keys.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod form_tests {
    use super::form_fields;

    #[test]
    fn form_fields_read_as_form_urlencoded_does() {
        for body in [
            &b"a=1&b=2"[..],
            b"Body=H%C3%A9+there%21&To=%2B1415&&x&=v&k=&k=a=b",
            b"bad=%zz%&utf=%FF%FE&plain=\xff",
            b"",
            b"&&&",
        ] {
            let ours: Vec<(String, String)> = form_fields(body)
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(body));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_body_reads_the_same(body in proptest::collection::vec(
            proptest::sample::select(b"ab=&+%2F\xc3\xa9\xff0".to_vec()), 0..40)) {
            let ours: Vec<(String, String)> = form_fields(&body)
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }
}
