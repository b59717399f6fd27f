//! Hand off: the layer's side of an [inbox](crate::inbox). The verified delivery is written
//! to the inbox with its dedup mark and answered once the write is committed; a write nobody
//! waits for any more is finished in the background. Here, outside the inbox's features, so
//! that the response future has one shape whatever the features.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use tracing::{Instrument as _, Span};

use super::config::Config;
use super::reject::{Rejection, RejectionKind};
use super::runtime::{self, Timed};
use super::verify::SchemeOf;
use super::{report, response};
use crate::event::Event;
use crate::scheme::{DeliveryId, Scheme};
use crate::store::BoxFuture;

/// Why a write to the inbox failed: the inbox's own error, boxed, as the layer only logs it.
pub(crate) type HandoffError = Box<dyn std::error::Error + Send + Sync>;

/// What became of a write to the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(any(feature = "inbox-sqlite", feature = "inbox-postgres")),
    allow(dead_code)
)]
#[allow(unreachable_pub)]
pub enum Enqueued {
    /// Committed: answer 202.
    Accepted,
    /// A copy queued within the dedup window: answer 200, duplicate.
    Duplicate,
    /// The key is claimed in flight by an inline layer sharing the table: answer 429.
    InFlight,
    /// The queue is over its bound: answer 429.
    Full,
}

/// Where the layer hands verified deliveries: an [`Inbox`](crate::inbox::Inbox) on any
/// database. Public in a private module: no one outside the crate can name it.
#[allow(unreachable_pub)]
pub trait Handoff: fmt::Debug + Send + Sync {
    /// Writes the delivery (`event` and its `headers`, received by the layer `layer` and
    /// verified by `scheme`, which names the headers it must not store) with its dedup mark
    /// under `key`, kept for `window`, in one transaction, unless a live mark is there
    /// already or the queue is over its bound.
    fn enqueue(
        &self,
        event: &Event,
        key: &str,
        layer: &str,
        headers: &HeaderMap,
        scheme: &dyn Scheme,
        window: Duration,
    ) -> BoxFuture<Result<Enqueued, HandoffError>>;
}

/// Writes the verified `request` to `inbox` under `key`: the write, and the delivery's id.
pub(crate) fn write(
    config: &Config,
    inbox: &Arc<dyn Handoff>,
    request: &Request<Full<Bytes>>,
    key: &str,
) -> (BoxFuture<Result<Enqueued, HandoffError>>, DeliveryId) {
    let event = request
        .extensions()
        .get::<Event>()
        .expect("identify puts the event in the request");
    let scheme = request
        .extensions()
        .get::<SchemeOf>()
        .map_or(&*config.scheme, |of| &*of.0);
    let write = inbox.enqueue(
        event,
        key,
        &config.name,
        request.headers(),
        scheme,
        config.dedup_window,
    );
    (write, event.shared_id())
}

/// The answer to the delivery `id` once the inbox answered (`Some`), or did not within the
/// store timeout (`None`): then the write is finished in the background, and if it commits
/// after all, the sender's retry is a duplicate of a queued delivery: nothing is lost.
pub(crate) fn enqueued(
    config: &Config,
    span: &Span,
    write: Pin<&mut Timed<Enqueued, HandoffError>>,
    answer: Option<Result<Enqueued, HandoffError>>,
    id: DeliveryId,
) -> Response<Bytes> {
    let refuse = |kind| response::rejection(config, span, Rejection::new(kind));
    match answer {
        Some(Ok(Enqueued::Accepted)) => response::accepted(config, span, &id),
        Some(Ok(Enqueued::Duplicate)) => response::duplicate(config, span, id),
        Some(Ok(Enqueued::InFlight)) => refuse(RejectionKind::InFlight),
        Some(Ok(Enqueued::Full)) => refuse(RejectionKind::InboxFull),
        Some(Err(err)) => {
            tracing::error!(error = %err, "failed to write the delivery to the inbox");
            refuse(RejectionKind::StoreUnavailable)
        }
        None => {
            tracing::error!(
                timeout_ms = report::millis(config.store_timeout),
                "the inbox did not take the delivery in time"
            );
            if let Some(write) = write.take() {
                finish_enqueue(config, span, write);
            }
            refuse(RejectionKind::StoreUnavailable)
        }
    }
}

/// Finishes a write to the inbox nobody waits for any more (the answer went out as 503, or
/// the sender hung up): if it commits, the delivery is queued and its retry is a duplicate.
pub(crate) fn finish_enqueue(
    config: &Config,
    span: &Span,
    write: BoxFuture<Result<Enqueued, HandoffError>>,
) {
    let background = async move {
        match write.await {
            Ok(Enqueued::Accepted) => {
                tracing::info!("a delivery abandoned while being written was queued after all");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "an abandoned write to the inbox failed"),
        }
    };
    if !runtime::finish_in_background(background.instrument(span.clone()), config.store_timeout) {
        tracing::debug!("no Tokio runtime to finish an abandoned write to the inbox on");
    }
}
