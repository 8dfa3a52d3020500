//! A bounded map keyed by SHA-256 (or another small key), least recently used first out: the
//! persisted-query store and the prepared-document and prepared-operation caches. Bounded in entries and in weight (bytes of document
//! text), so no sequence of requests makes it grow past its limits.

use foldhash::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A SHA-256.
pub type Hash = [u8; 32];

struct Entry<V> {
    value: V,
    weight: usize,
    used: u64,
}

struct Inner<V, K> {
    entries: HashMap<K, Entry<V>>,
    weight: usize,
    clock: u64,
}

/// The bounded map.
pub struct Bounded<V, K = Hash> {
    inner: Mutex<Inner<V, K>>,
    max_entries: usize,
    max_weight: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<V, K> std::fmt::Debug for Bounded<V, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bounded")
            .field("max_entries", &self.max_entries)
            .field("max_weight", &self.max_weight)
            .finish()
    }
}

impl<V: Clone, K: Eq + std::hash::Hash + Copy + Ord> Bounded<V, K> {
    /// At most `max_entries` values of at most `max_weight` in all.
    pub fn new(max_entries: usize, max_weight: usize) -> Self {
        Bounded {
            inner: Mutex::new(Inner {
                entries: HashMap::default(),
                weight: 0,
                clock: 0,
            }),
            max_entries,
            max_weight,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V, K>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value under `key`, marked as used.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let found = inner.entries.get_mut(key).map(|e| {
            e.used = now;
            e.value.clone()
        });
        drop(inner);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `value` under `key`, dropping the least recently used values to make room. A
    /// value heavier than the whole cache is not kept.
    pub fn insert(&self, key: K, value: V, weight: usize) {
        if weight > self.max_weight || self.max_entries == 0 {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some(e) = inner.entries.get_mut(&key) {
            e.used = now;
            return;
        }
        if inner.entries.len() >= self.max_entries || inner.weight + weight > self.max_weight {
            self.evict(&mut inner, weight);
        }
        inner.weight += weight;
        inner.entries.insert(
            key,
            Entry {
                value,
                weight,
                used: now,
            },
        );
    }

    /// Makes room for a value of `weight`: drops the least recently used eighth of the
    /// entries (at least one) in one pass, then more if the weight still does not fit. One
    /// sort per many inserts, so a stream of values that never repeat (documents with
    /// inlined literals) costs amortised O(log n) per insert, not a scan each.
    fn evict(&self, inner: &mut Inner<V, K>, weight: usize) {
        let mut by_age: Vec<(u64, K)> = inner.entries.iter().map(|(h, e)| (e.used, *h)).collect();
        by_age.sort_unstable();
        let batch = (inner.entries.len() / 8).max(1);
        let mut dropped = 0;
        for (_, key) in by_age {
            let full =
                inner.entries.len() >= self.max_entries || inner.weight + weight > self.max_weight;
            if !full && dropped >= batch {
                break;
            }
            if let Some(e) = inner.entries.remove(&key) {
                inner.weight -= e.weight;
                dropped += 1;
            }
        }
    }

    /// Values kept.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that found their value, and lookups that did not.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> Hash {
        [i; 32]
    }

    #[test]
    fn keeps_the_recently_used_within_its_bounds() {
        let c = Bounded::new(3, 1000);
        for i in 0..3 {
            c.insert(key(i), i, 10);
        }
        assert_eq!(c.get(&key(0)), Some(0));
        c.insert(key(3), 3, 10);
        c.insert(key(4), 4, 10);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key(0)), Some(0));
        assert_eq!(c.get(&key(1)), None);
        assert_eq!(c.get(&key(2)), None);
        assert_eq!(c.hits_and_misses(), (2, 2));

        let light = Bounded::new(100, 25);
        for i in 0..5 {
            light.insert(key(i), i, 10);
        }
        assert_eq!(light.len(), 2, "bounded by weight");
        light.insert(key(9), 9, 26);
        assert_eq!(light.get(&key(9)), None, "heavier than the cache: not kept");
    }
}
