//! Claim and settle: the delivery's key claimed in the store before the inner service runs,
//! completed or released after it; and the store calls nobody waits for any more, finished
//! in the background so that no claim is left to hold a retry for a whole lease.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use tracing::{Instrument as _, Span};

use crate::pipeline::config::Config;
use crate::pipeline::reject::{Rejection, RejectionKind};
use crate::pipeline::report;
use crate::pipeline::response;
use crate::pipeline::runtime::{self, Timed};
use crate::pipeline::verify::Key;
use crate::scheme::DeliveryId;
use crate::stats::Outcome;
use crate::store::{BoxFuture, Claim, ClaimToken, DynStore, StoreCall, StoreError, StoreErrorKind};
use crate::tx::{Finish, Offered, Transactions};

/// A claim the future holds while the inner service runs, and the slot of the handler's
/// transaction where the store offers one.
pub(crate) struct Held {
    store: Arc<dyn DynStore>,
    key: Key,
    token: ClaimToken,
    tx: Option<Arc<dyn Offered>>,
}

/// How a claim is settled: the store's call, and whether it commits the handler's
/// transaction (then the answer waits for it, and is a 503 unless it committed).
pub(crate) struct Settle {
    pub(crate) call: StoreCall<Result<bool, StoreError>>,
    pub(crate) commits: bool,
}

/// What the store's answer to a claim leads to.
pub(crate) enum Claimed {
    /// The key is held: the inner service runs.
    Held(Held),
    /// The layer answers without the inner service.
    Answer(Response<Bytes>),
}

/// What follows the store's answer to the claim of `key` in `store`. `id` names the
/// delivery if it is a duplicate.
pub(crate) fn claimed(
    config: &Config,
    span: &Span,
    store: Arc<dyn DynStore>,
    answer: Result<Claim, StoreError>,
    key: Key,
    id: impl FnOnce() -> DeliveryId,
) -> Claimed {
    let refuse = |kind| Claimed::Answer(response::rejection(config, span, Rejection::new(kind)));
    match answer {
        Ok(Claim::Acquired(token)) => Claimed::Held(Held {
            store,
            key,
            token,
            tx: None,
        }),
        Ok(Claim::Completed) => Claimed::Answer(response::duplicate(config, span, id())),
        Ok(Claim::InFlight) => refuse(RejectionKind::InFlight),
        Err(err) => {
            tracing::error!(error = %err, "idempotency store failed to claim the delivery");
            refuse(RejectionKind::StoreUnavailable)
        }
    }
}

/// The store did not answer the claim of `key` within the store timeout: the call is
/// finished in the background (and released if it took the key), and the delivery answers
/// 503.
pub(crate) fn unanswered(
    config: &Config,
    span: &Span,
    store: Arc<dyn DynStore>,
    claim: Option<BoxFuture<Result<Claim, StoreError>>>,
    key: Key,
) -> Response<Bytes> {
    tracing::error!(
        timeout_ms = report::millis(config.store_timeout),
        "idempotency store did not answer the claim in time"
    );
    if let Some(claim) = claim {
        abandon_claim(config, span, store, claim, key);
    }
    response::rejection(
        config,
        span,
        Rejection::new(RejectionKind::StoreUnavailable),
    )
}

impl Held {
    /// Offers the handler a transaction on the store's database, through `request`'s
    /// extensions, where `transactions` has one.
    pub(crate) fn offer<B>(
        &mut self,
        transactions: Option<&Arc<dyn Transactions>>,
        request: &mut http::Request<B>,
    ) {
        self.tx = transactions.map(|tx| tx.offer(request.extensions_mut()));
    }

    /// Completes the claim (the inner service succeeded: the key is kept for `keep_for`) or
    /// releases it (the next copy runs the inner service again). Where the handler took the
    /// transaction, the completion is written in it and committed, or it is rolled back and
    /// the claim released.
    pub(crate) fn settle(self, complete: bool, keep_for: Duration) -> Settle {
        let Self {
            store,
            key,
            token,
            tx,
        } = self;
        let finish = tx.as_ref().map_or(Finish::NotBegun, |tx| {
            tx.finish(complete, Arc::clone(&key), token.clone(), keep_for)
        });
        let commits = complete && !matches!(finish, Finish::NotBegun);
        let call = match finish {
            Finish::NotBegun if complete => store.complete(key, token, keep_for),
            Finish::NotBegun => store.release(key, token),
            Finish::Open(finish) => StoreCall::Pending(Box::pin(async move {
                let finished = finish.await;
                // Rolled back, or a commit that failed: the claim is still this copy's, and
                // the retry should not wait for its lease. (Lost, it is another's.)
                if !complete || finished.is_err() {
                    let released = store.release(key, token).answer().await;
                    if !complete {
                        return released;
                    }
                }
                finished
            })),
            Finish::Kept => {
                // Released once the transaction is back and rolled back.
                let release = Box::pin(async move {
                    let _ = store.release(key, token).answer().await;
                });
                if let Some(tx) = tx {
                    tx.abandon(release, keep_for);
                }
                StoreCall::Ready(Err(StoreError::new(
                    StoreErrorKind::Backend,
                    "the handler still held its Tx when it answered: nothing was committed",
                )))
            }
        };
        Settle { call, commits }
    }

    /// The future was dropped while the handler ran: the claim is released in the
    /// background, once the handler's transaction, if it took one, is rolled back.
    pub(crate) fn abandon(self, config: &Arc<Config>, span: &Span) {
        if let Some(tx) = &self.tx {
            let (store, key, token) = (
                Arc::clone(&self.store),
                Arc::clone(&self.key),
                self.token.clone(),
            );
            let release = async move {
                if let Err(err) = store.release(key, token).answer().await {
                    tracing::warn!(error = %err, "failed to release an abandoned claim; it ends with its lease");
                }
            };
            if tx.abandon(Box::pin(release.instrument(span.clone())), config.lease) {
                return;
            }
        }
        if let StoreCall::Pending(release) = self.settle(false, config.dedup_window).call {
            finish_settle(config, span, release, false);
        }
    }
}

/// The answer to a delivery whose handler's transaction did not commit: `503`, so that the
/// sender retries and the retry does the work; or, where the handler ended its `Tx` itself
/// (`ended`), `500` naming the misuse, logged at error. Counted as a completion that failed.
pub(crate) fn not_committed(config: &Config, span: &Span, ended: bool) -> Response<Bytes> {
    let _entered = span.enter();
    if ended {
        tracing::error!(
            "the handler ended its Tx itself, so its writes escaped the delivery's completion: \
             answering 500"
        );
        return Rejection::new(RejectionKind::TxEndedByHandler).into_response(config.retry_after);
    }
    tracing::warn!(
        "the handler's transaction did not commit: answering 503 so that the sender retries"
    );
    Rejection::new(RejectionKind::NotCommitted).into_response(config.retry_after)
}

/// Whether settling failed because the handler ended its `Tx` itself.
pub(crate) fn ended_by_handler(answer: Option<&Result<bool, StoreError>>) -> bool {
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    if let Some(Err(err)) = answer {
        return crate::tx::ended_by_handler(err);
    }
    let _ = answer;
    false
}

/// Records how settling went: the store's answer, or (`None`) none within the store
/// timeout, in which case the call is finished in the background and the answer goes out
/// anyway.
pub(crate) fn settled(
    config: &Arc<Config>,
    span: &Span,
    settle: Pin<&mut Timed<bool>>,
    completing: bool,
    answer: Option<Result<bool, StoreError>>,
) {
    if let Some(result) = answer {
        report::settled(config, &result, completing);
        return;
    }
    tracing::warn!(
        timeout_ms = report::millis(config.store_timeout),
        "idempotency store did not settle the claim in time; finishing in the background"
    );
    if let Some(settle) = settle.take() {
        finish_settle(config, span, settle, completing);
    }
}

/// Finishes a claim nobody waits for any more, and releases it if it was taken, so that it
/// does not hold the delivery for a whole lease.
pub(crate) fn abandon_claim(
    config: &Config,
    span: &Span,
    store: Arc<dyn DynStore>,
    claim: BoxFuture<Result<Claim, StoreError>>,
    key: Key,
) {
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
pub(crate) fn finish_settle(
    config: &Arc<Config>,
    span: &Span,
    settle: BoxFuture<Result<bool, StoreError>>,
    completing: bool,
) {
    let background = {
        let config = Arc::clone(config);
        async move { report::settled(&config, &settle.await, completing) }
    };
    if !runtime::finish_in_background(background.instrument(span.clone()), config.lease) {
        if completing {
            config.stats.count(Outcome::CompletionFailed);
        }
        tracing::warn!("no Tokio runtime to finish settling the claim on; it ends with its lease");
    }
}
