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

use crate::metrics::Timer;
use crate::pipeline::body::{Collector, ResponseBody};
use crate::pipeline::claim::{self, Held};
use crate::pipeline::config::Config;
use crate::pipeline::handoff;
use crate::pipeline::handoff::{Enqueued, HandoffError};
use crate::pipeline::reject::{Rejection, RejectionKind};
use crate::pipeline::response::{self, Then};
use crate::pipeline::runtime::Timed;
use crate::pipeline::verify::{identify, Key};
use crate::scheme::DeliveryId;
use crate::store::{Claim, DynStore};
use crate::tenant::Resolving;
use crate::tx::Transactions;

mod transitions;
use transitions::{
    abandon, after_call, after_claim, committed_or_not, go_on, resolve, with_tenant,
};

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
