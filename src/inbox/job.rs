//! What the inbox stores of a delivery, and what a worker hands the handler.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::rows::{CountsRow, DeadRow};
use crate::clock::unix_millis_i64;
use crate::event::{Event, Unparsed};
use crate::scheme::{DeliveryId, Scheme};

/// A verified delivery as the inbox keeps it: the payload of its job, which a worker turns
/// back into an [`Event`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredDelivery {
    pub(crate) id: String,
    pub(crate) key: String,
    pub(crate) scheme: String,
    pub(crate) layer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timestamp: Option<i64>,
    /// The tenant of a per-tenant layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tenant: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub(crate) received_at: i64,
    pub(crate) headers: Vec<(String, String)>,
    /// The body as it arrived: a column of its own (`body`), not part of the JSON.
    #[serde(skip)]
    pub(crate) body: Bytes,
    /// The fields of the body that hold the sender's secret
    /// ([`Scheme::secret_body_fields`]): shown redacted wherever the job is shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) secret_fields: Vec<String>,
}

impl StoredDelivery {
    /// The delivery as the inbox keeps it. The headers that carry a credential (the
    /// scheme's own, as GitLab's token, and the common ones: see
    /// [`Scheme::is_credential_header`]) are never stored; the signature headers are (a
    /// handler may log them; they prove nothing about another body).
    pub(crate) fn new(
        event: &Event,
        key: &str,
        layer: &str,
        headers: &HeaderMap,
        scheme: &dyn Scheme,
    ) -> Self {
        Self {
            id: event.id().to_owned(),
            key: key.to_owned(),
            scheme: event.scheme().to_owned(),
            layer: layer.to_owned(),
            event_type: event.event_type().map(str::to_owned),
            timestamp: event.unix_timestamp(),
            tenant: event.tenant().map(str::to_owned),
            received_at: unix_millis_i64(SystemTime::now()),
            headers: headers
                .iter()
                .filter(|(name, _)| !scheme.is_credential_header(name))
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                })
                .collect(),
            body: event.body().clone(),
            secret_fields: scheme
                .secret_body_fields()
                .iter()
                .map(|&field| field.to_owned())
                .collect(),
        }
    }

    /// The delivery as the door wrote it: the JSON of its fields (`delivery`) and its body
    /// (`body`); `None` where the JSON does not read back (a row written by hand).
    pub(crate) fn read(delivery: &[u8], body: Vec<u8>) -> Option<Self> {
        let mut stored = serde_json::from_slice::<Self>(delivery).ok()?;
        stored.body = Bytes::from(body);
        Some(stored)
    }

    /// The event a handler sees.
    pub(crate) fn event(&self) -> Event {
        Event::new(
            DeliveryId::from(self.id.as_str()),
            self.timestamp,
            self.event_type.clone(),
            self.body.clone(),
            self.scheme.clone(),
        )
        .with_tenant(self.tenant.as_deref().map(Arc::from))
    }

    pub(crate) fn headers(&self) -> HeaderMap {
        self.headers
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::try_from(name.as_str()).ok()?,
                    HeaderValue::try_from(value.as_str()).ok()?,
                ))
            })
            .collect()
    }
}

pub(crate) fn from_epoch_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// About the job a worker runs: which attempt this is, and the delivery's stored headers.
///
/// ```
/// use tower_webhook::{inbox::Job, Event};
///
/// async fn handle(event: Event, job: Job) -> Result<(), String> {
///     if job.attempt() > 1 {
///         println!("{}: attempt {} of {}", event.id(), job.attempt(), job.max_attempts());
///     }
///     let _github_event = job.headers().get("x-github-event");
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Job {
    pub(crate) task_id: String,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) layer: String,
    pub(crate) received_at: SystemTime,
    pub(crate) headers: HeaderMap,
}

impl Job {
    /// The attempt this is, from 1. A run cut short by a crash counts as an attempt.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How many attempts the job gets before it is dead-lettered.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The queue's id of the job (not the delivery's: that is [`Event::id`]).
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The name of the layer that received the delivery.
    pub fn layer(&self) -> &str {
        &self.layer
    }

    /// When the layer received the delivery.
    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }

    /// The delivery's headers as they arrived, but for those that carry a credential
    /// (`Authorization`, `Cookie`, the scheme's own token header such as GitLab's: see
    /// [`Scheme::is_credential_header`](crate::scheme::Scheme::is_credential_header)) and
    /// values that are not visible ASCII, which are not stored.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// A job that ran out of attempts, or whose body did not fit the handler's type: kept until
/// it is replayed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The queue's id of the job: what [`replay`](super::SqliteInbox::replay) takes.
    pub task_id: String,
    /// The delivery's id.
    pub id: String,
    /// The name of the layer that received it.
    pub layer: String,
    /// How many times it ran.
    pub attempts: u32,
    /// The last error the handler returned, as text.
    pub last_error: Option<String>,
    /// When the layer received it.
    pub received_at: SystemTime,
}

impl From<DeadRow> for DeadLetter {
    fn from(row: DeadRow) -> Self {
        let stored = serde_json::from_slice::<StoredDelivery>(&row.delivery).ok();
        Self {
            task_id: row.id,
            id: stored.as_ref().map(|s| s.id.clone()).unwrap_or_default(),
            layer: stored.as_ref().map(|s| s.layer.clone()).unwrap_or_default(),
            attempts: u32::try_from(row.attempt).unwrap_or(0),
            last_error: row.last_error,
            received_at: from_epoch_millis(stored.map_or(0, |s| s.received_at)),
        }
    }
}

/// How many jobs an inbox holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Waiting for a worker, retries whose backoff has not run out included.
    pub queued: u64,
    /// Taken by a worker.
    pub running: u64,
    /// Failed at least once and waiting for another attempt (also counted in `queued`).
    pub failed: u64,
    /// Dead-lettered: out of attempts, or a body the handler's type does not fit.
    pub dead: u64,
    /// Finished.
    pub done: u64,
}

impl From<CountsRow> for Counts {
    fn from(row: CountsRow) -> Self {
        let n = |count: i64| u64::try_from(count).unwrap_or(0);
        Self {
            queued: n(row.waiting),
            running: n(row.running),
            failed: n(row.retrying),
            dead: n(row.dead),
            done: n(row.done),
        }
    }
}

/// What a worker's handler takes: `Event` for the raw body, or `Event<T>` for a payload of a
/// type `T` that deserializes from JSON.
pub trait Payload: Sized + Send + 'static {
    /// The event with its payload.
    fn from_event(event: Event) -> Result<Event<Self>, serde_json::Error>;
}

impl Payload for Unparsed {
    fn from_event(event: Event) -> Result<Event<Self>, serde_json::Error> {
        Ok(event)
    }
}

impl<T: DeserializeOwned + Send + 'static> Payload for T {
    fn from_event(event: Event) -> Result<Event<Self>, serde_json::Error> {
        event.parse()
    }
}
