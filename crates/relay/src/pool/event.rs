//! What the pool tells its caller.
//!
//! Everything that arrives from relays, and every change of a relay's state
//! a caller may act on, reaches the caller as one [`PoolEvent`] on the channel
//! returned by [`RelayPool::new`](super::RelayPool::new).

use std::sync::Arc;

use nostr::prelude::{Event, EventId, RelayUrl, SubscriptionId};

/// A notification from the pool.
#[derive(Debug, Clone)]
pub enum PoolEvent {
    /// An event matching one of the caller's subscriptions, seen for the first
    /// time (copies from other relays are dropped). Its id and signature were
    /// checked unless [`PoolConfig::verify_events`](super::PoolConfig) is off.
    Event {
        /// The relay that delivered it first.
        relay: Arc<RelayUrl>,
        /// The subscription it matched.
        subscription_id: SubscriptionId,
        /// The event itself.
        event: Box<Event>,
    },
    /// The relay has sent every stored event matching the subscription; what
    /// follows is live.
    EndOfStoredEvents {
        /// The relay.
        relay: Arc<RelayUrl>,
        /// The subscription.
        subscription_id: SubscriptionId,
    },
    /// The relay ended a subscription. If the reason starts with
    /// `auth-required:` and the pool has keys, the subscription is sent again
    /// once the relay accepts the pool's `AUTH`.
    Closed {
        /// The relay.
        relay: Arc<RelayUrl>,
        /// The subscription it ended.
        subscription_id: SubscriptionId,
        /// The relay's reason, machine-readable prefix included.
        message: String,
    },
    /// The relay refused an event the pool published (`OK false`), for a
    /// reason other than `auth-required:` while the pool can authenticate
    /// (that one is retried after `AUTH`).
    Rejected {
        /// The relay.
        relay: Arc<RelayUrl>,
        /// The refused event.
        event_id: EventId,
        /// The relay's reason, machine-readable prefix included.
        message: String,
    },
    /// A human-readable `NOTICE` from the relay.
    Notice {
        /// The relay.
        relay: Arc<RelayUrl>,
        /// What it said.
        message: String,
    },
    /// A connection to the relay is established. Active subscriptions have
    /// been sent; the relay's `EndOfStoredEvents` tells when it has them.
    Connected {
        /// The relay.
        relay: Arc<RelayUrl>,
    },
    /// The connection to the relay was lost; the pool reconnects after a
    /// backoff. Events published meanwhile are queued.
    Disconnected {
        /// The relay.
        relay: Arc<RelayUrl>,
        /// Why, in words.
        reason: String,
    },
    /// The relay asked for NIP-42 authentication and the pool sent its signed
    /// `AUTH` event. Some relays (nostr-rs-relay) never answer it.
    AuthSent {
        /// The relay.
        relay: Arc<RelayUrl>,
    },
    /// The relay accepted the pool's `AUTH`; events and subscriptions it had
    /// refused with `auth-required:` have been sent again.
    Authenticated {
        /// The relay.
        relay: Arc<RelayUrl>,
    },
    /// The relay refused the pool's `AUTH`.
    AuthRejected {
        /// The relay.
        relay: Arc<RelayUrl>,
        /// The relay's reason.
        message: String,
    },
}
