//! Replay protection: a request event is processed at most once.
//!
//! Events outside a time window are refused as stale, and ids inside the
//! window are remembered. Memory is bounded: when the set is full the oldest
//! ids are forgotten and the window's floor rises past them, so an event that
//! could have been forgotten is refused as stale instead of processed twice.

use std::collections::{HashSet, VecDeque};

use nip46::nostr::prelude::{EventId, Timestamp};

/// Why an event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// New and on time.
    Fresh,
    /// Seen before.
    Replayed,
    /// Too old (or older than something already forgotten).
    Stale,
    /// Too far in the future.
    Future,
}

/// The window and the remembered ids.
#[derive(Debug)]
pub struct ReplayGuard {
    past_secs: u64,
    future_secs: u64,
    capacity: usize,
    /// Truncated ids: 128 bits is plenty to tell events apart and halves memory.
    seen: HashSet<u128>,
    order: VecDeque<(u64, u128)>,
    /// Events created at or before this are refused (raised on eviction).
    floor: u64,
}

fn short(id: &EventId) -> u128 {
    let b = id.as_bytes();
    let mut x = [0u8; 16];
    x.copy_from_slice(&b[..16]);
    u128::from_le_bytes(x)
}

impl ReplayGuard {
    /// A guard accepting events from `past_secs` ago to `future_secs` ahead,
    /// remembering at most `capacity` ids.
    pub fn new(past_secs: u64, future_secs: u64, capacity: usize) -> Self {
        ReplayGuard {
            past_secs,
            future_secs,
            capacity: capacity.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
            floor: 0,
        }
    }

    /// Check time and id without remembering (before the signature is verified,
    /// so a forged event cannot burn a real event's id).
    pub fn check(&self, now: Timestamp, created_at: Timestamp, id: &EventId) -> ReplayVerdict {
        let (now, at) = (now.as_secs(), created_at.as_secs());
        if at > now.saturating_add(self.future_secs) {
            return ReplayVerdict::Future;
        }
        if at < now.saturating_sub(self.past_secs) || at <= self.floor {
            return ReplayVerdict::Stale;
        }
        if self.seen.contains(&short(id)) {
            return ReplayVerdict::Replayed;
        }
        ReplayVerdict::Fresh
    }

    /// Remember a verified event; returns false if it was already known.
    pub fn remember(&mut self, now: Timestamp, created_at: Timestamp, id: &EventId) -> bool {
        self.expire(now);
        if !self.seen.insert(short(id)) {
            return false;
        }
        self.order.push_back((created_at.as_secs(), short(id)));
        while self.seen.len() > self.capacity {
            let Some((at, old)) = self.order.pop_front() else {
                break;
            };
            self.seen.remove(&old);
            self.floor = self.floor.max(at);
        }
        true
    }

    /// Forget ids that are out of the window anyway.
    ///
    /// The deque is in arrival order, not creation order, so this is a cheap
    /// approximation: it stops at the first id still in the window.
    fn expire(&mut self, now: Timestamp) {
        let cutoff = now.as_secs().saturating_sub(self.past_secs);
        while let Some(&(at, id)) = self.order.front() {
            if at >= cutoff {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&id);
        }
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> EventId {
        EventId::from_byte_array([n; 32])
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    #[test]
    fn window_and_replay() {
        let mut g = ReplayGuard::new(600, 300, 100);
        let now = t(10_000);
        assert_eq!(g.check(now, t(10_000), &id(1)), ReplayVerdict::Fresh);
        assert!(g.remember(now, t(10_000), &id(1)));
        assert_eq!(g.check(now, t(10_000), &id(1)), ReplayVerdict::Replayed);
        assert!(!g.remember(now, t(10_000), &id(1)));
        assert_eq!(g.check(now, t(9_000), &id(2)), ReplayVerdict::Stale);
        assert_eq!(g.check(now, t(10_400), &id(2)), ReplayVerdict::Future);
        assert_eq!(g.check(now, t(10_300), &id(2)), ReplayVerdict::Fresh);
    }

    #[test]
    fn eviction_raises_the_floor() {
        let mut g = ReplayGuard::new(600, 300, 2);
        let now = t(10_000);
        g.remember(now, t(9_990), &id(1));
        g.remember(now, t(9_995), &id(2));
        g.remember(now, t(9_999), &id(3));
        assert_eq!(g.len(), 2);
        // id 1 was forgotten, but it can't come back: it is now stale.
        assert_eq!(g.check(now, t(9_990), &id(1)), ReplayVerdict::Stale);
        assert_eq!(g.check(now, t(9_999), &id(3)), ReplayVerdict::Replayed);
    }

    #[test]
    fn old_ids_expire() {
        let mut g = ReplayGuard::new(10, 10, 100);
        g.remember(t(100), t(100), &id(1));
        g.remember(t(200), t(200), &id(2));
        assert_eq!(g.len(), 1);
    }
}
