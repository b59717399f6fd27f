//! Verify and identify: the collected delivery checked by its scheme, its id found, and the
//! [`Event`] the inner service receives.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body_util::Full;
use tracing::Span;

use crate::event::Event;
use crate::id::{IdSource, NoId};
use crate::pipeline::config::{Behind, Config};
use crate::pipeline::reject::{Rejection, RejectionKind};
use crate::pipeline::response;
use crate::scheme::Scheme;
use crate::tenant::{self, Tenant};

/// The key a delivery is claimed under.
pub(crate) type Key = Arc<str>;

/// What comes of a collected request once it is verified.
pub(crate) enum Next {
    /// A delivery: the request for the inner service, with the [`Event`] in its extensions,
    /// and the key to claim.
    Deliver(Request<Full<Bytes>>, Option<Key>),
    /// One of the sender's handshakes, answered by the layer itself.
    Answer(Response<Bytes>),
}

/// Verifies the collected delivery and finds its id, or answers the sender's handshake: an
/// unsigned one (a `GET` with a challenge) before verifying, a signed one after.
pub(crate) fn identify(
    config: &Config,
    span: &Span,
    (mut parts, body): (Parts, Bytes),
    scheme: &Arc<dyn Scheme>,
    tenant: Option<&str>,
) -> Result<Next, Rejection> {
    if let Some(answer) = scheme.handshake(&parts, &body, None) {
        return Ok(Next::Answer(response::handshake(config, span, answer)));
    }
    let verified = scheme
        .verify_request(&parts, &body, config.clock.now())
        .map_err(|err| {
            record_claimed_id(span, &parts.headers);
            Rejection::new(RejectionKind::Verification(err))
        })?;
    if let Some(answer) = scheme.handshake(&parts, &body, Some(&verified)) {
        return Ok(Next::Answer(response::handshake(config, span, answer)));
    }
    let identified = config
        .id_source
        .resolve(&**scheme, &parts, &body, &verified)
        .map_err(|no_id| {
            Rejection::new(match no_id {
                NoId::Missing => RejectionKind::MissingId,
                NoId::NotJson => RejectionKind::BodyNotJson,
            })
        })?;
    // Made only where there is a store or an inbox to mark it in.
    let key = config.behind.dedups().then(|| match tenant {
        Some(tenant) => {
            let namespace = tenant::namespace(&config.namespace(), tenant);
            IdSource::dedup_key(&namespace, &identified, &body)
        }
        None => IdSource::dedup_key(&config.namespace(), &identified, &body),
    });
    let tenant: Option<Arc<str>> = tenant.map(Arc::from);
    if let Some(tenant) = &tenant {
        parts.extensions.insert(Tenant(Arc::clone(tenant)));
    }
    let id = identified.id;
    span.record("id", id.as_str());
    let event_type = config
        .event_type
        .resolve(&**scheme, &parts, &body, &verified);
    if let Some(event_type) = &event_type {
        if !span.is_disabled() {
            span.record("event_type", shown(event_type.as_bytes()).as_str());
        }
    }
    if matches!(config.behind, Behind::Inbox(_)) {
        // What the inbox must not store of this delivery, named by the scheme that verified
        // it (a tenant's own, for a per-tenant layer).
        parts.extensions.insert(SchemeOf(Arc::clone(scheme)));
    }
    parts.extensions.insert(
        Event::new(
            id,
            verified.timestamp,
            event_type,
            body.clone(),
            config.scheme.name(),
        )
        .with_tenant(tenant),
    );
    Ok(Next::Deliver(
        Request::from_parts(parts, Full::new(body)),
        key,
    ))
}

/// The headers senders put their delivery's id in, tried in this order.
const ID_HEADERS: [&str; 6] = [
    "webhook-id",
    "svix-id",
    "x-github-delivery",
    "x-shopify-webhook-id",
    "x-request-id",
    "idempotency-key",
];

/// Records in the span the id a refused delivery claims to have, unverified, so that its log
/// line can be matched with the sender's dashboard: visible ASCII only, at most 64 bytes.
fn record_claimed_id(span: &Span, headers: &http::HeaderMap) {
    let claimed = ID_HEADERS
        .iter()
        .find_map(|name| headers.get(*name))
        .map(http::HeaderValue::as_bytes);
    if let Some(claimed) = claimed {
        span.record("claimed_id", shown(claimed).as_str());
    }
}

/// What a log line shows of a sender's text: visible ASCII only (`?` for anything else, so
/// no control character reaches a terminal or a log parser), at most 64 bytes.
fn shown(text: &[u8]) -> String {
    text.iter()
        .take(64)
        .map(|&byte| {
            if byte.is_ascii_graphic() || byte == b' ' {
                char::from(byte)
            } else {
                '?'
            }
        })
        .collect()
}

/// The scheme that verified a delivery bound for an inbox: the door asks it which headers
/// carry credentials and which body fields hold secrets.
#[derive(Clone)]
pub(crate) struct SchemeOf(pub(crate) Arc<dyn Scheme>);
