//! A bounded set of recently seen keys.
//!
//! Both ends of the wire must recognise a message they have already handled
//! (the same event arriving from two relays, a client re-sending after a
//! reconnect) without remembering every id forever. This keeps the last
//! `capacity` keys and forgets the oldest first.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// The last `capacity` keys inserted, oldest evicted first.
#[derive(Debug)]
pub(crate) struct SeenSet<K> {
    set: HashSet<K>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Hash + Eq + Copy> SeenSet<K> {
    /// An empty set that remembers at most `capacity` keys (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            set: HashSet::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Whether `key` is among the remembered keys.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.set.contains(key)
    }

    /// Remembers `key`; returns `false` when it was already there.
    pub(crate) fn insert(&mut self, key: K) -> bool {
        if !self.set.insert(key) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.order.push_back(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::SeenSet;

    #[test]
    fn forgets_the_oldest_key_first() {
        let mut seen = SeenSet::new(2);
        assert!(seen.insert(1));
        assert!(!seen.insert(1));
        assert!(seen.insert(2));
        assert!(seen.insert(3));
        assert!(!seen.contains(&1));
        assert!(seen.contains(&2));
        assert!(seen.contains(&3));
    }
}
