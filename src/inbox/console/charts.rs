//! The overview's charts: buckets aligned to the clock, the closed ones kept, so that a
//! page load at a million jobs a day reads only the open bucket, not the day.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::inbox::{Activity, Dialect, Inbox, InboxError};

/// How long after a bucket ends it is taken as closed: a job is counted by the time its id
/// was made, and committed a moment later.
const SETTLE: Duration = Duration::from_secs(30);

/// The counts of one bucket: accepted, handled, failed, dead-lettered.
type Counts = [u64; 4];

/// The closed buckets read so far, by length and start (ms since the epoch).
#[derive(Debug, Default)]
pub(super) struct Charts(Mutex<BTreeMap<(u64, u64), Counts>>);

fn ms(at: SystemTime) -> u64 {
    u64::try_from(
        at.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(0)
}

impl Charts {
    /// The `buckets` buckets of `bucket` up to now, aligned to multiples of `bucket` since the
    /// epoch, the last one open.
    pub(super) async fn activity<D: Dialect>(
        &self,
        inbox: &Inbox<D>,
        bucket: Duration,
        buckets: u32,
    ) -> Result<Activity, InboxError> {
        let now = SystemTime::now();
        let len = u64::try_from(bucket.as_millis()).unwrap_or(u64::MAX).max(1);
        let current = ms(now) / len * len;
        let first = current.saturating_sub(len * u64::from(buckets.saturating_sub(1)));
        let settled = ms(now.checked_sub(SETTLE).unwrap_or(UNIX_EPOCH));
        let kept: Vec<Option<Counts>> = {
            let mut cache = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Buckets that have scrolled off the chart go.
            cache.retain(|&(length, start), _| length != len || start >= first);
            (0..u64::from(buckets))
                .map(|i| cache.get(&(len, first + i * len)).copied())
                .collect()
        };
        // Read from the first bucket not kept: everything after it is read at once.
        let from = kept.iter().position(Option::is_none).unwrap_or(kept.len());
        let fresh = if from < kept.len() {
            let start = UNIX_EPOCH + Duration::from_millis(first + from as u64 * len);
            let count = u32::try_from(kept.len() - from).unwrap_or(u32::MAX);
            Some(inbox.activity_from(start, bucket, count).await?)
        } else {
            None
        };
        let mut activity = Activity {
            since: UNIX_EPOCH + Duration::from_millis(first),
            bucket,
            accepted: Vec::with_capacity(kept.len()),
            handled: Vec::with_capacity(kept.len()),
            failed: Vec::with_capacity(kept.len()),
            dead_lettered: Vec::with_capacity(kept.len()),
        };
        let mut cache = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (i, kept) in kept.into_iter().enumerate() {
            let counts = match (kept, &fresh) {
                (Some(counts), _) => counts,
                (None, Some(fresh)) => {
                    let j = i - from;
                    let counts = [
                        fresh.accepted[j],
                        fresh.handled[j],
                        fresh.failed[j],
                        fresh.dead_lettered[j],
                    ];
                    let start = first + i as u64 * len;
                    if start + len <= settled {
                        cache.insert((len, start), counts);
                    }
                    counts
                }
                (None, None) => [0; 4],
            };
            activity.accepted.push(counts[0]);
            activity.handled.push(counts[1]);
            activity.failed.push(counts[2]);
            activity.dead_lettered.push(counts[3]);
        }
        Ok(activity)
    }
}
