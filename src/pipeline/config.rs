//! The settings a layer hands to every service and response future it makes.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::event::EventTypeSource;
use crate::id::IdSource;
use crate::metrics::Meter;
use crate::pipeline::handoff::Handoff;
use crate::pipeline::key::escape_segment;
use crate::scheme::Scheme;
use crate::stats::Stats;
use crate::store::DynStore;
use crate::tenant::Tenants;
use crate::tx::Transactions;

/// What [`VerifyWebhookLayer`](crate::VerifyWebhookLayer) builds, shared by
/// [`VerifyWebhook`](crate::VerifyWebhook) and its [`ResponseFuture`](crate::ResponseFuture).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) scheme: Arc<dyn Scheme>,
    /// The layer's name: the namespace of its dedup keys, and a field of its span.
    pub(crate) name: Arc<str>,
    /// What happens behind verification: nothing more, a claim in a store, or a write to an
    /// inbox.
    pub(crate) behind: Behind,
    pub(crate) id_source: IdSource,
    pub(crate) event_type: EventTypeSource,
    pub(crate) body_limit: usize,
    pub(crate) lease: Duration,
    pub(crate) dedup_window: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    /// Where a delivery's peer address is found, for its span.
    pub(crate) peer: Peer,
    pub(crate) stats: Stats,
    pub(crate) meter: Meter,
    /// Where each delivery's scheme is looked up, for a layer made with
    /// [`per_tenant`](crate::VerifyWebhookLayer::per_tenant); `scheme` is then never asked.
    pub(crate) tenants: Option<Tenants>,
}

/// What the layer does with a verified delivery: one choice, so no precedence between a
/// store and an inbox is left to remember.
#[derive(Debug, Clone)]
pub(crate) enum Behind {
    /// Calls the inner service for every verified copy.
    Nothing,
    /// Claims the delivery's key in a store around the inner service; with the store's
    /// transactions where it is on a SQL database, for the handlers that take a `Tx`.
    Store(Arc<dyn DynStore>, Option<Arc<dyn Transactions>>),
    /// Writes the delivery to an inbox and answers 202; workers run the handler. Only the
    /// inbox features make one: without them the pipeline keeps its hand-off step unused.
    #[cfg_attr(
        not(any(feature = "inbox-sqlite", feature = "inbox-postgres")),
        allow(dead_code)
    )]
    Inbox(Arc<dyn Handoff>),
}

impl Behind {
    /// Whether deliveries are deduplicated, and so need a key.
    pub(crate) fn dedups(&self) -> bool {
        !matches!(self, Self::Nothing)
    }
}

/// Finds the address of the peer that sent a request.
#[derive(Clone)]
pub(crate) struct Peer(pub(crate) Option<Arc<PeerFn>>);

/// What [`VerifyWebhookLayer::with_peer`](crate::VerifyWebhookLayer::with_peer) takes.
pub(crate) type PeerFn = dyn Fn(&http::request::Parts) -> Option<IpAddr> + Send + Sync;

impl Peer {
    /// The peer's address: the layer's own lookup if it has one, else the connection's
    /// address in the request's extensions, as axum's `ConnectInfo<SocketAddr>` or a
    /// `SocketAddr` a server put there.
    pub(crate) fn of(&self, parts: &http::request::Parts) -> Option<IpAddr> {
        if let Some(find) = &self.0 {
            return find(parts);
        }
        #[cfg(feature = "axum")]
        if let Some(info) = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Some(info.0.ip());
        }
        parts.extensions.get::<SocketAddr>().map(SocketAddr::ip)
    }
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Peer(custom)"
        } else {
            "Peer(connection)"
        })
    }
}

impl Config {
    /// The namespace of this layer's keys: its name, escaped so that it ends at the first `:`.
    pub(crate) fn namespace(&self) -> Cow<'_, str> {
        escape_segment(&self.name)
    }
}
