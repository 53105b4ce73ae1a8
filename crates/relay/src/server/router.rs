//! Live events go only to the connections whose subscriptions may want them.
//!
//! Every accepted event used to be broadcast to every connection, and each
//! one matched it against its filters: with a bunker and its apps on one
//! relay, every request and every answer woke every connection, and the
//! filter matching (which indexes an event's tags anew for each filter) was
//! paid once per connection. The router keeps, for each connection, a
//! summary of its filters — the `#p` values they ask for, else their
//! authors, else "anything" — indexed by those keys, so an event reaches the
//! few connections that may match it. The summary is a superset: the
//! connection still matches the event against its filters exactly, so what a
//! client receives is unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use nostr::prelude::{Filter, PublicKey, SingleLetterTag};
use tokio::sync::mpsc;

use super::store::Stored;

/// A connection's key in the router.
pub(crate) type ConnectionId = u64;

/// What a connection's subscriptions may match, for routing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Interest {
    /// Some filter constrains neither `#p` nor authors.
    everything: bool,
    /// Values of `#p` asked for (compared as strings, as filters do).
    p_tags: HashSet<String>,
    /// Authors asked for by filters without `#p`.
    authors: HashSet<PublicKey>,
}

impl Interest {
    /// The summary of `filters`. A filter is indexed by its `#p` values
    /// when it has some (the most selective key for NIP-46: each app asks
    /// for answers to its own key), else by its authors, else it wants
    /// anything.
    pub(crate) fn of<'a>(filters: impl IntoIterator<Item = &'a Filter>) -> Interest {
        let mut interest = Interest::default();
        for filter in filters {
            let p_tags = filter
                .generic_tags
                .get(&SingleLetterTag::LOWERCASE_P)
                .filter(|values| !values.is_empty());
            let authors = filter.authors.as_ref().filter(|a| !a.is_empty());
            match (p_tags, authors) {
                (Some(values), _) => interest.p_tags.extend(values.iter().cloned()),
                (None, Some(authors)) => interest.authors.extend(authors.iter().copied()),
                (None, None) => interest.everything = true,
            }
        }
        interest
    }
}

/// What the router holds for one connection.
#[derive(Debug)]
struct Listener {
    sender: mpsc::Sender<Arc<Stored>>,
    missed: Arc<AtomicU64>,
    /// Bytes of events queued for it and not yet taken.
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
    interest: Interest,
}

/// The receiving end a connection reads live events from.
#[derive(Debug)]
pub(crate) struct Feed {
    /// The router's key for this connection.
    pub(crate) id: ConnectionId,
    /// Live events that may match its subscriptions.
    pub(crate) events: mpsc::Receiver<Arc<Stored>>,
    /// Events dropped because the connection did not keep up.
    pub(crate) missed: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
}

impl Feed {
    /// The next live event (`None` once the router forgot the connection).
    pub(crate) async fn recv(&mut self) -> Option<Arc<Stored>> {
        let stored = self.events.recv().await?;
        self.queued.fetch_sub(stored.json.len(), Ordering::Relaxed);
        Some(stored)
    }
}

/// Every connection's interest, indexed.
#[derive(Debug, Default)]
pub(crate) struct Router {
    next_id: ConnectionId,
    listeners: HashMap<ConnectionId, Listener>,
    everything: HashSet<ConnectionId>,
    by_p_tag: HashMap<String, HashSet<ConnectionId>>,
    by_author: HashMap<PublicKey, HashSet<ConnectionId>>,
}

fn index<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, HashSet<ConnectionId>>,
    keys: &HashSet<K>,
    id: ConnectionId,
    add: bool,
) {
    for key in keys {
        if add {
            map.entry(key.clone()).or_default().insert(id);
        } else if let Some(ids) = map.get_mut(key) {
            ids.remove(&id);
            if ids.is_empty() {
                map.remove(key);
            }
        }
    }
}

impl Router {
    /// A new connection, interested in nothing yet; its feed buffers up to
    /// `capacity` events and `max_bytes` bytes of them.
    pub(crate) fn register(&mut self, capacity: usize, max_bytes: usize) -> Feed {
        let (sender, events) = mpsc::channel(capacity.max(1));
        let missed = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let id = self.next_id;
        self.next_id += 1;
        self.listeners.insert(
            id,
            Listener {
                sender,
                missed: missed.clone(),
                queued: queued.clone(),
                max_bytes,
                interest: Interest::default(),
            },
        );
        Feed {
            id,
            events,
            missed,
            queued,
        }
    }

    fn unindex(&mut self, id: ConnectionId, interest: &Interest) {
        if interest.everything {
            self.everything.remove(&id);
        }
        index(&mut self.by_p_tag, &interest.p_tags, id, false);
        index(&mut self.by_author, &interest.authors, id, false);
    }

    /// Replace a connection's interest (after `REQ` or `CLOSE`).
    pub(crate) fn set_interest(&mut self, id: ConnectionId, interest: Interest) {
        let Some(listener) = self.listeners.get_mut(&id) else {
            return;
        };
        if listener.interest == interest {
            return;
        }
        let old = std::mem::replace(&mut listener.interest, interest.clone());
        self.unindex(id, &old);
        if interest.everything {
            self.everything.insert(id);
        }
        index(&mut self.by_p_tag, &interest.p_tags, id, true);
        index(&mut self.by_author, &interest.authors, id, true);
    }

    /// Forget a connection.
    pub(crate) fn remove(&mut self, id: ConnectionId) {
        if let Some(listener) = self.listeners.remove(&id) {
            self.unindex(id, &listener.interest);
        }
    }

    /// The connections that may want `stored`.
    fn candidates(&self, stored: &Stored) -> HashSet<ConnectionId> {
        let mut ids: HashSet<ConnectionId> = self.everything.clone();
        if let Some(by_author) = self.by_author.get(&stored.event.pubkey) {
            ids.extend(by_author);
        }
        for tag in stored.event.tags.iter() {
            if tag.kind() == "p"
                && let Some(ids_for_tag) = tag.content().and_then(|v| self.by_p_tag.get(v))
            {
                ids.extend(ids_for_tag);
            }
        }
        ids
    }

    /// Hand a live event to every connection that may want it. A connection
    /// whose feed is full misses it (and is told, by its own task).
    pub(crate) fn route(&self, stored: &Arc<Stored>) {
        for id in self.candidates(stored) {
            let Some(listener) = self.listeners.get(&id) else {
                continue;
            };
            let size = stored.json.len();
            let queued = listener.queued.load(Ordering::Relaxed);
            if queued.saturating_add(size) > listener.max_bytes {
                listener.missed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            listener.queued.fetch_add(size, Ordering::Relaxed);
            if listener.sender.try_send(stored.clone()).is_err() {
                listener.queued.fetch_sub(size, Ordering::Relaxed);
                listener.missed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::prelude::{EventBuilder, FinalizeEvent, Keys, Kind, Tag};

    fn stored(author: &Keys, p: &[PublicKey]) -> Arc<Stored> {
        let event = EventBuilder::new(Kind::NostrConnect, "x")
            .tags(p.iter().map(|pk| Tag::public_key(*pk)))
            .finalize(author)
            .unwrap();
        let json = serde_json::to_string(&event).unwrap();
        Arc::new(Stored { event, json })
    }

    fn received(feed: &mut Feed) -> usize {
        let mut n = 0;
        while feed.events.try_recv().is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn events_reach_only_connections_that_may_want_them() {
        let (signer, app, other) = (Keys::generate(), Keys::generate(), Keys::generate());
        let mut router = Router::default();
        let mut bunker = router.register(8, usize::MAX);
        let mut client = router.register(8, usize::MAX);
        let mut by_author = router.register(8, usize::MAX);
        let mut firehose = router.register(8, usize::MAX);
        let mut idle = router.register(8, usize::MAX);
        let for_signer = Filter::new()
            .kind(Kind::NostrConnect)
            .pubkey(signer.public_key());
        let for_app = Filter::new()
            .kind(Kind::NostrConnect)
            .pubkey(app.public_key())
            .author(signer.public_key());
        router.set_interest(bunker.id, Interest::of([&for_signer]));
        router.set_interest(client.id, Interest::of([&for_app]));
        router.set_interest(
            by_author.id,
            Interest::of([&Filter::new().author(other.public_key())]),
        );
        router.set_interest(
            firehose.id,
            Interest::of([&Filter::new().kind(Kind::TextNote)]),
        );

        // A request to the signer, an answer to the app, a note by `other`.
        router.route(&stored(&app, &[signer.public_key()]));
        router.route(&stored(&signer, &[app.public_key()]));
        router.route(&stored(&other, &[]));
        assert_eq!(received(&mut bunker), 1);
        assert_eq!(received(&mut client), 1);
        assert_eq!(received(&mut by_author), 1);
        assert_eq!(received(&mut firehose), 3);
        assert_eq!(received(&mut idle), 0);

        // After CLOSE (no filters) and removal, nothing more arrives.
        router.set_interest(firehose.id, Interest::of([]));
        router.remove(bunker.id);
        router.route(&stored(&app, &[signer.public_key()]));
        assert_eq!(received(&mut firehose), 0);
        assert_eq!(received(&mut bunker), 0);
        assert!(!router.by_p_tag.contains_key(&signer.public_key().to_hex()));
    }

    #[test]
    fn a_full_feed_counts_what_it_missed() {
        let keys = Keys::generate();
        let mut router = Router::default();
        let feed = router.register(1, usize::MAX);
        router.set_interest(feed.id, Interest::of([&Filter::new()]));
        for _ in 0..3 {
            router.route(&stored(&keys, &[]));
        }
        assert_eq!(feed.missed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_feed_holds_a_bounded_number_of_bytes() {
        let keys = Keys::generate();
        let one = stored(&keys, &[]).json.len();
        let mut router = Router::default();
        let mut feed = router.register(1000, one * 2);
        router.set_interest(feed.id, Interest::of([&Filter::new()]));
        for _ in 0..5 {
            router.route(&stored(&keys, &[]));
        }
        assert_eq!(feed.missed.load(Ordering::Relaxed), 3);
        assert_eq!(feed.queued.load(Ordering::Relaxed), one * 2);
        // Taking an event frees its bytes.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(feed.recv()).unwrap();
        assert_eq!(feed.queued.load(Ordering::Relaxed), one);
        router.route(&stored(&keys, &[]));
        assert_eq!(feed.queued.load(Ordering::Relaxed), one * 2);
    }
}
