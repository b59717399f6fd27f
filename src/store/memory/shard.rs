//! The memory store's shards: each its entries under one lock, by key and by expiry.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hashbrown::HashTable;

use super::expiry::{ExpiryIndex, Indexed};
use crate::store::ClaimToken;

/// One shard, aligned to two cache lines (what x86's adjacent-line prefetch fetches
/// together), so that threads locking neighbouring shards do not fight over one line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct Shard(Mutex<Entries>);

/// One shard's entries, and two indexes of them in order of expiry.
#[derive(Debug, Default)]
pub(super) struct Entries {
    pub(super) by_key: HashTable<Entry>,
    /// The claims in flight by (expiry in ms, sequence number), to their key's hash and key:
    /// expired ones are found from the front without a scan, and an entry's place is its own
    /// two numbers.
    pub(super) in_flight: ExpiryIndex,
    /// The same for completed entries: the first is the one to forget to make room, without
    /// walking past the claims in flight.
    pub(super) completed: ExpiryIndex,
    pub(super) next_seq: u64,
    /// What the entries take, as [`entry_bytes`] counts it.
    pub(super) bytes: usize,
}

/// The keys of entries dropped under a shard's lock, to be freed after it: a few in place
/// (a claim usually makes room by dropping one), any more freed at once.
#[derive(Default)]
pub(super) struct Dropped([Option<Arc<[u8]>>; 4]);

impl Dropped {
    pub(super) fn push(&mut self, key: Arc<[u8]>) {
        if let Some(free) = self.0.iter_mut().find(|slot| slot.is_none()) {
            *free = Some(key);
        }
    }
}

/// Stores of up to this many entries have one shard, and so bounds that hold exactly.
pub(super) const ENTRIES_PER_SHARD: usize = 4096;
pub(super) const MAX_SHARDS: usize = 16;

/// What one entry takes: its key, and an estimate of the rest (the map slot, the expiry index
/// node, the shared key's header, a claim's token).
pub(super) fn entry_bytes(key: &[u8]) -> usize {
    key.len() + 160
}

pub(super) fn lock(shard: &Shard) -> MutexGuard<'_, Entries> {
    // Nothing panics while the lock is held, and the maps stay consistent between statements,
    // so a poisoned lock is still sound to use.
    shard.0.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub(super) struct Entry {
    /// The key's keyed hash, so that moving the entry as the table grows reads no key.
    pub(super) hash: u64,
    pub(super) key: Arc<[u8]>,
    pub(super) state: State,
    pub(super) expires_at: u64,
    pub(super) seq: u64,
}

#[derive(Debug)]
pub(super) enum State {
    InFlight(ClaimToken),
    Completed,
}

impl Entries {
    pub(super) fn find(&self, hash: u64, key: &[u8]) -> Option<&Entry> {
        self.by_key.find(hash, |entry| *entry.key == *key)
    }

    pub(super) fn insert(&mut self, hash: u64, key: Arc<[u8]>, state: State, expires_at: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += entry_bytes(&key);
        let indexed = Indexed {
            hash,
            key: Arc::clone(&key),
        };
        match state {
            State::InFlight(_) => &mut self.in_flight,
            State::Completed => &mut self.completed,
        }
        .insert((expires_at, seq), indexed);
        let entry = Entry {
            hash,
            key,
            state,
            expires_at,
            seq,
        };
        self.by_key.insert_unique(hash, entry, |entry| entry.hash);
    }

    pub(super) fn drop_expired(&mut self, now: u64, dropped: &mut Dropped) {
        for completed in [false, true] {
            loop {
                let index = if completed {
                    &mut self.completed
                } else {
                    &mut self.in_flight
                };
                if index.first().is_none_or(|(expiry, _)| expiry > now) {
                    break;
                }
                let Some(indexed) = index.pop_first() else {
                    break;
                };
                self.drop_unindexed(&indexed, dropped);
            }
        }
    }

    /// Forgets the completed entry that would expire first: the first of its index. In-flight
    /// entries are kept: one forgotten would let a second copy of a delivery run while the
    /// first still runs.
    pub(super) fn forget_one_completed(&mut self, dropped: &mut Dropped) -> bool {
        let Some(indexed) = self.completed.pop_first() else {
            return false;
        };
        self.drop_unindexed(&indexed, dropped);
        true
    }

    /// Drops the entry that `indexed` stood for, taken out of its index already. The index
    /// holds the entry's own key, so it is found by address, without reading the key.
    pub(super) fn drop_unindexed(&mut self, indexed: &Indexed, dropped: &mut Dropped) {
        let found = self
            .by_key
            .find_entry(indexed.hash, |entry| Arc::ptr_eq(&entry.key, &indexed.key));
        if let Ok(slot) = found {
            let (entry, _) = slot.remove();
            self.bytes -= entry_bytes(&entry.key);
            dropped.push(entry.key);
        }
    }
}
