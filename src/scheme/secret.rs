//! The comparisons the schemes outside the engine share: secrets a sender sends as they are
//! (a token, a client state, a verify token), and MACs made with any of several keys.

use hmac::digest::KeyInit;
use hmac::Mac;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Secrets sent as they are: each kept as its SHA-256, a value sent hashed and compared with
/// every one in constant time, so neither its bytes, its length nor which secret matched
/// shows in the time taken.
#[derive(Clone, Default)]
pub(crate) struct Digests(Vec<[u8; 32]>);

impl Digests {
    pub(crate) fn add(&mut self, secret: &[u8]) {
        self.0.push(Sha256::digest(secret).into());
    }

    /// How many secrets there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn matches(&self, sent: &[u8]) -> bool {
        let sent: [u8; 32] = Sha256::digest(sent).into();
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |any, known| {
                any | known.ct_eq(&sent)
            })
            .into()
    }
}

/// An HMAC keyed with `secret` as shown, without surrounding whitespace (a newline from a
/// secrets file); `None` for a blank one, which proves nothing.
pub(crate) fn hmac_key<M: Mac + KeyInit>(secret: &str) -> Option<M> {
    let secret = secret.trim();
    if secret.is_empty() {
        return None;
    }
    <M as KeyInit>::new_from_slice(secret.as_bytes()).ok()
}

/// Whether any key's MAC of the content that `feed` writes is `expected`, in constant time;
/// every key is tried.
pub(crate) fn any_mac<M: Mac + Clone, const N: usize>(
    keys: &[M],
    expected: &[u8; N],
    feed: impl Fn(&mut M),
) -> bool {
    keys.iter().fold(false, |found, key| {
        let mut mac = key.clone();
        feed(&mut mac);
        found | bool::from(mac.finalize().into_bytes().as_slice().ct_eq(expected))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_only_what_was_added() {
        let mut digests = Digests::default();
        assert!(!digests.matches(b"a"));
        digests.add(b"old");
        digests.add(b"new");
        assert!(digests.matches(b"old") && digests.matches(b"new"));
        assert!(!digests.matches(b"ne") && !digests.matches(b"new "));
        assert_eq!(digests.len(), 2);
    }
}
