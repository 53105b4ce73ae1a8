//! The caller's active subscriptions, shared by every relay connection.
//!
//! Subscriptions belong to the pool, not to one socket: each connection task
//! compares this table with what it has sent on its current socket, so a
//! subscription made while a relay is down, or lost with a reconnect, is
//! (re)sent as soon as that relay is reachable.

use std::collections::HashMap;
use std::sync::Arc;

use nostr::prelude::SubscriptionId;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One subscription: its serialized `REQ` frame and a serial that changes
/// whenever the caller replaces its filters.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) serial: u64,
    pub(crate) req: Utf8Bytes,
}

/// Every active subscription by id.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    entries: HashMap<SubscriptionId, Arc<Subscription>>,
    next_serial: u64,
}

impl Subscriptions {
    /// Adds or replaces a subscription.
    pub(crate) fn insert(&mut self, id: SubscriptionId, req: Utf8Bytes) {
        self.next_serial += 1;
        let serial = self.next_serial;
        self.entries
            .insert(id, Arc::new(Subscription { serial, req }));
    }

    /// Removes a subscription; `false` if there was none.
    pub(crate) fn remove(&mut self, id: &SubscriptionId) -> bool {
        self.entries.remove(id).is_some()
    }

    /// The serial of an active subscription.
    pub(crate) fn serial(&self, id: &SubscriptionId) -> Option<u64> {
        self.entries.get(id).map(|sub| sub.serial)
    }

    /// An active subscription.
    pub(crate) fn get(&self, id: &SubscriptionId) -> Option<&Arc<Subscription>> {
        self.entries.get(id)
    }

    /// All active subscriptions.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&SubscriptionId, &Arc<Subscription>)> {
        self.entries.iter()
    }

    /// The ids of all active subscriptions.
    pub(crate) fn ids(&self) -> Vec<SubscriptionId> {
        self.entries.keys().cloned().collect()
    }
}
