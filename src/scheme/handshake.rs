//! Handshakes: the requests a sender makes to check an endpoint before (or while) it sends
//! deliveries, answered by the layer itself, before any store, inbox or handler.

use bytes::Bytes;
use hmac::Mac;
use http::request::Parts;
use http::{Method, StatusCode};
use serde_json::Value;

use super::secret::Digests;
use super::signature::Key;
use super::Verified;
use crate::json;

/// The layer's own answer to a sender's handshake: the status, the content type and the body
/// the sender expects. It is never deduplicated, never queued and never reaches the handler.
///
/// A [`Scheme`](super::Scheme) makes one in [`handshake`](super::Scheme::handshake).
///
/// ```
/// use tower_webhook::scheme::Handshake;
///
/// let answer = Handshake::text("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
/// assert_eq!(answer.status(), http::StatusCode::OK);
/// assert_eq!(answer.content_type(), "text/plain; charset=utf-8");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
}

impl Handshake {
    /// `200 OK` with `body` as plain text.
    pub fn text(body: impl Into<Bytes>) -> Self {
        Self {
            status: StatusCode::OK,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// `200 OK` with `value` as JSON.
    pub fn json(value: &Value) -> Self {
        Self {
            status: StatusCode::OK,
            content_type: "application/json",
            body: Bytes::from(value.to_string()),
        }
    }

    /// The status of the answer.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `Content-Type` of the answer.
    pub fn content_type(&self) -> &'static str {
        self.content_type
    }

    /// The body of the answer.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub(crate) fn into_parts(self) -> (StatusCode, &'static str, Bytes) {
        (self.status, self.content_type, self.body)
    }
}

/// The handshakes one `HmacScheme` answers.
#[derive(Clone, Default)]
pub(crate) enum Answers {
    /// None: every request is a delivery.
    #[default]
    None,
    /// Slack's signed `url_verification`: the `challenge`, as text.
    Slack,
    /// Zoom's signed `endpoint.url_validation`: `plainToken` and its HMAC.
    Zoom,
    /// Twitch's signed `webhook_callback_verification`: the `challenge`, as text.
    Twitch,
    /// Meta's `GET ?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...`, with the
    /// verify token the app set.
    Meta(Digests),
    /// Dropbox's `GET ?challenge=...`: the challenge, as text.
    Dropbox,
}

/// The longest challenge echoed back: the senders' are tens of bytes.
const MAX_CHALLENGE: usize = 1024;

/// Bodies longer than this are no handshake: the senders' are a few hundred bytes, and a
/// delivery is not parsed twice.
const MAX_HANDSHAKE_BODY: usize = 4096;

impl Answers {
    /// The answer to `request`, if it is a handshake of this kind: before verification
    /// (`verified` is `None`) for the unsigned `GET` ones, after it for the signed ones.
    pub(crate) fn answer(
        &self,
        request: &Parts,
        body: &[u8],
        verified: Option<&Verified>,
        key: Option<&Key>,
    ) -> Option<Handshake> {
        match (self, verified) {
            (Answers::Meta(token), None) => meta(request, token),
            (Answers::Dropbox, None) => dropbox(request),
            (Answers::Slack, Some(_)) => {
                let fields = small_json(body, b"url_verification", &["type", "challenge"])?;
                (fields[0].as_str() == Some("url_verification"))
                    .then(|| challenge(&fields[1]))
                    .flatten()
            }
            (Answers::Twitch, Some(_)) => {
                let kind = request.headers.get("twitch-eventsub-message-type")?;
                if kind.as_bytes() != b"webhook_callback_verification" {
                    return None;
                }
                let fields = json::top_level(body, &["challenge"])?;
                challenge(fields[0].as_ref()?)
            }
            (Answers::Zoom, Some(_)) => zoom(body, key?),
            _ => None,
        }
    }
}

/// The top-level `fields` of a small JSON body that holds `marker`.
fn small_json(body: &[u8], marker: &[u8], fields: &[&str]) -> Option<Vec<Value>> {
    if body.len() > MAX_HANDSHAKE_BODY || memchr::memmem::find(body, marker).is_none() {
        return None;
    }
    // Every field there, or no handshake.
    json::top_level(body, fields)?.into_iter().collect()
}

/// A challenge to echo: a string of visible ASCII, not too long.
fn challenge(value: &Value) -> Option<Handshake> {
    let text = value.as_str()?;
    visible(text).then(|| Handshake::text(text.to_owned()))
}

fn visible(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_CHALLENGE && text.bytes().all(|b| b.is_ascii_graphic())
}

/// Zoom: `{"plainToken": p, "encryptedToken": hex(HMAC-SHA256(secret token, p))}`.
fn zoom(body: &[u8], key: &Key) -> Option<Handshake> {
    let fields = small_json(body, b"endpoint.url_validation", &["event", "payload"])?;
    if fields[0].as_str() != Some("endpoint.url_validation") {
        return None;
    }
    let plain = fields[1].get("plainToken")?.as_str()?;
    if !visible(plain) {
        return None;
    }
    // The only kind of key without the `ed25519` feature.
    #[allow(irrefutable_let_patterns)]
    let Key::Hmac { sha256, .. } = key
    else {
        return None;
    };
    let mut mac = sha256.clone();
    mac.update(plain.as_bytes());
    let encrypted = hex::encode(mac.finalize().into_bytes());
    Some(Handshake::json(
        &serde_json::json!({ "plainToken": plain, "encryptedToken": encrypted }),
    ))
}

/// The decoded value of `name` in the request's query, if it is there once.
fn query<'q>(pairs: &'q [(String, String)], name: &str) -> Option<&'q str> {
    let mut found = pairs.iter().filter(|(key, _)| key == name);
    let (_, value) = found.next()?;
    found.next().is_none().then_some(value.as_str())
}

fn get_query(request: &Parts) -> Option<Vec<(String, String)>> {
    if request.method != Method::GET {
        return None;
    }
    let query = request.uri.query()?;
    Some(
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
    )
}

/// Meta: `GET ?hub.mode=subscribe&hub.verify_token=<token>&hub.challenge=<challenge>`; the
/// token compared in constant time (as SHA-256 digests, so its length does not show).
fn meta(request: &Parts, token: &Digests) -> Option<Handshake> {
    let pairs = get_query(request)?;
    if query(&pairs, "hub.mode")? != "subscribe" {
        return None;
    }
    if !token.matches(query(&pairs, "hub.verify_token")?.as_bytes()) {
        return None;
    }
    let text = query(&pairs, "hub.challenge")?;
    visible(text).then(|| Handshake::text(text.to_owned()))
}

/// Dropbox: `GET ?challenge=<challenge>`, echoed.
fn dropbox(request: &Parts) -> Option<Handshake> {
    let pairs = get_query(request)?;
    let text = query(&pairs, "challenge")?;
    visible(text).then(|| Handshake::text(text.to_owned()))
}
