//! Where the kind of a delivery's event comes from.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::HeaderName;

use crate::json;
use crate::scheme::{Scheme, Verified};

type Custom = dyn Fn(&Parts, &[u8]) -> Option<String> + Send + Sync;

/// The longest event type kept, in bytes: a type names a kind of event, and a longer one is
/// cut (at a character's edge) rather than stored whole in every job and log line.
pub(crate) const MAX_EVENT_TYPE: usize = 256;

/// Where the layer takes a delivery's event type from (`invoice.paid`, `push`): what
/// [`Event::event_type`](crate::Event::event_type) returns, what the inbox stores, lists
/// and filters by, and what the delivery's log line says.
///
/// The default is the scheme's: each built-in scheme reads it where its sender puts it, a
/// header (GitHub's `X-GitHub-Event`, Shopify's `X-Shopify-Topic`) or the verified JSON
/// body (Standard Webhooks' and Stripe's `type`, Paddle's `event_type`, Slack's
/// `event.type`, ...). Choose another where your sender differs:
///
/// ```
/// use tower_webhook::{scheme::StandardWebhooks, EventTypeSource, VerifyWebhookLayer};
///
/// let layer = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
///     // A sender on Standard Webhooks that names the event in `data.kind`.
///     .with_event_type(EventTypeSource::json_field("/data/kind"));
/// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
/// ```
///
/// A type is read only from a delivery that verified; a missing one is no error (the event
/// simply has none). Types longer than 256 bytes are cut to that length.
#[derive(Clone, Default)]
pub struct EventTypeSource(Source);

#[derive(Clone, Default)]
enum Source {
    #[default]
    Scheme,
    Header(HeaderName),
    Json(Arc<[String]>),
    Custom(Arc<Custom>),
    None,
}

impl EventTypeSource {
    /// The scheme's: see [`Scheme::event_type`]. The default.
    pub fn scheme() -> Self {
        Self(Source::Scheme)
    }

    /// The value of a request header.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_webhook::{scheme::HmacScheme, EventTypeSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(HmacScheme::github("It's a Secret to Everybody")?)
    ///     .with_event_type(EventTypeSource::header(HeaderName::from_static("x-github-hook-installation-target-type")));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn header(name: HeaderName) -> Self {
        Self(Source::Header(name))
    }

    /// A field of the JSON body: a top-level key (`type`), or a JSON Pointer
    /// (`/event/type`, `/value/0/changeType`). Strings are taken as they are, numbers and
    /// booleans as their JSON text. Reading stops at the field.
    pub fn json_field(field: impl AsRef<str>) -> Self {
        Self(Source::Json(json::pointer_path(field.as_ref()).into()))
    }

    /// Whatever `f` makes of the verified request's head and raw body.
    ///
    /// ```
    /// use tower_webhook::{scheme::HmacScheme, EventTypeSource, VerifyWebhookLayer};
    ///
    /// let layer = VerifyWebhookLayer::new(HmacScheme::github("It's a Secret to Everybody")?)
    ///     // GitHub's event and action together: "issues.opened".
    ///     .with_event_type(EventTypeSource::custom(|parts, body| {
    ///         let event = parts.headers.get("x-github-event")?.to_str().ok()?;
    ///         let payload: serde_json::Value = serde_json::from_slice(body).ok()?;
    ///         Some(match payload.get("action").and_then(|a| a.as_str()) {
    ///             Some(action) => format!("{event}.{action}"),
    ///             None => event.to_owned(),
    ///         })
    ///     }));
    /// # Ok::<(), tower_webhook::scheme::InvalidSecret>(())
    /// ```
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(&Parts, &[u8]) -> Option<String> + Send + Sync + 'static,
    {
        Self(Source::Custom(Arc::new(f)))
    }

    /// No event type at all: nothing is read.
    pub fn none() -> Self {
        Self(Source::None)
    }

    /// The event type of one verified delivery, if it has a non-empty one.
    pub(crate) fn resolve(
        &self,
        scheme: &dyn Scheme,
        parts: &Parts,
        body: &[u8],
        verified: &Verified,
    ) -> Option<String> {
        let found = match &self.0 {
            Source::Scheme => scheme.event_type(&parts.headers, body, verified),
            Source::Header(name) => parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
            Source::Json(path) => json::text_at(body, path),
            Source::Custom(f) => f(parts, body),
            Source::None => None,
        };
        let mut kind = found.filter(|kind| !kind.trim().is_empty())?;
        if kind.len() > MAX_EVENT_TYPE {
            let mut end = MAX_EVENT_TYPE;
            while !kind.is_char_boundary(end) {
                end -= 1;
            }
            kind.truncate(end);
        }
        Some(kind)
    }
}

impl fmt::Debug for EventTypeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Scheme => f.write_str("EventTypeSource::Scheme"),
            Source::Header(name) => write!(f, "EventTypeSource::Header({name})"),
            Source::Json(path) => write!(f, "EventTypeSource::Json({path:?})"),
            Source::Custom(_) => f.write_str("EventTypeSource::Custom"),
            Source::None => f.write_str("EventTypeSource::None"),
        }
    }
}
