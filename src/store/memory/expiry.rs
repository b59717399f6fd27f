//! The memory store's two indexes of expiry: entries in the order they expire.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Entries in order of (expiry, sequence number). The usual entry comes after every other (a
/// layer claims with one lease and completes with one window, on a clock that does not go
/// back): it goes to the back of a queue, and the first to expire is at its front, each one
/// line of memory. Any other goes to a sorted map. A queue's end is what two threads
/// claiming in one shard both write: a queue writes one line where a B-tree's leaf shifts
/// several.
#[derive(Debug, Default)]
pub(super) struct ExpiryIndex {
    /// In order: each place greater than the one before.
    queue: VecDeque<((u64, u64), Indexed)>,
    rest: BTreeMap<(u64, u64), Indexed>,
}

impl ExpiryIndex {
    pub(super) fn insert(&mut self, place: (u64, u64), indexed: Indexed) {
        if self.queue.back().is_none_or(|(last, _)| *last < place) {
            self.queue.push_back((place, indexed));
        } else {
            self.rest.insert(place, indexed);
        }
    }

    pub(super) fn remove(&mut self, place: &(u64, u64)) -> Option<Indexed> {
        // A claim completes soon after it was made: its place is near the back.
        match self.queue.binary_search_by(|(at, _)| at.cmp(place)) {
            Ok(at) => self.queue.remove(at).map(|(_, indexed)| indexed),
            Err(_) => self.rest.remove(place),
        }
    }

    /// The place of the entry that expires first.
    pub(super) fn first(&self) -> Option<(u64, u64)> {
        match (self.queue.front(), self.rest.first_key_value()) {
            (Some((a, _)), Some((b, _))) => Some(*a.min(b)),
            (Some((a, _)), None) => Some(*a),
            (None, Some((b, _))) => Some(*b),
            (None, None) => None,
        }
    }

    pub(super) fn pop_first(&mut self) -> Option<Indexed> {
        let first = self.first()?;
        if self.queue.front().is_some_and(|(at, _)| *at == first) {
            self.queue.pop_front().map(|(_, indexed)| indexed)
        } else {
            self.rest.pop_first().map(|(_, indexed)| indexed)
        }
    }
}

/// What an expiry index holds of an entry: enough to find it.
#[derive(Debug)]
pub(super) struct Indexed {
    pub(super) hash: u64,
    pub(super) key: Arc<[u8]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexed(n: u64) -> Indexed {
        Indexed {
            hash: n,
            key: Arc::from(n.to_string().as_bytes()),
        }
    }

    /// In order or not, entries come out first to expire first, and each is found to remove.
    #[test]
    fn an_expiry_index_keeps_the_order_whatever_the_inserts() {
        let mut index = ExpiryIndex::default();
        // (expiry, seq): in order, then two earlier (another lease), then in order again.
        let places = [(10, 1), (20, 2), (30, 3), (5, 4), (25, 5), (40, 6), (40, 7)];
        for (n, place) in places.iter().enumerate() {
            index.insert(*place, indexed(n as u64));
        }
        assert_eq!(index.rest.len(), 2, "the two out of order");
        assert_eq!(index.remove(&(20, 2)).map(|i| i.hash), Some(1));
        assert_eq!(index.remove(&(25, 5)).map(|i| i.hash), Some(4));
        assert!(index.remove(&(20, 2)).is_none());
        let mut order = Vec::new();
        while let Some(first) = index.first() {
            order.push(first);
            index.pop_first().unwrap();
        }
        assert_eq!(order, [(5, 4), (10, 1), (30, 3), (40, 6), (40, 7)]);
        assert!(index.pop_first().is_none());
    }
}
