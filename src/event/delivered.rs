//! `Event`: the verified delivery a handler receives, raw or deserialized.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::scheme::DeliveryId;

/// A delivery that passed verification, as the inner service sees it.
///
/// The layer puts an `Event` (that is, `Event<Unparsed>`) into the request's extensions
/// before it calls the inner service. In an axum handler take it as an extractor: `Event` for
/// the raw form, or `Event<T>` to have the body deserialized from JSON into `T` as well.
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use axum::http::StatusCode;
/// use serde::Deserialize;
/// use tower_webhook::Event;
///
/// #[derive(Deserialize)]
/// struct UserCreated {
///     r#type: String,
/// }
///
/// async fn typed(event: Event<UserCreated>) -> StatusCode {
///     println!("{} is a {}", event.id(), event.payload().r#type);
///     StatusCode::NO_CONTENT
/// }
///
/// async fn raw(event: Event) -> StatusCode {
///     println!("{} bytes from {}", event.body().len(), event.scheme());
///     StatusCode::NO_CONTENT
/// }
/// # }
/// ```
///
/// Without the layer on the route, the extractor fails with a 500 that names the layer.
#[derive(Clone)]
pub struct Event<T = Unparsed> {
    id: DeliveryId,
    timestamp: Option<i64>,
    kind: Option<Arc<str>>,
    body: Bytes,
    scheme: Cow<'static, str>,
    tenant: Option<Arc<str>>,
    payload: T,
}

/// The payload of an [`Event`] whose body has not been deserialized: the default.
///
/// Read the body with [`Event::body`], or deserialize it on demand with [`Event::json`].
///
/// ```
/// use tower_webhook::{Event, Unparsed};
///
/// // `Event` is `Event<Unparsed>`: the raw body, parsed when asked.
/// async fn handle(event: Event<Unparsed>) {
///     let _ = event.json::<serde_json::Value>();
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unparsed;

impl Event {
    pub(crate) fn new(
        id: DeliveryId,
        timestamp: Option<i64>,
        event_type: Option<String>,
        body: Bytes,
        scheme: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            id,
            timestamp,
            kind: event_type.map(Arc::from),
            body,
            scheme: scheme.into(),
            tenant: None,
            payload: Unparsed,
        }
    }

    /// The same event, of `tenant` (a layer made with `per_tenant`).
    pub(crate) fn with_tenant(mut self, tenant: Option<Arc<str>>) -> Self {
        self.tenant = tenant;
        self
    }

    /// Deserializes the body as JSON into `T`, keeping the rest of the event.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Payload {
    ///     r#type: String,
    /// }
    ///
    /// use tower_webhook::Event;
    ///
    /// async fn handle(event: Event) {
    ///     match event.parse::<Payload>() {
    ///         Ok(event) => println!("{} is a {}", event.id(), event.payload().r#type),
    ///         Err(err) => eprintln!("not the payload we expected: {err}"),
    ///     }
    /// }
    /// ```
    pub fn parse<T: DeserializeOwned>(self) -> Result<Event<T>, serde_json::Error> {
        let payload = serde_json::from_slice(&self.body)?;
        Ok(Event {
            id: self.id,
            timestamp: self.timestamp,
            kind: self.kind,
            body: self.body,
            scheme: self.scheme,
            tenant: self.tenant,
            payload,
        })
    }
}

impl<T> Event<T> {
    pub(crate) fn shared_id(&self) -> DeliveryId {
        self.id.clone()
    }

    /// The delivery's id, from the layer's [`IdSource`](crate::IdSource), as the sender gave
    /// it. The layer dedupes on a key made from it (see [`IdSource`](crate::IdSource#the-dedup-key)).
    ///
    /// ```
    /// use tower_webhook::Event;
    ///
    /// async fn handle(event: Event) {
    ///     println!("handling {}", event.id());
    /// }
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The signed timestamp, for schemes that have one.
    ///
    /// ```
    /// use tower_webhook::Event;
    ///
    /// async fn handle(event: Event) {
    ///     if let Some(sent) = event.timestamp() {
    ///         let late = std::time::SystemTime::now().duration_since(sent).unwrap_or_default();
    ///         println!("{} was signed {late:?} ago", event.id());
    ///     }
    /// }
    /// ```
    pub fn timestamp(&self) -> Option<SystemTime> {
        let secs = self.timestamp?;
        let magnitude = Duration::from_secs(secs.unsigned_abs());
        if secs >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        }
    }

    /// The signed timestamp in seconds since the Unix epoch, for schemes that have one.
    ///
    /// ```
    /// use tower_webhook::Event;
    ///
    /// async fn handle(event: Event) {
    ///     let sent: Option<i64> = event.unix_timestamp();
    /// }
    /// ```
    pub fn unix_timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The kind of event, where the sender names it in a header: GitHub's `X-GitHub-Event`,
    /// Shopify's `X-Shopify-Topic`. Senders that name it in the body (`type` for Stripe and
    /// Standard Webhooks) leave it `None`: read it from the payload.
    ///
    /// ```
    /// use tower_webhook::Event;
    ///
    /// async fn handle(event: Event) {
    ///     match event.event_type() {
    ///         Some("push") => println!("a push"),
    ///         Some(other) => println!("a {other}"),
    ///         None => println!("the type is in the body"),
    ///     }
    /// }
    /// ```
    pub fn event_type(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    /// The tenant the delivery was verified for, where the layer was made with
    /// [`VerifyWebhookLayer::per_tenant`](crate::VerifyWebhookLayer::per_tenant); kept with
    /// the delivery in an [inbox](crate::inbox), so a worker sees it too.
    ///
    /// ```
    /// use tower_webhook::Event;
    ///
    /// async fn handle(event: Event) {
    ///     if let Some(tenant) = event.tenant() {
    ///         println!("{} for {tenant}", event.id());
    ///     }
    /// }
    /// ```
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// The raw body, exactly the bytes that were verified. Cloning it does not copy them.
    ///
    /// ```
    /// use tower_webhook::Event;
    ///
    /// async fn handle(event: Event) {
    ///     let raw: bytes::Bytes = event.body().clone(); // shares the bytes, copies nothing
    /// }
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The name of the scheme that verified the delivery, such as `"standard-webhooks"`.
    ///
    /// ```
    /// use tower_webhook::Event;
    ///
    /// async fn handle(event: Event) {
    ///     // One handler behind several layers can tell the senders apart.
    ///     if event.scheme() == "stripe" {
    ///         println!("from Stripe");
    ///     }
    /// }
    /// ```
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Deserializes the body as JSON into `U`.
    ///
    /// ```
    /// use tower_webhook::Event;
    ///
    /// async fn handle(event: Event) {
    ///     let payload: serde_json::Value = match event.json() {
    ///         Ok(payload) => payload,
    ///         Err(_) => return,
    ///     };
    ///     println!("type {}", payload["type"]);
    /// }
    /// ```
    pub fn json<U: DeserializeOwned>(&self) -> Result<U, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The deserialized payload.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct UserCreated {
    ///     id: String,
    /// }
    ///
    /// use tower_webhook::Event;
    ///
    /// async fn handle(event: Event<UserCreated>) {
    ///     println!("user {}", event.payload().id);
    /// }
    /// ```
    pub fn payload(&self) -> &T {
        &self.payload
    }

    /// The deserialized payload, dropping the rest of the event.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct UserCreated {
    ///     id: String,
    /// }
    ///
    /// use tower_webhook::Event;
    ///
    /// async fn handle(event: Event<UserCreated>) {
    ///     let user: UserCreated = event.into_payload();
    /// }
    /// ```
    pub fn into_payload(self) -> T {
        self.payload
    }
}

/// Shows the id, timestamp, scheme and body length; never the body or the payload, so an
/// event can be logged without leaking what it carries.
impl<T> fmt::Debug for Event<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("timestamp", &self.timestamp)
            .field("event_type", &self.kind)
            .field("scheme", &self.scheme)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}
