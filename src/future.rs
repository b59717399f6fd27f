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
use tracing::{Instrument as _, Span};

use crate::body::{Collector, ResponseBody};
use crate::config::Config;
use crate::door::{Door, Enqueued};
use crate::event::Event;
use crate::id::{IdSource, NoId};
use crate::metrics::{self, Timer};
use crate::reject::{Rejection, RejectionKind};
use crate::runtime::{self, Deadline};
use crate::scheme::DeliveryId;
use crate::stats::Outcome;
use crate::store::{BoxFuture, Claim, ClaimToken, DynStore, StoreCall, StoreError};

/// The header that marks the answer to a copy of a delivery that was handled already.
///
/// Its value is `true`. The answer is `200 OK`, so the sender stops retrying, and the inner
/// service did not run.
pub const DUPLICATE_HEADER: HeaderName = HeaderName::from_static("webhook-duplicate");

/// In the extensions of the answer to a copy of a delivery that was handled already, so that
/// an outer layer can log or count it.
///
/// ```
/// use axum::{extract::Request, middleware::Next, response::Response};
/// use tower_webhook::Duplicate;
///
/// // An outer middleware that counts duplicates.
/// async fn count_duplicates(request: Request, next: Next) -> Response {
///     let response = next.run(request).await;
///     if let Some(duplicate) = response.extensions().get::<Duplicate>() {
///         println!("duplicate of {}", duplicate.id());
///     }
///     response
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Duplicate {
    id: DeliveryId,
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
    ///
    /// Dropped before it finishes (the sender hung up, a timeout layer gave up), it does not
    /// leave a claim behind: a claim it holds is released, and a store call under way is
    /// finished on the Tokio runtime (and its claim released), so the sender's retry is
    /// handled at once rather than after the lease. Without a Tokio runtime the claim ends
    /// with its lease.
    ///
    /// ```
    /// use tower::{Layer, Service};
    /// use tower_webhook::{scheme::StandardWebhooks, ResponseFuture, VerifyWebhookLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let inner = tower::service_fn(|_request: http::Request<http_body_util::Full<bytes::Bytes>>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
    /// });
    /// let mut service = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?).layer(inner);
    /// let future = service.call(http::Request::new(http_body_util::Full::new(bytes::Bytes::new())));
    /// let response = future.await?; // what `ResponseFuture` resolves to
    /// assert_eq!(response.status(), 400);
    /// # Ok(())
    /// # }
    /// ```
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        #[pin]
        state: State<S, B>,
        config: Arc<Config>,
        span: Span,
    }

    impl<S, B> PinnedDrop for ResponseFuture<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            abandon(this.config, this.span, this.state.project());
        }
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
            claim: Option<BoxFuture<Result<Claim, StoreError>>>,
            #[pin]
            deadline: Deadline,
            timer: Timer,
            call: Option<(Request<Full<Bytes>>, S, Arc<str>)>,
        },
        Calling {
            #[pin]
            future: S::Future,
            running: Option<Running>,
        },
        Settling {
            settle: Option<BoxFuture<Result<bool, StoreError>>>,
            #[pin]
            deadline: Deadline,
            timer: Timer,
            then: Option<Then<S::Response, S::Error>>,
            completing: bool,
        },
        // Written to the inbox: answered once the write is committed.
        Enqueueing {
            enqueue: Option<BoxFuture<Result<Enqueued, StoreError>>>,
            #[pin]
            deadline: Deadline,
            timer: Timer,
            id: Option<DeliveryId>,
        },
        // Answered without the inner service: committed to the inbox (202), or a copy of a
        // delivery handled or queued already (200, duplicate).
        Answered { id: Option<DeliveryId>, queued: bool },
        // The inner service's answer (or panic) goes out.
        Finished { then: Option<Then<S::Response, S::Error>> },
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
    /// The inner service panicked: the panic goes on once the claim is released.
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

/// What the future keeps while the inner service runs: the delivery's id for the log, when
/// the call began, and the claim if there is a store.
struct Running {
    id: DeliveryId,
    timer: Timer,
    held: Option<Held>,
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
    ) -> StoreCall<Result<bool, StoreError>> {
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
            layer = &*config.name,
            scheme = config.scheme.name(),
            id = tracing::field::Empty,
            claimed_id = tracing::field::Empty,
            peer = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let (parts, body) = request.into_parts();
        if !span.is_disabled() {
            if let Some(peer) = config.peer.of(&parts) {
                span.record("peer", tracing::field::display(peer));
            }
        }
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
            State::Collecting {
                body,
                head: Some((parts, inner)),
                collector: Collector::new(limit),
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

    // One arm per state: the machine reads best as one match, the work is in the helpers.
    #[allow(clippy::too_many_lines)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let config: &Arc<Config> = this.config;
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
                                Ok((request, key)) => start(config, this.span, request, inner, key),
                                Err(rejection) => State::refused(rejection),
                            }
                        }
                        Err(kind) => State::refused(Rejection::new(kind)),
                    };
                    this.state.set(next);
                }
                StateProj::Claiming {
                    claim,
                    deadline,
                    timer,
                    call,
                } => {
                    let pending = claim.as_mut().expect("polled after completion");
                    let Some(claimed) =
                        ready!(deadline.poll_call(pending, config.store_timeout, cx))
                    else {
                        metrics::store_call(config, "claim", *timer, true);
                        claim_timed_out(config, this.span, claim.take(), call.take());
                        this.state.set(State::refused(Rejection::new(
                            RejectionKind::StoreUnavailable,
                        )));
                        continue;
                    };
                    metrics::store_call(config, "claim", *timer, claimed.is_err());
                    let call = call.take().expect("polled after completion");
                    let next = after_claim(config, this.span, claimed, call);
                    this.state.set(next);
                }
                StateProj::Calling { future, running } => {
                    let then = match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(result)) => Then::Answer(result),
                        Err(payload) => Then::Unwind(payload),
                    };
                    let running = running.take().expect("polled after completion");
                    let next = after_call(config, this.span, then, running);
                    this.state.set(next);
                }
                StateProj::Settling {
                    settle,
                    deadline,
                    timer,
                    then,
                    completing,
                } => {
                    let pending = settle.as_mut().expect("polled after completion");
                    let result = ready!(deadline.poll_call(pending, config.store_timeout, cx));
                    settle_done(config, this.span, settle, *timer, *completing, result);
                    let then = then.take();
                    this.state.set(State::Finished { then });
                }
                StateProj::Enqueueing {
                    enqueue,
                    deadline,
                    timer,
                    id,
                } => {
                    let pending = enqueue.as_mut().expect("polled after completion");
                    let result = ready!(deadline.poll_call(pending, config.store_timeout, cx));
                    let id = id.take().expect("polled after completion");
                    let next = after_enqueue(config, this.span, enqueue, *timer, result, id);
                    this.state.set(next);
                }
                StateProj::Answered { id, queued } => {
                    let (id, queued) = (id.take().expect("polled after completion"), *queued);
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(if queued {
                        accepted(config, this.span, &id)
                    } else {
                        duplicate(config, this.span, id)
                    }));
                }
                StateProj::Finished { then } => {
                    let then = then.take().expect("polled after completion");
                    this.state.set(State::Done);
                    return then.go_on();
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// The state that follows the store's answer to a claim.
fn after_claim<S, B, R>(
    config: &Config,
    span: &Span,
    claimed: Result<Claim, StoreError>,
    (request, inner, key): (Request<Full<Bytes>>, S, Arc<str>),
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<R>>,
{
    match claimed {
        Ok(Claim::Acquired(token)) => {
            let held = config.store.clone().map(|store| Held { store, key, token });
            call_inner(config, span, inner, request, held)
        }
        Ok(Claim::Completed) => State::Answered {
            queued: false,
            id: Some(
                request
                    .extensions()
                    .get::<Event>()
                    .map_or_else(|| DeliveryId::from(key), Event::shared_id),
            ),
        },
        Ok(Claim::InFlight) => State::refused(Rejection::new(RejectionKind::InFlight)),
        Err(err) => {
            tracing::error!(error = %err, "idempotency store failed to claim the delivery");
            State::refused(Rejection::new(RejectionKind::StoreUnavailable))
        }
    }
}

/// Calls the inner service with the verified request: the state that awaits its answer. A
/// panic in `call` leaves a claim as surely as one in the future, and is settled the same way.
fn call_inner<S, B, R>(
    config: &Config,
    span: &Span,
    mut inner: S,
    request: Request<Full<Bytes>>,
    held: Option<Held>,
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<R>>,
{
    let running = Running {
        id: request
            .extensions()
            .get::<Event>()
            .map_or_else(|| DeliveryId::from(""), Event::shared_id),
        timer: Timer::start(),
        held,
    };
    match catch_unwind(AssertUnwindSafe(|| inner.call(request))) {
        Ok(future) => State::Calling {
            future,
            running: Some(running),
        },
        Err(payload) => after_call(config, span, Then::Unwind(payload), running),
    }
}

/// The claim took longer than the store timeout: it is finished in the background (and
/// released if it was taken), and the delivery answers 503.
#[allow(clippy::type_complexity)]
fn claim_timed_out<S>(
    config: &Config,
    span: &Span,
    claim: Option<BoxFuture<Result<Claim, StoreError>>>,
    call: Option<(Request<Full<Bytes>>, S, Arc<str>)>,
) {
    tracing::error!(
        timeout_ms = millis(config.store_timeout),
        "idempotency store did not answer the claim in time"
    );
    if let (Some(claim), Some((_, _, key))) = (claim, call) {
        abandon_claim(config, span, claim, key);
    }
}

/// Counts and logs what the inner service did, then settles its claim if it holds one: the
/// state that settles it, or, without a claim, the one that hands the answer out.
fn after_call<S, B, R>(
    config: &Config,
    span: &Span,
    then: Then<Response<R>, S::Error>,
    running: Running,
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<R>>,
{
    metrics::handler(config, running.timer);
    let outcome = match &then {
        Then::Answer(Ok(response)) => Ok(response.status()),
        Then::Answer(Err(_)) => Err(Outcome::HandlerError),
        Then::Unwind(_) => Err(Outcome::HandlerPanicked),
    };
    let completing = handled(config, span, &running.id, outcome);
    let Some(held) = running.held else {
        return State::Finished { then: Some(then) };
    };
    let timer = Timer::start();
    match held.settle(completing, config.dedup_window) {
        StoreCall::Ready(result) => {
            let call = if completing { "complete" } else { "release" };
            metrics::store_call(config, call, timer, result.is_err());
            settled(config, &result, completing);
            State::Finished { then: Some(then) }
        }
        StoreCall::Pending(settle) => State::Settling {
            settle: Some(settle),
            deadline: Deadline::new(),
            timer,
            then: Some(then),
            completing,
        },
    }
}

/// Records how settling went: the store's answer, or (`None`) none within the store timeout,
/// in which case the call is finished in the background and the answer goes out anyway.
fn settle_done(
    config: &Arc<Config>,
    span: &Span,
    settle: &mut Option<BoxFuture<Result<bool, StoreError>>>,
    timer: Timer,
    completing: bool,
    result: Option<Result<bool, StoreError>>,
) {
    let call = if completing { "complete" } else { "release" };
    metrics::store_call(config, call, timer, !matches!(result, Some(Ok(_))));
    if let Some(result) = result {
        settled(config, &result, completing);
    } else {
        tracing::warn!(
            timeout_ms = millis(config.store_timeout),
            "idempotency store did not settle the claim in time; finishing in the background"
        );
        if let Some(settle) = settle.take() {
            finish_settle(config, span, settle, completing);
        }
    }
}

/// What a future that is dropped (or stops waiting) leaves in the store is tidied up on the
/// runtime: a claim under way is finished and released, a held claim is released, a
/// completion or release under way is finished.
fn abandon<S, B>(config: &Arc<Config>, span: &Span, state: StateProj<'_, S, B>)
where
    S: Service<Request<Full<Bytes>>>,
{
    match state {
        StateProj::Claiming { claim, call, .. } => {
            if let (Some(claim), Some((_, _, key))) = (claim.take(), call.take()) {
                abandon_claim(config, span, claim, key);
            }
        }
        StateProj::Calling { running, .. } => {
            let Some(running) = running.take() else {
                return;
            };
            finish(config, span, Outcome::Abandoned);
            tracing::info!(
                parent: span,
                id = &*running.id,
                layer = &*config.name,
                "the answer was abandoned before the handler finished (the sender hung up?)"
            );
            if let Some(held) = running.held {
                if let StoreCall::Pending(release) = held.settle(false, config.dedup_window) {
                    finish_settle(config, span, release, false);
                }
            }
        }
        StateProj::Settling {
            settle, completing, ..
        } => {
            if let Some(settle) = settle.take() {
                finish_settle(config, span, settle, *completing);
            }
        }
        StateProj::Enqueueing { enqueue, .. } => {
            if let Some(enqueue) = enqueue.take() {
                finish_enqueue(config, span, enqueue);
            }
        }
        StateProj::Refused { .. }
        | StateProj::Collecting { .. }
        | StateProj::Answered { .. }
        | StateProj::Finished { .. }
        | StateProj::Done => {}
    }
}

/// Finishes a claim nobody waits for any more, and releases it if it was taken, so that it
/// does not hold the delivery for a whole lease.
fn abandon_claim(
    config: &Config,
    span: &Span,
    claim: BoxFuture<Result<Claim, StoreError>>,
    key: Arc<str>,
) {
    let Some(store) = config.store.clone() else {
        return;
    };
    let release = async move {
        if let Ok(Claim::Acquired(token)) = claim.await {
            match store.release(key, token).answer().await {
                Ok(_) => tracing::debug!("a claim taken after it was abandoned was released"),
                Err(err) => tracing::warn!(
                    error = %err,
                    "failed to release a claim taken after it was abandoned; it ends with its lease"
                ),
            }
        }
    };
    if !runtime::finish_in_background(release.instrument(span.clone()), config.lease) {
        tracing::debug!("no Tokio runtime to finish an abandoned claim on; it ends with its lease");
    }
}

/// Finishes a completion or release nobody waits for any more, and records how it went.
fn finish_settle(
    config: &Arc<Config>,
    span: &Span,
    settle: BoxFuture<Result<bool, StoreError>>,
    completing: bool,
) {
    let background = {
        let config = Arc::clone(config);
        async move { settled(&config, &settle.await, completing) }
    };
    if !runtime::finish_in_background(background.instrument(span.clone()), config.lease) {
        if completing {
            config.stats.count(Outcome::CompletionFailed);
        }
        tracing::warn!("no Tokio runtime to finish settling the claim on; it ends with its lease");
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The key a delivery is claimed under.
type Key = Arc<str>;

/// Verifies the collected delivery and finds its id: the request for the inner service, with
/// the [`Event`] in its extensions, and the key to claim.
fn identify(
    config: &Config,
    span: &Span,
    mut parts: Parts,
    body: Bytes,
) -> Result<(Request<Full<Bytes>>, Option<Key>), Rejection> {
    let verified = config
        .scheme
        .verify(&parts.headers, &body, config.clock.now())
        .map_err(|err| {
            record_claimed_id(span, &parts.headers);
            Rejection::new(RejectionKind::Verification(err))
        })?;
    let identified = config
        .id_source
        .resolve(&*config.scheme, &parts, &body, &verified)
        .map_err(|no_id| {
            Rejection::new(match no_id {
                NoId::Missing => RejectionKind::MissingId,
                NoId::NotJson => RejectionKind::BodyNotJson,
            })
        })?;
    // Made only where there is a store or an inbox to mark it in.
    let key = (config.store.is_some() || config.inbox.is_some())
        .then(|| IdSource::dedup_key(&config.namespace(), &identified, &body));
    let id = identified.id;
    span.record("id", id.as_str());
    parts.extensions.insert(Event::new(
        id,
        verified.timestamp,
        verified.event_type,
        body.clone(),
        config.scheme.name(),
    ));
    Ok((Request::from_parts(parts, Full::new(body)), key))
}

/// The headers senders put their delivery's id in, tried in this order.
const ID_HEADERS: [&str; 6] = [
    "webhook-id",
    "svix-id",
    "x-github-delivery",
    "x-shopify-webhook-id",
    "x-request-id",
    "idempotency-key",
];

/// Records in the span the id a refused delivery claims to have, unverified, so that its log
/// line can be matched with the sender's dashboard: visible ASCII only, at most 64 bytes.
fn record_claimed_id(span: &Span, headers: &http::HeaderMap) {
    let claimed = ID_HEADERS
        .iter()
        .find_map(|name| headers.get(*name))
        .map(http::HeaderValue::as_bytes);
    if let Some(claimed) = claimed {
        let shown: String = claimed
            .iter()
            .take(64)
            .map(|&byte| {
                if byte.is_ascii_graphic() {
                    char::from(byte)
                } else {
                    '?'
                }
            })
            .collect();
        span.record("claimed_id", shown.as_str());
    }
}

/// The state after verification: claim the key if there is a store, else call at once.
fn start<S, B, R>(
    config: &Config,
    span: &Span,
    request: Request<Full<Bytes>>,
    inner: S,
    key: Option<Arc<str>>,
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<R>>,
{
    if let (Some(inbox), Some(key)) = (&config.inbox, &key) {
        return enqueue(config, inbox, &request, key);
    }
    let (Some(store), Some(key)) = (&config.store, key) else {
        return call_inner(config, span, inner, request, None);
    };
    let timer = Timer::start();
    match Arc::clone(store).claim(Arc::clone(&key), config.lease) {
        StoreCall::Ready(claimed) => {
            metrics::store_call(config, "claim", timer, claimed.is_err());
            after_claim(config, span, claimed, (request, inner, key))
        }
        StoreCall::Pending(claim) => State::Claiming {
            claim: Some(claim),
            deadline: Deadline::new(),
            timer,
            call: Some((request, inner, key)),
        },
    }
}

/// The state that writes the verified delivery to the inbox.
fn enqueue<S, B>(
    config: &Config,
    inbox: &Arc<dyn Door>,
    request: &Request<Full<Bytes>>,
    key: &str,
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>>,
{
    let event = request
        .extensions()
        .get::<Event>()
        .expect("identify puts the event in the request");
    State::Enqueueing {
        enqueue: Some(inbox.enqueue(
            event,
            key,
            &config.name,
            request.headers(),
            config.dedup_window,
        )),
        deadline: Deadline::new(),
        timer: Timer::start(),
        id: Some(event.shared_id()),
    }
}

/// What follows the inbox's answer, or (`None`) its silence past the store timeout, in which
/// case the write is finished in the background: if it commits after all, the sender's retry
/// is a duplicate of a queued delivery, and nothing is lost.
fn after_enqueue<S, B>(
    config: &Config,
    span: &Span,
    enqueue: &mut Option<BoxFuture<Result<Enqueued, StoreError>>>,
    timer: Timer,
    result: Option<Result<Enqueued, StoreError>>,
    id: DeliveryId,
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>>,
{
    metrics::store_call(config, "enqueue", timer, !matches!(result, Some(Ok(_))));
    match result {
        Some(Ok(Enqueued::Accepted)) => State::Answered {
            id: Some(id),
            queued: true,
        },
        Some(Ok(Enqueued::Duplicate)) => State::Answered {
            id: Some(id),
            queued: false,
        },
        Some(Ok(Enqueued::InFlight)) => State::refused(Rejection::new(RejectionKind::InFlight)),
        Some(Ok(Enqueued::Full)) => State::refused(Rejection::new(RejectionKind::InboxFull)),
        Some(Err(err)) => {
            tracing::error!(error = %err, "failed to write the delivery to the inbox");
            State::refused(Rejection::new(RejectionKind::StoreUnavailable))
        }
        None => {
            tracing::error!(
                timeout_ms = millis(config.store_timeout),
                "the inbox did not take the delivery in time"
            );
            if let Some(enqueue) = enqueue.take() {
                finish_enqueue(config, span, enqueue);
            }
            State::refused(Rejection::new(RejectionKind::StoreUnavailable))
        }
    }
}

/// Finishes a write to the inbox nobody waits for any more (the answer went out as 503, or
/// the sender hung up): if it commits, the delivery is queued and its retry is a duplicate.
fn finish_enqueue(config: &Config, span: &Span, enqueue: BoxFuture<Result<Enqueued, StoreError>>) {
    let background = async move {
        match enqueue.await {
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

/// The answer to a delivery committed to the inbox: `202 Accepted`.
fn accepted<R>(config: &Config, span: &Span, id: &str) -> Response<ResponseBody<R>> {
    finish(config, span, Outcome::Queued);
    tracing::info!(
        id,
        layer = &*config.name,
        outcome = "queued",
        "webhook queued"
    );
    let mut response = Response::new(ResponseBody::own(Bytes::from_static(b"accepted")));
    *response.status_mut() = StatusCode::ACCEPTED;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Counts and logs what the inner service did with the delivery `id` (its status, or why it
/// gave none); whether it succeeded, so that its claim is completed rather than released.
fn handled(config: &Config, span: &Span, id: &str, outcome: Result<StatusCode, Outcome>) -> bool {
    let layer = &*config.name;
    match outcome {
        Ok(status) if status.is_success() => {
            finish(config, span, Outcome::Handled);
            tracing::info!(
                id,
                layer,
                outcome = "handled",
                status = status.as_u16(),
                "webhook handled"
            );
            return true;
        }
        Ok(status) => {
            finish(config, span, Outcome::HandlerFailed);
            // What senders do with the answer: a 4xx other than 408 and 429 is final.
            let retried = status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS;
            if retried {
                tracing::warn!(
                    id,
                    layer,
                    outcome = "handler_failed",
                    status = status.as_u16(),
                    "handler answered non-2xx; the sender will retry"
                );
            } else {
                tracing::warn!(
                    id,
                    layer,
                    outcome = "handler_failed",
                    status = status.as_u16(),
                    "handler answered a final 4xx; the sender will not retry"
                );
            }
        }
        Err(failure) => {
            finish(config, span, failure);
            if failure == Outcome::HandlerPanicked {
                tracing::error!(
                    id,
                    layer,
                    outcome = failure.name(),
                    "handler panicked; the sender will retry"
                );
            } else {
                tracing::warn!(
                    id,
                    layer,
                    outcome = failure.name(),
                    "handler returned an error; the sender will retry"
                );
            }
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

/// Counts a delivery's `outcome`, by its name in its span and the metrics.
fn finish(config: &Config, span: &Span, outcome: Outcome) {
    config.stats.count(outcome);
    metrics::delivery(config, outcome.name());
    span.record("outcome", outcome.name());
}

/// The answer to a delivery the layer refuses, counted and logged.
fn reject<R>(config: &Config, span: &Span, rejection: Rejection) -> Response<ResponseBody<R>> {
    let status = rejection.status().as_u16();
    let outcome = Outcome::of(&rejection);
    finish(config, span, outcome);
    match outcome {
        Outcome::InFlight => tracing::info!(
            status,
            "another copy of this delivery is in flight; asked to retry"
        ),
        Outcome::StoreUnavailable => {
            tracing::error!(status, "idempotency store unavailable; asked to retry");
        }
        Outcome::InboxFull => {
            tracing::warn!(status, "the inbox is full; asked the sender to retry later");
        }
        _ => {
            metrics::rejection(config, rejection.reason());
            tracing::warn!(status, reason = %rejection, "webhook rejected");
        }
    }
    rejection
        .into_response(config.retry_after)
        .map(ResponseBody::own)
}

/// The answer to a copy of a delivery that was handled already.
fn duplicate<R>(config: &Config, span: &Span, id: DeliveryId) -> Response<ResponseBody<R>> {
    finish(config, span, Outcome::Duplicate);
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
