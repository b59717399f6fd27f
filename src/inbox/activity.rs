//! The activity: what an inbox did, bucket by bucket, read from its counts per tick.
//!
//! The statements that write what the activity counts keep a count per queue,
//! [tick](sql::TICK_MS) and kind in `webhook_inbox_activity`, in their own transaction: the
//! door's batch its deliveries accepted, an attempt's end its outcome, a purge what it
//! deletes, taken off. A bucket sums the ticks it holds whole. A tick a bucket's edge cuts is
//! counted from the jobs and attempts themselves, split at the edge: at most one a bucket, so
//! that a day in 24 buckets reads a few thousand counts and 24 ticks of rows (13 minutes of
//! the day), however many jobs it had, and is exactly what counting every row would give.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::browse::{Activity, AttemptOutcome};
use super::dialect::Arg::{self, Int, Text};
use super::dialect::{self, Dialect};
use super::error::InboxError;
use super::rows::{AcceptedRow, EndedRow, TickRow};
use super::{sql, Inbox};

/// A span of time counted from the rows themselves, `[lo, hi)` in milliseconds since the
/// epoch, all of it in one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    bucket: usize,
    lo: i64,
    hi: i64,
}

/// How an activity's buckets are read: which ticks are counted whole, and the segments of
/// those cut by a bucket's edge.
#[derive(Debug)]
struct Plan {
    since: i64,
    bucket: i64,
    buckets: usize,
    /// The ticks an edge cuts (the first bucket's start among the edges).
    cut: BTreeMap<i64, Vec<i64>>,
}

impl Plan {
    /// `buckets` (one or more) of `bucket` milliseconds (one or more) from `since`, the
    /// last open-ended.
    fn new(since: i64, bucket: i64, buckets: usize) -> Self {
        let mut cut: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for i in 0..buckets {
            let edge = since.saturating_add(bucket.saturating_mul(i64::try_from(i).unwrap_or(0)));
            if edge.rem_euclid(sql::TICK_MS) != 0 {
                cut.entry(edge.div_euclid(sql::TICK_MS))
                    .or_default()
                    .push(edge);
            }
        }
        Self {
            since,
            bucket,
            buckets,
            cut,
        }
    }

    /// The bucket of the time `ms` (`since` or later).
    fn bucket_of(&self, ms: i64) -> usize {
        let i = ms.saturating_sub(self.since) / self.bucket;
        usize::try_from(i).map_or(0, |i| i.min(self.buckets - 1))
    }

    /// The first tick that starts at `since` or later: the first that may be whole.
    fn first_tick(&self) -> i64 {
        let tick = self.since.div_euclid(sql::TICK_MS);
        if self.since.rem_euclid(sql::TICK_MS) == 0 {
            tick
        } else {
            tick + 1
        }
    }

    /// The bucket that holds the tick `tick` whole; none where an edge cuts it, or it ends
    /// before `since`.
    fn whole(&self, tick: i64) -> Option<usize> {
        let start = tick.saturating_mul(sql::TICK_MS);
        (start >= self.since && !self.cut.contains_key(&tick)).then(|| self.bucket_of(start))
    }

    /// The cut ticks, split at their edges: each piece from `since` on, with its bucket.
    fn segments(&self) -> Vec<Segment> {
        let mut segments = Vec::new();
        for (&tick, edges) in &self.cut {
            // Saturating: a bucket or a start of any length, however far off.
            let start = tick.saturating_mul(sql::TICK_MS);
            let mut points = Vec::with_capacity(edges.len() + 2);
            points.push(start);
            points.extend(edges);
            points.push(start.saturating_add(sql::TICK_MS));
            for piece in points.windows(2) {
                let (lo, hi) = (piece[0].max(self.since), piece[1]);
                if lo < hi {
                    segments.push(Segment {
                        bucket: self.bucket_of(lo),
                        lo,
                        hi,
                    });
                }
            }
        }
        segments
    }
}

/// The smallest ULID of the millisecond `ms`: ids below it were made before.
fn ulid_floor(ms: i64) -> String {
    const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let ms = u64::try_from(ms).unwrap_or(0).min((1 << 48) - 1);
    let mut text = String::with_capacity(26);
    for i in (0..10).rev() {
        let digit = usize::try_from((ms >> (i * 5)) & 31).unwrap_or(0);
        text.push(char::from(CROCKFORD[digit]));
    }
    text.push_str("0000000000000000");
    text
}

/// The statement that counts, in each of `segments` (its arguments after the queue's,
/// pushed on `args`), the rows of `table` (named `counted`) whose `column` falls in it, by
/// bucket and the columns `by` (each after a comma): `WITH segments AS (VALUES ...)` joined
/// on the table's index.
fn segment_count<'a>(
    table: &str,
    column: &str,
    by: &str,
    segments: impl Iterator<Item = (i64, Arg<'a>, Arg<'a>)>,
    args: &mut Vec<Arg<'a>>,
) -> String {
    let mut sql = String::from("WITH segments (bucket, lo, hi) AS (VALUES ");
    for (i, (bucket, lo, hi)) in segments.enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let n = args.len();
        let _ = write!(sql, "(${}, ${}, ${})", n + 1, n + 2, n + 3);
        args.extend([Int(bucket), lo, hi]);
    }
    let _ = write!(
        sql,
        ") SELECT segments.bucket{by}, COUNT(*) FROM segments JOIN {table} AS counted \
         ON counted.queue = $1 AND counted.{column} >= segments.lo \
         AND counted.{column} < segments.hi \
         GROUP BY segments.bucket{by}"
    );
    sql
}

impl<D: Dialect> Inbox<D> {
    /// What the inbox did in the `buckets` spans of `bucket` up to now, the oldest first.
    pub async fn activity(&self, bucket: Duration, buckets: u32) -> Result<Activity, InboxError> {
        let bucket = bucket.max(Duration::from_secs(1));
        let buckets = buckets.clamp(1, 1_000);
        let since = bucket
            .checked_mul(buckets)
            .and_then(|span| SystemTime::now().checked_sub(span))
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
        let plan = Plan::new(
            crate::clock::unix_millis_i64(since),
            i64::try_from(bucket.as_millis()).unwrap_or(i64::MAX),
            len,
        );
        let queue = &*self.settings.queue;
        // The ticks held whole.
        let rows: Vec<TickRow> = dialect::fetch::<D, _>(
            &self.pool,
            sql::ACTIVITY,
            &[Text(queue), Int(plan.first_tick())],
        )
        .await?;
        for row in rows {
            if let Some(i) = plan.whole(row.tick) {
                add(&mut activity, &row.kind, i, row.n);
            }
        }
        // The ticks cut, from the rows.
        let segments = plan.segments();
        if segments.is_empty() {
            return Ok(activity);
        }
        let floors: Vec<(i64, String, String)> = segments
            .iter()
            .map(|s| (as_i64(s.bucket), ulid_floor(s.lo), ulid_floor(s.hi)))
            .collect();
        let mut args = vec![Text(queue)];
        let sql = segment_count(
            "webhook_inbox_jobs",
            "id",
            "",
            floors.iter().map(|(i, lo, hi)| (*i, Text(lo), Text(hi))),
            &mut args,
        );
        let rows: Vec<AcceptedRow> = dialect::fetch::<D, _>(&self.pool, &sql, &args).await?;
        for row in rows {
            add(&mut activity, "accepted", to_usize(row.bucket), row.jobs);
        }
        let mut args = vec![Text(queue)];
        let sql = segment_count(
            "webhook_inbox_job_attempts",
            "ended_at",
            ", counted.outcome",
            segments
                .iter()
                .map(|s| (as_i64(s.bucket), Int(s.lo), Int(s.hi))),
            &mut args,
        );
        let rows: Vec<EndedRow> = dialect::fetch::<D, _>(&self.pool, &sql, &args).await?;
        for row in rows {
            add(
                &mut activity,
                &row.outcome,
                to_usize(row.bucket),
                row.attempts,
            );
        }
        Ok(activity)
    }
}

fn as_i64(bucket: usize) -> i64 {
    i64::try_from(bucket).unwrap_or(i64::MAX)
}

fn to_usize(bucket: i64) -> usize {
    usize::try_from(bucket).unwrap_or(usize::MAX)
}

/// Adds `n` of `kind` (`accepted`, or an attempt's outcome) to the bucket `i`.
fn add(activity: &mut Activity, kind: &str, i: usize, n: i64) {
    let series = match kind {
        "accepted" => &mut activity.accepted,
        outcome => match AttemptOutcome::of(outcome) {
            AttemptOutcome::Done => &mut activity.handled,
            AttemptOutcome::Failed => &mut activity.failed,
            AttemptOutcome::Dead => &mut activity.dead_lettered,
            AttemptOutcome::Running => return,
        },
    };
    if let Some(slot) = series.get_mut(i) {
        *slot = slot.saturating_add_signed(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = sql::TICK_MS;

    #[test]
    fn a_ulid_floor_orders_as_its_time() {
        let at = 1_765_000_000_123;
        let floor = ulid_floor(at);
        assert_eq!(floor.len(), 26);
        assert!(ulid_floor(at - 1) < floor);
        assert!(floor < ulid_floor(at + 1));
        assert_eq!(ulid_floor(0), "0".repeat(26));
        // Its first seven characters are its tick, as the schema reads it.
        assert_eq!(&ulid_floor(at)[..7], &ulid_floor(at / T * T)[..7]);
        assert_ne!(&ulid_floor(at)[..7], &ulid_floor((at / T + 1) * T)[..7]);
    }

    /// Every millisecond from `since` on falls in exactly one place: a whole tick's bucket
    /// or one segment, and in the bucket it belongs to.
    #[test]
    fn every_moment_is_counted_once_in_its_bucket() {
        let cases = [
            (10 * T, T, 3),
            (10 * T + 5, T, 3),
            (10 * T + 5, 1_000, 7),
            (10 * T + 5, 3_600_000, 24),
            (7, 1, 1),
            (10 * T - 1, 2 * T + 1, 5),
            (123_456_789, 300_000, 12),
        ];
        for (since, bucket, buckets) in cases {
            let plan = Plan::new(since, bucket, buckets);
            let segments = plan.segments();
            let end = since + bucket * i64::try_from(buckets).unwrap() + 3 * T;
            let step = if bucket < 50 { 1 } else { 7 };
            let mut points: Vec<i64> = (since - T..end).step_by(step).collect();
            // Each edge and tick start, and either side of it.
            for i in 0..=i64::try_from(buckets).unwrap() {
                let edge = since + bucket * i;
                let tick = edge.div_euclid(T) * T;
                points.extend([edge - 1, edge, edge + 1, tick - 1, tick, tick + 1]);
            }
            for ms in points {
                let expected = (ms >= since).then(|| {
                    usize::try_from((ms - since) / bucket)
                        .unwrap()
                        .min(buckets - 1)
                });
                let in_segments: Vec<usize> = segments
                    .iter()
                    .filter(|s| s.lo <= ms && ms < s.hi)
                    .map(|s| s.bucket)
                    .collect();
                let whole = plan
                    .whole(ms.div_euclid(T))
                    .filter(|_| ms.div_euclid(T) >= plan.first_tick());
                let found: Vec<usize> = in_segments.into_iter().chain(whole).collect();
                assert_eq!(
                    found,
                    expected.into_iter().collect::<Vec<_>>(),
                    "{ms} of ({since}, {bucket}, {buckets})"
                );
            }
        }
    }

    #[test]
    fn buckets_and_starts_far_off_do_not_overflow() {
        for (since, bucket) in [(0, i64::MAX), (i64::MAX, 1_000), (i64::MAX - 5, i64::MAX)] {
            let plan = Plan::new(since, bucket, 1_000);
            let _ = plan.segments();
            let _ = plan.whole(plan.first_tick());
            let _ = plan.bucket_of(i64::MAX);
        }
    }

    #[test]
    fn a_day_cuts_a_tick_a_bucket_at_most() {
        let plan = Plan::new(1_765_000_000_123, 3_600_000, 24);
        assert_eq!(plan.cut.len(), 24);
        assert_eq!(plan.segments().len(), 24 * 2 - 1);
    }
}
