//! A pool of client connections to Nostr relays.
//!
//! [`RelayPool`] is the only place Rampart opens client sockets. It knows
//! NIP-01 and NIP-42, nothing of NIP-46: callers hand it events to publish and
//! filters to subscribe with, and read what relays send back as
//! [`PoolEvent`]s from a channel.
//!
//! ```no_run
//! # async fn example(event: nostr::prelude::Event) -> Result<(), Box<dyn std::error::Error>> {
//! use nostr::prelude::{Filter, Kind};
//! use relay::{PoolConfig, PoolEvent, RelayPool};
//!
//! let (pool, mut events) = RelayPool::new(PoolConfig::default());
//! pool.add_relay("wss://relay.example.com")?;
//! let _id = pool.subscribe(Filter::new().kind(Kind::NostrConnect))?;
//! let report = pool.publish(&event)?; // returns at once; OKs are tracked in the background
//! assert!(report.queued > 0);
//! while let Some(notification) = events.recv().await {
//!     if let PoolEvent::Event { event, .. } = notification {
//!         println!("{}", event.content);
//!     }
//! }
//! pool.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Each relay gets one task that owns its socket (`connection.rs`); the pool
//! handle only queues work for those tasks and reads their counters, so no
//! call on it waits for the network.

mod backoff;
mod config;
mod connection;
mod error;
mod event;
mod shared;
mod socket;
mod status;
mod subscriptions;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nostr::prelude::{ClientMessage, Event, Filter, RelayUrl, SubscriptionId};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::{debug, warn};

pub use config::PoolConfig;
pub use error::{AddRelayError, PublishError, SubscribeError};
pub use event::PoolEvent;
pub use status::{AuthState, RelayStatus};

use connection::{Connection, Outgoing};
use shared::Shared;
use socket::Target;
use status::{RelayState, bump};

/// Longest subscription id NIP-01 allows.
const MAX_SUBSCRIPTION_ID_LEN: usize = 64;

/// A set of relay connections that publish, subscribe and reconnect together.
///
/// Cloning is cheap and every clone drives the same connections. When the last
/// clone is dropped, every connection task stops (closing its socket); call
/// [`RelayPool::shutdown`] to wait for that.
#[derive(Debug, Clone)]
pub struct RelayPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    relays: Mutex<Relays>,
}

#[derive(Debug, Default)]
struct Relays {
    by_url: HashMap<RelayUrl, RelayHandle>,
    shut_down: bool,
}

/// The pool's side of one relay's connection task.
#[derive(Debug)]
struct RelayHandle {
    state: Arc<RelayState>,
    queue: mpsc::Sender<Outgoing>,
    wake: Arc<Notify>,
    /// Dropping this stops the task.
    _stop: watch::Sender<()>,
    task: JoinHandle<()>,
}

/// Where [`RelayPool::publish`] put an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Relays whose queue took the event. Each writes it as soon as it can;
    /// the relay's `OK` is counted in [`RelayStatus`], never awaited.
    pub queued: usize,
    /// Of those, relays currently disconnected: the event waits for the
    /// reconnect.
    pub waiting_for_reconnect: usize,
    /// Relays that did not take the event because their queue was full.
    pub dropped: Vec<Arc<RelayUrl>>,
}

impl RelayPool {
    /// Creates an empty pool and the channel its notifications arrive on.
    ///
    /// Read the receiver continuously: when it is full, connection tasks
    /// wait. Dropping it is fine if the caller wants no notifications.
    pub fn new(config: PoolConfig) -> (Self, mpsc::Receiver<PoolEvent>) {
        let (events, receiver) = mpsc::channel(config.notification_capacity.max(1));
        let shared = Arc::new(Shared::new(config, events));
        let inner = Arc::new(Inner {
            shared,
            relays: Mutex::new(Relays::default()),
        });
        (Self { inner }, receiver)
    }

    fn relays(&self) -> MutexGuard<'_, Relays> {
        self.inner
            .relays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a relay and starts connecting to it in the background; active
    /// subscriptions are sent as soon as it connects. Returns `false` if the
    /// relay was already in the pool.
    ///
    /// Must be called within a tokio runtime.
    pub fn add_relay(&self, url: &str) -> Result<bool, AddRelayError> {
        let target = Target::parse(url)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| AddRelayError::NoRuntime)?;
        let mut relays = self.relays();
        if relays.shut_down {
            return Err(AddRelayError::ShutDown);
        }
        if relays.by_url.contains_key(&target.url) {
            return Ok(false);
        }
        let key = (*target.url).clone();
        let state = Arc::new(RelayState::new(target.url.clone()));
        let (queue, queue_rx) = mpsc::channel(self.inner.shared.config.queue_capacity.max(1));
        let wake = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(());
        let connection = Connection {
            shared: self.inner.shared.clone(),
            state: state.clone(),
            target,
            queue: queue_rx,
            wake: wake.clone(),
            stop: stop_rx,
            retry: Default::default(),
        };
        let task = runtime.spawn(connection.run());
        debug!(relay = %key, "relay added");
        relays.by_url.insert(
            key,
            RelayHandle {
                state,
                queue,
                wake,
                _stop: stop,
                task,
            },
        );
        Ok(true)
    }

    /// Removes a relay: its task closes the socket and stops. Events still
    /// queued for it are counted as dropped. Returns `false` if the relay was
    /// not in the pool.
    pub fn remove_relay(&self, url: &str) -> bool {
        let Ok(url) = RelayUrl::parse(url) else {
            return false;
        };
        let removed = self.relays().by_url.remove(&url);
        // Dropping the handle (outside the lock) stops the task.
        removed.is_some()
    }

    /// Makes the pool's relays exactly `urls` (as NIP-46 `switch_relays`
    /// asks): adds the missing ones, removes the others. Nothing changes if
    /// any URL is invalid.
    pub fn set_relays<I, S>(&self, urls: I) -> Result<(), AddRelayError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let wanted: Vec<(String, RelayUrl)> = urls
            .into_iter()
            .map(|url| {
                let url = url.as_ref();
                Target::parse(url).map(|target| (url.to_owned(), (*target.url).clone()))
            })
            .collect::<Result<_, _>>()?;
        let stale: Vec<RelayUrl> = self
            .relays()
            .by_url
            .keys()
            .filter(|url| !wanted.iter().any(|(_, wanted)| wanted == *url))
            .cloned()
            .collect();
        for url in stale {
            let removed = self.relays().by_url.remove(&url);
            drop(removed);
        }
        for (url, _) in &wanted {
            self.add_relay(url)?;
        }
        Ok(())
    }

    /// The relays in the pool.
    pub fn relay_urls(&self) -> Vec<RelayUrl> {
        self.relays().by_url.keys().cloned().collect()
    }

    /// Queues an event to every relay and returns at once, without waiting
    /// for any `OK` (some relays never send one for ephemeral kinds).
    ///
    /// Relays that are down keep the event queued and write it when they
    /// reconnect; an event written but never acknowledged before a disconnect
    /// is written again after the reconnect. Relays whose queue is full are
    /// listed in [`PublishReport::dropped`] — nothing is lost silently.
    pub fn publish(&self, event: &Event) -> Result<PublishReport, PublishError> {
        let frame: Utf8Bytes =
            serde_json::to_string(&ClientMessage::Event(Cow::Borrowed(event)))?.into();
        let relays = self.relays();
        if relays.by_url.is_empty() {
            return Err(PublishError::NoRelays);
        }
        let mut report = PublishReport::default();
        for handle in relays.by_url.values() {
            let outgoing = Outgoing {
                id: event.id,
                frame: frame.clone(),
            };
            match handle.queue.try_send(outgoing) {
                Ok(()) => {
                    report.queued += 1;
                    if !handle.state.is_connected() {
                        report.waiting_for_reconnect += 1;
                    }
                }
                Err(_) => {
                    bump(&handle.state.counters.dropped);
                    warn!(relay = %handle.state.url, id = %event.id, "relay queue full, event dropped");
                    report.dropped.push(handle.state.url.clone());
                }
            }
        }
        if report.queued == 0 {
            return Err(PublishError::AllQueuesFull {
                dropped: report.dropped,
            });
        }
        Ok(report)
    }

    /// Subscribes on every relay (present and future) with a fresh random id,
    /// which is returned. Matching events arrive as [`PoolEvent::Event`].
    pub fn subscribe<F>(&self, filters: F) -> Result<SubscriptionId, SubscribeError>
    where
        F: Into<Vec<Filter>>,
    {
        let id = SubscriptionId::generate();
        self.subscribe_with_id(id.clone(), filters)?;
        Ok(id)
    }

    /// Subscribes with the caller's id, replacing that subscription's filters
    /// if it exists. Relays are re-sent the subscription after every
    /// reconnect.
    pub fn subscribe_with_id<F>(&self, id: SubscriptionId, filters: F) -> Result<(), SubscribeError>
    where
        F: Into<Vec<Filter>>,
    {
        let filters: Vec<Filter> = filters.into();
        if filters.is_empty() {
            return Err(SubscribeError::NoFilters);
        }
        let len = id.as_str().chars().count();
        if len == 0 || len > MAX_SUBSCRIPTION_ID_LEN {
            return Err(SubscribeError::BadId(len));
        }
        let req = ClientMessage::Req {
            subscription_id: Cow::Borrowed(&id),
            filters: filters.iter().map(Cow::Borrowed).collect(),
        };
        let frame: Utf8Bytes = serde_json::to_string(&req)?.into();
        self.inner.shared.subscriptions().insert(id, frame);
        self.wake_all();
        Ok(())
    }

    /// Ends a subscription on every relay. Returns `false` if it was not
    /// active.
    pub fn unsubscribe(&self, id: &SubscriptionId) -> bool {
        let removed = self.inner.shared.subscriptions().remove(id);
        if removed {
            self.wake_all();
        }
        removed
    }

    /// The ids of the active subscriptions.
    pub fn subscriptions(&self) -> Vec<SubscriptionId> {
        self.inner.shared.subscriptions().ids()
    }

    fn wake_all(&self) {
        for handle in self.relays().by_url.values() {
            handle.wake.notify_one();
        }
    }

    /// A snapshot of every relay's state and counters.
    pub fn status(&self) -> Vec<RelayStatus> {
        self.relays()
            .by_url
            .values()
            .map(RelayHandle::snapshot)
            .collect()
    }

    /// A snapshot of one relay's state and counters, if it is in the pool.
    pub fn relay_status(&self, url: &str) -> Option<RelayStatus> {
        let url = RelayUrl::parse(url).ok()?;
        self.relays().by_url.get(&url).map(RelayHandle::snapshot)
    }

    /// Stops every connection (closing sockets politely) and waits for the
    /// tasks to end. Afterwards `add_relay` fails and `publish` reports no
    /// relays. Events still queued are counted as dropped.
    pub async fn shutdown(&self) {
        let handles: Vec<RelayHandle> = {
            let mut relays = self.relays();
            relays.shut_down = true;
            relays.by_url.drain().map(|(_, handle)| handle).collect()
        };
        let limit = self.inner.shared.config.io_timeout * 2;
        for handle in handles {
            let RelayHandle { task, _stop, .. } = handle;
            drop(_stop);
            let abort = task.abort_handle();
            if tokio::time::timeout(limit, task).await.is_err() {
                warn!("relay task did not stop in time; aborting it");
                abort.abort();
            }
        }
    }
}

impl RelayHandle {
    fn snapshot(&self) -> RelayStatus {
        let queued = self.queue.max_capacity() - self.queue.capacity();
        self.state.snapshot(queued)
    }
}
