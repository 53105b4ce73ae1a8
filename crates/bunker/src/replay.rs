//! Replay protection: a request event is processed at most once.
//!
//! Events outside a time window are refused as stale, and the ids of events
//! inside the window are remembered with their sender and their real
//! `created_at`. Memory is bounded: when the set is full the oldest id is
//! forgotten, and *its sender's* floor rises to its `created_at`, so that an
//! event of that sender which could have been forgotten is refused as stale
//! instead of processed twice. Floors are per sender: a key flooding junk
//! dated far ahead raises only its own floor, never another client's.
//!
//! The floors themselves are bounded too: should more senders have been
//! evicted within one window than the set holds ids (a flood from that many
//! fresh keys), the guard falls back to one floor for everyone — refusing
//! too much rather than processing anything twice — and says so in its log.

use std::collections::{HashMap, HashSet, VecDeque};

use nip46::nostr::prelude::{EventId, PublicKey, Timestamp};

/// Why an event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// New and on time.
    Fresh,
    /// Seen before.
    Replayed,
    /// Too old (or older than something already forgotten of its sender).
    Stale,
    /// Too far in the future.
    Future,
}

/// One remembered id, in arrival order.
#[derive(Debug, Clone, Copy)]
struct Remembered {
    created_at: u64,
    id: u128,
    sender: PublicKey,
}

/// The window and the remembered ids.
#[derive(Debug)]
pub struct ReplayGuard {
    past_secs: u64,
    future_secs: u64,
    capacity: usize,
    /// Truncated ids: 128 bits is plenty to tell events apart and halves memory.
    seen: HashSet<u128>,
    order: VecDeque<Remembered>,
    /// Per sender: its events created at or before this are refused (raised
    /// when one of its ids is forgotten to make room).
    floors: HashMap<PublicKey, u64>,
    /// Everyone's events created at or before this are refused: raised only
    /// when `floors` is full (see the module docs).
    global_floor: u64,
    /// `floors.len()` after the last sweep of expired floors.
    swept_at_len: usize,
}

fn short(id: &EventId) -> u128 {
    let b = id.as_bytes();
    let mut x = [0u8; 16];
    x.copy_from_slice(&b[..16]);
    u128::from_le_bytes(x)
}

impl ReplayGuard {
    /// A guard accepting events from `past_secs` ago to `future_secs` ahead,
    /// remembering at most `capacity` ids (and as many per-sender floors).
    pub fn new(past_secs: u64, future_secs: u64, capacity: usize) -> Self {
        ReplayGuard {
            past_secs,
            future_secs,
            capacity: capacity.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
            floors: HashMap::new(),
            global_floor: 0,
            swept_at_len: 0,
        }
    }

    /// Check time and id without remembering (before the signature is verified,
    /// so a forged event cannot burn a real event's id).
    pub fn check(
        &self,
        now: Timestamp,
        sender: &PublicKey,
        created_at: Timestamp,
        id: &EventId,
    ) -> ReplayVerdict {
        let (now, at) = (now.as_secs(), created_at.as_secs());
        if at > now.saturating_add(self.future_secs) {
            return ReplayVerdict::Future;
        }
        let floor = self.floors.get(sender).copied().unwrap_or(0);
        if at < now.saturating_sub(self.past_secs) || at <= floor || at <= self.global_floor {
            return ReplayVerdict::Stale;
        }
        if self.seen.contains(&short(id)) {
            return ReplayVerdict::Replayed;
        }
        ReplayVerdict::Fresh
    }

    /// Remember a verified event; returns false if it was already known.
    pub fn remember(
        &mut self,
        now: Timestamp,
        sender: &PublicKey,
        created_at: Timestamp,
        id: &EventId,
    ) -> bool {
        self.expire(now);
        let id = short(id);
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(Remembered {
            created_at: created_at.as_secs(),
            id,
            sender: *sender,
        });
        while self.seen.len() > self.capacity {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.seen.remove(&old.id);
            self.raise_floor(now, old.sender, old.created_at);
        }
        true
    }

    /// Forget an id remembered by mistake (its answer could not be
    /// recorded), so the event can be handled again.
    pub fn forget(&mut self, id: &EventId) {
        self.seen.remove(&short(id));
    }

    /// Forgetting `sender`'s id created at `at`: its floor rises to `at`.
    fn raise_floor(&mut self, now: Timestamp, sender: PublicKey, at: u64) {
        if let Some(floor) = self.floors.get_mut(&sender) {
            *floor = (*floor).max(at);
            return;
        }
        if self.floors.len() >= self.capacity {
            self.sweep_floors(now);
        }
        if self.floors.len() >= self.capacity {
            if at > self.global_floor {
                tracing::warn!(
                    senders = self.floors.len(),
                    "replay guard: too many senders forgotten in one window; refusing \
                     everyone's events created before the newest forgotten one"
                );
            }
            self.global_floor = self.global_floor.max(at);
            return;
        }
        self.floors.insert(sender, at);
    }

    /// Forget ids that are out of the window anyway.
    ///
    /// The deque is in arrival order, not creation order, so this is a cheap
    /// approximation: it stops at the first id still in the window.
    fn expire(&mut self, now: Timestamp) {
        let cutoff = now.as_secs().saturating_sub(self.past_secs);
        while let Some(front) = self.order.front() {
            if front.created_at >= cutoff {
                break;
            }
            let id = front.id;
            self.order.pop_front();
            self.seen.remove(&id);
        }
        // Sweeping floors is a pass over all of them: done when they have
        // doubled since the last sweep, so it costs O(1) per floor added.
        if self.floors.len() > self.swept_at_len.saturating_mul(2).max(1024) {
            self.sweep_floors(now);
        }
    }

    /// Drop floors the window has passed (the window refuses those events).
    fn sweep_floors(&mut self, now: Timestamp) {
        let cutoff = now.as_secs().saturating_sub(self.past_secs);
        self.floors.retain(|_, floor| *floor >= cutoff);
        self.swept_at_len = self.floors.len();
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Number of per-sender floors kept.
    pub fn floors(&self) -> usize {
        self.floors.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> EventId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_le_bytes());
        EventId::from_byte_array(b)
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    fn sender(n: u8) -> PublicKey {
        PublicKey::from_byte_array([n; 32])
    }

    #[test]
    fn window_and_replay() {
        let mut g = ReplayGuard::new(600, 300, 100);
        let now = t(10_000);
        let a = sender(1);
        assert_eq!(g.check(now, &a, t(10_000), &id(1)), ReplayVerdict::Fresh);
        assert!(g.remember(now, &a, t(10_000), &id(1)));
        assert_eq!(g.check(now, &a, t(10_000), &id(1)), ReplayVerdict::Replayed);
        assert!(!g.remember(now, &a, t(10_000), &id(1)));
        assert_eq!(g.check(now, &a, t(9_000), &id(2)), ReplayVerdict::Stale);
        assert_eq!(g.check(now, &a, t(10_400), &id(2)), ReplayVerdict::Future);
        assert_eq!(g.check(now, &a, t(10_300), &id(2)), ReplayVerdict::Fresh);
    }

    #[test]
    fn eviction_raises_the_senders_floor() {
        let mut g = ReplayGuard::new(600, 300, 2);
        let now = t(10_000);
        let a = sender(1);
        g.remember(now, &a, t(9_990), &id(1));
        g.remember(now, &a, t(9_995), &id(2));
        g.remember(now, &a, t(9_999), &id(3));
        assert_eq!(g.len(), 2);
        // id 1 was forgotten, but it can't come back: it is now stale.
        assert_eq!(g.check(now, &a, t(9_990), &id(1)), ReplayVerdict::Stale);
        assert_eq!(g.check(now, &a, t(9_999), &id(3)), ReplayVerdict::Replayed);
        // Another sender's event of the same age is not affected.
        assert_eq!(
            g.check(now, &sender(2), t(9_990), &id(9)),
            ReplayVerdict::Fresh
        );
    }

    #[test]
    fn a_flood_from_one_key_cannot_make_another_keys_request_stale() {
        let mut g = ReplayGuard::new(600, 300, 64);
        let now = t(10_000);
        let flooder = sender(66);
        // Signed junk dated as far ahead as the window allows, many times
        // the guard's capacity.
        for n in 0..10_000 {
            assert!(g.remember(now, &flooder, t(10_299), &id(n)));
        }
        assert_eq!(g.len(), 64, "memory stays bounded");
        // The flooder's floor rose: its old junk cannot be replayed.
        assert_eq!(
            g.check(now, &flooder, t(10_299), &id(0)),
            ReplayVerdict::Stale
        );
        // A client's fresh request, created now, is still fresh…
        let client = sender(7);
        assert_eq!(
            g.check(now, &client, t(10_000), &id(50_000)),
            ReplayVerdict::Fresh
        );
        assert!(g.remember(now, &client, t(10_000), &id(50_000)));
        // …and so are its next ones while the flood goes on.
        for n in 0..1_000 {
            g.remember(now, &flooder, t(10_299), &id(20_000 + n));
        }
        assert_eq!(
            g.check(now, &client, t(10_001), &id(50_001)),
            ReplayVerdict::Fresh
        );
        assert_eq!(g.floors(), 2, "one floor per sender forgotten");
    }

    #[test]
    fn floors_are_bounded_and_fall_back_to_one_floor() {
        let mut g = ReplayGuard::new(600, 300, 4);
        let now = t(10_000);
        // Every id comes from a fresh key, so each eviction wants a floor.
        for n in 0..100u32 {
            let key = PublicKey::from_byte_array([(n % 250) as u8 + 1; 32]);
            g.remember(now, &key, t(9_500 + u64::from(n)), &id(n));
        }
        assert!(
            g.floors() <= 4,
            "floors bounded by capacity: {}",
            g.floors()
        );
        assert_eq!(g.len(), 4);
        // Nothing forgotten can come back, whoever sends it.
        assert_eq!(
            g.check(now, &sender(200), t(9_500), &id(0)),
            ReplayVerdict::Stale
        );
    }

    #[test]
    fn old_ids_and_floors_expire() {
        let mut g = ReplayGuard::new(10, 10, 100);
        let a = sender(1);
        g.remember(t(100), &a, t(100), &id(1));
        g.remember(t(200), &a, t(200), &id(2));
        assert_eq!(g.len(), 1);
        let mut g = ReplayGuard::new(10, 10, 1);
        g.remember(t(100), &a, t(100), &id(1));
        g.remember(t(100), &sender(2), t(100), &id(2));
        assert_eq!(g.floors(), 1);
        g.sweep_floors(t(200));
        assert_eq!(g.floors(), 0);
    }
}
