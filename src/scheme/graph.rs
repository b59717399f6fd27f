//! Microsoft Graph change notifications: a shared `clientState` in every notification, and
//! the `validationToken` handshake.

use std::fmt;
use std::time::SystemTime;

use http::request::Parts;
use http::{HeaderMap, Method};
use serde_json::Value;

use super::engine::body_hash;
use super::secret::Digests;
use super::{
    DeliveryId, Handshake, InvalidSecret, InvalidSecretKind, Scheme, Verified, VerifyError,
    VerifyErrorKind,
};
use crate::json;

/// The longest validation token echoed back: Graph's are a few hundred characters.
const MAX_TOKEN: usize = 4096;

/// Microsoft Graph change notifications: no signature, but the `clientState` secret the
/// subscription was created with, in every notification of the body's `value` array,
/// compared in constant time (all of them must hold it); no timestamp; the id is a hash of
/// the body.
///
/// The layer answers Graph's validation itself: a `POST` with `?validationToken=...` (and no
/// notification) is answered `200` with the decoded token as `text/plain`, as Graph requires
/// within 10 seconds. Like GitLab's token, `clientState` proves who sent a notification
/// only as long as it stays secret: keep request bodies out of logs.
///
/// ```
/// use tower_webhook::{scheme::MicrosoftGraph, store::MemoryStore, VerifyWebhookLayer};
///
/// let layer = VerifyWebhookLayer::new(MicrosoftGraph::new("a long random client state")?)
///     .with_store(MemoryStore::new());
/// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
/// ```
#[derive(Clone)]
pub struct MicrosoftGraph {
    states: Digests,
}

impl MicrosoftGraph {
    /// Verifies notifications that carry `client_state`.
    pub fn new(client_state: &str) -> Result<Self, InvalidSecret> {
        Self {
            states: Digests::default(),
        }
        .with_client_state(client_state)
    }

    /// Accepts another client state (subscriptions renewed with a new one).
    pub fn with_client_state(mut self, client_state: &str) -> Result<Self, InvalidSecret> {
        if client_state.trim().is_empty() {
            return Err(InvalidSecret::new(InvalidSecretKind::Empty));
        }
        self.states.add(client_state.as_bytes());
        Ok(self)
    }
}

impl Scheme for MicrosoftGraph {
    fn name(&self) -> &'static str {
        "microsoft-graph"
    }

    fn verify(
        &self,
        _headers: &HeaderMap,
        body: &[u8],
        _now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let unsigned = || {
            VerifyError::new(VerifyErrorKind::NoSupportedSignature)
                .with_detail("no notifications with a clientState")
        };
        let value = json::top_level(body, &["value"])
            .and_then(|fields| fields.into_iter().next().flatten())
            .ok_or_else(unsigned)?;
        let notifications = value
            .as_array()
            .filter(|all| !all.is_empty())
            .ok_or_else(unsigned)?;
        let mut all_known = true;
        for notification in notifications {
            let state = notification
                .get("clientState")
                .and_then(Value::as_str)
                .ok_or_else(unsigned)?;
            all_known &= self.states.matches(state.as_bytes());
        }
        if all_known {
            Ok(Verified::new())
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

    /// The first notification's `changeType` (`created`, `updated`, `deleted`).
    fn event_type(&self, _: &HeaderMap, body: &[u8], _: &Verified) -> Option<String> {
        json::text_at(body, &["value", "0", "changeType"])
    }

    /// Every notification carries the subscription's `clientState`, the secret itself.
    fn secret_body_fields(&self) -> &'static [&'static str] {
        &["clientState"]
    }

    /// Graph's validation: `POST ?validationToken=<token>`, answered with the token.
    fn handshake(
        &self,
        request: &Parts,
        _body: &[u8],
        verified: Option<&Verified>,
    ) -> Option<Handshake> {
        if verified.is_some() || request.method != Method::POST {
            return None;
        }
        let query = request.uri.query()?;
        let mut tokens = form_urlencoded::parse(query.as_bytes())
            .filter(|(name, _)| name == "validationToken")
            .map(|(_, value)| value);
        let token = tokens.next()?;
        if tokens.next().is_some()
            || token.is_empty()
            || token.len() > MAX_TOKEN
            || token.chars().any(char::is_control)
        {
            return None;
        }
        Some(Handshake::text(token.into_owned()))
    }
}

/// Shows how many client states there are; never one.
impl fmt::Debug for MicrosoftGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MicrosoftGraph")
            .field("client_states", &self.states.len())
            .finish()
    }
}
