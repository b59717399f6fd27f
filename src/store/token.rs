//! The proof of one claim, made without a system call or an allocation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Proof of one claim: completing or releasing a key takes the token of the claim that holds
/// it, so a claim whose lease ran out cannot undo the claim that followed it.
///
/// ```
/// use tower_webhook::store::ClaimToken;
///
/// let token = ClaimToken::random();
/// assert_eq!(token.as_str().len(), 32);
/// assert_ne!(token, ClaimToken::random());
/// assert_eq!(format!("{token:?}"), "ClaimToken(..)"); // never shown
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClaimToken([u8; 32]);

impl ClaimToken {
    /// A new token: 128 bits as 32 hex digits, never the same twice in a process, and apart
    /// from every other process's (each draws a random seed once).
    ///
    /// Tokens must be unique, not secret: no one but the layer holds one. So a claim costs no
    /// system call and no allocation: the seed comes from the operating system once, and each
    /// token mixes it with a counter through a bijection.
    pub fn random() -> Self {
        static SEED: OnceLock<[u64; 2]> = OnceLock::new();
        let [high, low] = *SEED.get_or_init(seed);
        let n = next_token_number();
        let mut bits = [0u8; 16];
        bits[..8].copy_from_slice(&high.to_be_bytes());
        // splitmix64 is a bijection: distinct counters give distinct tokens.
        bits[8..].copy_from_slice(&splitmix64(low ^ n).to_be_bytes());
        let mut text = [0u8; 32];
        // 16 bytes always fit 32 hex digits.
        let _ = hex::encode_to_slice(bits, &mut text);
        Self(text)
    }

    /// The token as text, for stores that persist it.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A number no other call in this process gets. Each thread counts within a block of 2^32
/// numbers of its own, taken from one shared counter when it starts and when it has used the
/// block up: threads making tokens at once do not fight over one counter's cache line.
fn next_token_number() -> u64 {
    const BLOCK: u64 = 1 << 32;
    static BLOCKS: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    NEXT.with(|next| {
        let mut n = next.get();
        if n % BLOCK == 0 {
            n = BLOCKS.fetch_add(1, Ordering::Relaxed).wrapping_mul(BLOCK);
        }
        next.set(n.wrapping_add(1));
        n
    })
}

/// The process's seed: from the operating system, or, where it has no generator, from the
/// time and the process id, which still tell processes apart.
fn seed() -> [u64; 2] {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
    }
    let (high, low) = bytes.split_at(8);
    [
        u64::from_be_bytes(high.try_into().unwrap_or_default()),
        u64::from_be_bytes(low.try_into().unwrap_or_default()),
    ]
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl fmt::Debug for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClaimToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_hex() {
        let a = ClaimToken::random();
        let b = ClaimToken::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(format!("{a:?}"), "ClaimToken(..)");
    }
}
