//! The queue's state machine, written once over a dialect's statements: a worker takes the
//! jobs due and starts them under a lease, renews the leases of the attempts it runs,
//! writes each attempt's end fenced by its holder and number, and takes back the jobs whose
//! lease lapsed. Each attempt is recorded by the transaction that starts or ends it.

use std::time::Duration;

use super::dialect::Arg::{self, Int, MaybeText, Text};
use super::dialect::{self, Backend, Conn, Dialect};
use super::error::{InboxError, InboxErrorKind};
use super::rows::{Lapsed, Taken};
use super::{sql, Inbox, RetryPolicy};
use crate::tx::{roll_back, Open};

/// How an attempt ended, as the queue writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Handled.
    Done,
    /// Failed with attempts left: run again after `delay`.
    Retry { error: String, delay: Duration },
    /// Dead-lettered: out of attempts, or no retry can help.
    Dead(String),
}

impl Fate {
    /// The job's state, the attempt's outcome, the error and the delay this fate writes.
    fn columns(&self) -> (&'static str, &'static str, Option<&str>, Duration) {
        match self {
            Self::Done => ("done", "done", None, Duration::ZERO),
            Self::Retry { error, delay } => ("retrying", "failed", Some(error), *delay),
            Self::Dead(error) => ("dead", "dead", Some(error), Duration::ZERO),
        }
    }

    /// The fate of attempt `attempt` (of `max`) whose lease lapsed: its worker died, or
    /// lost it (its start committed as its connection failed, say).
    pub(crate) fn lapsed(attempt: i64, max: i64, retry: RetryPolicy) -> Self {
        if attempt >= max {
            return Self::Dead(WORKER_DIED.to_owned());
        }
        let number = u32::try_from(attempt).unwrap_or(u32::MAX);
        Self::Retry {
            error: format!(
                "its worker stopped answering during attempt {attempt}; the job was taken back"
            ),
            delay: retry.delay_after(number),
        }
    }
}

/// The reason a job whose worker died during its last attempt is dead-lettered with.
pub(crate) const WORKER_DIED: &str = "its worker died during the last attempt";

/// A lease: twice the heartbeat, renewed every heartbeat while the attempt runs.
pub(crate) fn lease(heartbeat: Duration) -> Duration {
    heartbeat * 2
}

/// `ids` as the statements take a list: a JSON array of text.
fn id_list(ids: &[String]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned())
}

/// Writes `fate` as the end of attempt `attempt` of the job `id` (of `queue`) held by
/// `holder`, on `conn` (in a transaction where the dialect closes the attempt's record or
/// counts the done job in statements of their own): whether that holder held that attempt
/// (and, where `lapsed_only`, its lease had lapsed). The attempt's record is closed, and
/// counted in the activity (a job ended done in the done jobs too), with it.
async fn write_end<D: Backend>(
    conn: &mut Conn<D>,
    queue: &str,
    (id, holder, attempt): (&str, &str, i64),
    fate: &Fate,
    lapsed_only: bool,
) -> Result<bool, InboxError> {
    let (state, outcome, error, delay) = fate.columns();
    let args = [
        Text(id),
        Text(holder),
        Int(attempt),
        Text(state),
        MaybeText(error),
        Arg::millis(delay),
        Int(i64::from(lapsed_only)),
        Text(outcome),
    ];
    let ended: Vec<(String,)> = D::fetch_on(conn, D::SQL.end, &args).await?;
    if ended.is_empty() {
        return Ok(false);
    }
    if let Some(end_attempt) = D::SQL.end_attempt {
        let args = [Text(id), Int(attempt), Text(outcome), MaybeText(error)];
        let closed: Vec<(i64,)> = D::fetch_on(conn, end_attempt, &args).await?;
        if let (Some(&(ended_at,)), Some(end_activity)) = (closed.first(), D::SQL.end_activity) {
            let args = [
                Text(queue),
                Int(ended_at.div_euclid(sql::TICK_MS)),
                Text(outcome),
                Int(0),
                Int(1),
            ];
            D::execute_on(conn, end_activity, &args).await?;
        }
    }
    if let (Fate::Done, Some(end_done)) = (fate, D::SQL.end_done) {
        D::execute_on(conn, end_done, &[Text(queue), Int(0), Int(1)]).await?;
    }
    Ok(true)
}

/// Writes `fate` as the end of attempt `attempt` of the job `id` held by `holder`, in a
/// transaction of its own where the dialect needs one: whether it ended.
async fn end_alone<D: Backend>(
    pool: &super::dialect::Pool<D>,
    queue: &str,
    holder: (&str, &str, i64),
    fate: &Fate,
    lapsed_only: bool,
) -> Result<bool, InboxError> {
    if D::SQL.end_attempt.is_none() && D::SQL.end_done.is_none() && D::SQL.end_activity.is_none() {
        let mut conn = pool.acquire().await.map_err(D::error)?;
        return write_end::<D>(&mut conn, queue, holder, fate, lapsed_only).await;
    }
    let mut tx = dialect::begin::<D>(pool).await?;
    if write_end::<D>(&mut tx, queue, holder, fate, lapsed_only).await? {
        tx.commit().await.map_err(D::error)?;
        Ok(true)
    } else {
        tx.rollback().await.map_err(D::error)?;
        Ok(false)
    }
}

impl<D: Dialect> Inbox<D> {
    /// Takes up to `limit` jobs due for the worker `me`, and starts them: each attempt
    /// counted, recorded and leased, in one transaction. Counted before the handler runs,
    /// so that a handler that takes its process down still uses an attempt, and a poison
    /// job runs out of them.
    pub(crate) async fn take(&self, me: &str, limit: usize) -> Result<Vec<Taken>, InboxError> {
        let lease = lease(self.settings.heartbeat);
        let limit = Int(i64::try_from(limit).unwrap_or(i64::MAX));
        let args = [
            Text(&self.settings.queue),
            Text(me),
            limit,
            Arg::millis(lease),
        ];
        let Some(started) = D::SQL.started else {
            return dialect::fetch::<D, _>(&self.pool, D::SQL.take, &args).await;
        };
        let mut tx = dialect::begin::<D>(&self.pool).await?;
        let taken: Vec<Taken> = D::fetch_on(&mut tx, D::SQL.take, &args).await?;
        if taken.is_empty() {
            tx.rollback().await.map_err(D::error)?;
            return Ok(taken);
        }
        let ids: Vec<String> = taken.iter().map(|job| job.id.clone()).collect();
        D::execute_on(&mut tx, started, &[Text(&id_list(&ids))]).await?;
        tx.commit().await.map_err(D::error)?;
        Ok(taken)
    }

    /// Renews the leases of the jobs the worker `me` runs in this process: only those, so
    /// that a job it holds and no longer runs is taken back though it lives.
    pub(crate) async fn renew(&self, me: &str) -> Result<u64, InboxError> {
        let ids = self.running.ids_of(me);
        if ids.is_empty() {
            return Ok(0);
        }
        let lease = Arg::millis(lease(self.settings.heartbeat));
        let args = [Text(me), Text(&id_list(&ids)), lease];
        dialect::execute::<D>(&self.pool, D::SQL.renew, &args).await
    }

    /// Takes back the running jobs whose lease lapsed (their worker died, or runs them no
    /// more), but those a live worker of this process runs (its renewal failed, not the
    /// worker): each attempt counted as failed, the job run again after its backoff, or
    /// dead-lettered after its last. How many.
    pub(crate) async fn sweep(&self) -> Result<u64, InboxError> {
        let lease = lease(self.settings.heartbeat);
        let args = [Text(&self.settings.queue)];
        let lapsed: Vec<Lapsed> = dialect::fetch::<D, _>(&self.pool, D::SQL.lapsed, &args).await?;
        let mut taken = 0;
        for job in lapsed {
            if self.running.runs_alive(&job.id, &job.holder, lease) {
                continue;
            }
            let fate = Fate::lapsed(job.attempt, job.max_attempts, self.settings.retry);
            let holder = (&*job.id, &*job.holder, job.attempt);
            let queue = &self.settings.queue;
            taken += u64::from(end_alone::<D>(&self.pool, queue, holder, &fate, true).await?);
        }
        Ok(taken)
    }

    /// Writes `fate` as the end of attempt `attempt` of the job `task_id`, while `me` still
    /// holds it: `false` where the job was taken back meanwhile (the run that holds it now
    /// writes its own end).
    pub(crate) async fn end_job(
        &self,
        task_id: &str,
        (me, attempt): (&str, i64),
        fate: &Fate,
    ) -> Result<bool, InboxError> {
        let queue = &self.settings.queue;
        end_alone::<D>(&self.pool, queue, (task_id, me, attempt), fate, false).await
    }

    /// Writes the job `task_id` done by attempt `attempt` in `tx`, the handler's
    /// transaction, while `me` still holds that attempt, and commits: `false` (rolled back)
    /// where it does not.
    pub(crate) async fn complete_in(
        &self,
        tx: Open<D::Db>,
        task_id: &str,
        (me, attempt): (&str, i64),
    ) -> Result<bool, InboxError> {
        let mut tx = tx.or_roll_back().await.map_err(|err| {
            err.map_or_else(
                || InboxError::new(InboxErrorKind::Worker, crate::tx::EndedByHandler),
                D::error,
            )
        })?;
        let queue = &self.settings.queue;
        match write_end::<D>(&mut tx, queue, (task_id, me, attempt), &Fate::Done, false).await {
            Ok(true) => {}
            held => {
                roll_back(tx).await;
                return held;
            }
        }
        let Err(err) = tx.commit().await else {
            return Ok(true);
        };
        // The commit's answer was lost, not necessarily the commit: the job says which.
        let args = [Text(task_id), Int(attempt)];
        match dialect::fetch::<D, (i64,)>(&self.pool, D::SQL.done, &args).await {
            Ok(rows) if !rows.is_empty() => Ok(true),
            _ => Err(D::error(err)),
        }
    }
}
