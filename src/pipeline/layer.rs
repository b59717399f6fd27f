//! `VerifyWebhookLayer` and its settings.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::clock::{Clock, SystemClock};
use crate::event::EventTypeSource;
use crate::id::IdSource;
use crate::metrics::Meter;
use crate::pipeline::config::{Behind, Config, Peer};
use crate::pipeline::service::VerifyWebhook;
use crate::scheme::{Scheme, Verified, VerifyError, VerifyErrorKind};
use crate::stats::Stats;
use crate::store::{clamp_ttl, IdempotencyStore, MIN_TTL};
use crate::tenant::Tenants;

/// A [`Layer`] that verifies webhook deliveries and deduplicates them before the inner service
/// runs. See the [crate documentation](crate) for the whole pipeline.
///
/// ```
/// use std::time::Duration;
/// use tower_webhook::{scheme::StandardWebhooks, store::MemoryStore, IdSource, VerifyWebhookLayer};
///
/// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
///     .with_store(MemoryStore::new())
///     .with_id_source(IdSource::json_fields(["verification_id", "type"], "-"))
///     .with_body_limit(256 * 1024)
///     .with_lease(Duration::from_secs(30))
///     .with_dedup_window(Duration::from_secs(3 * 24 * 3600));
/// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct VerifyWebhookLayer {
    config: Arc<Config>,
}

impl VerifyWebhookLayer {
    /// The default body limit: 1 MiB.
    pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
    /// The default lease of a claim: 60 seconds.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
    /// The default dedup window: 7 days, longer than the retry schedules of Svix (about a
    /// day) and Self (several days).
    pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);
    /// The default `Retry-After` of a 429 or 503: 5 seconds.
    pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
    /// The default bound on each store call: 5 seconds, well under the 15 s a sender such as
    /// Svix waits for an answer.
    pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(5);
    /// The longest lease or dedup window the layer asks a store to keep: 365 days. Longer
    /// settings are cut to it.
    pub const MAX_TTL: Duration = crate::store::MAX_TTL;

    /// A layer that verifies deliveries with `scheme` and, until a store is set, only
    /// verifies: every verified copy of a delivery runs the inner service.
    ///
    /// The layer is named after the scheme ([`Scheme::name`], such as `"github"`) until
    /// [`with_name`](Self::with_name) names it.
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// // Verifies only: every verified copy of a delivery runs the inner service.
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?);
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn new(scheme: impl Scheme) -> Self {
        let name = Arc::from(scheme.name());
        Self {
            config: Arc::new(Config {
                meter: Meter::new(&name, scheme.name()),
                scheme: Arc::new(scheme),
                name,
                behind: Behind::Nothing,
                id_source: IdSource::default(),
                event_type: EventTypeSource::default(),
                body_limit: Self::DEFAULT_BODY_LIMIT,
                lease: Self::DEFAULT_LEASE,
                dedup_window: Self::DEFAULT_DEDUP_WINDOW,
                retry_after: Self::DEFAULT_RETRY_AFTER,
                store_timeout: Self::DEFAULT_STORE_TIMEOUT,
                clock: Arc::new(SystemClock),
                peer: Peer(None),
                stats: Stats::default(),
                tenants: None,
            }),
        }
    }

    /// A layer that verifies each delivery with the scheme of its own tenant: see
    /// [`Tenants`]. Everything else is as for [`new`](Self::new); the layer's name is the
    /// tenants' name, and each tenant's dedup keys are its own.
    ///
    /// ```
    /// use tower_webhook::{scheme::HmacScheme, TenantFrom, Tenants, VerifyWebhookLayer};
    ///
    /// // https://example.com/webhooks/{tenant}: the second segment of the path.
    /// let layer = VerifyWebhookLayer::per_tenant(Tenants::new("stripe", TenantFrom::path_segment(1), |tenant: String| async move {
    ///     let secret = format!("whsec_{tenant}"); // from the application's database
    ///     Ok::<_, tower_webhook::scheme::InvalidSecret>(Some(HmacScheme::stripe(&secret)?))
    /// }));
    /// ```
    pub fn per_tenant(tenants: Tenants) -> Self {
        let mut layer = Self::new(PerTenant(tenants.name()));
        Arc::make_mut(&mut layer.config).tenants = Some(tenants);
        layer
    }

    /// Deduplicates deliveries through `store`: a copy of a delivery that was handled answers
    /// 200 without running the inner service, and a copy that arrives while another is being
    /// handled answers 429.
    ///
    /// One store can serve every layer of an application: each layer keeps its keys under
    /// its own [name](Self::with_name). It replaces an [inbox](Self::with_inbox) set before:
    /// a layer either claims in a store or writes to an inbox.
    ///
    /// With a `PostgresStore` or a `SqliteStore` (as they are, not wrapped in a store of your
    /// own), a handler can take a `Tx` on the store's database: its writes commit with the
    /// delivery's completion (see [the work done once](crate#the-work-done-once)).
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, store::MemoryStore, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?).with_store(MemoryStore::new());
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_store(mut self, store: impl IdempotencyStore) -> Self {
        let transactions = crate::tx::transactions(&store);
        self.config_mut().behind = Behind::Store(Arc::new(store), transactions);
        self
    }

    /// Hands each verified delivery to `inbox` and answers `202 Accepted` once it is
    /// committed, instead of calling the inner service: workers run the handler later, with
    /// retries. See [the inbox](crate::inbox) for the answers and the workers.
    ///
    /// The inbox keeps its own dedup marks, in the same transaction as the job. It replaces
    /// a [store](Self::with_store) set before: a layer either claims in a store or writes to
    /// an inbox.
    ///
    /// ```no_run
    /// use tower_webhook::{inbox::SqliteInbox, scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let inbox = SqliteInbox::open("webhooks.db").await?;
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     .with_inbox(inbox);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres")))
    )]
    pub fn with_inbox<D: crate::inbox::Dialect>(mut self, inbox: crate::inbox::Inbox<D>) -> Self {
        self.config_mut().behind = Behind::Inbox(Arc::new(inbox));
        self
    }

    /// Names the layer. The name is the namespace of its dedup keys, and a field (`layer`)
    /// of its tracing span.
    ///
    /// The default is the scheme's name, so that a GitHub route and a Stripe route sharing
    /// one store never take each other's deliveries for duplicates. Name the layers when two
    /// routes use the same scheme (two Standard Webhooks senders, say), so their ids cannot
    /// meet either.
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, store::MemoryStore, VerifyWebhookLayer};
    ///
    /// let store = MemoryStore::new();
    /// let clerk = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     .with_name("clerk")
    ///     .with_store(store.clone());
    /// let resend = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_dGhlIG90aGVyIHNlY3JldA==")?)
    ///     .with_name("resend")
    ///     .with_store(store);
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        let config = self.config_mut();
        config.name = Arc::from(name.into());
        // The name is one of the metrics' labels.
        config.meter = Meter::new(&config.name, config.scheme.name());
        self
    }

    /// Sets how the address of a delivery's sender is found, for the `peer` field of the
    /// delivery's span (and so of its log lines, a rejection's among them), to match it
    /// with the sender's dashboard or its published addresses.
    ///
    /// By default it is the connection's address: axum's `ConnectInfo<SocketAddr>` (serve
    /// the app with `into_make_service_with_connect_info::<SocketAddr>()`), or a
    /// `SocketAddr` in the request's extensions. Behind a proxy that is the proxy's; read
    /// the header your proxy sets instead, trusting only what your own proxy writes.
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// // Behind one proxy that appends the client's address to `X-Forwarded-For`.
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     .with_peer(|request: &http::request::Parts| {
    ///         let forwarded = request.headers.get("x-forwarded-for")?.to_str().ok()?;
    ///         forwarded.rsplit(',').next()?.trim().parse::<IpAddr>().ok()
    ///     });
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_peer(
        mut self,
        find: impl Fn(&http::request::Parts) -> Option<std::net::IpAddr> + Send + Sync + 'static,
    ) -> Self {
        self.config_mut().peer = Peer(Some(Arc::new(find)));
        self
    }

    /// Sets where a delivery's id comes from. See [`IdSource`].
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, IdSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     .with_id_source(IdSource::json_fields(["verification_id", "type"], "-"));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_id_source(mut self, id_source: IdSource) -> Self {
        self.config_mut().id_source = id_source;
        self
    }

    /// Sets where a delivery's event type comes from: by default the scheme's (see
    /// [`EventTypeSource`]).
    ///
    /// ```
    /// use tower_webhook::{scheme::HmacScheme, EventTypeSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(HmacScheme::stripe("whsec_test")?)
    ///     // Stripe's `type` is the default; here, the object's own type instead.
    ///     .with_event_type(EventTypeSource::json_field("/data/object/object"));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_event_type(mut self, source: EventTypeSource) -> Self {
        self.config_mut().event_type = source;
        self
    }

    /// Sets the largest body accepted, in bytes; larger ones answer 413.
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?).with_body_limit(64 * 1024);
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.config_mut().body_limit = bytes;
        self
    }

    /// Sets how long a claim holds a delivery's id while the inner service runs. A copy that
    /// arrives within the lease answers 429; after it, the copy is handled again. Make it
    /// longer than your slowest handler. Cut to between a millisecond and
    /// [`MAX_TTL`](Self::MAX_TTL).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// // Handlers that take up to two minutes.
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?).with_lease(Duration::from_secs(180));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.config_mut().lease = clamp_ttl(lease);
        self
    }

    /// Sets how long a handled delivery's id is remembered, so that copies are answered
    /// without running the inner service. Make it longer than your senders' retry schedules.
    /// Cut to between a millisecond and [`MAX_TTL`](Self::MAX_TTL): a longer window would
    /// overflow the stores' expiry arithmetic and silently turn dedup off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?).with_dedup_window(Duration::from_secs(3 * 24 * 3600));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.config_mut().dedup_window = clamp_ttl(window);
        self
    }

    /// Sets how long the layer waits for each store call (claim, complete, release).
    ///
    /// A claim that takes longer answers `503` with `Retry-After`, in time for the sender to
    /// hear it, whatever the store (a locked table, a Redis that stopped answering, a store of
    /// your own without timeouts). The call is not simply dropped: it is finished in the
    /// background and, if it took the claim after all, the claim is released, so the
    /// sender's retry is handled at once. A completion that takes longer lets the handler's
    /// answer go out and finishes in the background.
    ///
    /// Needs a Tokio runtime with its timer, as axum's `serve` and `#[tokio::main]` have;
    /// elsewhere store calls are not bounded. At least a millisecond.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?).with_store_timeout(Duration::from_secs(2));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().store_timeout = timeout.max(MIN_TTL);
        self
    }

    /// Sets the `Retry-After` of 429 and 503 answers (rounded up to whole seconds).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?).with_retry_after(Duration::from_secs(30));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.config_mut().retry_after = after;
        self
    }

    /// Reads the time for timestamp checks from `clock` instead of the system clock.
    ///
    /// ```
    /// use tower_webhook::clock::ManualClock;
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// // A test that checks the timestamp tolerance without waiting five minutes.
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?).with_clock(clock.clone());
    /// clock.advance(std::time::Duration::from_secs(301));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.config_mut().clock = Arc::new(clock);
        self
    }

    /// The counters of delivery outcomes, shared by every service this layer makes.
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?);
    /// let stats = layer.stats();
    /// assert_eq!(stats.snapshot().handled, 0);
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.config.stats.clone()
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }
}

impl<S> Layer<S> for VerifyWebhookLayer {
    type Service = VerifyWebhook<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyWebhook::new(inner, Arc::clone(&self.config))
    }
}

/// The scheme of a layer made with [`VerifyWebhookLayer::per_tenant`]: a name for its spans
/// and metrics. Each delivery is verified with its tenant's scheme; this one refuses all.
#[derive(Debug)]
struct PerTenant(&'static str);

impl Scheme for PerTenant {
    fn name(&self) -> &'static str {
        self.0
    }

    fn verify(
        &self,
        _headers: &http::HeaderMap,
        _body: &[u8],
        _now: std::time::SystemTime,
    ) -> Result<Verified, VerifyError> {
        Err(VerifyError::new(VerifyErrorKind::NoMatchingSignature))
    }
}
