//! Where the crate reads the time, so that tests can set it.
//!
//! Timestamp tolerance, leases and the dedup window all depend on "now". Injecting the clock
//! (as `governor` does) lets tests move time forward by hand instead of sleeping.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current wall-clock time.
///
/// ```
/// use std::time::SystemTime;
/// use tower_webhook::clock::Clock;
///
/// /// A clock that reads the time from somewhere else: a time service, a simulation.
/// #[derive(Debug)]
/// struct Simulated(SystemTime);
///
/// impl Clock for Simulated {
///     fn now(&self) -> SystemTime {
///         self.0
///     }
/// }
/// ```
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock: what every service uses outside tests.
///
/// ```
/// use tower_webhook::clock::{Clock, SystemClock};
///
/// let now = SystemClock.now();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to, for tests.
///
/// Clones share the same time, so a test can keep one handle and give another to the layer or
/// store.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use tower_webhook::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::at_unix(1_700_000_000);
/// clock.advance(Duration::from_secs(301));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_700_000_301));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    millis: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `secs` seconds after the Unix epoch.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use tower_webhook::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    /// ```
    pub fn at_unix(secs: i64) -> Self {
        Self {
            millis: Arc::new(AtomicI64::new(secs.saturating_mul(1000))),
        }
    }

    /// A clock standing at the system's current time.
    ///
    /// ```
    /// use tower_webhook::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::starting_now();
    /// assert!(clock.now() <= std::time::SystemTime::now());
    /// ```
    pub fn starting_now() -> Self {
        let clock = Self::default();
        clock.set(SystemTime::now());
        clock
    }

    /// Moves the clock forward by `by`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::at_unix(0);
    /// let shared = clock.clone(); // clones share the time
    /// clock.advance(Duration::from_secs(60));
    /// assert_eq!(shared.now(), std::time::UNIX_EPOCH + Duration::from_secs(60));
    /// ```
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `to`.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use tower_webhook::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::at_unix(0);
    /// clock.set(UNIX_EPOCH + Duration::from_secs(42));
    /// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(42));
    /// ```
    pub fn set(&self, to: SystemTime) {
        let ms = match to.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        };
        self.millis.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        let ms = self.millis.load(Ordering::SeqCst);
        let magnitude = Duration::from_millis(ms.unsigned_abs());
        if ms >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

/// Whole seconds since the Unix epoch, negative before it.
pub(crate) fn unix_seconds(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Milliseconds since the Unix epoch, saturating; times before the epoch count as zero.
pub(crate) fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// [`unix_millis`] as a signed integer, the way SQLite and PostgreSQL store it.
#[cfg(any(feature = "sqlite", feature = "inbox-postgres"))]
pub(crate) fn unix_millis_i64(at: SystemTime) -> i64 {
    i64::try_from(unix_millis(at)).unwrap_or(i64::MAX)
}
