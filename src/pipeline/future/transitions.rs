//! The future's transitions: from each state to the next, calling the step that owns the
//! work (`verify`, `claim`, `handoff`, `response`, `report`), and what is finished when the
//! future is dropped before its end.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body_util::Full;
use tower_service::Service;
use tracing::Span;

use crate::event::Event;
use crate::metrics::Timer;
use crate::pipeline::claim::{self, Claimed, Held};
use crate::pipeline::config::{Behind, Config};
use crate::pipeline::handoff;
use crate::pipeline::reject::{Rejection, RejectionKind};
use crate::pipeline::report;
use crate::pipeline::response::{self, Then};
use crate::pipeline::runtime::Timed;
use crate::pipeline::verify::{identify, Key, Next};
use crate::scheme::{DeliveryId, VerifyError, VerifyErrorKind};
use crate::stats::Outcome;
use crate::store::{Claim, StoreCall};
use crate::tenant::{Found, TenantError, Tenants};

use super::{Delivery, Running, State, StateProj};

/// What follows verification: the key's claim, the write to the inbox, or (with neither)
/// the inner service.
pub(super) fn start<S, B, R>(
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
pub(super) fn after_claim<S, B, R>(
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
pub(super) fn call<S, B, R>(
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
pub(super) fn after_call<S, B, R>(
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
pub(super) fn committed_or_not<R, E>(
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
pub(super) fn go_on<S, B, R>(
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
pub(super) fn resolve<S, B, R>(
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
pub(super) fn with_tenant<S, B, R>(
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
pub(super) fn forged() -> Rejection {
    Rejection::new(RejectionKind::Verification(VerifyError::new(
        VerifyErrorKind::NoMatchingSignature,
    )))
}

/// What a future dropped before its end leaves is finished on the runtime: a claim under way
/// is finished and released, a held claim is released, a completion, release or write to the
/// inbox under way is finished.
pub(super) fn abandon<S, B>(config: &Arc<Config>, span: &Span, state: StateProj<'_, S, B>)
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
