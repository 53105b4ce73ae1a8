//! The async layer of one connection: it only moves bytes.
//!
//! A [`Link`] owns the relay pool, the cached [`Conversation`] with the
//! signer (the NIP-44 key is derived once per connection, not per request)
//! and the [`Tracker`] of pending requests. Callers seal and publish their
//! own requests, so encryption runs on their tasks; one background task
//! reads the relays, opens responses, hands them to the tracker and wakes
//! the callers, and fires the tracker's deadlines. Every decision is the
//! tracker's.
//!
//! Incoming events are checked cheapest first — kind, size, `p` tag, author
//! — before the one signature verification and the decryption, so a flood of
//! junk addressed to us costs little. The pool does not verify them a second
//! time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use nip46::envelope::{self, Entropy};
use nip46::nostr::prelude::{
    Event, EventId, Filter, Keys, Kind, PublicKey, RelayUrl, SubscriptionId, Timestamp,
};
use nip46::{Command, Conversation, Outcome, Request, Scheme};
use relay::{PoolConfig, PoolEvent, RelayPool};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{debug, info, trace, warn};

use crate::checks;
use crate::error::Error;
use crate::options::{AuthChallenge, ClientOptions};
use crate::tracker::{Dispatch, Resolution, Tracker};

/// Responses older than this (by their `created_at`) are not asked for: it
/// tolerates that much clock skew between client and signer.
const SINCE_SLACK_SECS: u64 = 300;

pub(crate) type Reply = Result<String, Error>;
type Waiter = oneshot::Sender<Reply>;

/// One connection to one signer.
pub(crate) struct Link {
    pub(crate) keys: Keys,
    pub(crate) signer: PublicKey,
    pub(crate) pool: RelayPool,
    pub(crate) options: ClientOptions,
    state: Mutex<State>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
}

struct State {
    conversation: Conversation,
    tracker: Tracker<Waiter>,
    user: Option<PublicKey>,
    relays: Vec<RelayUrl>,
    closed: Option<String>,
    /// Relays that have connected at least once: their next `Connected` is a reconnect.
    seen: HashSet<RelayUrl>,
    /// Request events published, by event id: their request id and how many
    /// relays refused them (when all do, the request fails at once).
    sent: HashMap<EventId, Sent>,
}

/// A published request event.
struct Sent {
    request_id: String,
    /// The relays that refused it.
    refused_by: HashSet<RelayUrl>,
}

impl State {
    /// Remember a published request event (forgetting those of requests no
    /// longer pending once the map outgrows them).
    fn note_sent(&mut self, event: &Event, request_id: &str) {
        if self.sent.len() > 2 * self.tracker.len() + 16 {
            let tracker = &self.tracker;
            self.sent
                .retain(|_, s| tracker.request(&s.request_id).is_some());
        }
        self.sent.insert(
            event.id,
            Sent {
                request_id: request_id.to_owned(),
                refused_by: HashSet::new(),
            },
        );
    }
}

/// A pool listening for responses, before the link exists.
pub(crate) struct Listening {
    pub(crate) pool: RelayPool,
    pub(crate) events: mpsc::Receiver<PoolEvent>,
    pub(crate) subscription: SubscriptionId,
}

/// What a link is made of.
pub(crate) struct Parts {
    pub(crate) keys: Keys,
    pub(crate) signer: PublicKey,
    pub(crate) conversation: Conversation,
    pub(crate) relays: Vec<RelayUrl>,
    pub(crate) user: Option<PublicKey>,
    pub(crate) options: ClientOptions,
    pub(crate) listening: Listening,
    pub(crate) seen: HashSet<RelayUrl>,
}

/// The filter for responses to `client` (from `signer`, once known).
pub(crate) fn response_filter(client: PublicKey, signer: Option<PublicKey>) -> Filter {
    let since = Timestamp::from_secs(Timestamp::now().as_secs().saturating_sub(SINCE_SLACK_SECS));
    let filter = Filter::new()
        .kind(Kind::NostrConnect)
        .pubkey(client)
        .since(since);
    match signer {
        Some(signer) => filter.author(signer),
        None => filter,
    }
}

/// Start a pool on `relays`, subscribed to responses for `keys`.
pub(crate) fn listen(
    keys: &Keys,
    signer: Option<PublicKey>,
    relays: &[RelayUrl],
    options: &ClientOptions,
) -> Result<Listening, Error> {
    if relays.is_empty() {
        return Err(Error::InvalidRequest(
            "no relay to reach the signer on".into(),
        ));
    }
    let config = PoolConfig {
        // Checked here after the cheap checks; once is enough.
        verify_events: false,
        max_message_size: options
            .pool
            .max_message_size
            .max(options.limits.max_relay_message()),
        ..options.pool.clone()
    };
    let (pool, events) = RelayPool::new(config);
    for relay in relays {
        pool.add_relay(relay.as_str())
            .map_err(|e| Error::Relay(format!("{relay}: {e}")))?;
    }
    let subscription = pool
        .subscribe(vec![response_filter(keys.public_key(), signer)])
        .map_err(|e| Error::Relay(e.to_string()))?;
    Ok(Listening {
        pool,
        events,
        subscription,
    })
}

/// Fresh randomness for one message: a request id and the envelope's entropy.
pub(crate) fn fresh() -> Result<(String, Entropy), Error> {
    let mut random = zeroize::Zeroizing::new([0u8; 72]);
    getrandom::fill(&mut *random).map_err(|e| Error::Entropy(e.to_string()))?;
    let id = hex(&random[..8]);
    let mut nonce = [0u8; 32];
    let mut aux = [0u8; 32];
    nonce.copy_from_slice(&random[8..40]);
    aux.copy_from_slice(&random[40..72]);
    Ok((id, Entropy { nonce, aux }))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Forgets a request whose caller stopped waiting (its future was dropped).
struct CancelOnDrop<'a> {
    link: &'a Link,
    id: Option<String>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.link.state().tracker.cancel(&id);
        }
    }
}

impl Link {
    /// Start the link and its background task. Must run in a tokio runtime.
    pub(crate) fn launch(parts: Parts) -> Arc<Link> {
        let Parts {
            keys,
            signer,
            conversation,
            relays,
            user,
            options,
            listening,
            seen,
        } = parts;
        let max_probe = options.probe_interval.saturating_mul(8);
        let tracker = Tracker::new(options.auth_timeout, options.probe_interval, max_probe);
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let link = Arc::new(Link {
            keys,
            signer,
            pool: listening.pool,
            options,
            state: Mutex::new(State {
                conversation,
                tracker,
                user,
                relays,
                closed: None,
                seen,
                sent: HashMap::new(),
            }),
            wake: wake.clone(),
            stop,
        });
        tokio::spawn(drive(
            Arc::downgrade(&link),
            listening.events,
            wake,
            stopped,
        ));
        link
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn user(&self) -> Option<PublicKey> {
        self.state().user
    }

    pub(crate) fn set_user(&self, user: PublicKey) {
        self.state().user = Some(user);
    }

    pub(crate) fn relays(&self) -> Vec<RelayUrl> {
        self.state().relays.clone()
    }

    pub(crate) fn pending(&self) -> usize {
        self.state().tracker.len()
    }

    /// Send one request and wait for its answer (bounded by `timeout`, or by
    /// the auth timeout after an `auth_url`). Dropping the future cancels it.
    pub(crate) async fn call(&self, command: Command, timeout: Duration) -> Reply {
        let method = command
            .method()
            .ok_or_else(|| Error::InvalidRequest("not a NIP-46 method".into()))?;
        let (id, entropy) = fresh()?;
        let request = Request {
            id: id.clone(),
            command,
        }
        .to_json();
        let limit = self.options.limits.max_message;
        if request.len() > limit {
            return Err(Error::TooLarge {
                method,
                size: request.len(),
                limit,
            });
        }
        let (tx, rx) = oneshot::channel();
        let event = {
            let mut guard = self.state();
            let st = &mut *guard;
            if let Some(reason) = &st.closed {
                return Err(Error::Disconnected(reason.clone()));
            }
            let started = st
                .tracker
                .start(id.clone(), method, request, Instant::now(), timeout, tx)
                .map_err(|_| Error::Entropy("request id collision".into()))?;
            if started.earliest {
                self.wake.notify_one();
            }
            match started.dispatch {
                Dispatch::Held => None,
                Dispatch::Now => {
                    let sealed = st.tracker.request(&id).map(|text| {
                        envelope::seal(
                            &self.keys,
                            &mut st.conversation,
                            Scheme::Nip44,
                            text,
                            Timestamp::now(),
                            &entropy,
                        )
                    });
                    match sealed {
                        Some(Ok(event)) => {
                            st.note_sent(&event, &id);
                            Some(event)
                        }
                        Some(Err(e)) => {
                            st.tracker.cancel(&id);
                            return Err(Error::InvalidRequest(e.to_string()));
                        }
                        None => None,
                    }
                }
            }
        };
        let cancel = CancelOnDrop {
            link: self,
            id: Some(id),
        };
        if let Some(event) = event
            && let Err(e) = self.pool.publish(&event)
        {
            return Err(Error::Disconnected(format!("cannot send the request: {e}")));
        }
        let reply = rx
            .await
            .unwrap_or_else(|_| Err(Error::Disconnected("the client was shut down".into())));
        let mut cancel = cancel;
        cancel.id = None;
        reply
    }

    /// Seal a request the tracker holds with fresh randomness (a re-send is
    /// a new event: the signer drops replayed event ids).
    fn seal_pending(&self, st: &mut State, id: &str) -> Option<Event> {
        let (_, entropy) = match fresh() {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "cannot re-send a request");
                return None;
            }
        };
        let text = st.tracker.request(id)?;
        match envelope::seal(
            &self.keys,
            &mut st.conversation,
            Scheme::Nip44,
            text,
            Timestamp::now(),
            &entropy,
        ) {
            Ok(event) => {
                st.note_sent(&event, id);
                Some(event)
            }
            Err(e) => {
                warn!(error = %e, "cannot re-send a request");
                None
            }
        }
    }

    fn publish(&self, event: &Event) {
        if let Err(e) = self.pool.publish(event) {
            warn!(error = %e, "could not queue a request");
        }
    }

    /// Follow a relay list from the signer. Returns whether it changed.
    pub(crate) fn follow_relays(&self, relays: Vec<RelayUrl>) -> Result<bool, Error> {
        let mut wanted: Vec<&str> = relays.iter().map(RelayUrl::as_str).collect();
        let mut current: Vec<String> = self
            .state()
            .relays
            .iter()
            .map(ToString::to_string)
            .collect();
        wanted.sort_unstable();
        current.sort_unstable();
        if wanted == current {
            return Ok(false);
        }
        self.pool
            .set_relays(&wanted)
            .map_err(|e| Error::Relay(e.to_string()))?;
        info!(relays = ?wanted, "following the signer's relays");
        let probe = {
            let mut st = self.state();
            st.relays = relays;
            // Answers to requests in flight may come on relays just dropped.
            st.closed.is_none() && st.tracker.reconnected()
        };
        if probe {
            self.send_probe();
        }
        Ok(true)
    }

    /// Fail every pending request, stop the background task and close the
    /// relay connections.
    pub(crate) async fn close(&self, reason: &str) {
        let waiters = {
            let mut st = self.state();
            if st.closed.is_none() {
                st.closed = Some(reason.to_owned());
            }
            st.tracker.drain()
        };
        for (waiter, _) in waiters {
            let _ = waiter.send(Err(Error::Disconnected(reason.to_owned())));
        }
        let _ = self.stop.send(true);
        self.pool.shutdown().await;
    }

    fn on_pool_event(&self, event: PoolEvent) {
        match event {
            PoolEvent::Event { event, .. } => self.on_event(&event),
            PoolEvent::Connected { relay } => {
                let again = !self.state().seen.insert((*relay).clone());
                debug!(%relay, reconnect = again, "relay connected");
                if again {
                    self.on_reconnect();
                }
            }
            PoolEvent::Disconnected { relay, reason } => {
                debug!(%relay, %reason, "relay disconnected");
            }
            PoolEvent::Closed { relay, message, .. } => {
                warn!(%relay, %message, "relay closed our subscription")
            }
            PoolEvent::AuthRejected { relay, message } => {
                warn!(%relay, %message, "relay refused our AUTH");
            }
            PoolEvent::Rejected {
                relay,
                event_id,
                message,
            } => self.on_rejected(&relay, &event_id, message),
            other => trace!(?other, "pool event"),
        }
    }

    /// A relay refused a request event: when every relay has, nothing will
    /// reach the signer, so the request fails now, saying why.
    fn on_rejected(&self, relay: &RelayUrl, event_id: &EventId, message: String) {
        // A copy the relay already has (a re-send after a reconnect) was
        // delivered the first time.
        if message.starts_with("duplicate") {
            debug!(%relay, %event_id, "relay already had a request");
            return;
        }
        warn!(%relay, %event_id, %message, "relay refused a request");
        let failed = {
            let mut guard = self.state();
            let st = &mut *guard;
            let relays = st.relays.len().max(1);
            let Some(sent) = st.sent.get_mut(event_id) else {
                return;
            };
            sent.refused_by.insert(relay.clone());
            if sent.refused_by.len() < relays {
                return;
            }
            let request_id = sent.request_id.clone();
            st.sent.remove(event_id);
            st.tracker.fail(&request_id)
        };
        if let Some((waiter, method)) = failed {
            let _ = waiter.send(Err(Error::RelayRefused {
                method,
                relay: relay.to_string(),
                message,
            }));
        }
    }

    fn on_reconnect(&self) {
        let probe = {
            let mut st = self.state();
            st.closed.is_none() && st.tracker.reconnected()
        };
        if probe {
            self.send_probe();
        }
    }

    /// Send a `ping` whose answer shows the signer hears us again.
    fn send_probe(&self) {
        let Ok((id, entropy)) = fresh() else {
            warn!("no randomness for a reconnect probe");
            return;
        };
        let request = Request {
            id: id.clone(),
            command: Command::Ping,
        }
        .to_json();
        let event = {
            let mut guard = self.state();
            let st = &mut *guard;
            st.tracker.start_probe(id.clone(), request, Instant::now());
            let text = st.tracker.request(&id).unwrap_or_default();
            envelope::seal(
                &self.keys,
                &mut st.conversation,
                Scheme::Nip44,
                text,
                Timestamp::now(),
                &entropy,
            )
        };
        self.wake.notify_one();
        match event {
            Ok(event) => {
                debug!("reconnected: probing the signer");
                self.publish(&event);
            }
            Err(e) => warn!(error = %e, "cannot build a reconnect probe"),
        }
    }

    fn on_event(&self, event: &Event) {
        let now = Instant::now();
        let (resolution, resend) = {
            let mut guard = self.state();
            let st = &mut *guard;
            let response = match checks::open(
                &self.keys,
                &mut st.conversation,
                event,
                &self.options.limits,
            ) {
                Ok(response) => response,
                Err(reason) => {
                    trace!(event = %event.id, %reason, "ignored an event");
                    return;
                }
            };
            let received = st.tracker.receive(now, response);
            let resend: Vec<Event> = received
                .release
                .iter()
                .filter_map(|r| self.seal_pending(st, &r.id))
                .collect();
            (received.resolution, resend)
        };
        if !resend.is_empty() {
            debug!(
                count = resend.len(),
                "the signer answers again: re-sending requests"
            );
        }
        for event in &resend {
            self.publish(event);
        }
        match resolution {
            None => {}
            Some(Resolution::Done {
                waiter,
                method,
                outcome,
            }) => {
                let reply = match outcome {
                    Outcome::Result(result) => Ok(result),
                    Outcome::Error(error) => Err(Error::from_rpc(method, error)),
                    Outcome::AuthUrl(_) => Err(Error::bad(method, "unexpected auth_url")),
                };
                let _ = waiter.send(reply);
            }
            Some(Resolution::Challenge { id, method, url }) => {
                let challenge = AuthChallenge {
                    request_id: id,
                    method,
                    url,
                };
                match &self.options.on_auth_url {
                    Some(handler) => handler(&challenge),
                    None => info!(url = %challenge.url, %method, "the signer asks for approval"),
                }
            }
            Some(Resolution::RefusedUrl {
                waiter,
                method,
                url,
            }) => {
                let shown: String = url.chars().take(80).collect();
                let reason = format!("its auth_url `{shown}` is not an http(s) URL; not shown");
                let _ = waiter.send(Err(Error::bad(method, reason)));
            }
        }
    }

    fn on_deadline(&self, now: Instant) {
        let expired = self.state().tracker.expire(now);
        if !expired.timed_out.is_empty() {
            let status = self.pool.status();
            let unreachable = (!status.iter().any(|s| s.connected)).then(|| {
                status
                    .iter()
                    .map(|s| match &s.last_error {
                        Some(e) => format!("{}: {e}", s.url),
                        None => s.url.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            for t in expired.timed_out {
                let error = match &unreachable {
                    Some(relays) if !t.challenged => Error::Disconnected(format!(
                        "`{}` could not be sent: no relay reachable ({relays})",
                        t.method
                    )),
                    _ => Error::Timeout {
                        method: t.method,
                        waited: t.waited,
                        challenged: t.challenged,
                    },
                };
                let _ = t.waiter.send(Err(error));
            }
        }
        if expired.probe_due {
            self.send_probe();
        }
    }
}

/// The background task: relay events in, deadlines fired. Holds the link
/// weakly, so dropping the last client handle ends it.
async fn drive(
    link: Weak<Link>,
    mut events: mpsc::Receiver<PoolEvent>,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let deadline = match link.upgrade() {
            Some(link) => link.state().tracker.next_deadline(),
            None => break,
        };
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
            event = events.recv() => {
                let (Some(event), Some(link)) = (event, link.upgrade()) else { break };
                link.on_pool_event(event);
            }
            () = wake.notified() => {}
            () = sleep => {
                let Some(link) = link.upgrade() else { break };
                link.on_deadline(Instant::now());
            }
        }
    }
    trace!("client task stopped");
}
