//! The response future: collect, verify, identify, claim, call, settle.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderName, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;
use tracing::Span;

use crate::body::{Collector, ResponseBody};
use crate::event::Event;
use crate::layer::Config;
use crate::reject::{Rejection, RejectionKind};
use crate::stats::Outcome;
use crate::store::{BoxFuture, Claim, ClaimToken, DynStore, StoreError};

/// The header that marks the answer to a copy of a delivery that was handled already.
///
/// Its value is `true`. The answer is `200 OK`, so the sender stops retrying, and the inner
/// service did not run.
pub const DUPLICATE_HEADER: HeaderName = HeaderName::from_static("webhook-duplicate");

/// In the extensions of the answer to a copy of a delivery that was handled already, so that
/// an outer layer can log or count it.
#[derive(Debug, Clone)]
pub struct Duplicate {
    id: Arc<str>,
}

impl Duplicate {
    /// The id of the delivery.
    pub fn id(&self) -> &str {
        &self.id
    }
}

pin_project! {
    /// The future of [`VerifyWebhook`](crate::VerifyWebhook): a state machine that collects
    /// the body, verifies and claims the delivery, calls the inner service and settles the
    /// claim with its outcome.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        #[pin]
        state: State<S, B>,
        config: Arc<Config>,
        span: Span,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        // Refused before a byte of the body was read.
        Refused { rejection: Option<Rejection> },
        Collecting {
            #[pin]
            body: B,
            head: Option<(Parts, S)>,
            collector: Collector,
        },
        Claiming {
            claim: BoxFuture<Result<Claim, StoreError>>,
            call: Option<(Request<Full<Bytes>>, S, Arc<str>)>,
        },
        Calling {
            #[pin]
            future: S::Future,
            held: Option<Held>,
        },
        Settling {
            settle: BoxFuture<Result<bool, StoreError>>,
            then: Option<Then<S::Response, S::Error>>,
            completing: bool,
        },
        Done,
    }
}

impl<S, B> State<S, B>
where
    S: Service<Request<Full<Bytes>>>,
{
    fn refused(rejection: Rejection) -> Self {
        Self::Refused {
            rejection: Some(rejection),
        }
    }
}

/// What follows the settling of a claim.
enum Then<R, E> {
    /// The inner service's answer goes out.
    Answer(Result<R, E>),
    /// The inner future panicked: the panic goes on once the claim is released.
    Unwind(Box<dyn Any + Send>),
}

impl<R, E> Then<Response<R>, E> {
    /// Hands the answer out, or lets the panic go on.
    fn go_on(self) -> Poll<Result<Response<ResponseBody<R>>, E>> {
        match self {
            Then::Answer(result) => Poll::Ready(result.map(|r| r.map(ResponseBody::inner))),
            Then::Unwind(payload) => resume_unwind(payload),
        }
    }
}

/// A claim the future holds while the inner service runs.
struct Held {
    store: Arc<dyn DynStore>,
    key: Arc<str>,
    token: ClaimToken,
}

impl Held {
    fn settle(
        self,
        complete: bool,
        keep_for: std::time::Duration,
    ) -> BoxFuture<Result<bool, StoreError>> {
        if complete {
            self.store.complete(self.key, self.token, keep_for)
        } else {
            self.store.release(self.key, self.token)
        }
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<Full<Bytes>>>,
    B: Body,
{
    pub(crate) fn new(request: Request<B>, inner: S, config: Arc<Config>) -> Self {
        let span = tracing::info_span!(
            "webhook",
            scheme = config.scheme.name(),
            id = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let (parts, body) = request.into_parts();
        let limit = config.body_limit;
        let announced = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        let hint = body.size_hint();
        let too_large = |len: u64| usize::try_from(len).map_or(true, |len| len > limit);
        let state = if announced.is_some_and(too_large) || too_large(hint.lower()) {
            State::refused(Rejection::new(RejectionKind::PayloadTooLarge))
        } else {
            let expected = announced.or(hint.exact()).unwrap_or(0);
            State::Collecting {
                body,
                head: Some((parts, inner)),
                collector: Collector::new(limit, usize::try_from(expected).unwrap_or(limit)),
            }
        };
        Self {
            state,
            config,
            span,
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let config: &Config = this.config;
        loop {
            match this.state.as_mut().project() {
                StateProj::Refused { rejection } => {
                    let rejection = rejection.take().expect("polled after completion");
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(reject(config, this.span, rejection)));
                }
                StateProj::Collecting {
                    body,
                    head,
                    collector,
                } => {
                    let next = match ready!(collector.poll_collect(body, cx)) {
                        Ok(body) => {
                            let (parts, inner) = head.take().expect("polled after completion");
                            match identify(config, this.span, parts, body) {
                                Ok((request, key)) => start(config, request, inner, key),
                                Err(rejection) => State::refused(rejection),
                            }
                        }
                        Err(kind) => State::refused(Rejection::new(kind)),
                    };
                    this.state.set(next);
                }
                StateProj::Claiming { claim, call } => {
                    let claimed = ready!(claim.as_mut().poll(cx));
                    let (request, mut inner, key) = call.take().expect("polled after completion");
                    let next = match claimed {
                        Ok(Claim::Acquired(token)) => State::Calling {
                            future: inner.call(request),
                            held: config.store.clone().map(|store| Held { store, key, token }),
                        },
                        Ok(Claim::Completed) => {
                            let id = request
                                .extensions()
                                .get::<Event>()
                                .map_or(Arc::clone(&key), Event::shared_id);
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(duplicate(config, this.span, id)));
                        }
                        Ok(Claim::InFlight) => {
                            State::refused(Rejection::new(RejectionKind::InFlight))
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "idempotency store failed to claim the delivery");
                            State::refused(Rejection::new(RejectionKind::StoreUnavailable))
                        }
                    };
                    this.state.set(next);
                }
                StateProj::Calling { future, held } => {
                    let then = match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(result)) => Then::Answer(result),
                        Err(payload) => Then::Unwind(payload),
                    };
                    let completing = handled(config, this.span, &then);
                    let Some(held) = held.take() else {
                        this.state.set(State::Done);
                        return then.go_on();
                    };
                    this.state.set(State::Settling {
                        settle: held.settle(completing, config.dedup_window),
                        then: Some(then),
                        completing,
                    });
                }
                StateProj::Settling {
                    settle,
                    then,
                    completing,
                } => {
                    settled(config, &ready!(settle.as_mut().poll(cx)), *completing);
                    let then = then.take().expect("polled after completion");
                    this.state.set(State::Done);
                    return then.go_on();
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// Verifies the collected delivery and finds its id: the request for the inner service, with
/// the [`Event`] in its extensions, and the key to claim.
fn identify(
    config: &Config,
    span: &Span,
    mut parts: Parts,
    body: Bytes,
) -> Result<(Request<Full<Bytes>>, Arc<str>), Rejection> {
    let verified = config
        .scheme
        .verify(&parts.headers, &body, config.clock.now())
        .map_err(|err| Rejection::new(RejectionKind::Verification(err)))?;
    let id: Arc<str> = config
        .id_source
        .resolve(&*config.scheme, &parts, &body, &verified)
        .ok_or_else(|| Rejection::new(RejectionKind::MissingId))?
        .into();
    span.record("id", &*id);
    let key = config.id_source.dedup_key(&id, &body);
    parts.extensions.insert(Event::new(
        id,
        verified.timestamp,
        verified.event_type,
        body.clone(),
        config.scheme.name(),
    ));
    Ok((Request::from_parts(parts, Full::new(body)), key))
}

/// The state after verification: claim the key if there is a store, else call at once.
fn start<S, B>(
    config: &Config,
    request: Request<Full<Bytes>>,
    mut inner: S,
    key: Arc<str>,
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>>,
{
    match &config.store {
        Some(store) => State::Claiming {
            claim: Arc::clone(store).claim(Arc::clone(&key), config.lease),
            call: Some((request, inner, key)),
        },
        None => State::Calling {
            future: inner.call(request),
            held: None,
        },
    }
}

/// Counts and logs what the inner service did; whether it succeeded, so that its claim is
/// completed rather than released.
fn handled<R, E>(config: &Config, span: &Span, then: &Then<Response<R>, E>) -> bool {
    match then {
        Then::Answer(Ok(response)) if response.status().is_success() => {
            finish(config, span, Outcome::Handled, "handled");
            tracing::debug!(status = response.status().as_u16(), "webhook handled");
            return true;
        }
        Then::Answer(Ok(response)) => {
            finish(config, span, Outcome::HandlerFailed, "handler_failed");
            tracing::warn!(
                status = response.status().as_u16(),
                "handler answered non-2xx; the sender will retry"
            );
        }
        Then::Answer(Err(_)) => {
            finish(config, span, Outcome::HandlerFailed, "handler_error");
            tracing::warn!("handler returned an error; the sender will retry");
        }
        Then::Unwind(_) => {
            finish(config, span, Outcome::HandlerFailed, "handler_panicked");
            tracing::error!("handler panicked; the sender will retry");
        }
    }
    false
}

/// Logs how settling a claim went, and counts completions that were not recorded.
fn settled(config: &Config, result: &Result<bool, StoreError>, completing: bool) {
    if completing && !matches!(result, Ok(true)) {
        config.stats.count(Outcome::CompletionFailed);
    }
    match (result, completing) {
        (Ok(true), _) => {}
        (Ok(false), true) => tracing::warn!(
            "the claim's lease ran out before the handler finished; completion not recorded"
        ),
        (Ok(false), false) => tracing::debug!("the claim's lease had run out before its release"),
        (Err(err), true) => tracing::error!(
            error = %err,
            "failed to record the completed delivery; a later copy may run the handler again"
        ),
        (Err(err), false) => tracing::warn!(
            error = %err,
            "failed to release the claim; a retry waits for its lease to run out"
        ),
    }
}

fn finish(config: &Config, span: &Span, outcome: Outcome, name: &'static str) {
    config.stats.count(outcome);
    span.record("outcome", name);
}

/// The answer to a delivery the layer refuses, counted and logged.
fn reject<R>(config: &Config, span: &Span, rejection: Rejection) -> Response<ResponseBody<R>> {
    let status = rejection.status().as_u16();
    match rejection.kind() {
        RejectionKind::InFlight => {
            finish(config, span, Outcome::InFlight, "in_flight");
            tracing::info!(
                status,
                "another copy of this delivery is in flight; asked to retry"
            );
        }
        RejectionKind::StoreUnavailable => {
            finish(config, span, Outcome::StoreError, "store_error");
            tracing::error!(status, "idempotency store unavailable; asked to retry");
        }
        _ => {
            finish(config, span, Outcome::Rejected, "rejected");
            tracing::warn!(status, reason = %rejection, "webhook rejected");
        }
    }
    rejection
        .into_response(config.retry_after)
        .map(ResponseBody::own)
}

/// The answer to a copy of a delivery that was handled already.
fn duplicate<R>(config: &Config, span: &Span, id: Arc<str>) -> Response<ResponseBody<R>> {
    finish(config, span, Outcome::Duplicate, "duplicate");
    tracing::info!(
        id = &*id,
        "duplicate delivery answered without running the handler"
    );
    let mut response = Response::new(ResponseBody::own(Bytes::from_static(b"duplicate delivery")));
    response.extensions_mut().insert(Duplicate { id });
    let headers = response.headers_mut();
    headers.insert(DUPLICATE_HEADER, HeaderValue::from_static("true"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    debug_assert_eq!(response.status(), StatusCode::OK);
    response
}
