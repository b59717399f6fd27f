//! What the layer takes from the async runtime: a timer that bounds store calls, and a place
//! to finish store calls that no response waits for any more. Both are Tokio's, where the
//! layer runs on a Tokio runtime (axum's `serve`, `#[tokio::main]`); elsewhere store calls are
//! not bounded and abandoned ones are not finished, and claims then end with their lease.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::runtime::Handle;
use tokio::time::Sleep;

use crate::metrics::{Meter, Timer};
use crate::store::{BoxFuture, StoreError};

/// A Tokio sleep of `duration`, where the current runtime has a timer.
fn sleep(duration: Duration) -> Option<Sleep> {
    Handle::try_current().ok()?;
    // Tokio panics when the runtime was built without `enable_time`, and offers no way to ask
    // first. The layer then still works, unbounded, and says so each time: a runtime that
    // serves HTTP without a timer is a mistake worth hearing about.
    catch_unwind(AssertUnwindSafe(|| tokio::time::sleep(duration)))
        .map_err(|_| {
            tracing::warn!(
                "the Tokio runtime has no timer (enable_time): webhook store calls are not bounded"
            );
        })
        .ok()
}

pin_project! {
    /// A deadline armed on first use, so a store call that answers at once (the in-memory
    /// store) never creates a timer.
    pub(crate) struct Deadline {
        #[pin]
        sleep: Option<Sleep>,
        armed: bool,
    }
}

impl Deadline {
    pub(crate) fn new() -> Self {
        Self {
            sleep: None,
            armed: false,
        }
    }

    /// Polls `call` under this deadline: its answer, `None` once `after` has passed since the
    /// first poll without one, or pending.
    pub(crate) fn poll_call<F: Future + Unpin>(
        self: Pin<&mut Self>,
        call: &mut F,
        after: Duration,
        cx: &mut Context<'_>,
    ) -> Poll<Option<F::Output>> {
        if let Poll::Ready(answer) = Pin::new(call).poll(cx) {
            return Poll::Ready(Some(answer));
        }
        if self.poll_expired(after, cx) {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }

    /// Whether `after` has passed since the first call; registers the waker to be told.
    fn poll_expired(self: Pin<&mut Self>, after: Duration, cx: &mut Context<'_>) -> bool {
        let mut this = self.project();
        if !*this.armed {
            *this.armed = true;
            this.sleep.set(sleep(after));
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx).is_ready(),
            None => false,
        }
    }
}

pin_project! {
    /// A store call (a claim, a completion or release, a write to the inbox) under the store
    /// timeout, counted in the layer's metrics as `name` when it answers or times out.
    pub(crate) struct Timed<T, E = StoreError> {
        call: Option<BoxFuture<Result<T, E>>>,
        name: &'static str,
        timer: Timer,
        #[pin]
        deadline: Deadline,
    }
}

impl<T, E> Timed<T, E> {
    /// `call`, made at `timer`, counted as `name`.
    pub(crate) fn new(name: &'static str, call: BoxFuture<Result<T, E>>, timer: Timer) -> Self {
        Self {
            call: Some(call),
            name,
            timer,
            deadline: Deadline::new(),
        }
    }

    /// The call's answer, or `None` once `after` has passed since the first poll without
    /// one: the call is then kept, for [`take`](Self::take). Either is counted in `meter`.
    pub(crate) fn poll(
        self: Pin<&mut Self>,
        meter: &Meter,
        after: Duration,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<T, E>>> {
        let this = self.project();
        let Some(call) = this.call.as_mut() else {
            return Poll::Ready(None);
        };
        let answer = ready!(this.deadline.poll_call(call, after, cx));
        meter.store_call(this.name, *this.timer, !matches!(answer, Some(Ok(_))));
        if answer.is_some() {
            *this.call = None;
        }
        Poll::Ready(answer)
    }

    /// The call, unanswered: to finish in the background once nobody waits for it.
    pub(crate) fn take(self: Pin<&mut Self>) -> Option<BoxFuture<Result<T, E>>> {
        self.project().call.take()
    }
}

/// Runs `future` to its end on the current Tokio runtime, for at most `limit`; `false` where
/// there is no runtime to run it on.
pub(crate) fn finish_in_background<F>(future: F, limit: Duration) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    let Ok(handle) = Handle::try_current() else {
        return false;
    };
    handle.spawn(async move {
        let mut future = std::pin::pin!(future);
        let mut deadline = std::pin::pin!(Deadline::new());
        let finished =
            std::future::poll_fn(|cx| deadline.as_mut().poll_call(&mut future, limit, cx)).await;
        if finished.is_none() {
            tracing::warn!("an abandoned webhook store call did not finish within its lease");
        }
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_runtime_nothing_is_bounded_or_spawned() {
        assert!(sleep(Duration::from_secs(1)).is_none());
        assert!(!finish_in_background(async {}, Duration::from_secs(1)));
    }

    #[test]
    fn a_runtime_without_a_timer_is_survived() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert!(sleep(Duration::from_secs(1)).is_none());
        });
    }
}
