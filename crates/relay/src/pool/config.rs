//! What a [`RelayPool`](super::RelayPool) can be tuned with.
//!
//! Every limit the pool enforces lives here so that callers (and tests, which
//! want millisecond backoffs) can see and change them in one place.

use std::time::Duration;

use nostr::prelude::Keys;

/// Settings for a [`RelayPool`](super::RelayPool).
///
/// `PoolConfig::default()` suits a long-running signer; tests usually shrink
/// the backoff with [`PoolConfig::with_backoff`].
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Keys used to answer NIP-42 `AUTH` challenges. Without keys the pool
    /// ignores challenges, and relays that require authentication refuse its
    /// events and subscriptions.
    pub auth_keys: Option<Keys>,
    /// First delay before reconnecting to a relay that went away.
    pub min_backoff: Duration,
    /// Ceiling of the exponential reconnect delay.
    pub max_backoff: Duration,
    /// Bound on each network step: TCP connect plus websocket (and TLS)
    /// handshake, one frame write, and the close handshake at shutdown.
    pub io_timeout: Duration,
    /// How long to wait for a relay's `OK` to a published event before
    /// counting it as unanswered. Publishing never waits for it.
    pub ok_timeout: Duration,
    /// A ping is sent after this much silence; a relay silent for twice as
    /// long is considered gone and the connection is re-established.
    pub ping_interval: Duration,
    /// Largest text frame accepted from a relay, in bytes. Larger frames up to
    /// a quarter more are read and dropped; anything bigger resets the
    /// connection (which is then re-established).
    pub max_message_size: usize,
    /// Events queued per relay while it is disconnected or slow. When the
    /// queue is full, publishing reports that relay as dropped.
    pub queue_capacity: usize,
    /// How many recent `(event id, subscription)` pairs are remembered to
    /// drop the copies other relays send of the same event.
    pub dedup_capacity: usize,
    /// Capacity of the notification channel returned by
    /// [`RelayPool::new`](super::RelayPool::new). When the caller does not keep
    /// up, connection tasks wait (back-pressure) rather than drop events.
    pub notification_capacity: usize,
    /// Check the id and signature of every incoming event before delivering
    /// it (a relay could otherwise forge events). On by default. When off, the
    /// caller must verify; copies of an event with different signatures are
    /// then all delivered, so a forged copy cannot hide the genuine one.
    pub verify_events: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            auth_keys: None,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            io_timeout: Duration::from_secs(10),
            ok_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            max_message_size: 4 * 1024 * 1024,
            queue_capacity: 1024,
            dedup_capacity: 16 * 1024,
            notification_capacity: 4096,
            verify_events: true,
        }
    }
}

impl PoolConfig {
    /// Sets the keys that answer NIP-42 `AUTH` challenges.
    #[must_use]
    pub fn with_auth_keys(mut self, keys: Keys) -> Self {
        self.auth_keys = Some(keys);
        self
    }

    /// Sets the reconnect backoff range (`min` is raised to at least 1 ms and
    /// `max` to at least `min`).
    #[must_use]
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min.max(Duration::from_millis(1));
        self.max_backoff = max.max(self.min_backoff);
        self
    }

    /// Sets how long an `OK` is awaited before the event counts as unanswered.
    #[must_use]
    pub fn with_ok_timeout(mut self, timeout: Duration) -> Self {
        self.ok_timeout = timeout;
        self
    }
}
