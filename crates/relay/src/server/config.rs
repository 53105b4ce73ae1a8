//! What the embedded relay can be tuned with.
//!
//! Every bound the relay enforces is here: it must stay small and
//! predictable even when a client misbehaves.

use std::time::Duration;

use nostr::prelude::PublicKey;

use super::kinds::KindPolicy;

/// Settings for the embedded relay ([`serve`](super::serve)).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Concurrent websocket connections; further TCP connections are closed
    /// at once.
    pub max_connections: usize,
    /// Largest client message, in bytes. A larger `EVENT` (up to a quarter
    /// more, at least 64 KiB more) is refused with `OK false "invalid: …"`
    /// naming the limit, other messages with a `NOTICE`; anything bigger
    /// closes the connection. The
    /// default (3 MiB) carries any NIP-46 message under `nip46`'s default
    /// limits (1 MiB requests, their answers up to ≈ 2 MiB of content).
    pub max_message_size: usize,
    /// Non-ephemeral events kept in memory; the oldest (by `created_at`) are
    /// forgotten first.
    pub max_stored_events: usize,
    /// Open subscriptions per connection.
    pub max_subscriptions: usize,
    /// Filters per `REQ`.
    pub max_filters: usize,
    /// Stored events returned per filter, whatever `limit` the client asks.
    pub max_limit: usize,
    /// Require NIP-42 authentication: an `AUTH` challenge is sent on connect
    /// and `EVENT`/`REQ` are refused with `auth-required:` until the client
    /// answers it.
    pub require_auth: bool,
    /// This relay's public URL, checked (host and port) against the `relay`
    /// tag of `AUTH` events. When `None`, any `relay` tag is accepted.
    pub relay_url: Option<String>,
    /// Bound on the websocket handshake and on each write to a client.
    pub io_timeout: Duration,
    /// Live events buffered per connection; a client slower than that misses
    /// events and is told so with a `NOTICE`.
    pub broadcast_capacity: usize,
    /// Bytes of live events buffered per connection, at most (the same rule:
    /// past it, a slow client misses events).
    pub max_queued_bytes: usize,
    /// Bytes of stored events (their JSON), at most; the oldest go first.
    pub max_stored_bytes: usize,
    /// Which kinds are accepted (NIP-46 only by default).
    pub kinds: KindPolicy,
    /// Events one connection may publish per second (and at once); more are
    /// refused `rate-limited:`. Sized for one busy client.
    pub events_per_second: u32,
    /// Connections authenticated (NIP-42) as one of these keys are never
    /// rate-limited: the signers this relay serves, which publish every
    /// answer. An `AUTH` challenge is sent on connect when any are set.
    pub trusted_authors: Vec<PublicKey>,
    /// A connection with no subscription that sends nothing for this long is
    /// closed.
    pub idle_timeout: Duration,
    /// When set, websocket handshakes whose `Origin` header is not in the
    /// list are refused (connections without one, i.e. not from a browser,
    /// are not). Off by default: web apps served from other origins
    /// legitimately talk to a local bunker's relay.
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_message_size: 3 * 1024 * 1024,
            max_stored_events: 100_000,
            max_subscriptions: 64,
            max_filters: 16,
            max_limit: 1000,
            require_auth: false,
            relay_url: None,
            io_timeout: Duration::from_secs(10),
            broadcast_capacity: 4096,
            max_queued_bytes: 4 * 1024 * 1024,
            max_stored_bytes: 16 * 1024 * 1024,
            kinds: KindPolicy::Nip46,
            events_per_second: 1000,
            trusted_authors: Vec::new(),
            idle_timeout: Duration::from_secs(120),
            allowed_origins: None,
        }
    }
}

impl ServerConfig {
    /// The defaults, for a general relay that takes every kind.
    pub fn any_kind() -> Self {
        ServerConfig {
            kinds: KindPolicy::Any,
            ..ServerConfig::default()
        }
    }
}
