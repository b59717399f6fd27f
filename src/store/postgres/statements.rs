//! The store's three statements, each sending a batch of calls (see `batch`).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use super::error::error_kind;
use super::table::Sql;
use crate::batch::{Execute, Pending};
use crate::store::{Claim, ClaimToken, StoreError, StoreErrorKind};

/// How often a statement that PostgreSQL chose as a deadlock's victim is sent again. The
/// keys of each statement are sorted, and a plan that finds rows by key visits them in that
/// order, so two statements wait for each other in a cycle only where a plan visits rows in
/// another order (a hash join over a small table). The victim's statement was rolled back
/// whole, so sending it again is safe.
const DEADLOCK_RETRIES: usize = 3;

/// What the statements run on, shared by the store's batchers.
pub(super) struct Statements {
    pub(super) pool: PgPool,
    pub(super) sql: Arc<Sql>,
    pub(super) statement_timeout: Duration,
    pub(super) commit_mode: &'static str,
}

/// A claim waiting for its statement.
pub(super) struct ClaimCall {
    pub(super) key: Vec<u8>,
    pub(super) token: ClaimToken,
    pub(super) lease: f64,
}

/// A completion (with how long to keep the key) or a release waiting for its statement.
pub(super) struct SettleCall {
    pub(super) key: Vec<u8>,
    pub(super) token: ClaimToken,
    pub(super) keep_for: f64,
}

type ClaimPending = Pending<ClaimCall, Result<Claim, StoreError>>;
type SettlePending = Pending<SettleCall, Result<bool, StoreError>>;

/// The claims of a batch.
pub(super) struct Claims(pub(super) Arc<Statements>);

/// The completions (`complete`) or the releases of a batch.
pub(super) struct Settles {
    pub(super) statements: Arc<Statements>,
    pub(super) complete: bool,
}

fn late() -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        "the claim waited past its statement timeout and wrote nothing",
    )
}

/// The same failure for every call of a statement, each keeping the cause.
fn shared_error(err: &Arc<sqlx::Error>) -> StoreError {
    StoreError::new(error_kind(err), Arc::clone(err))
}

fn is_deadlock(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

/// Runs `send` until it succeeds, fails otherwise, or has been a deadlock's victim
/// [`DEADLOCK_RETRIES`] times.
async fn with_retries<T, F, Fut>(mut send: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut tries = 0;
    loop {
        match send().await {
            Err(err) if is_deadlock(&err) && tries < DEADLOCK_RETRIES => tries += 1,
            result => return result,
        }
    }
}

/// The calls of a batch to send, and the rest: each with the index of the sent call it
/// repeats.
struct Distinct<R, A> {
    sent: Vec<Pending<R, A>>,
    repeats: Vec<(usize, Pending<R, A>)>,
}

/// Sorts `batch` by `key` (a stored key, and a token or `""`) and splits it into the calls
/// to send, each with a distinct `key`, and their repeats.
fn distinct<R, A>(
    mut batch: Vec<Pending<R, A>>,
    key: impl Fn(&R) -> (&[u8], &str),
) -> Distinct<R, A> {
    batch.sort_by(|a, b| key(&a.request).cmp(&key(&b.request)));
    let mut sent: Vec<Pending<R, A>> = Vec::with_capacity(batch.len());
    let mut repeats = Vec::new();
    for pending in batch {
        let same = sent
            .last()
            .is_some_and(|last| key(&last.request) == key(&pending.request));
        if same {
            repeats.push((sent.len() - 1, pending));
        } else {
            sent.push(pending);
        }
    }
    Distinct { sent, repeats }
}

/// The call numbered `n` (from 1, as `WITH ORDINALITY` numbers them), if there is one.
fn index(n: i64) -> Option<usize> {
    usize::try_from(n).ok()?.checked_sub(1)
}

/// What a statement answered for each of its `calls` calls, by their numbers.
fn by_call<T: Clone>(calls: usize, rows: impl IntoIterator<Item = (i64, T)>) -> Vec<Option<T>> {
    let mut answers = vec![None; calls];
    for (n, answer) in rows {
        if let Some(slot) = index(n).and_then(|i| answers.get_mut(i)) {
            *slot = Some(answer);
        }
    }
    answers
}

impl Execute for Claims {
    type Request = ClaimCall;
    type Answer = Result<Claim, StoreError>;
    type Turn = ();

    async fn turn(&self) {}

    async fn execute(&self, batch: Vec<ClaimPending>, (): ()) {
        let statements = &*self.0;
        let timeout = statements.statement_timeout;
        // A claim that waited its whole timeout in the queue is not sent: its caller has
        // given up on it.
        let (waited, batch): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|pending| pending.queued_at.elapsed() >= timeout);
        for pending in waited {
            pending.answer(Err(late()));
        }
        if batch.is_empty() {
            return;
        }
        // By key alone: one claim of a key per statement.
        let Distinct { sent, repeats } = distinct(batch, |call| (&call.key, ""));
        let keys: Vec<&[u8]> = sent.iter().map(|p| p.request.key.as_slice()).collect();
        let tokens: Vec<&str> = sent.iter().map(|p| p.request.token.as_str()).collect();
        let leases: Vec<f64> = sent.iter().map(|p| p.request.lease).collect();
        let rows = with_retries(|| {
            // Each claim's own deadline: what is left of its timeout, from when it was made
            // (a claim that waited in the queue has less left than one made just now).
            let budgets: Vec<f64> = sent
                .iter()
                .map(|p| timeout.saturating_sub(p.queued_at.elapsed()).as_secs_f64())
                .collect();
            sqlx::query_as::<_, (i64, String)>(statements.sql.claim.clone())
                .bind(&keys)
                .bind(&tokens)
                .bind(&leases)
                .bind(budgets)
                .bind(statements.commit_mode)
                .fetch_all(&statements.pool)
        })
        .await;
        // They borrow the calls, which are answered below.
        drop((keys, tokens, leases));
        let outcomes: Vec<Result<Claim, Failure>> = match rows {
            Ok(rows) => sent
                .iter()
                .zip(by_call(sent.len(), rows))
                .map(|(pending, outcome)| match outcome.as_deref() {
                    Some("acquired") => Ok(Claim::Acquired(pending.request.token.clone())),
                    Some("completed") => Ok(Claim::Completed),
                    Some("in_flight") => Ok(Claim::InFlight),
                    Some("late") => Err(Failure::Late),
                    other => Err(Failure::Unexpected(
                        format!("unexpected claim outcome {other:?}").into(),
                    )),
                })
                .collect(),
            Err(err) => vec![Err(Failure::Sqlx(Arc::new(err))); sent.len()],
        };
        // A repeat of a key in the same batch comes after its first: in flight behind a
        // claim the first took, otherwise told what the first was told.
        for (first, pending) in repeats {
            pending.answer(match &outcomes[first] {
                Ok(Claim::Acquired(_) | Claim::InFlight) => Ok(Claim::InFlight),
                Ok(Claim::Completed) => Ok(Claim::Completed),
                Err(failure) => Err(failure.to_store_error()),
            });
        }
        for (pending, outcome) in sent.into_iter().zip(outcomes) {
            pending.answer(outcome.map_err(|failure| failure.to_store_error()));
        }
    }
}

/// Why a claim of a batch failed, for it and for its repeats.
#[derive(Clone)]
enum Failure {
    Sqlx(Arc<sqlx::Error>),
    Late,
    Unexpected(Arc<str>),
}

impl Failure {
    fn to_store_error(&self) -> StoreError {
        match self {
            Self::Sqlx(err) => shared_error(err),
            Self::Late => late(),
            Self::Unexpected(what) => StoreError::new(StoreErrorKind::Backend, what.to_string()),
        }
    }
}

/// Sends a batch of completions (`complete`) or releases, answering each call whether it
/// changed its row. A repeat of the same key and token is answered `false`: the first
/// settled the claim.
async fn settle(statements: &Statements, batch: Vec<SettlePending>, complete: bool) {
    let Distinct { sent, repeats } = distinct(batch, |call| (&call.key, call.token.as_str()));
    for (_, pending) in repeats {
        pending.answer(Ok(false));
    }
    let keys: Vec<&[u8]> = sent.iter().map(|p| p.request.key.as_slice()).collect();
    let tokens: Vec<&str> = sent.iter().map(|p| p.request.token.as_str()).collect();
    let rows = if complete {
        let keep: Vec<f64> = sent.iter().map(|p| p.request.keep_for).collect();
        with_retries(|| {
            sqlx::query_scalar::<_, i64>(statements.sql.complete.clone())
                .bind(&keys)
                .bind(&tokens)
                .bind(&keep)
                .bind(statements.commit_mode)
                .fetch_all(&statements.pool)
        })
        .await
    } else {
        with_retries(|| {
            sqlx::query_scalar::<_, i64>(statements.sql.release.clone())
                .bind(&keys)
                .bind(&tokens)
                .bind(statements.commit_mode)
                .fetch_all(&statements.pool)
        })
        .await
    };
    // They borrow the calls, which are answered below.
    drop((keys, tokens));
    match rows {
        Ok(rows) => {
            let changed = by_call(sent.len(), rows.into_iter().map(|n| (n, ())));
            for (pending, changed) in sent.into_iter().zip(changed) {
                pending.answer(Ok(changed.is_some()));
            }
        }
        Err(err) => {
            let err = Arc::new(err);
            for pending in sent {
                pending.answer(Err(shared_error(&err)));
            }
        }
    }
}

impl Execute for Settles {
    type Request = SettleCall;
    type Answer = Result<bool, StoreError>;
    type Turn = ();

    async fn turn(&self) {}

    async fn execute(&self, batch: Vec<SettlePending>, (): ()) {
        settle(&self.statements, batch, self.complete).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_numbered_from_one() {
        assert_eq!(index(1), Some(0));
        assert_eq!(index(0), None);
        assert_eq!(index(-3), None);
        let answers = by_call(3, [(3, 'c'), (1, 'a'), (0, 'x'), (4, 'x'), (-1, 'x')]);
        assert_eq!(answers, [Some('a'), None, Some('c')]);
    }

    #[test]
    fn repeats_point_at_the_first_call_of_their_key_in_key_order() {
        let calls = [("b", "1"), ("a", "1"), ("b", "1"), ("b", "2"), ("a", "1")];
        let batch = calls
            .iter()
            .map(|&(key, token)| Pending::<_, ()>::new((key.as_bytes(), token)).0)
            .collect();
        let Distinct { sent, repeats } = distinct(batch, |&(key, token)| (key, token));
        let sent: Vec<_> = sent.iter().map(|p| p.request).collect();
        assert_eq!(
            sent,
            [(&b"a"[..], "1"), (&b"b"[..], "1"), (&b"b"[..], "2")],
            "sorted, one of each"
        );
        let repeats: Vec<_> = repeats
            .iter()
            .map(|(first, p)| (*first, p.request))
            .collect();
        assert_eq!(repeats, [(0, (&b"a"[..], "1")), (1, (&b"b"[..], "1"))]);

        let by_key_alone = calls
            .iter()
            .map(|&(key, _)| Pending::<_, ()>::new(key.as_bytes()).0)
            .collect();
        let Distinct { sent, repeats } = distinct(by_key_alone, |&key| (key, ""));
        assert_eq!(sent.len(), 2);
        assert_eq!(repeats.len(), 3);
    }
}
