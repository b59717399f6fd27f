//! The operator's page of an inbox (feature `console`): what it holds, one delivery with
//! every attempt, replays and purges, as an axum [`Router`] to nest in your application.
//!
//! ```no_run
//! use axum::Router;
//! use tower_webhook::inbox::console::ConsoleAuth;
//! use tower_webhook::inbox::SqliteInbox;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let inbox = SqliteInbox::open("webhooks.db").await?;
//! let token = std::env::var("CONSOLE_TOKEN")?;
//! let app: Router = Router::new().nest("/inbox", inbox.console(ConsoleAuth::token(token)?).router());
//! # Ok(())
//! # }
//! ```
//!
//! - **Overview**: the jobs by state, the deliveries accepted, handled, failed and
//!   dead-lettered over the last hour and day, and the layers' rejections by reason where
//!   the app shares their [`Stats`] ([`Console::with_stats`]).
//! - **Deliveries**: newest first, by state, layer and event type, and a search by event id
//!   (or job id); paged by key, so as fast at the millionth job as at the first.
//! - **One delivery**: its id, sender, type, time, the stored headers, the body (JSON
//!   pretty-printed, at most 64 KiB shown), and every attempt with its time, duration and
//!   error.
//! - **Actions**: replay one dead letter, replay the dead letters a filter matches, purge
//!   the done jobs finished before a date. Each asks to confirm, then says what it did.
//!
//! It is never open by accident: building it takes a [`ConsoleAuth`] (a token, basic
//! credentials, or your own auth layer in front, named as such). Every action is a `POST`
//! with a CSRF token bound to who asks, refused when the browser says it comes from another
//! site. Every answer carries a strict `Content-Security-Policy` (no script at all, styles
//! from the console's own stylesheet), `X-Frame-Options: DENY`, `nosniff`, no referrer to
//! other sites and no caching. The overview's charts are aligned to the clock; the console
//! keeps the buckets that have closed, so a page load reads only the open ones. Every value from a delivery is escaped; secrets are never stored, so never
//! shown. Server-rendered HTML: no JavaScript, no asset pipeline, no CDN.

mod actions;
mod auth;
mod charts;
mod csrf;
mod pages;
mod session;
mod views;

use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderValue, StatusCode};

pub use auth::{ConsoleAuth, WeakSecret, DEFAULT_SESSION_LIFETIME, MIN_TOKEN_LEN};

use super::{Dialect, Inbox};
use crate::Stats;

/// The operator's page of an [`Inbox`]: made by [`Inbox::console`], served by
/// [`router`](Self::router).
pub struct Console<D: Dialect> {
    inbox: Inbox<D>,
    auth: ConsoleAuth,
    stats: Vec<(String, Stats)>,
}

impl<D: Dialect> std::fmt::Debug for Console<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("inbox", &self.inbox)
            .field("auth", &self.auth)
            .field("stats", &self.stats.len())
            .finish()
    }
}

impl<D: Dialect> Inbox<D> {
    /// The operator's page of this inbox, open to whom `auth` lets in. See
    /// [the module](self).
    pub fn console(&self, auth: ConsoleAuth) -> Console<D> {
        Console {
            inbox: self.clone(),
            auth,
            stats: Vec::new(),
        }
    }
}

impl<D: Dialect> Console<D> {
    /// Shows the rejections of the layer named `layer` by reason (a forged or stale delivery
    /// is refused before it reaches the inbox), from its [`Stats`]
    /// ([`VerifyWebhookLayer::stats`](crate::VerifyWebhookLayer::stats)): counts since the
    /// process started.
    #[must_use]
    pub fn with_stats(mut self, layer: impl Into<String>, stats: Stats) -> Self {
        self.stats.push((layer.into(), stats));
        self
    }

    /// The console's routes, to [`nest`](Router::nest) under a path of your choosing
    /// (`/inbox`, say). Its links are relative to where it is nested.
    pub fn router(self) -> Router {
        let shared = Arc::new(Shared {
            inbox: self.inbox,
            auth: self.auth,
            csrf: csrf::Csrf::new(),
            stats: self.stats,
            charts: charts::Charts::default(),
        });
        let binds_browser = shared.auth.binds_browser();
        let router = Router::new()
            .route("/", get(views::overview::<D>))
            .route("/jobs", get(views::list::<D>))
            .route("/jobs/{id}", get(views::detail::<D>))
            .route(
                "/jobs/{id}/replay",
                get(actions::replay_one_confirm).post(actions::replay_one::<D>),
            )
            .route(
                "/replay",
                get(actions::replay_matching_confirm).post(actions::replay_matching::<D>),
            )
            .route(
                "/purge",
                get(actions::purge_confirm).post(actions::purge::<D>),
            )
            .route(
                "/login",
                get(session::login_form::<D>).post(session::login::<D>),
            )
            .route("/logout", post(session::logout::<D>))
            .route("/console.css", get(stylesheet))
            .fallback(not_found)
            .with_state(shared);
        let router = if binds_browser {
            router.layer(axum::middleware::from_fn(browser_cookie))
        } else {
            router
        };
        router.layer(axum::middleware::map_response(secure))
    }
}

impl<D: Dialect> From<Console<D>> for Router {
    fn from(console: Console<D>) -> Self {
        console.router()
    }
}

/// What every request of the console shares.
pub(super) struct Shared<D: Dialect> {
    inbox: Inbox<D>,
    auth: ConsoleAuth,
    csrf: csrf::Csrf,
    stats: Vec<(String, Stats)>,
    charts: charts::Charts,
}

/// Where the console is nested (its links start there), from the request's path as it
/// arrived and as the console's router sees it.
pub(super) struct Base(String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let original = OriginalUri::from_request_parts(parts, state).await?;
        let full = original.path();
        let inner = parts.uri.path();
        let base = full
            .strip_suffix(inner)
            .unwrap_or_else(|| full.trim_end_matches('/'));
        Ok(Self(base.trim_end_matches('/').to_owned()))
    }
}

/// A request let in: where the console is, and the CSRF token of who asks.
pub(super) struct Ctx {
    base: String,
    /// The request's URI as it arrived: its authority is the host asked, over HTTP/2.
    uri: http::Uri,
    csrf: String,
    identity: String,
    signed_in: bool,
}

impl<D: Dialect> FromRequestParts<Arc<Shared<D>>> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Shared<D>>,
    ) -> Result<Self, Response> {
        let Ok(Base(base)) = Base::from_request_parts(parts, state).await;
        let Ok(OriginalUri(uri)) = OriginalUri::from_request_parts(parts, state).await;
        match state.auth.check(&parts.headers) {
            Ok(identity) => Ok(Self {
                uri,
                csrf: state.csrf.token(&identity),
                signed_in: state.auth.signs_in() && !identity.is_empty(),
                identity,
                base,
            }),
            Err(auth::Refused::SignIn) => {
                Err(session::login_page(&base, StatusCode::UNAUTHORIZED, None))
            }
            Err(auth::Refused::Basic) => {
                let mut response = (
                    StatusCode::UNAUTHORIZED,
                    axum::response::Html(pages::page(
                        &base,
                        "Sign in",
                        None,
                        &pages::credentials_needed(),
                    )),
                )
                    .into_response();
                response.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"webhook inbox\", charset=\"UTF-8\""),
                );
                Err(response)
            }
        }
    }
}

impl Ctx {
    /// The CSRF token of the page's sign-out button, where it has one.
    fn nav(&self) -> Option<&str> {
        self.signed_in.then_some(self.csrf.as_str())
    }

    /// The posted form of a state-changing request, where it may go on: from the console's
    /// own page (same origin) with this identity's CSRF token (`csrf` reads it from the
    /// form). Anything else, a missing or unreadable form included, is `None`: refused the
    /// same way (403) whatever the body.
    fn allowed<D: Dialect, F>(
        &self,
        shared: &Shared<D>,
        headers: &http::HeaderMap,
        form: Result<axum::Form<F>, axum::extract::rejection::FormRejection>,
        csrf: impl FnOnce(&F) -> &String,
    ) -> Option<F> {
        let axum::Form(form) = form.ok()?;
        let valid =
            csrf::same_origin(&self.uri, headers) && shared.csrf.valid(&self.identity, csrf(&form));
        valid.then_some(form)
    }
}

/// Gives a browser without one the cookie that its CSRF tokens are bound to, behind your
/// own auth (where the console knows no identity of its own): a random id, `HttpOnly`,
/// `SameSite=Strict`, for the console's path only.
async fn browser_cookie(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if auth::cookie(request.headers(), auth::BROWSER_COOKIE).is_some() {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(Base(base)) = Base::from_request_parts(&mut parts, &()).await;
    let id = auth::random_hex();
    if let Ok(value) = HeaderValue::from_str(&format!("{}={id}", auth::BROWSER_COOKIE)) {
        parts.headers.append(http::header::COOKIE, value);
    }
    let secure = if session::forwarded_https(&parts.headers) {
        "; Secure"
    } else {
        ""
    };
    let mut response = next
        .run(axum::extract::Request::from_parts(parts, body))
        .await;
    let cookie = format!(
        "{}={id}; Path={}; HttpOnly; SameSite=Strict{secure}",
        auth::BROWSER_COOKIE,
        pages::home(&base)
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response
            .headers_mut()
            .append(http::header::SET_COOKIE, value);
    }
    response
}

async fn stylesheet() -> Response {
    let mut response = pages::CSS.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response
}

async fn not_found(Base(base): Base) -> Response {
    views::message(&base, StatusCode::NOT_FOUND, "Not found", "No such page.")
}

/// The headers every answer of the console carries.
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        // `no-referrer` would make the browser send `Origin: null` with the console's own forms.
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A header map of `pairs`, for the tests of who may sign in and of the same-origin check.
#[cfg(test)]
fn test_headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    pairs
        .iter()
        .map(|(name, value)| {
            (
                http::HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            )
        })
        .collect()
}
