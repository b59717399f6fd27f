//! How stores keep what the layer gives them: a key's stored form, the bounds of a lease or
//! window, and what an inbox's mark of a key found.

use std::time::Duration;

/// The longest lease or dedup window a store is asked to keep: a year. Longer ones (up to
/// `Duration::MAX`) overflow the expiry arithmetic of Redis and PostgreSQL, and every
/// completion would fail.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The shortest lease, window or store timeout: a millisecond, the stores' resolution. Zero
/// would expire a claim as it is made.
pub(crate) const MIN_TTL: Duration = Duration::from_millis(1);

/// `ttl` within what every store keeps.
pub(crate) fn clamp_ttl(ttl: Duration) -> Duration {
    ttl.clamp(MIN_TTL, MAX_TTL)
}

/// Keys longer than this many bytes are stored as their SHA-256. The layer's own keys are
/// far shorter; this bounds what a direct caller of a store can make it keep.
pub(crate) const MAX_STORED_KEY: usize = 512;

/// What an inbox's mark of a key found: the key was free (now marked), or a live mark of a
/// delivery already done, or a claim an inline layer sharing the table holds in flight.
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(unreachable_pub)] // named by the inbox's sealed dialect trait
pub enum Marked {
    Fresh,
    Duplicate,
    InFlight,
}

#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
impl Marked {
    /// A live mark, by its `completed` column (`None`: gone since, taken as done).
    pub(crate) fn live(completed: Option<bool>) -> Self {
        if completed == Some(false) {
            Self::InFlight
        } else {
            Self::Duplicate
        }
    }
}

/// The stored form of a key: its bytes, or when longer than [`MAX_STORED_KEY`] a marked
/// SHA-256 of them. The mark (`0xFF`) never occurs in UTF-8, so no key can collide with a
/// hashed one.
pub(crate) fn stored_key(key: &str) -> std::borrow::Cow<'_, [u8]> {
    use sha2::{Digest, Sha256};
    if key.len() <= MAX_STORED_KEY {
        return std::borrow::Cow::Borrowed(key.as_bytes());
    }
    let mut stored = b"\xffsha256:".to_vec();
    stored.extend_from_slice(&Sha256::digest(key.as_bytes()));
    std::borrow::Cow::Owned(stored)
}

/// Whole milliseconds of a lease or window, within what every backend keeps (at least one,
/// at most a year): a longer one would overflow the backend's expiry arithmetic, and every
/// completion would fail.
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(clamp_ttl(ttl).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_hashed_apart() {
        let a = "k".repeat(MAX_STORED_KEY + 1);
        let b = format!("{}j", "k".repeat(MAX_STORED_KEY));
        assert_ne!(stored_key(&a), stored_key(&b));
        assert_eq!(stored_key(&a).len(), 8 + 32);
        assert_eq!(&*stored_key("msg_1"), b"msg_1");
    }

    #[test]
    fn ttls_are_clamped() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::MAX), 365 * 24 * 3600 * 1000);
        assert_eq!(ttl_millis(Duration::from_secs(60)), 60_000);
    }
}
