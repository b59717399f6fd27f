//! The layer's side of an [inbox](crate::inbox): one call that stores a verified delivery
//! with its dedup mark. Here, outside the inbox's features, so that the response future has
//! one shape whatever the features.

use std::fmt;
use std::time::Duration;

use http::HeaderMap;

use crate::event::Event;
use crate::scheme::Scheme;
use crate::store::BoxFuture;

/// Why a write to the inbox failed: the inbox's own error, boxed, as the layer only logs it.
pub(crate) type DoorError = Box<dyn std::error::Error + Send + Sync>;

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
pub trait Door: fmt::Debug + Send + Sync {
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
    ) -> BoxFuture<Result<Enqueued, DoorError>>;
}
