//! The read model's queries: a listing and its filters, one job with its attempts, replay
//! by filter, as statements of either dialect (the activity is `activity.rs`'s). The types
//! they answer with are `browse`'s.

use std::time::Duration;

use bytes::Bytes;

use super::browse::{
    AttemptOutcome, AttemptRecord, JobDetail, JobFilter, JobPage, JobState, JobSummary, MAX_PAGE,
};
use super::dialect::Arg::{self, Int, Text};
use super::dialect::{self, Backend, Dialect};
use super::error::InboxError;
use super::job::{from_epoch_millis, StoredDelivery};
use super::rows::{AttemptRow, DetailRow, SummaryRow};
use super::Inbox;

/// A statement put together from fixed parts, each value an argument.
struct Sql<'a, D> {
    text: String,
    args: Vec<Arg<'a>>,
    dialect: std::marker::PhantomData<D>,
}

impl<'a, D: Backend> Sql<'a, D> {
    fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
            dialect: std::marker::PhantomData,
        }
    }

    /// `arg`'s placeholder, the argument bound.
    fn arg(&mut self, arg: Arg<'a>) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// ` AND`s the conditions of `filter`, on a queue's jobs.
    fn matching(&mut self, queue: &'a str, filter: &'a JobFilter) {
        let queue = self.arg(Text(queue));
        self.push(&format!(" WHERE queue = {queue}"));
        if let Some(state) = filter.state {
            let state = self.arg(Text(state.as_str()));
            self.push(&format!(" AND state = {state}"));
        }
        for (name, value) in [("layer", &filter.layer), ("event_type", &filter.event_type)] {
            if let Some(value) = value {
                let value = self.arg(Text(value));
                self.push(&format!(" AND {name} = {value}"));
            }
        }
        if let Some(id) = &filter.event_id {
            let id = self.arg(Text(id));
            self.push(&format!(" AND (event_id = {id} OR id = {id})"));
        }
    }
}

fn summary(row: SummaryRow) -> JobSummary {
    JobSummary {
        task_id: row.id,
        event_id: row.event_id,
        layer: row.layer,
        event_type: row.event_type,
        tenant: row.tenant,
        state: row.state.parse().unwrap_or(JobState::Queued),
        attempts: u32::try_from(row.attempt).unwrap_or(0),
        max_attempts: u32::try_from(row.max_attempts).unwrap_or(0),
        received_at: from_epoch_millis(row.received_at),
        last_error: row.last_error,
    }
}

impl<D: Dialect> Inbox<D> {
    /// The jobs `filter` matches, newest first: at most `limit` (up to [`MAX_PAGE`]), older
    /// than the job `after` (the `next` of the page before) where given.
    ///
    /// ```no_run
    /// use tower_webhook::inbox::{JobFilter, JobState, SqliteInbox};
    ///
    /// # async fn run(inbox: SqliteInbox) -> Result<(), tower_webhook::inbox::InboxError> {
    /// let dead = JobFilter::default().state(JobState::Dead);
    /// let mut page = inbox.jobs(&dead, None, 50).await?;
    /// loop {
    ///     for job in &page.jobs {
    ///         println!("{} {} {:?}", job.event_id, job.layer, job.last_error);
    ///     }
    ///     let Some(next) = page.next else { break };
    ///     page = inbox.jobs(&dead, Some(&next), 50).await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn jobs(
        &self,
        filter: &JobFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<JobPage, InboxError> {
        let filter = filter.normalized();
        let limit = limit.clamp(1, MAX_PAGE);
        let mut sql = Sql::<D>::new(
            "SELECT id, state, attempt, max_attempts, last_error, event_id, layer, event_type, \
             tenant, received_at FROM webhook_inbox_jobs",
        );
        sql.matching(&self.settings.queue, &filter);
        if let Some(after) = after {
            let after = sql.arg(Text(after));
            sql.push(&format!(" AND id < {after}"));
        }
        // One more than asked: whether there is a next page.
        let n = sql.arg(Int(i64::from(limit) + 1));
        sql.push(&format!(" ORDER BY id DESC LIMIT {n}"));
        let rows: Vec<SummaryRow> =
            dialect::fetch::<D, _>(&self.pool, &sql.text, &sql.args).await?;
        let mut jobs: Vec<JobSummary> = rows.into_iter().map(summary).collect();
        let next = if jobs.len() > limit as usize {
            jobs.truncate(limit as usize);
            jobs.last().map(|job| job.task_id.clone())
        } else {
            None
        };
        Ok(JobPage { jobs, next })
    }

    /// The job `task_id` of this inbox's queue, whole: `None` where there is none.
    pub async fn job(&self, task_id: &str) -> Result<Option<JobDetail>, InboxError> {
        let args = [Text(&self.settings.queue), Text(task_id)];
        let rows: Vec<DetailRow> = dialect::fetch::<D, _>(&self.pool, D::SQL.job, &args).await?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        // The body is its own column; the rest of the delivery is the JSON beside it.
        let stored = StoredDelivery::read(&row.delivery, Vec::new());
        let body = Bytes::from(row.body);
        let summary = JobSummary {
            task_id: row.id,
            event_id: stored.as_ref().map(|s| s.id.clone()).unwrap_or_default(),
            layer: stored.as_ref().map(|s| s.layer.clone()).unwrap_or_default(),
            event_type: stored.as_ref().and_then(|s| s.event_type.clone()),
            tenant: stored.as_ref().and_then(|s| s.tenant.clone()),
            state: row.state.parse().unwrap_or(JobState::Queued),
            attempts: u32::try_from(row.attempt).unwrap_or(0),
            max_attempts: u32::try_from(row.max_attempts).unwrap_or(0),
            received_at: from_epoch_millis(stored.as_ref().map_or(0, |s| s.received_at)),
            last_error: row.last_error,
        };
        let rows: Vec<AttemptRow> =
            dialect::fetch::<D, _>(&self.pool, D::SQL.attempts, &[Text(task_id)]).await?;
        Ok(Some(JobDetail {
            summary,
            scheme: stored
                .as_ref()
                .map(|s| s.scheme.clone())
                .unwrap_or_default(),
            secret_fields: stored
                .as_ref()
                .map(|s| s.secret_fields.clone())
                .unwrap_or_default(),
            headers: stored.map(|s| s.headers).unwrap_or_default(),
            body,
            attempts: rows.into_iter().map(attempt).collect(),
        }))
    }

    /// Queues again, with all their attempts, the dead-lettered jobs `filter` matches (its
    /// state, where set, must be [`JobState::Dead`]): how many.
    pub async fn replay_matching(&self, filter: &JobFilter) -> Result<u64, InboxError> {
        let filter = filter.normalized();
        if filter.state.is_some_and(|state| state != JobState::Dead) {
            return Ok(0);
        }
        let mut sql = Sql::<D>::new(format!("UPDATE webhook_inbox_jobs SET {}", D::REPLAYED));
        let filter = filter.state(JobState::Dead);
        sql.matching(&self.settings.queue, &filter);
        let replayed = dialect::execute::<D>(&self.pool, &sql.text, &sql.args).await?;
        self.count_replayed(replayed).await?;
        Ok(replayed)
    }
}

fn attempt(row: AttemptRow) -> AttemptRecord {
    AttemptRecord {
        attempt: u32::try_from(row.attempt).unwrap_or(0),
        worker: row.worker,
        started_at: from_epoch_millis(row.started_at),
        duration: row.ended_at.map(|ended| {
            Duration::from_millis(u64::try_from(ended.saturating_sub(row.started_at)).unwrap_or(0))
        }),
        outcome: AttemptOutcome::of(&row.outcome),
        error: row.error,
    }
}
