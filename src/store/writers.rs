//! The turns of a database's writers among handlers' transactions, the door's, and those
//! running inbox workers hold back.

use std::sync::atomic::AtomicU32;
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
use std::sync::atomic::Ordering;
use std::sync::Arc;
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
use std::time::Duration;

use sqlx::{Database, Pool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A handler transaction's turn among the database's writers. With one writer, also its
/// place in the handlers' lane: the turn is given up first, so that a door batch waiting
/// for it goes before the next handler, which waits in the lane (fields drop in order).
pub(crate) struct Turn {
    _turn: OwnedSemaphorePermit,
    _lane: Option<OwnedSemaphorePermit>,
}

/// The turns of a database's writers among handlers' transactions: how many may be open at
/// once. SQLite has one writer (the others would wait in its busy handler, each holding a
/// connection the queue needs); a server, its pool less the connections the store's or the
/// queue's own statements need, less those each running inbox worker holds back. Public in
/// a private module: the inbox's backends name it, and no one outside the crate can.
#[allow(unreachable_pub)]
pub struct Writers {
    turns: Arc<Semaphore>,
    /// With one writer, the handlers' transactions wait here, one at a time, before they
    /// wait for a turn: so at most one of them is ever queued for the turn, and a door
    /// batch asking for it goes before every other handler (SQLite's busy handler, where
    /// they would otherwise meet, lets whoever asks last after a commit go first, and the
    /// door, sleeping in it, lost to handler after handler).
    lane: Option<Arc<Semaphore>>,
    /// The turns running workers may still hold back: all but one. `None` with one writer,
    /// whose transactions wait for the file's lock, not for a connection.
    #[cfg_attr(
        not(any(feature = "inbox-sqlite", feature = "inbox-postgres")),
        allow(dead_code)
    )]
    spare: Option<AtomicU32>,
}

impl Writers {
    /// The connections left to the store's batched statements, or to the inbox's door, the
    /// ends of attempts and the console.
    const RESERVED: u32 = 3;
    /// The connection a running inbox worker holds for its whole run besides its handlers'
    /// transactions: its listener's (`LISTEN`). Without it, three workers on the default
    /// pool of ten with 3-second `Tx` handlers left the door, fetches and heartbeats no
    /// connection: the door answered in 1.5 s (p50) instead of 3 ms, and 35 of 150 jobs
    /// ended dead, their workers taken for dead.
    #[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
    pub(crate) const PER_WORKER: u32 = 1;
    /// How long the door waits for its turn before it meets the database's lock instead:
    /// SQLite's busy timeout, the crate's pools' own.
    #[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
    pub(crate) const DOOR_PATIENCE: Duration = Duration::from_secs(5);

    pub(crate) fn new<DB: Database>(pool: &Pool<DB>, one_writer: bool) -> Arc<Self> {
        let turns = if one_writer {
            1
        } else {
            pool.options()
                .get_max_connections()
                .saturating_sub(Self::RESERVED)
                .max(1)
        };
        Arc::new(Self {
            turns: Arc::new(Semaphore::new(usize::try_from(turns).unwrap_or(1))),
            lane: one_writer.then(|| Arc::new(Semaphore::new(1))),
            spare: (!one_writer).then(|| AtomicU32::new(turns - 1)),
        })
    }

    /// The turns, one taken by each open transaction.
    #[cfg(feature = "sqlite")]
    pub(crate) fn turns(&self) -> &Arc<Semaphore> {
        &self.turns
    }

    /// Waits for a handler transaction's turn: with one writer, after its place in the
    /// handlers' lane, so that the door goes first.
    pub(crate) async fn handler_turn(&self) -> Result<Turn, tokio::sync::AcquireError> {
        let lane = match &self.lane {
            Some(lane) => Some(Arc::clone(lane).acquire_owned().await?),
            None => None,
        };
        let turn = Arc::clone(&self.turns).acquire_owned().await?;
        Ok(Turn {
            _turn: turn,
            _lane: lane,
        })
    }

    /// With one writer, the door's turn: ahead of every handler transaction but the one in
    /// progress. `None` with a server's many writers, or after `patience` (a handler
    /// holding the turn while it waits for the door itself): the door then meets the
    /// database's own lock and its busy timeout.
    #[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
    pub(crate) async fn door_turn(&self, patience: Duration) -> Option<OwnedSemaphorePermit> {
        self.lane.as_ref()?;
        let turn = Arc::clone(&self.turns).acquire_owned();
        tokio::time::timeout(patience, turn).await.ok()?.ok()
    }

    /// Holds back the connections a running worker needs besides its handlers'
    /// transactions, for as long as the returned guard lives: `PER_WORKER` turns, or what
    /// is left of them while one turn stays (then `short` says how many were missing). The
    /// turns are taken as transactions give them back, ahead of transactions asking later.
    #[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
    pub(crate) fn hold_back(self: &Arc<Self>) -> HeldBack {
        let (mut taken, mut short) = (0, 0);
        if let Some(spare) = &self.spare {
            let _ = spare.fetch_update(Ordering::AcqRel, Ordering::Acquire, |spare| {
                taken = spare.min(Self::PER_WORKER);
                Some(spare - taken)
            });
            short = Self::PER_WORKER - taken;
        }
        let permits = (taken > 0).then(|| {
            let acquire = Arc::clone(&self.turns).acquire_many_owned(taken);
            Box::pin(acquire) as HoldBack
        });
        HeldBack {
            writers: Arc::clone(self),
            taken,
            short,
            permits,
            held: None,
        }
    }
}

/// The wait for the turns a worker holds back.
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
type HoldBack = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>>
            + Send,
    >,
>;

/// Turns held back for a running worker: given back, and spare again, when dropped.
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
pub(crate) struct HeldBack {
    writers: Arc<Writers>,
    taken: u32,
    /// How many of `PER_WORKER` could not be held back: the pool is too small.
    pub(crate) short: u32,
    permits: Option<HoldBack>,
    held: Option<OwnedSemaphorePermit>,
}

#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
impl HeldBack {
    /// Waits until the turns are held (as transactions end), then holds them until dropped.
    /// Cancel-safe: a wait dropped keeps its place, and the next call goes on with it.
    pub(crate) async fn hold(&mut self) {
        if let Some(permits) = self.permits.as_mut() {
            self.held = permits.await.ok();
            self.permits = None;
        }
    }
}

#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
impl Drop for HeldBack {
    fn drop(&mut self) {
        if let Some(spare) = &self.writers.spare {
            spare.fetch_add(self.taken, Ordering::AcqRel);
        }
    }
}
