//! Group commit for a backend that pays per statement or per commit: calls that arrive while the
//! backend is busy wait together and go out as one statement.
//!
//! A call joins the queue of its kind. While fewer than `concurrency` statements of that kind
//! run, it starts a task that sends the queue as one statement; otherwise it waits, and the
//! next statement to finish takes everything queued meanwhile (up to `max_rows`). An idle
//! store so sends each call at once, alone; a busy one sends fewer, larger statements, and a
//! backend's cost per statement (parse, plan, transaction, commit, the round trip) is shared.
//!
//! A statement takes its batch once it has its turn ([`Execute::turn`]): a backend that
//! builds one transaction at a time while another commits has the second wait for the
//! first to be built, and then take everything queued meanwhile, not the one call that
//! was queued when it started.
//!
//! Statements run on tasks of their own, never on a caller's future: a caller that stops
//! waiting (the sender hung up) does not take the other calls of its statement with it.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

/// What sends one statement for a batch of calls of one kind.
pub(crate) trait Execute: Send + Sync + 'static {
    type Request: Send + 'static;
    type Answer: Send + 'static;
    /// What a statement holds from before it takes its batch until it lets the next one
    /// take theirs (`()`: nothing, and each takes what is queued as soon as it runs).
    type Turn: Send;

    /// Waits until a statement may take its batch. A statement that waits here takes what
    /// was queued meanwhile, so that batches stay as large as the wait allows.
    fn turn(&self) -> impl Future<Output = Self::Turn> + Send;

    /// Sends `batch` (at least one call) and answers each of its calls; `turn` is held
    /// until the next statement may take its batch.
    fn execute(
        &self,
        batch: Vec<Pending<Self::Request, Self::Answer>>,
        turn: Self::Turn,
    ) -> impl Future<Output = ()> + Send;
}

/// One call waiting in a batch: what it asks, when it was made, and where its answer goes.
pub(crate) struct Pending<R, A> {
    pub(crate) request: R,
    /// Read by the PostgreSQL store, whose statements give each call its own budget.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) queued_at: Instant,
    reply: oneshot::Sender<A>,
}

impl<R, A> Pending<R, A> {
    /// Answers the call. A caller that stopped waiting is not told.
    pub(crate) fn answer(self, answer: A) {
        let _ = self.reply.send(answer);
    }

    /// A call made now, and where its answer arrives.
    pub(crate) fn new(request: R) -> (Self, oneshot::Receiver<A>) {
        let (reply, answer) = oneshot::channel();
        let pending = Self {
            request,
            queued_at: Instant::now(),
            reply,
        };
        (pending, answer)
    }
}

/// The queue of one kind of call, and the statements of that kind under way.
pub(crate) struct Batcher<E: Execute> {
    executor: E,
    queue: Mutex<Queue<E::Request, E::Answer>>,
    max_rows: usize,
    concurrency: usize,
}

struct Queue<R, A> {
    waiting: Vec<Pending<R, A>>,
    running: usize,
}

/// The call was dropped unanswered: the task that held it ended without an answer (it
/// panicked, or its runtime shut down).
#[derive(Debug)]
pub(crate) struct Unanswered;

impl<E: Execute> Batcher<E> {
    /// A batcher that sends at most `max_rows` calls per statement and runs at most
    /// `concurrency` statements at once (each at least one).
    pub(crate) fn new(executor: E, max_rows: usize, concurrency: usize) -> Self {
        Self {
            executor,
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                running: 0,
            }),
            max_rows: max_rows.max(1),
            concurrency: concurrency.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<E::Request, E::Answer>> {
        // The queue is consistent between statements: a panic elsewhere leaves it usable.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `request` and waits for its answer.
    pub(crate) async fn call(
        self: &Arc<Self>,
        request: E::Request,
    ) -> Result<E::Answer, Unanswered> {
        let (pending, answer) = Pending::new(request);
        let start = {
            let mut queue = self.lock();
            queue.waiting.push(pending);
            let start = queue.running < self.concurrency;
            if start {
                queue.running += 1;
            }
            start
        };
        if start {
            // Counted off by the guard however the task ends: it may be dropped unpolled
            // (its runtime shut down before it ran), and then no statement is left running.
            let drain = Running::new(Arc::clone(self)).drain();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(drain)),
                // No runtime to run it on: this caller sends its own statement.
                Err(_) => drain.await,
            }
        }
        answer.await.map_err(|_| Unanswered)
    }
}

/// A statement task under way, counted in `running` from before it is spawned. Dropped,
/// however the task ends (it finished, unwound, or was dropped before it ever ran), it
/// counts itself off; if no other task is left to answer them, the queued calls are dropped
/// too, so that their callers get [`Unanswered`] rather than wait forever.
struct Running<E: Execute> {
    batcher: Arc<Batcher<E>>,
    /// Counted off already, by the drain that found the queue empty.
    finished: bool,
}

impl<E: Execute> Running<E> {
    fn new(batcher: Arc<Batcher<E>>) -> Self {
        Self {
            batcher,
            finished: false,
        }
    }

    /// Sends what is queued, statement after statement, until the queue is empty.
    async fn drain(mut self) {
        let batcher = Arc::clone(&self.batcher);
        loop {
            let turn = batcher.executor.turn().await;
            let batch = {
                let mut queue = batcher.lock();
                if queue.waiting.is_empty() {
                    // Under the lock, so that a call queued from now on starts a statement.
                    queue.running -= 1;
                    self.finished = true;
                    return;
                }
                let rest = queue.waiting.len().saturating_sub(batcher.max_rows);
                let mut batch = std::mem::take(&mut queue.waiting);
                queue.waiting = batch.split_off(batch.len() - rest);
                batch
            };
            batcher.executor.execute(batch, turn).await;
        }
    }
}

impl<E: Execute> Drop for Running<E> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut queue = self.batcher.lock();
        queue.running -= 1;
        if queue.running == 0 {
            queue.waiting.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Poll;
    use std::time::Duration;

    /// Answers each call with its request doubled, and records each statement's size.
    #[derive(Default)]
    struct Doubler {
        sizes: Mutex<Vec<usize>>,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl Execute for Arc<Doubler> {
        type Request = u32;
        type Answer = u32;
        type Turn = ();

        async fn turn(&self) {}

        async fn execute(&self, batch: Vec<Pending<u32, u32>>, (): ()) {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            self.sizes.lock().unwrap().push(batch.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            for pending in batch {
                let answer = pending.request * 2;
                pending.answer(answer);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_while_busy_share_statements_and_every_call_is_answered() {
        let doubler = Arc::new(Doubler::default());
        let batcher = Arc::new(Batcher::new(Arc::clone(&doubler), 8, 2));
        let calls: Vec<_> = (0..40u32)
            .map(|n| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move { (n, batcher.call(n).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (n, answer) = call.await.unwrap();
            assert_eq!(answer, n * 2);
        }
        let sizes = doubler.sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        assert!(sizes.iter().all(|&size| size <= 8), "{sizes:?}");
        assert!(sizes.len() < 40, "no call shared a statement: {sizes:?}");
        assert!(doubler.most_in_flight.load(Ordering::SeqCst) <= 2);
        assert_eq!(batcher.lock().running, 0);
    }

    /// Records each statement's size; a statement takes its batch only with the gate.
    struct Gated {
        gate: Arc<tokio::sync::Mutex<()>>,
        /// Statements that asked for their turn.
        asked: AtomicUsize,
        sizes: Mutex<Vec<usize>>,
    }

    impl Execute for Arc<Gated> {
        type Request = u32;
        type Answer = u32;
        type Turn = tokio::sync::OwnedMutexGuard<()>;

        async fn turn(&self) -> Self::Turn {
            self.asked.fetch_add(1, Ordering::SeqCst);
            Arc::clone(&self.gate).lock_owned().await
        }

        async fn execute(&self, batch: Vec<Pending<u32, u32>>, _turn: Self::Turn) {
            self.sizes.lock().unwrap().push(batch.len());
            for pending in batch {
                let answer = pending.request;
                pending.answer(answer);
            }
        }
    }

    #[tokio::test]
    async fn a_statement_waiting_its_turn_takes_what_was_queued_meanwhile() {
        let gated = Arc::new(Gated {
            gate: Arc::default(),
            asked: AtomicUsize::new(0),
            sizes: Mutex::default(),
        });
        let batcher = Arc::new(Batcher::new(Arc::clone(&gated), 8, 2));
        let sent = Arc::new(AtomicUsize::new(0));
        let call = |n: u32| {
            let (batcher, sent) = (Arc::clone(&batcher), Arc::clone(&sent));
            tokio::spawn(async move {
                let mut answer = std::pin::pin!(batcher.call(n));
                // Queued by the call's first poll.
                std::future::poll_fn(|cx| {
                    let _ = answer.as_mut().poll(cx);
                    Poll::Ready(())
                })
                .await;
                sent.fetch_add(1, Ordering::SeqCst);
                answer.await.unwrap()
            })
        };
        // Another statement is being built: this batcher's wait for their turn.
        let building = Arc::clone(&gated.gate).lock_owned().await;
        let mut calls = vec![call(0)];
        // The first call's statement is waiting for its turn...
        while gated.asked.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // ... when four more calls are queued.
        calls.extend((1..5).map(call));
        while sent.load(Ordering::SeqCst) < 5 {
            tokio::task::yield_now().await;
        }
        drop(building);
        for (n, call) in (0..5u32).zip(calls) {
            assert_eq!(call.await.unwrap(), n);
        }
        // The first statement to get its turn took all five, not the one queued when it
        // started.
        assert_eq!(*gated.sizes.lock().unwrap(), [5]);
        assert_eq!(batcher.lock().running, 0);
    }

    #[tokio::test]
    async fn an_idle_batcher_sends_a_call_alone_at_once() {
        let doubler = Arc::new(Doubler::default());
        let batcher = Arc::new(Batcher::new(Arc::clone(&doubler), 8, 2));
        assert_eq!(batcher.call(21).await.unwrap(), 42);
        assert_eq!(batcher.call(1).await.unwrap(), 2);
        assert_eq!(*doubler.sizes.lock().unwrap(), [1, 1]);
    }

    struct Panics;

    impl Execute for Panics {
        type Request = ();
        type Answer = ();
        type Turn = ();

        async fn turn(&self) {}

        async fn execute(&self, _batch: Vec<Pending<(), ()>>, (): ()) {
            panic!("a statement task that fails");
        }
    }

    #[tokio::test]
    async fn a_task_that_panics_leaves_no_caller_waiting() {
        let batcher = Arc::new(Batcher::new(Panics, 8, 1));
        assert!(batcher.call(()).await.is_err());
        assert!(batcher.call(()).await.is_err(), "a later call starts anew");
        assert_eq!(batcher.lock().running, 0);
    }

    #[test]
    fn a_task_dropped_before_it_ran_does_not_wedge_the_batcher() {
        let doubler = Arc::new(Doubler::default());
        let batcher = Arc::new(Batcher::new(Arc::clone(&doubler), 8, 1));
        // A runtime that spawns the statement's task, then shuts down before it is polled.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let first = runtime.block_on(async {
            let call = Box::pin(batcher.call(1));
            let mut call = call;
            std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await
        });
        assert!(first.is_pending(), "the call waits for its task");
        drop(runtime);
        assert_eq!(
            batcher.lock().running,
            0,
            "the unpolled task counted itself off"
        );
        let later = tokio::runtime::Runtime::new().unwrap();
        let answer = later.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), batcher.call(21)).await
        });
        assert_eq!(answer.expect("a later call is answered").unwrap(), 42);
    }

    #[test]
    fn without_a_runtime_the_caller_sends_its_own_statement() {
        struct Echo;
        impl Execute for Echo {
            type Request = u8;
            type Answer = u8;
            type Turn = ();
            async fn turn(&self) {}
            async fn execute(&self, batch: Vec<Pending<u8, u8>>, (): ()) {
                for pending in batch {
                    let answer = pending.request;
                    pending.answer(answer);
                }
            }
        }
        let batcher = Arc::new(Batcher::new(Echo, 8, 1));
        let answer = poll_to_end(batcher.call(7));
        assert_eq!(answer.unwrap(), 7);
    }

    /// Polls a future that never waits to its end, with no runtime around it.
    fn poll_to_end<F: Future>(future: F) -> F::Output {
        use std::task::{Context, Poll, Wake, Waker};
        struct Nobody;
        impl Wake for Nobody {
            fn wake(self: Arc<Self>) {}
        }
        let waker = Waker::from(Arc::new(Nobody));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        for _ in 0..1000 {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
        panic!("the future waited");
    }
}
