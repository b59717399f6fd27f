//! The inbox's door: the write the layer makes for each verified delivery, with group
//! commit. Deliveries that arrive while a write is in flight go out together in the next
//! transaction (one commit, one wait for the disk), each answered as if written alone; an
//! idle inbox writes a lone delivery at once.

use std::sync::Arc;
use std::time::Duration;

use super::dialect::{DbTx, Dialect, Pool};
use super::error::{InboxError, InboxErrorKind};
use super::job::StoredDelivery;
use super::{sql, Settings};
use crate::batch::{Batcher, Execute, Pending};
use crate::pipeline::handoff::Enqueued;
use crate::store::Marked;

/// At most this many deliveries in one transaction.
const MAX_BATCH: usize = 128;

/// A delivery at the door: the job it becomes, and how long its mark is kept.
pub(crate) struct Entry {
    pub(crate) stored: StoredDelivery,
    pub(crate) window: Duration,
}

/// The answer to a delivery at the door.
pub(crate) type Answer = Result<Enqueued, InboxError>;

/// The door's turn to build a transaction, let go when it commits (`None` once let go).
pub(crate) type Turn = Option<tokio::sync::OwnedMutexGuard<()>>;

/// The writes of one inbox's door, batched.
pub(crate) type Door<D> = Batcher<Writes<D>>;

/// The door of an inbox: on SQLite one transaction at a time (one writer); on PostgreSQL
/// two, so that one is built while the other waits for its commit. A transaction takes its
/// batch only once the one before it is built ([`Writes::turn`]): the deliveries that
/// arrive meanwhile go out together, rather than in two half batches that cost each
/// delivery twice the statements (measured: PostgreSQL's CPU per answer from about 80 µs
/// to 120 µs with two free-running transactions, 180 µs with four).
pub(crate) fn door<D: Dialect>(
    pool: Pool<D>,
    store: D::Store,
    settings: Settings,
    wake: Arc<tokio::sync::watch::Sender<u64>>,
) -> Arc<Door<D>> {
    let writes = Writes {
        pool,
        store,
        settings,
        wake,
        preparing: Arc::default(),
    };
    let concurrency = if D::ONE_WRITER { 1 } else { 2 };
    Arc::new(Batcher::new(writes, MAX_BATCH, concurrency))
}

/// What writes deliveries to one inbox's queue.
pub(crate) struct Writes<D: Dialect> {
    pool: Pool<D>,
    store: D::Store,
    settings: Settings,
    /// Tells this process's workers that jobs were committed.
    wake: Arc<tokio::sync::watch::Sender<u64>>,
    /// Held by the transaction being built, from before it takes its batch until it
    /// commits: the next one takes its batch when this one waits for the disk.
    preparing: Arc<tokio::sync::Mutex<()>>,
}

impl<D: Dialect> Execute for Writes<D> {
    type Request = Entry;
    type Answer = Answer;
    type Turn = Turn;

    /// Waits until no transaction of this door is being built.
    async fn turn(&self) -> Self::Turn {
        Some(Arc::clone(&self.preparing).lock_owned().await)
    }

    async fn execute(&self, batch: Vec<Pending<Entry, Answer>>, mut turn: Self::Turn) {
        if let [pending] = &batch[..] {
            let answer = self.alone(&pending.request, &mut turn).await;
            return self.answer(batch, [answer]);
        }
        let entries: Vec<&Entry> = batch.iter().map(|pending| &pending.request).collect();
        match self.many(&entries, &mut turn).await {
            Ok(Some(answers)) => return self.answer(batch, answers.into_iter().map(Ok)),
            // Over the bound: one at a time, so that as many fit as the bound lets in.
            Ok(None) => {}
            // One delivery's rows may have failed them all: one at a time, so that it fails
            // alone.
            Err(err) => {
                tracing::debug!(error = %err, deliveries = batch.len(), "a batch at the inbox's door failed; writing its deliveries one at a time");
            }
        }
        for pending in batch {
            let answer = self.alone(&pending.request, &mut turn).await;
            self.answer(vec![pending], [answer]);
        }
    }
}

impl<D: Dialect> Writes<D> {
    /// The bound on the queue's jobs.
    fn max(&self) -> i64 {
        i64::try_from(self.settings.max_queued).unwrap_or(i64::MAX)
    }

    /// Wakes this process's workers: jobs are waiting.
    fn woken(&self) {
        self.wake
            .send_modify(|commits| *commits = commits.wrapping_add(1));
    }

    /// Writes one delivery with its dedup mark, in a transaction of its own.
    async fn alone(&self, entry: &Entry, turn: &mut Turn) -> Answer {
        let written = self.many(&[entry], turn).await?;
        Ok(written
            .and_then(|answers| answers.first().copied())
            .unwrap_or(Enqueued::Full))
    }

    /// Answers each delivery of `batch` in turn, having woken this process's workers if any
    /// was queued.
    fn answer(
        &self,
        batch: Vec<Pending<Entry, Answer>>,
        answers: impl IntoIterator<Item = Answer>,
    ) {
        let answers: Vec<Answer> = answers.into_iter().collect();
        if answers
            .iter()
            .any(|answer| matches!(answer, Ok(Enqueued::Accepted)))
        {
            self.woken();
        }
        for (pending, answer) in batch.into_iter().zip(answers) {
            pending.answer(answer);
        }
    }

    /// Writes `entries` (one or more) with their dedup marks in one transaction: each
    /// answer, or `None` (nothing written) if they do not all fit under the bound.
    ///
    /// A delivery whose key comes twice is marked once: the later copies answer as the
    /// first (a duplicate of it where it was taken). Keys are marked in order, so that two
    /// batches in flight on PostgreSQL take their rows' locks in the same order.
    async fn many(
        &self,
        entries: &[&Entry],
        turn: &mut Turn,
    ) -> Result<Option<Vec<Enqueued>>, InboxError> {
        let queue = &*self.settings.queue;
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by(|&a, &b| entries[a].stored.key.cmp(&entries[b].stored.key));
        let mut answers = vec![Enqueued::Duplicate; entries.len()];
        let mut fresh = Vec::with_capacity(entries.len());
        // With one writer (SQLite), the batch goes before every handler transaction waiting
        // to begin: the door waits for the one in progress at most.
        let _writer = D::writers(&self.store)
            .door_turn(crate::store::writers::Writers::DOOR_PATIENCE)
            .await;
        // Made durable by the marks' statement.
        let mut tx = self.pool.begin().await.map_err(D::error)?;
        // The first of each key is marked; its copies answer as it does.
        let mut firsts: Vec<usize> = Vec::with_capacity(entries.len());
        let mut copies: Vec<(usize, usize)> = Vec::new();
        for index in order {
            match firsts.last() {
                Some(&first) if entries[first].stored.key == entries[index].stored.key => {
                    copies.push((index, first));
                }
                _ => firsts.push(index),
            }
        }
        let keys: Vec<(&str, Duration)> = firsts
            .iter()
            .map(|&index| (&*entries[index].stored.key, entries[index].window))
            .collect();
        let marks = D::mark_many(&self.store, &mut tx, &keys).await?;
        for (&index, marked) in firsts.iter().zip(marks) {
            answers[index] = Enqueued::from(marked);
            if marked == Marked::Fresh {
                fresh.push(index);
            }
        }
        for (index, first) in copies {
            answers[index] = match answers[first] {
                Enqueued::Accepted => Enqueued::Duplicate,
                other => other,
            };
        }
        if !fresh.is_empty() {
            // In the order they arrived.
            fresh.sort_unstable();
            let stored: Vec<&StoredDelivery> =
                fresh.iter().map(|&index| &entries[index].stored).collect();
            self.insert(&mut tx, &stored).await?;
            let added = i64::try_from(fresh.len()).unwrap_or(i64::MAX);
            if !D::admit(&mut tx, queue, self.max(), added).await? {
                tx.rollback().await.map_err(D::error)?;
                return Ok(None);
            }
        }
        // Built: the next transaction takes its batch while this one waits for the disk.
        drop(turn.take());
        tx.commit().await.map_err(D::error)?;
        Ok(Some(answers))
    }

    /// Writes a job for each of `deliveries` in `tx`, and counts them in the activity, as
    /// the dialect writes a batch.
    async fn insert(
        &self,
        tx: &mut DbTx<D>,
        deliveries: &[&StoredDelivery],
    ) -> Result<(), InboxError> {
        // One time for the batch: its jobs fall in one tick of the activity.
        let now = std::time::SystemTime::now();
        let ids: Vec<ulid::Ulid> = deliveries
            .iter()
            .map(|_| ulid::Ulid::from_datetime(now))
            .collect();
        let tick = i64::try_from(ids[0].timestamp_ms()).unwrap_or(i64::MAX) / sql::TICK_MS;
        // Door transactions in flight at once count in rows of their own (the ids' random
        // bits), rather than wait for each other's.
        let shard = i64::try_from(ids[0].random() & 7).unwrap_or(0);
        let jobs = deliveries
            .iter()
            .zip(ids)
            .map(|(&stored, id)| {
                Ok(NewJob {
                    id: id.to_string(),
                    stored,
                    delivery: serde_json::to_vec(stored)?,
                })
            })
            .collect::<Result<_, serde_json::Error>>()
            .map_err(|err| InboxError::new(InboxErrorKind::Database, err))?;
        let batch = Batch {
            queue: &self.settings.queue,
            max_attempts: i64::from(self.settings.retry.attempts()),
            tick,
            shard,
            jobs,
        };
        D::insert_jobs(tx, &batch).await
    }
}

/// A batch of jobs for the door to write, and where it counts in the activity. Public in a
/// private module, as [`Backend`](super::dialect::Backend) names it.
#[allow(unreachable_pub)]
pub struct Batch<'a> {
    pub(crate) queue: &'a str,
    pub(crate) max_attempts: i64,
    /// The activity's tick of every job of the batch (their ids' time).
    pub(crate) tick: i64,
    /// The activity's row of the batch's count.
    pub(crate) shard: i64,
    pub(crate) jobs: Vec<NewJob<'a>>,
}

/// A job the door writes.
#[allow(unreachable_pub)]
pub struct NewJob<'a> {
    /// A ULID.
    pub(crate) id: String,
    pub(crate) stored: &'a StoredDelivery,
    /// `stored` as JSON (its body apart).
    pub(crate) delivery: Vec<u8>,
}

impl From<Marked> for Enqueued {
    /// A delivery whose key was marked already: a duplicate, or in flight where an inline
    /// layer sharing the table holds a claim on it.
    fn from(marked: Marked) -> Self {
        match marked {
            Marked::Fresh => Self::Accepted,
            Marked::Duplicate => Self::Duplicate,
            Marked::InFlight => Self::InFlight,
        }
    }
}

/// The answer to a delivery whose write ended without one (its runtime shut down).
pub(crate) fn unanswered() -> InboxError {
    InboxError::new(
        InboxErrorKind::Unavailable,
        "the inbox's write ended without an answer (its runtime shut down?)",
    )
}
