//! Errors of the pool's operations, one enum per operation.
//!
//! Connection failures are not errors of any call: the pool retries them and
//! reports them in [`RelayStatus`](super::RelayStatus) and
//! [`PoolEvent::Disconnected`](super::PoolEvent::Disconnected).

use std::sync::Arc;

use nostr::prelude::RelayUrl;

/// Why [`RelayPool::add_relay`](super::RelayPool::add_relay) failed.
#[derive(Debug, thiserror::Error)]
pub enum AddRelayError {
    /// The address is not a relay URL.
    #[error("invalid relay URL {url:?}: {reason}; expected ws://host[:port][/path] or wss://...")]
    InvalidUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL has no host to connect to.
    #[error("relay URL {0} has no host; expected ws://host[:port] or wss://host[:port]")]
    NoHost(String),
    /// The pool was shut down; create a new one.
    #[error("the relay pool was shut down; create a new pool to connect again")]
    ShutDown,
    /// Called outside a tokio runtime, so the connection task cannot start.
    #[error("add_relay must be called from within a tokio runtime")]
    NoRuntime,
}

/// Why [`RelayPool::publish`](super::RelayPool::publish) queued the event to
/// no relay at all.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The pool has no relays; add one with `add_relay` first.
    #[error("the pool has no relays; add one before publishing")]
    NoRelays,
    /// Every relay's queue was full (or its task had ended): the event was
    /// not sent anywhere. Retry later, or raise `PoolConfig::queue_capacity`.
    #[error("event queued to no relay: every relay queue is full ({} relays)", dropped.len())]
    AllQueuesFull {
        /// The relays that dropped it.
        dropped: Vec<Arc<RelayUrl>>,
    },
    /// The event could not be serialized (should not happen for a valid event).
    #[error("could not serialize the event: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Why [`RelayPool::subscribe`](super::RelayPool::subscribe) refused a
/// subscription.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// NIP-01 requires at least one filter per `REQ`.
    #[error("a subscription needs at least one filter")]
    NoFilters,
    /// NIP-01 limits subscription ids to 1–64 characters.
    #[error("subscription id must be 1 to 64 characters, got {0}")]
    BadId(usize),
    /// The filters could not be serialized.
    #[error("could not serialize the subscription: {0}")]
    Serialize(#[from] serde_json::Error),
}
