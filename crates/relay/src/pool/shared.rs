//! What the pool and every connection task share: settings, subscriptions,
//! the dedup set and the notification channel.

use std::hash::RandomState;
use std::sync::{Mutex, MutexGuard, PoisonError};

use nostr::prelude::EventId;
use tokio::sync::mpsc;

use super::config::PoolConfig;
use super::event::PoolEvent;
use super::subscriptions::Subscriptions;
use crate::seen::SeenSet;

/// What every connection task shares with the pool.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: PoolConfig,
    subscriptions: Mutex<Subscriptions>,
    seen: Mutex<SeenSet<SeenKey>>,
    /// Keyed hasher for signature fingerprints (see [`SeenKey`]).
    pub(crate) fingerprints: RandomState,
    pub(crate) events: mpsc::Sender<PoolEvent>,
}

/// What identifies "the same event for the same subscription": the event
/// id, the subscription's serial, and — only when events are not verified —
/// a keyed fingerprint of the signature, so that a relay sending a forged
/// copy first cannot make the pool drop the genuine one.
pub(crate) type SeenKey = (EventId, u64, u64);

impl Shared {
    pub(crate) fn new(config: PoolConfig, events: mpsc::Sender<PoolEvent>) -> Self {
        Shared {
            seen: Mutex::new(SeenSet::new(config.dedup_capacity)),
            subscriptions: Mutex::new(Subscriptions::default()),
            fingerprints: RandomState::new(),
            config,
            events,
        }
    }

    pub(crate) fn subscriptions(&self) -> MutexGuard<'_, Subscriptions> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn seen(&self) -> MutexGuard<'_, SeenSet<SeenKey>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
