//! The relay's memory: stored events and the queries over them.
//!
//! A bounded in-memory store is all an offline signer and a test suite
//! need. Events are kept newest first; when full, the oldest go. Replaceable
//! and addressable kinds keep only their latest version, as NIP-01 asks.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use nostr::prelude::{Event, EventId, Filter, Kind, MatchEventOptions, PublicKey, Timestamp};

/// An accepted event with its JSON, serialized once for every subscriber.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) event: Event,
    pub(crate) json: String,
}

/// What [`Store::insert`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Stored (possibly replacing an older version).
    Stored,
    /// Already stored.
    Duplicate,
    /// A newer version of this replaceable event is stored.
    Obsolete,
}

type Order = (Reverse<Timestamp>, EventId);

/// Stored events by id, in `created_at` order, and by replaceable key.
#[derive(Debug)]
pub(crate) struct Store {
    by_id: HashMap<EventId, Arc<Stored>>,
    newest_first: BTreeSet<Order>,
    latest: HashMap<(PublicKey, Kind, String), EventId>,
    capacity: usize,
    /// Bytes of JSON stored, and the most there may be.
    bytes: usize,
    max_bytes: usize,
}

fn order(event: &Event) -> Order {
    (Reverse(event.created_at), event.id)
}

/// The key under which only the latest event is kept, for replaceable
/// (`0`, `3`, `10000`–`19999`) and addressable (`30000`–`39999`) kinds.
fn replace_key(event: &Event) -> Option<(PublicKey, Kind, String)> {
    if event.kind.is_replaceable() {
        Some((event.pubkey, event.kind, String::new()))
    } else if event.kind.is_addressable() {
        let d = event.tags.identifier().unwrap_or_default();
        Some((event.pubkey, event.kind, d))
    } else {
        None
    }
}

impl Store {
    /// A store of at most `capacity` events and `max_bytes` bytes of JSON.
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            by_id: HashMap::new(),
            newest_first: BTreeSet::new(),
            latest: HashMap::new(),
            capacity: capacity.max(1),
            bytes: 0,
            max_bytes: max_bytes.max(1),
        }
    }

    /// Bytes of JSON stored.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Stores an event (already verified), evicting the oldest when full.
    pub(crate) fn insert(&mut self, stored: Arc<Stored>) -> Insert {
        let event = &stored.event;
        if self.by_id.contains_key(&event.id) {
            return Insert::Duplicate;
        }
        if let Some(key) = replace_key(event) {
            if let Some(old) = self.latest.get(&key).and_then(|id| self.by_id.get(id)) {
                let old = &old.event;
                // NIP-01: keep the newest; on a tie, the lowest id.
                let keep_old = old.created_at > event.created_at
                    || (old.created_at == event.created_at && old.id < event.id);
                if keep_old {
                    return Insert::Obsolete;
                }
                let old_id = old.id;
                self.remove(&old_id);
            }
            self.latest.insert(key, event.id);
        }
        self.newest_first.insert(order(event));
        self.bytes += stored.json.len();
        self.by_id.insert(event.id, stored);
        while self.by_id.len() > self.capacity || self.bytes > self.max_bytes {
            let Some((_, oldest)) = self.newest_first.last().copied() else {
                break;
            };
            self.remove(&oldest);
        }
        Insert::Stored
    }

    fn remove(&mut self, id: &EventId) {
        let Some(stored) = self.by_id.remove(id) else {
            return;
        };
        self.bytes -= stored.json.len();
        self.newest_first.remove(&order(&stored.event));
        if let Some(key) = replace_key(&stored.event)
            && self.latest.get(&key) == Some(id)
        {
            self.latest.remove(&key);
        }
    }

    /// Stored events matching any filter, newest first, at most
    /// `min(filter.limit, max_limit)` per filter.
    pub(crate) fn query(&self, filters: &[Filter], max_limit: usize) -> Vec<Arc<Stored>> {
        let options = MatchEventOptions::new();
        let mut found: BTreeMap<Order, Arc<Stored>> = BTreeMap::new();
        for filter in filters {
            let limit = filter.limit.unwrap_or(max_limit).min(max_limit);
            if limit == 0 {
                continue;
            }
            let mut taken = 0;
            if let Some(ids) = filter.ids.as_ref().filter(|ids| !ids.is_empty()) {
                let mut matches: Vec<&Arc<Stored>> = ids
                    .iter()
                    .filter_map(|id| self.by_id.get(id))
                    .filter(|stored| filter.match_event(&stored.event, options))
                    .collect();
                matches.sort_by_key(|stored| order(&stored.event));
                for stored in matches.into_iter().take(limit) {
                    found.insert(order(&stored.event), stored.clone());
                }
                continue;
            }
            for key in &self.newest_first {
                let created_at = key.0.0;
                if filter.until.is_some_and(|until| created_at > until) {
                    continue;
                }
                if filter.since.is_some_and(|since| created_at < since) {
                    break;
                }
                let Some(stored) = self.by_id.get(&key.1) else {
                    continue;
                };
                if filter.match_event(&stored.event, options) {
                    found.insert(*key, stored.clone());
                    taken += 1;
                    if taken == limit {
                        break;
                    }
                }
            }
        }
        found.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::prelude::{EventBuilder, FinalizeEvent, Keys, Tag};

    fn stored(keys: &Keys, kind: u16, at: u64, tags: Vec<Tag>) -> Arc<Stored> {
        let event = EventBuilder::new(Kind::from(kind), format!("{kind}@{at}"))
            .tags(tags)
            .custom_created_at(Timestamp::from_secs(at))
            .finalize(keys)
            .unwrap();
        let json = serde_json::to_string(&event).unwrap();
        Arc::new(Stored { event, json })
    }

    #[test]
    fn keeps_newest_replaceable_and_evicts_oldest() {
        let keys = Keys::generate();
        let mut store = Store::new(3, usize::MAX);
        let old = stored(&keys, 0, 10, vec![]);
        let new = stored(&keys, 0, 20, vec![]);
        assert_eq!(store.insert(new.clone()), Insert::Stored);
        assert_eq!(store.insert(old), Insert::Obsolete);
        assert_eq!(store.insert(new), Insert::Duplicate);
        for at in 1..=3 {
            store.insert(stored(&keys, 1, at, vec![]));
        }
        // Capacity 3: the kind-0 at t=20 and the notes at t=2 and t=3 remain.
        let all = store.query(&[Filter::new()], 100);
        let times: Vec<u64> = all.iter().map(|s| s.event.created_at.as_secs()).collect();
        assert_eq!(times, vec![20, 3, 2]);
    }

    #[test]
    fn bounded_in_bytes_too() {
        let keys = Keys::generate();
        let one = stored(&keys, 1, 1, vec![]).json.len();
        let mut store = Store::new(1000, one * 3 + 8);
        for at in 1..=10 {
            store.insert(stored(&keys, 1, at, vec![]));
            assert!(store.bytes() <= one * 3 + 8, "{} bytes", store.bytes());
        }
        let times: Vec<u64> = store
            .query(&[Filter::new()], 100)
            .iter()
            .map(|s| s.event.created_at.as_secs())
            .collect();
        assert_eq!(times, vec![10, 9, 8], "the newest kept");
    }

    #[test]
    fn queries_honour_filters_and_limits() {
        let keys = Keys::generate();
        let other = Keys::generate();
        let mut store = Store::new(100, usize::MAX);
        for at in 1..=5 {
            store.insert(stored(
                &keys,
                1,
                at,
                vec![Tag::public_key(other.public_key())],
            ));
        }
        store.insert(stored(&other, 7, 6, vec![]));
        let by_author = Filter::new().author(other.public_key());
        assert_eq!(store.query(&[by_author], 100).len(), 1);
        let tagged = Filter::new().pubkey(other.public_key()).limit(2);
        let got = store.query(&[tagged], 100);
        let times: Vec<u64> = got.iter().map(|s| s.event.created_at.as_secs()).collect();
        assert_eq!(times, vec![5, 4]);
        let window = Filter::new()
            .kind(Kind::TextNote)
            .since(Timestamp::from_secs(2))
            .until(Timestamp::from_secs(3));
        assert_eq!(store.query(&[window], 100).len(), 2);
        let none = Filter::new().kind(Kind::TextNote).limit(0);
        assert!(store.query(&[none], 100).is_empty());
    }
}
