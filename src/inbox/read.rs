//! The read model's queries: a listing and its filters, one job with its attempts, the
//! activity, replay by filter and purge, as statements of either dialect. The types they
//! answer with are `browse`'s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::browse::{
    Activity, AttemptOutcome, AttemptRecord, JobDetail, JobFilter, JobPage, JobState, JobSummary,
    MAX_PAGE,
};
use super::dialect::Arg::{self, Int, Text};
use super::dialect::{self, Backend, Dialect};
use super::error::InboxError;
use super::job::{from_epoch_millis, StoredDelivery};
use super::rows::{AcceptedRow, AttemptRow, DetailRow, EndedRow, SummaryRow};
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

/// The smallest ULID of the millisecond `at`: ids below it were made before.
fn ulid_floor(at: SystemTime) -> String {
    const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let ms = crate::clock::unix_millis(at).min((1 << 48) - 1);
    let mut text = String::with_capacity(26);
    for i in (0..10).rev() {
        let digit = usize::try_from((ms >> (i * 5)) & 31).unwrap_or(0);
        text.push(char::from(CROCKFORD[digit]));
    }
    text.push_str("0000000000000000");
    text
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

    /// What the inbox did in the `buckets` spans of `bucket` up to now, the oldest first.
    pub async fn activity(&self, bucket: Duration, buckets: u32) -> Result<Activity, InboxError> {
        let bucket = bucket.max(Duration::from_secs(1));
        let buckets = buckets.clamp(1, 1_000);
        let since = SystemTime::now()
            .checked_sub(bucket * buckets)
            .unwrap_or(UNIX_EPOCH)
            .max(UNIX_EPOCH);
        self.activity_from(since, bucket, buckets).await
    }

    /// What the inbox did in the `buckets` spans of `bucket` from `since` (the last one
    /// open-ended: it takes in everything after its start). A chart that keeps the buckets
    /// that have closed asks only for the open ones.
    pub async fn activity_from(
        &self,
        since: SystemTime,
        bucket: Duration,
        buckets: u32,
    ) -> Result<Activity, InboxError> {
        let bucket = bucket.max(Duration::from_secs(1));
        let buckets = buckets.clamp(1, 1_000);
        let since = since.max(UNIX_EPOCH);
        let len = buckets as usize;
        let mut activity = Activity {
            since,
            bucket,
            accepted: vec![0; len],
            handled: vec![0; len],
            failed: vec![0; len],
            dead_lettered: vec![0; len],
        };
        // Accepted: the jobs whose ids (ULIDs: the time they were made, first) fall in
        // each bucket, counted on the ids' index.
        let mut sql = Sql::<D>::new("SELECT CAST(CASE");
        let bounds: Vec<String> = (1..buckets)
            .map(|i| ulid_floor(since + bucket * i))
            .collect();
        for (i, bound) in bounds.iter().enumerate() {
            let bound = sql.arg(Text(bound));
            sql.push(&format!(" WHEN id < {bound} THEN {i}"));
        }
        // One bucket: a CASE of no WHEN is not SQL.
        sql.push(&format!(
            " WHEN 1 = 0 THEN 0 ELSE {} END AS BIGINT)",
            buckets - 1
        ));
        sql.push(", COUNT(*) FROM webhook_inbox_jobs");
        let queue = sql.arg(Text(&self.settings.queue));
        let floor = ulid_floor(since);
        let floor = sql.arg(Text(&floor));
        sql.push(&format!(
            " WHERE queue = {queue} AND id >= {floor} GROUP BY 1"
        ));
        let rows: Vec<AcceptedRow> =
            dialect::fetch::<D, _>(&self.pool, &sql.text, &sql.args).await?;
        for row in rows {
            if let Some(slot) = usize::try_from(row.bucket)
                .ok()
                .and_then(|i| activity.accepted.get_mut(i))
            {
                *slot = u64::try_from(row.jobs).unwrap_or(0);
            }
        }
        let bucket_ms = i64::try_from(bucket.as_millis()).unwrap_or(i64::MAX);
        let args = [
            Text(&self.settings.queue),
            Int(crate::clock::unix_millis_i64(since)),
            Int(bucket_ms),
        ];
        let rows: Vec<EndedRow> = dialect::fetch::<D, _>(&self.pool, D::SQL.ended, &args).await?;
        for EndedRow {
            bucket: i,
            outcome,
            attempts: count,
        } in rows
        {
            let series = match AttemptOutcome::of(&outcome) {
                AttemptOutcome::Done => &mut activity.handled,
                AttemptOutcome::Failed => &mut activity.failed,
                AttemptOutcome::Dead => &mut activity.dead_lettered,
                AttemptOutcome::Running => continue,
            };
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| series.get_mut(i)) {
                *slot += u64::try_from(count).unwrap_or(0);
            }
        }
        Ok(activity)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ulid_floor_orders_as_its_time() {
        let at = UNIX_EPOCH + Duration::from_millis(1_765_000_000_123);
        let floor = ulid_floor(at);
        assert_eq!(floor.len(), 26);
        assert!(ulid_floor(at - Duration::from_millis(1)) < floor);
        assert!(floor < ulid_floor(at + Duration::from_millis(1)));
        assert_eq!(ulid_floor(UNIX_EPOCH), "0".repeat(26));
    }
}
