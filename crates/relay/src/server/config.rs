//! What the embedded relay can be tuned with.
//!
//! Every bound the relay enforces is here: it must stay small and
//! predictable even when a client misbehaves.

use std::time::Duration;

/// Settings for the embedded relay ([`serve`](super::serve)).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Concurrent websocket connections; further TCP connections are closed
    /// at once.
    pub max_connections: usize,
    /// Largest client message, in bytes. A larger message (up to four times
    /// this) is answered with a `NOTICE` and dropped; anything bigger closes
    /// the connection.
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_message_size: 512 * 1024,
            max_stored_events: 100_000,
            max_subscriptions: 64,
            max_filters: 16,
            max_limit: 1000,
            require_auth: false,
            relay_url: None,
            io_timeout: Duration::from_secs(10),
            broadcast_capacity: 4096,
        }
    }
}
