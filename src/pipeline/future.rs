//! The response future: one state for each thing it waits on (the body, a store call, the
//! inner service) and one for the answer. The work of each step is in its own module:
//! `body` collects, `verify` verifies and finds the id, `claim` claims and settles,
//! `handoff` hands off to the inbox, `response` and `report` answer and tell.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;
use tracing::Span;

use crate::event::Event;
use crate::metrics::Timer;
use crate::pipeline::body::{Collector, ResponseBody};
use crate::pipeline::claim::{self, Claimed, Held};
use crate::pipeline::config::{Behind, Config};
use crate::pipeline::handoff;
use crate::pipeline::handoff::{Enqueued, HandoffError};
use crate::pipeline::reject::{Rejection, RejectionKind};
use crate::pipeline::report;
use crate::pipeline::response::{self, Then};
use crate::pipeline::runtime::Timed;
use crate::pipeline::verify::{identify, Key, Next};
use crate::scheme::{DeliveryId, VerifyError, VerifyErrorKind};
use crate::stats::Outcome;
use crate::store::{Claim, DynStore, StoreCall};
use crate::tenant::{Found, Resolving, TenantError, Tenants};
use crate::tx::Transactions;

const POLLED_AFTER_END: &str = "ResponseFuture polled after completion";

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
        Collecting {
            #[pin]
            body: B,
            head: Option<(Parts, S)>,
            collector: Collector,
        },
        // The tenant's scheme, looked up: then the delivery is verified with it.
        Resolving {
            lookup: Resolving,
            head: Option<(Parts, Bytes, S, String)>,
        },
        // The key's claim in the store, then the inner service.
        Claiming {
            #[pin]
            claim: Timed<Claim>,
            delivery: Option<Delivery<S>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            running: Option<Running>,
        },
        // The claim completed or released, then the answer.
        Settling {
            #[pin]
            settle: Timed<bool>,
            completing: bool,
            // The handler's transaction commits with the completion: the answer waits.
            commits: bool,
            then: Option<Then<S::Response, S::Error>>,
        },
        // Written to the inbox: answered once the write is committed.
        Enqueueing {
            #[pin]
            write: Timed<Enqueued, HandoffError>,
            id: Option<DeliveryId>,
        },
        // The answer (or the inner service's panic) goes out.
        Ready { then: Option<Then<S::Response, S::Error>> },
    }
}

/// A verified delivery waiting for its claim: the request for the inner service, the
/// service, the key and the store it is claimed in, with the store's transactions.
struct Delivery<S> {
    request: Request<Full<Bytes>>,
    inner: S,
    key: Key,
    store: Arc<dyn DynStore>,
    transactions: Option<Arc<dyn Transactions>>,
}

/// What the future keeps while the inner service runs: the delivery's id for the log, when
/// the call began, and the claim if there is a store.
struct Running {
    id: DeliveryId,
    timer: Timer,
    held: Option<Held>,
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
            event_type = tracing::field::Empty,
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
        let too_large = |len: u64| usize::try_from(len).map_or(true, |len| len > limit);
        let state = if announced.is_some_and(too_large) || too_large(body.size_hint().lower()) {
            let _entered = span.enter();
            let rejection = Rejection::new(RejectionKind::PayloadTooLarge);
            State::answer(response::rejection(&config, &span, rejection))
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let (config, span, timeout) = (&*this.config, &*this.span, this.config.store_timeout);
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Collecting {
                    body,
                    head,
                    collector,
                } => {
                    let collected =
                        ready!(collector.poll_collect(body, cx)).map_err(Rejection::new);
                    let (parts, inner) = head.take().expect(POLLED_AFTER_END);
                    match (collected, &config.tenants) {
                        (Err(rejection), _) => {
                            State::answer(response::rejection(config, span, rejection))
                        }
                        (Ok(body), None) => {
                            let next = identify(config, span, (parts, body), &config.scheme, None);
                            go_on(config, span, next, inner)
                        }
                        (Ok(body), Some(tenants)) => {
                            resolve(config, span, tenants, parts, body, inner)
                        }
                    }
                }
                StateProj::Resolving { lookup, head } => {
                    let found = ready!(lookup.as_mut().poll(cx));
                    let (parts, body, inner, tenant) = head.take().expect(POLLED_AFTER_END);
                    with_tenant(config, span, found, (parts, body), inner, &tenant)
                }
                StateProj::Claiming {
                    mut claim,
                    delivery,
                } => {
                    let answer = ready!(claim.as_mut().poll(&config.meter, timeout, cx));
                    let delivery = delivery.take().expect(POLLED_AFTER_END);
                    match answer {
                        Some(answer) => after_claim(config, span, answer, delivery),
                        None => State::answer(claim::unanswered(
                            config,
                            span,
                            delivery.store,
                            claim.take(),
                            delivery.key,
                        )),
                    }
                }
                StateProj::Calling { future, running } => {
                    let then = match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(result)) => Then::Answer(result),
                        Err(payload) => Then::Unwind(payload),
                    };
                    after_call(config, span, then, running.take().expect(POLLED_AFTER_END))
                }
                StateProj::Settling {
                    mut settle,
                    completing,
                    commits,
                    then,
                } => {
                    let answer = ready!(settle.as_mut().poll(&config.meter, timeout, cx));
                    let lost = match answer {
                        Some(Ok(true)) => None,
                        _ if !*commits => None,
                        ref other => Some(claim::ended_by_handler(other.as_ref())),
                    };
                    claim::settled(this.config, span, settle, *completing, answer);
                    let then = then.take().expect(POLLED_AFTER_END);
                    State::then(committed_or_not(config, span, then, lost))
                }
                StateProj::Enqueueing { mut write, id } => {
                    let answer = ready!(write.as_mut().poll(&config.meter, timeout, cx));
                    let id = id.take().expect(POLLED_AFTER_END);
                    State::answer(handoff::enqueued(config, span, write, answer, id))
                }
                StateProj::Ready { then } => return then.take().expect(POLLED_AFTER_END).go_on(),
            };
            this.state.set(next);
        }
    }
}

impl<S, B> State<S, B>
where
    S: Service<Request<Full<Bytes>>>,
{
    fn answer(response: Response<Bytes>) -> Self {
        Self::then(Then::Own(response))
    }

    fn then(then: Then<S::Response, S::Error>) -> Self {
        Self::Ready { then: Some(then) }
    }
}

/// What follows verification: the key's claim, the write to the inbox, or (with neither)
/// the inner service.
fn start<S, B, R>(
    config: &Config,
    span: &Span,
    request: Request<Full<Bytes>>,
    inner: S,
    key: Option<Key>,
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<R>>,
{
    match (&config.behind, key) {
        (Behind::Store(store, transactions), Some(key)) => {
            let timer = Timer::start();
            let store = Arc::clone(store);
            let delivery = |store| Delivery {
                request,
                inner,
                key: Arc::clone(&key),
                store,
                transactions: transactions.clone(),
            };
            match Arc::clone(&store).claim(Arc::clone(&key), config.lease) {
                StoreCall::Ready(answer) => {
                    config.meter.store_call("claim", timer, answer.is_err());
                    after_claim(config, span, answer, delivery(store))
                }
                StoreCall::Pending(call) => State::Claiming {
                    claim: Timed::new("claim", call, timer),
                    delivery: Some(delivery(store)),
                },
            }
        }
        (Behind::Inbox(inbox), Some(key)) => {
            let timer = Timer::start();
            let (write, id) = handoff::write(config, inbox, &request, &key);
            State::Enqueueing {
                write: Timed::new("enqueue", write, timer),
                id: Some(id),
            }
        }
        _ => call(config, span, inner, request, None),
    }
}

/// What follows the store's answer to the claim: the inner service, or an answer without it.
fn after_claim<S, B, R>(
    config: &Config,
    span: &Span,
    answer: Result<Claim, crate::store::StoreError>,
    delivery: Delivery<S>,
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<R>>,
{
    let Delivery {
        mut request,
        inner,
        key,
        store,
        transactions,
    } = delivery;
    let id = || {
        request
            .extensions()
            .get::<Event>()
            .map_or_else(|| DeliveryId::from(Arc::clone(&key)), Event::shared_id)
    };
    match claim::claimed(config, span, store, answer, Arc::clone(&key), id) {
        Claimed::Held(mut held) => {
            held.offer(transactions.as_ref(), &mut request);
            call(config, span, inner, request, Some(held))
        }
        Claimed::Answer(response) => State::answer(response),
    }
}

/// Calls the inner service with the verified request: the state that awaits its answer. A
/// panic in `call` leaves a claim as surely as one in the future, and is settled the same way.
fn call<S, B, R>(
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

/// Counts and logs what the inner service did, then settles its claim if it holds one: the
/// state that settles it, or the one that hands the answer out.
fn after_call<S, B, R>(
    config: &Config,
    span: &Span,
    then: Then<Response<R>, S::Error>,
    running: Running,
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<R>>,
{
    config.meter.handler(running.timer);
    let outcome = match &then {
        Then::Answer(Ok(response)) => Ok(response.status()),
        Then::Own(response) => Ok(response.status()),
        Then::Answer(Err(_)) => Err(Outcome::HandlerError),
        Then::Unwind(_) => Err(Outcome::HandlerPanicked),
    };
    let completing = report::handled(config, span, &running.id, outcome);
    let Some(held) = running.held else {
        return State::then(then);
    };
    let timer = Timer::start();
    let call = if completing { "complete" } else { "release" };
    let settle = held.settle(completing, config.dedup_window);
    match settle.call {
        StoreCall::Ready(result) => {
            config.meter.store_call(call, timer, result.is_err());
            report::settled(config, &result, completing);
            let lost = (settle.commits && !matches!(result, Ok(true)))
                .then(|| claim::ended_by_handler(Some(&result)));
            State::then(committed_or_not(config, span, then, lost))
        }
        StoreCall::Pending(call_future) => State::Settling {
            settle: Timed::new(call, call_future, timer),
            completing,
            commits: settle.commits,
            then: Some(then),
        },
    }
}

/// The answer, unless the handler's transaction was to commit with the completion and did
/// not (`lost`, saying whether the handler ended it itself): then a 503, so that the sender
/// retries, or a 500 naming the misuse.
fn committed_or_not<R, E>(
    config: &Config,
    span: &Span,
    then: Then<Response<R>, E>,
    lost: Option<bool>,
) -> Then<Response<R>, E> {
    match lost {
        Some(ended) => Then::Own(claim::not_committed(config, span, ended)),
        None => then,
    }
}

/// What comes of a verified request: its claim and call, or the layer's own answer.
fn go_on<S, B, R>(
    config: &Config,
    span: &Span,
    next: Result<Next, Rejection>,
    inner: S,
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<R>>,
{
    match next {
        Ok(Next::Deliver(request, key)) => start(config, span, request, inner, key),
        Ok(Next::Answer(response)) => State::answer(response),
        Err(rejection) => State::answer(response::rejection(config, span, rejection)),
    }
}

/// The tenant's scheme for a collected request: verified at once where it is cached, else
/// after its lookup. A request with no readable tenant is refused as a forgery is.
fn resolve<S, B, R>(
    config: &Config,
    span: &Span,
    tenants: &Tenants,
    parts: Parts,
    body: Bytes,
    inner: S,
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<R>>,
{
    let Some(tenant) = tenants.tenant(&parts) else {
        tracing::debug!(parent: span, "no tenant in the request");
        return State::answer(response::rejection(config, span, forged()));
    };
    match tenants.resolve(&tenant) {
        Ok(found) => with_tenant(config, span, Ok(found), (parts, body), inner, &tenant),
        Err(lookup) => State::Resolving {
            lookup,
            head: Some((parts, body, inner, tenant)),
        },
    }
}

/// Verifies the request with its tenant's scheme; an unknown tenant gets the answer a bad
/// signature gets, a failed lookup a 503.
fn with_tenant<S, B, R>(
    config: &Config,
    span: &Span,
    found: Result<Found, TenantError>,
    request: (Parts, Bytes),
    inner: S,
    tenant: &str,
) -> State<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<R>>,
{
    match found {
        Ok(Some(scheme)) => {
            let next = identify(config, span, request, &scheme, Some(tenant));
            go_on(config, span, next, inner)
        }
        Ok(None) => {
            tracing::debug!(parent: span, tenant, "unknown tenant");
            State::answer(response::rejection(config, span, forged()))
        }
        Err(err) => {
            tracing::warn!(parent: span, tenant, error = %err, "the tenant's secrets could not be looked up");
            let rejection = Rejection::new(RejectionKind::StoreUnavailable);
            State::answer(response::rejection(config, span, rejection))
        }
    }
}

/// The refusal of a delivery whose signature is not good: also an unknown tenant's, so that
/// the two cannot be told apart.
fn forged() -> Rejection {
    Rejection::new(RejectionKind::Verification(VerifyError::new(
        VerifyErrorKind::NoMatchingSignature,
    )))
}

/// What a future dropped before its end leaves is finished on the runtime: a claim under way
/// is finished and released, a held claim is released, a completion, release or write to the
/// inbox under way is finished.
fn abandon<S, B>(config: &Arc<Config>, span: &Span, state: StateProj<'_, S, B>)
where
    S: Service<Request<Full<Bytes>>>,
{
    match state {
        StateProj::Claiming { claim, delivery } => {
            if let (Some(call), Some(delivery)) = (claim.take(), delivery.take()) {
                claim::abandon_claim(config, span, delivery.store, call, delivery.key);
            }
        }
        StateProj::Calling { running, .. } => {
            let Some(running) = running.take() else {
                return;
            };
            report::finish(config, span, Outcome::Abandoned);
            tracing::info!(
                parent: span,
                id = &*running.id,
                layer = &*config.name,
                "the answer was abandoned before the handler finished (the sender hung up?)"
            );
            if let Some(held) = running.held {
                held.abandon(config, span);
            }
        }
        StateProj::Settling {
            settle, completing, ..
        } => {
            if let Some(settle) = settle.take() {
                claim::finish_settle(config, span, settle, *completing);
            }
        }
        StateProj::Enqueueing { write, .. } => {
            if let Some(write) = write.take() {
                handoff::finish_enqueue(config, span, write);
            }
        }
        StateProj::Collecting { .. } | StateProj::Resolving { .. } | StateProj::Ready { .. } => {}
    }
}
