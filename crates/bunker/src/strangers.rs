//! Traffic from strangers: clients with no session on the key they write to
//! (and `connect`s whose secret is wrong, used or expired).
//!
//! Anyone can write to a relay, so what a stranger may cost the bunker is
//! bounded here, deterministically (time is passed in):
//!
//! - **Answers** are rate-limited per sender and in total. A stranger gets a
//!   clear refusal first; one that keeps sending gets silence (and, once
//!   its bucket is empty, is dropped before its signature is even checked).
//! - **Audit rows** are written in aggregate: the first refusal of a sender
//!   on a key is audited at once, the rest of its window (a minute) are
//!   counted and written as one row with that count when the window closes.
//!   So a sender costs at most two rows a minute per key, never one per event.
//!   Keys are free, so first refusals have a budget of their own too
//!   (`rows`): past it, a new sender is counted into its key's shared
//!   "many strangers" tally (one row a window, naming the last of them).
//! - **Memory** is bounded: at most `max_senders` senders and as many open
//!   tallies are tracked; past that, idle senders are forgotten and open
//!   tallies are written out early.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};

use nip46::nostr::prelude::PublicKey;
use serde::{Deserialize, Serialize};
use store::{AuditEntry, KeyId};

use crate::clock::Millis;
use crate::rate_limit::{RateLimit, TokenBucket};

/// How much strangers may cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StrangerLimits {
    /// Answers to one sender: a few at once (a mistyped secret can be
    /// retried), then one per 20 s.
    pub per_sender: RateLimit,
    /// Answers to all strangers together.
    pub total: RateLimit,
    /// Senders (and open tallies) tracked at most.
    pub max_senders: usize,
    /// How long refusals of one sender on one key are counted together.
    pub tally_secs: u64,
    /// Rows written at once for first refusals, over all senders (past it,
    /// new senders are counted per key instead).
    pub rows: RateLimit,
}

impl Default for StrangerLimits {
    fn default() -> Self {
        StrangerLimits {
            per_sender: RateLimit {
                burst: 3,
                per_second: 0.05,
            },
            total: RateLimit {
                burst: 100,
                per_second: 20.0,
            },
            max_senders: 10_000,
            tally_secs: 60,
            rows: RateLimit {
                burst: 100,
                per_second: 1.0,
            },
        }
    }
}

/// The tally key of a key's strangers past the row budget (no real sender:
/// all-zero bytes are not a valid x-only public key).
const MANY_STRANGERS: PublicKey = PublicKey::from_byte_array([0; 32]);

/// What to do with one refusal of a stranger.
#[derive(Debug)]
pub struct StrangerVerdict {
    /// Send the refusal (false: silence).
    pub answer: bool,
    /// Write this audit row now (the first refusal of the window); `None`:
    /// counted, written when the window closes.
    pub audit: Option<AuditEntry>,
    /// Rows of windows written out early to make room (rarely any).
    pub flushed: Vec<AuditEntry>,
}

/// Refusals of one sender on one key not yet audited.
#[derive(Debug)]
struct Tally {
    closes: Millis,
    /// Refusals counted after the audited first one.
    count: u32,
    /// The last of them, written with `events = count`.
    last: Option<AuditEntry>,
}

/// The state kept about strangers.
#[derive(Debug)]
pub struct Strangers {
    limits: StrangerLimits,
    senders: HashMap<PublicKey, TokenBucket>,
    total: TokenBucket,
    rows: TokenBucket,
    tallies: BTreeMap<(KeyId, PublicKey), Tally>,
    /// Open tallies by closing time (windows have one length, so this is
    /// in order); entries of tallies written out early are skipped.
    closing: VecDeque<(Millis, (KeyId, PublicKey))>,
}

impl Strangers {
    /// Nothing known yet.
    pub fn new(limits: StrangerLimits, now: Millis) -> Self {
        Strangers {
            limits,
            senders: HashMap::new(),
            total: TokenBucket::new(&limits.total, now),
            rows: TokenBucket::new(&limits.rows, now),
            tallies: BTreeMap::new(),
            closing: VecDeque::new(),
        }
    }

    /// Whether `sender` has used up its answers: its events are dropped
    /// before any cryptography. Only refusals (of verified events) use them
    /// up, so forging a sender's pubkey cannot silence it.
    pub fn silenced(&self, sender: &PublicKey, now: Millis) -> bool {
        self.senders
            .get(sender)
            .is_some_and(|bucket| !bucket.has_token(&self.limits.per_sender, now))
    }

    /// A refusal of a stranger's request, whose audit row would be `entry`.
    pub fn refuse(&mut self, now: Millis, entry: AuditEntry) -> StrangerVerdict {
        // The engine's rows of requests always name their client.
        let client = entry.client.unwrap_or(MANY_STRANGERS);
        let answer = self.take_answer(now, client) && self.total.try_take(&self.limits.total, now);
        let mut key = (entry.key_id, client);
        if !self.tallies.contains_key(&key) && !self.rows.try_take(&self.limits.rows, now) {
            // Over the row budget: counted with the key's other strangers.
            key = (entry.key_id, MANY_STRANGERS);
        }
        if let Some(tally) = self.tallies.get_mut(&key) {
            tally.count = tally.count.saturating_add(1);
            tally.last = Some(entry);
            return StrangerVerdict {
                answer,
                audit: None,
                flushed: Vec::new(),
            };
        }
        let flushed = if self.tallies.len() >= self.limits.max_senders {
            // Written out early rather than tracked without bound.
            self.drain()
        } else {
            Vec::new()
        };
        let closes = now.plus_ms(self.limits.tally_secs.saturating_mul(1000));
        self.tallies.insert(
            key,
            Tally {
                closes,
                count: 0,
                last: None,
            },
        );
        self.closing.push_back((closes, key));
        if key.1 == MANY_STRANGERS {
            // The shared tally writes its row when it closes, like the rest.
            if let Some(tally) = self.tallies.get_mut(&key) {
                tally.count = 1;
                tally.last = Some(entry);
            }
            return StrangerVerdict {
                answer,
                audit: None,
                flushed,
            };
        }
        StrangerVerdict {
            answer,
            audit: Some(entry),
            flushed,
        }
    }

    fn take_answer(&mut self, now: Millis, sender: PublicKey) -> bool {
        let limit = self.limits.per_sender;
        if self.senders.len() >= self.limits.max_senders && !self.senders.contains_key(&sender) {
            // Forget senders whose bucket has refilled: they are idle.
            self.senders
                .retain(|_, bucket| !bucket.is_full(&limit, now));
            if self.senders.len() >= self.limits.max_senders {
                self.senders.clear();
            }
        }
        match self.senders.entry(sender) {
            Entry::Occupied(mut bucket) => bucket.get_mut().try_take(&limit, now),
            Entry::Vacant(slot) => slot
                .insert(TokenBucket::new(&limit, now))
                .try_take(&limit, now),
        }
    }

    /// When the next window closes, if one is open.
    pub fn next_due(&self) -> Option<Millis> {
        self.closing.front().map(|(at, _)| *at)
    }

    /// Close the windows due at `now`: the audit rows of what they counted.
    pub fn due(&mut self, now: Millis) -> Vec<AuditEntry> {
        let mut rows = Vec::new();
        while let Some(&(at, key)) = self.closing.front() {
            if at > now {
                break;
            }
            self.closing.pop_front();
            if self.tallies.get(&key).is_some_and(|t| t.closes == at)
                && let Some(tally) = self.tallies.remove(&key)
            {
                rows.extend(row(tally));
            }
        }
        rows
    }

    /// Close every window (at shutdown, or when too many are open).
    pub fn drain(&mut self) -> Vec<AuditEntry> {
        self.closing.clear();
        std::mem::take(&mut self.tallies)
            .into_values()
            .filter_map(row)
            .collect()
    }

    /// Senders tracked (for tests of the bound).
    pub fn senders(&self) -> usize {
        self.senders.len()
    }
}

/// The aggregate row of a closed window, if it counted anything.
fn row(tally: Tally) -> Option<AuditEntry> {
    let mut last = tally.last?;
    last.events = tally.count;
    Some(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nip46::nostr::prelude::{EventId, Timestamp};
    use store::AuditDecision;

    fn entry(key: i64, sender: u8) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at: Timestamp::from_secs(1),
            key_id: KeyId(key),
            client: Some(PublicKey::from_byte_array([sender; 32])),
            event_id: Some(EventId::from_byte_array([sender; 32])),
            event_created_at: Timestamp::from_secs(1),
            events: 1,
            request_id: "r".into(),
            method: "ping".into(),
            kind: None,
            decision: AuditDecision::Denied,
            outcome: "unauthorized".into(),
            signed_event_id: None,
            operator: None,
        }
    }

    fn limits(max_senders: usize) -> StrangerLimits {
        StrangerLimits {
            max_senders,
            ..StrangerLimits::default()
        }
    }

    #[test]
    fn memory_is_bounded_by_max_senders() {
        let now = Millis(1_000);
        let mut s = Strangers::new(limits(4), now);
        let mut rows = 0;
        for n in 1..=100u8 {
            let v = s.refuse(now, entry(1, n));
            rows += v.flushed.len() + usize::from(v.audit.is_some());
            assert!(s.senders() <= 4, "{} senders", s.senders());
            assert!(s.tallies.len() <= 4, "{} tallies", s.tallies.len());
        }
        // Each sender's first refusal is its row; windows that counted
        // nothing more write nothing when flushed.
        assert_eq!(rows, 100);
    }

    #[test]
    fn fresh_keys_past_the_row_budget_share_one_row_per_key() {
        let now = Millis(1_000);
        let limits = StrangerLimits {
            rows: RateLimit {
                burst: 10,
                per_second: 0.0,
            },
            ..StrangerLimits::default()
        };
        let mut s = Strangers::new(limits, now);
        let mut at_once = 0;
        for n in 1..=200u8 {
            if s.refuse(now, entry(1, n)).audit.is_some() {
                at_once += 1;
            }
        }
        assert_eq!(at_once, 10, "the row budget");
        let rows = s.due(Millis(61_000));
        let shared: Vec<_> = rows
            .iter()
            .filter(|r| r.client == Some(PublicKey::from_byte_array([200; 32])))
            .collect();
        assert_eq!(
            shared.len(),
            1,
            "one shared row, naming the last sender: {rows:?}"
        );
        assert_eq!(shared[0].events, 190);
        assert!(
            rows.len() <= 1,
            "{} rows closing for 200 fresh keys",
            rows.len()
        );
    }

    #[test]
    fn windows_close_in_order_and_count() {
        let now = Millis(1_000);
        let mut s = Strangers::new(StrangerLimits::default(), now);
        assert!(s.refuse(now, entry(1, 1)).audit.is_some());
        assert!(s.refuse(now, entry(2, 1)).audit.is_some(), "per key");
        for _ in 0..5 {
            assert!(s.refuse(now, entry(1, 1)).audit.is_none());
        }
        assert_eq!(s.next_due(), Some(Millis(61_000)));
        assert!(s.due(Millis(60_999)).is_empty());
        let rows = s.due(Millis(61_000));
        assert_eq!(rows.len(), 1, "key 2's window counted nothing more");
        assert_eq!((rows[0].key_id, rows[0].events), (KeyId(1), 5));
        assert_eq!(s.next_due(), None);
        // A new window opens with a row of its own.
        assert!(s.refuse(Millis(62_000), entry(1, 1)).audit.is_some());
    }
}
