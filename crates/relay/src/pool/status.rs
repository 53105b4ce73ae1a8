//! Per-relay health that callers can read at any time.
//!
//! A connection task updates its relay's counters with relaxed atomics on the
//! hot path; [`RelayStatus`] is the snapshot a caller gets back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nostr::prelude::RelayUrl;

/// Where a relay stands with NIP-42 authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthState {
    /// The relay has not asked for authentication on this connection.
    NotRequested,
    /// The relay asked, but the pool has no keys
    /// ([`PoolConfig::auth_keys`](super::PoolConfig::auth_keys)).
    NoKeys,
    /// The signed `AUTH` event was sent; no answer yet.
    Sent,
    /// The relay answered `OK true` to the `AUTH` event.
    Accepted,
    /// The relay answered `OK false` with this reason.
    Rejected(String),
}

/// A snapshot of one relay's state and counters.
///
/// Counters accumulate over the pool's lifetime, across reconnects.
#[derive(Debug, Clone)]
pub struct RelayStatus {
    /// The relay.
    pub url: RelayUrl,
    /// Whether a websocket connection is currently up.
    pub connected: bool,
    /// NIP-42 state of the current connection.
    pub auth: AuthState,
    /// The last connection error, kept after reconnecting.
    pub last_error: Option<String>,
    /// Events the relay sent for our subscriptions (before de-duplication).
    pub events_received: u64,
    /// Received events dropped because another relay delivered them first.
    pub duplicates: u64,
    /// Received events dropped because their id or signature was wrong.
    pub invalid_events: u64,
    /// Frames dropped because they were not valid relay messages or too big.
    pub bad_frames: u64,
    /// `NOTICE` messages received.
    pub notices: u64,
    /// Events written to the relay's socket (re-sends included).
    pub published: u64,
    /// `OK true` answers (including `duplicate:`).
    pub ok: u64,
    /// `OK false` answers that were not retried.
    pub rejected: u64,
    /// Published events the relay never answered within
    /// [`PoolConfig::ok_timeout`](super::PoolConfig::ok_timeout). Normal for
    /// ephemeral kinds on relays such as nostr-rs-relay.
    pub no_answer: u64,
    /// Events not delivered to this relay: its queue was full, or it was
    /// removed or shut down while they were queued.
    pub dropped: u64,
    /// Times a lost connection was re-established.
    pub reconnects: u64,
    /// Events currently waiting in this relay's queue.
    pub queued: usize,
}

/// The relay's live state, shared between its connection task and the pool.
#[derive(Debug)]
pub(crate) struct RelayState {
    pub(crate) url: std::sync::Arc<RelayUrl>,
    pub(crate) counters: Counters,
    link: Mutex<Link>,
}

#[derive(Debug)]
struct Link {
    connected: bool,
    auth: AuthState,
    last_error: Option<String>,
}

/// Monotonic counters, see the fields of [`RelayStatus`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) events_received: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) invalid_events: AtomicU64,
    pub(crate) bad_frames: AtomicU64,
    pub(crate) notices: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) ok: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) no_answer: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl RelayState {
    pub(crate) fn new(url: std::sync::Arc<RelayUrl>) -> Self {
        Self {
            url,
            counters: Counters::default(),
            link: Mutex::new(Link {
                connected: false,
                auth: AuthState::NotRequested,
                last_error: None,
            }),
        }
    }

    fn link(&self) -> MutexGuard<'_, Link> {
        // The guarded data stays consistent even if a holder panicked.
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.link().connected
    }

    pub(crate) fn set_connected(&self) {
        let mut link = self.link();
        link.connected = true;
        link.auth = AuthState::NotRequested;
    }

    pub(crate) fn set_disconnected(&self, error: String) {
        let mut link = self.link();
        link.connected = false;
        link.last_error = Some(error);
    }

    pub(crate) fn set_error(&self, error: String) {
        self.link().last_error = Some(error);
    }

    pub(crate) fn set_auth(&self, auth: AuthState) {
        self.link().auth = auth;
    }

    pub(crate) fn snapshot(&self, queued: usize) -> RelayStatus {
        let (connected, auth, last_error) = {
            let link = self.link();
            (link.connected, link.auth.clone(), link.last_error.clone())
        };
        let c = &self.counters;
        RelayStatus {
            url: (*self.url).clone(),
            connected,
            auth,
            last_error,
            events_received: read(&c.events_received),
            duplicates: read(&c.duplicates),
            invalid_events: read(&c.invalid_events),
            bad_frames: read(&c.bad_frames),
            notices: read(&c.notices),
            published: read(&c.published),
            ok: read(&c.ok),
            rejected: read(&c.rejected),
            no_answer: read(&c.no_answer),
            dropped: read(&c.dropped),
            reconnects: read(&c.reconnects),
            queued,
        }
    }
}
