//! Signed deliveries for your tests, as each sender makes them (feature `test-util`).
//!
//! Test your handlers with the deliveries your senders really send: [`Delivery`] builds one
//! (body, id, event type, timestamp, header family) and signs it with your scheme, giving the
//! sender's whole header set or a whole [`http::Request`] to send through your app.
//!
//! ```
//! use axum::{body::Body, http::StatusCode, routing::post, Router};
//! use tower::ServiceExt;
//! use tower_webhook::{scheme::HmacScheme, store::MemoryStore, testkit::Delivery, Event, VerifyWebhookLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let github = HmacScheme::github("It's a Secret to Everybody")?;
//! let app = Router::new()
//!     .route("/webhooks/github", post(|event: Event| async move {
//!         assert_eq!(event.event_type(), Some("push"));
//!         StatusCode::NO_CONTENT
//!     }))
//!     .route_layer(VerifyWebhookLayer::new(github.clone()).with_store(MemoryStore::new()));
//!
//! let request = Delivery::new(r#"{"ref":"refs/heads/main"}"#)
//!     .event_type("push")
//!     .uri("/webhooks/github")
//!     .request::<Body>(&github)?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::NO_CONTENT);
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Request};

use crate::clock::unix_seconds;
use crate::scheme::engine::TypeFrom;
use crate::scheme::{HmacScheme, Scheme, SignError, StandardWebhooks};
use crate::store::ClaimToken;

/// Which header names a Standard Webhooks delivery carries.
///
/// ```
/// use tower_webhook::scheme::StandardWebhooks;
/// use tower_webhook::testkit::{Delivery, HeaderFamily};
///
/// let clerk = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// let headers = Delivery::new("{}").header_family(HeaderFamily::Svix).headers(&clerk)?;
/// assert!(headers.contains_key("svix-timestamp"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HeaderFamily {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`: the Standard Webhooks names.
    #[default]
    Webhook,
    /// `svix-id`, `svix-timestamp`, `svix-signature`: what Svix, and so Clerk, Resend and
    /// the other senders on Svix, send.
    Svix,
}

/// One delivery to sign, built up from its body.
///
/// What is left unset is filled in the way the sender would: the id is a fresh random one
/// (for senders that send an id header), the timestamp is now, the event type is the
/// sender's usual test event (`ping` for GitHub, `orders/create` for Shopify).
///
/// For Stripe, Paddle and Slack the id lies in the body (`id`, `event_id`): put it there. Their
/// [`id`](Self::id) is not sent. GitHub and Shopify sign no timestamp:
/// [`timestamp`](Self::timestamp) changes nothing for them.
///
/// ```
/// use tower_webhook::{scheme::HmacScheme, testkit::Delivery};
///
/// let github = HmacScheme::github("It's a Secret to Everybody")?;
/// let headers = Delivery::new(r#"{"zen":"Keep it logically awesome."}"#).headers(&github)?;
/// assert_eq!(headers["x-github-event"], "ping");
/// assert!(headers.contains_key("x-github-delivery"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Delivery {
    body: Bytes,
    id: Option<String>,
    event_type: Option<String>,
    timestamp: Option<i64>,
    family: HeaderFamily,
    uri: String,
}

impl Delivery {
    /// A delivery of `body`, exactly these bytes.
    ///
    /// ```
    /// use tower_webhook::{scheme::HmacScheme, testkit::Delivery};
    ///
    /// let github = HmacScheme::github("It's a Secret to Everybody")?;
    /// let delivery = Delivery::new(b"{}".as_slice());
    /// assert_eq!(delivery.body().as_ref(), b"{}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            id: None,
            event_type: None,
            timestamp: None,
            family: HeaderFamily::default(),
            uri: "/webhooks".to_owned(),
        }
    }

    /// A delivery whose body is `payload` as JSON.
    ///
    /// ```
    /// use tower_webhook::testkit::Delivery;
    ///
    /// let delivery = Delivery::json(&serde_json::json!({ "type": "user.created" }))?;
    /// assert_eq!(delivery.body().as_ref(), br#"{"type":"user.created"}"#);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn json<T: serde::Serialize + ?Sized>(payload: &T) -> Result<Self, serde_json::Error> {
        Ok(Self::new(serde_json::to_vec(payload)?))
    }

    /// The delivery's id, for senders that send one in a header (Standard Webhooks, GitHub,
    /// Shopify, and builder schemes with an id header).
    ///
    /// ```
    /// use tower_webhook::{scheme::HmacScheme, testkit::Delivery};
    ///
    /// let github = HmacScheme::github("It's a Secret to Everybody")?;
    /// let headers = Delivery::new("{}").id("72d3162e-cc78-11e3-81ab-4c9367dc0958").headers(&github)?;
    /// assert_eq!(headers["x-github-delivery"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The kind of event, for senders that name it in a header (`X-GitHub-Event`,
    /// `X-Shopify-Topic`, a builder scheme's event type header).
    ///
    /// ```
    /// use tower_webhook::{scheme::HmacScheme, testkit::Delivery};
    ///
    /// let github = HmacScheme::github("It's a Secret to Everybody")?;
    /// let headers = Delivery::new("{}").event_type("push").headers(&github)?;
    /// assert_eq!(headers["x-github-event"], "push");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// The signed timestamp, in Unix seconds: a stale one tests the tolerance.
    ///
    /// ```
    /// use tower_webhook::{scheme::StandardWebhooks, testkit::Delivery};
    ///
    /// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    /// // An hour old: the layer answers 400 "timestamp too old".
    /// let headers = Delivery::new("{}").timestamp(1_700_000_000 - 3600).headers(&scheme)?;
    /// assert_eq!(headers["webhook-timestamp"], "1699996400");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timestamp(mut self, unix_seconds: i64) -> Self {
        self.timestamp = Some(unix_seconds);
        self
    }

    /// Which header names a Standard Webhooks delivery carries. Other schemes ignore it.
    ///
    /// ```
    /// use tower_webhook::scheme::StandardWebhooks;
    /// use tower_webhook::testkit::{Delivery, HeaderFamily};
    ///
    /// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    /// let svix = Delivery::new("{}").header_family(HeaderFamily::Svix).headers(&scheme)?;
    /// assert!(svix.contains_key("svix-signature") && !svix.contains_key("webhook-signature"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn header_family(mut self, family: HeaderFamily) -> Self {
        self.family = family;
        self
    }

    /// The path of [`request`](Self::request); `/webhooks` by default.
    ///
    /// ```
    /// use tower_webhook::{scheme::HmacScheme, testkit::Delivery};
    ///
    /// let github = HmacScheme::github("It's a Secret to Everybody")?;
    /// let request = Delivery::new("{}").uri("/webhooks/github").request::<bytes::Bytes>(&github)?;
    /// assert_eq!(request.uri(), "/webhooks/github");
    /// assert_eq!(request.method(), "POST");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = uri.into();
        self
    }

    /// The body.
    ///
    /// ```
    /// use tower_webhook::testkit::Delivery;
    ///
    /// assert_eq!(Delivery::new("{}").body().as_ref(), b"{}");
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The headers the sender would send with this delivery, signed by `scheme`.
    ///
    /// ```
    /// use tower_webhook::scheme::StandardWebhooks;
    /// use tower_webhook::testkit::{Delivery, HeaderFamily};
    ///
    /// let clerk = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    /// let headers = Delivery::new("{}")
    ///     .id("msg_1")
    ///     .header_family(HeaderFamily::Svix)
    ///     .headers(&clerk)?;
    /// assert_eq!(headers["svix-id"], "msg_1");
    /// assert!(headers.contains_key("svix-signature"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn headers(&self, scheme: &(impl Sign + ?Sized)) -> Result<HeaderMap, SignError> {
        scheme.sign_delivery(self)
    }

    /// The whole request: `POST` to the [`uri`](Self::uri), with the sender's headers and the
    /// body, as any body type that can be made from [`Bytes`] (`axum::body::Body`,
    /// `http_body_util::Full<Bytes>`).
    ///
    /// ```
    /// use tower_webhook::{scheme::HmacScheme, testkit::Delivery};
    ///
    /// let github = HmacScheme::github("It's a Secret to Everybody")?;
    /// let request: http::Request<http_body_util::Full<bytes::Bytes>> = Delivery::new("{}").request(&github)?;
    /// assert!(request.headers().contains_key("x-hub-signature-256"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request<B: From<Bytes>>(
        &self,
        scheme: &(impl Sign + ?Sized),
    ) -> Result<Request<B>, SignError> {
        let mut request = Request::new(B::from(self.body.clone()));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self
            .uri
            .parse()
            .map_err(|_| SignError::new(crate::scheme::SignErrorKind::InvalidHeaderValue))?;
        *request.headers_mut() = self.headers(scheme)?;
        Ok(request)
    }

    fn timestamp_or_now(&self) -> i64 {
        self.timestamp
            .unwrap_or_else(|| unix_seconds(std::time::SystemTime::now()))
    }

    fn id_or(&self, prefix: &str) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("{prefix}{}", ClaimToken::random().as_str()))
    }

    fn is_json(&self) -> bool {
        self.body.first() == Some(&b'{') || self.body.first() == Some(&b'[')
    }
}

/// A scheme that signs a [`Delivery`] as its sender does. Implemented for the built-in
/// schemes; implement it for a scheme of your own to test with [`Delivery`] too.
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use tower_webhook::scheme::{HmacScheme, Scheme, SignError, Verified, VerifyError};
/// use tower_webhook::testkit::{Delivery, Sign};
///
/// /// A scheme of your own, here a thin wrapper around a built-in one.
/// #[derive(Debug)]
/// struct Acme(HmacScheme);
///
/// impl Scheme for Acme {
///     fn name(&self) -> &'static str {
///         "acme"
///     }
///     fn verify(&self, headers: &HeaderMap, body: &[u8], now: std::time::SystemTime) -> Result<Verified, VerifyError> {
///         self.0.verify(headers, body, now)
///     }
/// }
///
/// impl Sign for Acme {
///     fn sign_delivery(&self, delivery: &Delivery) -> Result<HeaderMap, SignError> {
///         let mut headers = self.0.sign_delivery(delivery)?;
///         headers.insert("user-agent", HeaderValue::from_static("Acme-Hooks/2"));
///         Ok(headers)
///     }
/// }
/// ```
pub trait Sign: Scheme {
    /// The headers the sender sends with `delivery`.
    fn sign_delivery(&self, delivery: &Delivery) -> Result<HeaderMap, SignError>;
}

impl Sign for StandardWebhooks {
    fn sign_delivery(&self, delivery: &Delivery) -> Result<HeaderMap, SignError> {
        let id = delivery.id_or("msg_");
        let signed = self.sign(&id, delivery.timestamp_or_now(), &delivery.body)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &signed {
            let name = match delivery.family {
                HeaderFamily::Webhook => name.clone(),
                HeaderFamily::Svix => {
                    let renamed = name.as_str().replacen("webhook-", "svix-", 1);
                    HeaderName::from_bytes(renamed.as_bytes())
                        .expect("a webhook- header renamed svix- is a header name")
                }
            };
            headers.insert(name, value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static("Svix-Webhooks/1.0"));
        Ok(headers)
    }
}

impl Sign for HmacScheme {
    fn sign_delivery(&self, delivery: &Delivery) -> Result<HeaderMap, SignError> {
        let engine = self.engine();
        let id = delivery.id_or("");
        let mut headers = engine.sign(&id, delivery.timestamp_or_now(), &delivery.body)?;
        let mut set = |name: &'static str, value: &str| -> Result<(), SignError> {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_str(value)?);
            Ok(())
        };
        let json = if delivery.is_json() {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        let event_type = delivery.event_type.as_deref();
        match engine.name {
            "stripe" => {
                set("content-type", "application/json; charset=utf-8")?;
                set(
                    "user-agent",
                    "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                )?;
            }
            "github" => {
                set("x-github-event", event_type.unwrap_or("ping"))?;
                set("x-github-hook-id", "1")?;
                set("x-github-hook-installation-target-type", "repository")?;
                set("content-type", "application/json")?;
                set("user-agent", "GitHub-Hookshot/tower-webhook")?;
            }
            "shopify" => {
                set("x-shopify-topic", event_type.unwrap_or("orders/create"))?;
                set("x-shopify-event-id", &id)?;
                set("x-shopify-shop-domain", "example.myshopify.com")?;
                set("x-shopify-api-version", "2025-01")?;
                set("content-type", "application/json")?;
            }
            "slack" => {
                set("content-type", json)?;
                set("user-agent", "Slackbot 1.0 (+https://api.slack.com/robots)")?;
            }
            "paddle" => set("content-type", "application/json")?,
            _ => {
                if let (Some(TypeFrom::Header(header)), Some(event_type)) =
                    (&engine.event_type, event_type)
                {
                    headers.insert(header.clone(), HeaderValue::from_str(event_type)?);
                }
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(json));
            }
        }
        Ok(headers)
    }
}
