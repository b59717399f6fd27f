//! Hand off: the verified delivery written to the inbox, answered once the write is
//! committed, and a write nobody waits for any more finished in the background.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tracing::{Instrument as _, Span};

use crate::config::Config;
use crate::door::DoorError;
use crate::door::{Door, Enqueued};
use crate::event::Event;
use crate::identify::SchemeOf;
use crate::reject::{Rejection, RejectionKind};
use crate::report;
use crate::response;
use crate::runtime::{self, Timed};
use crate::scheme::DeliveryId;
use crate::store::BoxFuture;

/// Writes the verified `request` to `inbox` under `key`: the write, and the delivery's id.
pub(crate) fn write(
    config: &Config,
    inbox: &Arc<dyn Door>,
    request: &Request<Full<Bytes>>,
    key: &str,
) -> (BoxFuture<Result<Enqueued, DoorError>>, DeliveryId) {
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
    write: Pin<&mut Timed<Enqueued, DoorError>>,
    answer: Option<Result<Enqueued, DoorError>>,
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
    write: BoxFuture<Result<Enqueued, DoorError>>,
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
