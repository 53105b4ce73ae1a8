//! The task that owns one relay's socket for the pool's lifetime.
//!
//! It connects, sends the pool's subscriptions, writes queued events, reads
//! and routes whatever the relay says, answers `AUTH`, tracks `OK`s, and when
//! the socket dies it waits a backoff and starts over. Nothing a relay sends
//! can end this task: only the pool removing the relay (or being dropped)
//! does.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nostr::prelude::{
    ClientAuthentication, ClientMessage, Event, EventId, FinalizeEvent, RelayMessage,
    SubscriptionId,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use tracing::{debug, info, trace, warn};

use super::backoff::Backoff;
use super::event::PoolEvent;
use super::shared::Shared;
use super::socket::{Target, WsStream};
use super::status::{AuthState, RelayState, add, bump};

/// NIP-01/NIP-42 machine-readable prefix of a refusal that authentication
/// would lift.
const AUTH_REQUIRED: &str = "auth-required:";

/// A connection that lasted this long counts as having worked, and resets the
/// backoff; shorter ones (a relay accepting then hanging up) keep growing it.
const STABLE_CONNECTION: Duration = Duration::from_secs(5);

/// An event on its way to one relay: its id (to match the `OK`) and the
/// `["EVENT", ...]` frame, serialized once and shared by every relay.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) id: EventId,
    pub(crate) frame: Utf8Bytes,
}

/// Everything a connection task owns.
pub(crate) struct Connection {
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: Arc<RelayState>,
    pub(crate) target: Target,
    pub(crate) queue: mpsc::Receiver<Outgoing>,
    pub(crate) wake: Arc<Notify>,
    /// Resolves (with an error) when the pool drops the relay's handle.
    pub(crate) stop: watch::Receiver<()>,
    /// Events written on a previous socket whose `OK` never came: sent again
    /// first on the next one (at-least-once; relays answer `duplicate:`).
    pub(crate) retry: VecDeque<Outgoing>,
}

/// How a session on one socket ended (also the error of every step in it).
enum End {
    /// The pool removed the relay or was dropped.
    Stop,
    /// The socket failed; reconnect.
    Lost(String),
}

/// What woke the session loop.
enum Step {
    Stop,
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    SubscriptionsChanged,
    Publish(Option<Outgoing>),
    OkDeadline,
    Ping,
}

/// A subscription as sent on the current socket.
struct Sent {
    serial: u64,
    /// The relay answered `CLOSED`; not re-sent unless the caller replaces it.
    closed: bool,
    /// Closed with `auth-required:`; re-sent once `AUTH` is accepted.
    awaiting_auth: bool,
}

/// A written event waiting for its `OK`.
struct Pending {
    frame: Utf8Bytes,
    deadline: Instant,
    /// Already re-sent once after an `auth-required:` refusal.
    auth_retried: bool,
}

/// State that lives and dies with one socket.
#[derive(Default)]
struct Session {
    sent: HashMap<SubscriptionId, Sent>,
    pending: HashMap<EventId, Pending>,
    /// `(deadline, id)` in write order, hence in deadline order.
    deadlines: VecDeque<(Instant, EventId)>,
    /// Events refused with `auth-required:`, to re-send after `AUTH`.
    awaiting_auth: Vec<Outgoing>,
    /// The id of our `AUTH` event while its `OK` is outstanding.
    auth_event: Option<EventId>,
    authenticated: bool,
}

impl Connection {
    /// Runs until the relay is removed from the pool or the pool is dropped.
    pub(crate) async fn run(mut self) {
        let config = &self.shared.config;
        let mut backoff = Backoff::new(config.min_backoff, config.max_backoff);
        let mut connected_before = false;
        loop {
            let attempt = timeout(
                self.shared.config.io_timeout,
                self.target.connect(self.shared.config.max_message_size),
            );
            let result = tokio::select! {
                _ = self.stop.changed() => break,
                result = attempt => result,
            };
            match result {
                Ok(Ok(ws)) => {
                    if connected_before {
                        bump(&self.state.counters.reconnects);
                    }
                    connected_before = true;
                    info!(relay = %self.target.url, "connected");
                    self.state.set_connected();
                    let started = Instant::now();
                    match self.session(ws).await {
                        End::Stop => break,
                        End::Lost(reason) => {
                            warn!(relay = %self.target.url, %reason, "connection lost");
                            self.state.set_disconnected(reason.clone());
                            let event = PoolEvent::Disconnected {
                                relay: self.target.url.clone(),
                                reason,
                            };
                            if !self.notify(event).await {
                                break;
                            }
                        }
                    }
                    if started.elapsed() >= STABLE_CONNECTION {
                        backoff.reset();
                    }
                }
                Ok(Err(error)) => {
                    debug!(relay = %self.target.url, %error, "connect failed");
                    self.state.set_error(error.to_string());
                }
                Err(_) => {
                    debug!(relay = %self.target.url, "connect timed out");
                    self.state.set_error("timed out connecting".to_owned());
                }
            }
            let delay = backoff.next_delay();
            trace!(relay = %self.target.url, ?delay, "reconnecting after backoff");
            tokio::select! {
                _ = self.stop.changed() => break,
                () = sleep(delay) => {}
            }
        }
        self.drop_queued();
    }

    /// Counts what is still queued as dropped once the relay is gone.
    fn drop_queued(&mut self) {
        self.queue.close();
        let mut dropped = self.retry.len() as u64;
        while self.queue.try_recv().is_ok() {
            dropped += 1;
        }
        if dropped > 0 {
            warn!(relay = %self.target.url, dropped, "relay removed with events still queued");
            add(&self.state.counters.dropped, dropped);
        }
    }

    /// Delivers a notification to the caller, waiting while the channel is
    /// full but giving up when the relay is stopped. Returns `false` when
    /// stopped. A caller that dropped the receiver simply gets nothing.
    async fn notify(&mut self, event: PoolEvent) -> bool {
        tokio::select! {
            biased;
            _ = self.stop.changed() => false,
            _ = self.shared.events.send(event) => true,
        }
    }

    /// Serves one socket until it fails or the relay is stopped.
    async fn session(&mut self, mut ws: WsStream) -> End {
        let mut session = Session::default();
        let end = self.serve(&mut ws, &mut session).await;
        match end {
            // Best effort: tell the relay we are leaving. Events written but
            // not yet acknowledged were sent; nothing to keep.
            End::Stop => {
                let _ = timeout(self.shared.config.io_timeout, ws.close(None)).await;
            }
            End::Lost(_) => self.keep_unanswered(session),
        }
        end
    }

    /// Moves events without an `OK` to the retry queue for the next socket.
    fn keep_unanswered(&mut self, mut session: Session) {
        let mut keep: VecDeque<Outgoing> = VecDeque::new();
        for (_, id) in session.deadlines.drain(..) {
            if let Some(pending) = session.pending.remove(&id) {
                keep.push_back(Outgoing {
                    id,
                    frame: pending.frame,
                });
            }
        }
        keep.extend(session.awaiting_auth.drain(..));
        keep.append(&mut self.retry);
        let capacity = self.shared.config.queue_capacity;
        if keep.len() > capacity {
            let excess = keep.len() - capacity;
            warn!(relay = %self.target.url, excess, "retry queue full, dropping oldest events");
            keep.drain(..excess);
            add(&self.state.counters.dropped, excess as u64);
        }
        self.retry = keep;
    }

    async fn serve(&mut self, ws: &mut WsStream, session: &mut Session) -> End {
        if let Err(end) = self.sync_subscriptions(ws, session).await {
            return end;
        }
        while let Some(outgoing) = self.retry.pop_front() {
            if let Err(end) = self.send_event(ws, session, outgoing, false).await {
                return end;
            }
        }
        let connected = PoolEvent::Connected {
            relay: self.target.url.clone(),
        };
        if !self.notify(connected).await {
            return End::Stop;
        }

        let ping_interval = self.shared.config.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        // One timer for the earliest OK deadline, re-armed only when that
        // deadline changes rather than re-created on every loop.
        let ok_timer = sleep_until(Instant::now());
        tokio::pin!(ok_timer);
        let mut armed: Option<Instant> = None;
        loop {
            // Deadlines of events already answered (OK) are dropped here, not
            // waited for: otherwise the timer would wake once per published
            // event, an OK timeout after it (measured: ~1 wake-up per request,
            // and 100 a second in an idle bunker after a 100 req/s load).
            while let Some((_, id)) = session.deadlines.front() {
                if session.pending.contains_key(id) {
                    break;
                }
                session.deadlines.pop_front();
            }
            let deadline = session.deadlines.front().map(|(deadline, _)| *deadline);
            if let Some(deadline) = deadline
                && armed != Some(deadline)
            {
                ok_timer.as_mut().reset(deadline);
                armed = Some(deadline);
            }
            let step = tokio::select! {
                biased;
                _ = self.stop.changed() => Step::Stop,
                frame = ws.next() => Step::Frame(frame),
                () = self.wake.notified() => Step::SubscriptionsChanged,
                outgoing = self.queue.recv() => Step::Publish(outgoing),
                () = &mut ok_timer, if deadline.is_some() => Step::OkDeadline,
                _ = ping.tick() => Step::Ping,
            };
            let result = match step {
                Step::Stop | Step::Publish(None) => return End::Stop,
                Step::Frame(None) => return End::Lost("connection closed".to_owned()),
                Step::Frame(Some(Err(error))) => return End::Lost(error.to_string()),
                Step::Frame(Some(Ok(message))) => {
                    last_heard = Instant::now();
                    self.on_message(ws, session, message).await
                }
                Step::SubscriptionsChanged => self.sync_subscriptions(ws, session).await,
                Step::Publish(Some(outgoing)) => {
                    self.send_event(ws, session, outgoing, false).await
                }
                Step::OkDeadline => {
                    self.expire(session);
                    Ok(())
                }
                Step::Ping => {
                    if last_heard.elapsed() >= ping_interval * 2 {
                        return End::Lost("relay silent, not answering pings".to_owned());
                    }
                    self.write(ws, Message::Ping(Bytes::new())).await
                }
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    /// Writes one message, bounded by the I/O timeout.
    async fn write(&self, ws: &mut WsStream, message: Message) -> Result<(), End> {
        match timeout(self.shared.config.io_timeout, ws.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(End::Lost(format!("write failed: {error}"))),
            Err(_) => Err(End::Lost("write timed out".to_owned())),
        }
    }

    /// Writes an event and starts waiting for its `OK`.
    async fn send_event(
        &self,
        ws: &mut WsStream,
        session: &mut Session,
        outgoing: Outgoing,
        auth_retried: bool,
    ) -> Result<(), End> {
        let deadline = Instant::now() + self.shared.config.ok_timeout;
        let frame = outgoing.frame.clone();
        self.track(session, outgoing, deadline, auth_retried);
        self.write(ws, Message::Text(frame)).await?;
        bump(&self.state.counters.published);
        Ok(())
    }

    /// Records a written event as waiting for its `OK` (bounded: the oldest
    /// wait is given up first).
    fn track(&self, session: &mut Session, outgoing: Outgoing, deadline: Instant, retried: bool) {
        let limit = self.shared.config.queue_capacity.saturating_mul(4).max(16);
        while session.pending.len() >= limit {
            let Some((_, oldest)) = session.deadlines.pop_front() else {
                break;
            };
            if session.pending.remove(&oldest).is_some() {
                bump(&self.state.counters.no_answer);
            }
        }
        let pending = Pending {
            frame: outgoing.frame,
            deadline,
            auth_retried: retried,
        };
        // Written twice (a re-send): the later deadline wins, the earlier
        // entry in `deadlines` is skipped when it comes up.
        session.pending.insert(outgoing.id, pending);
        session.deadlines.push_back((deadline, outgoing.id));
    }

    /// Gives up on `OK`s whose deadline has passed.
    fn expire(&self, session: &mut Session) {
        let now = Instant::now();
        while let Some(&(deadline, id)) = session.deadlines.front() {
            if deadline > now {
                break;
            }
            session.deadlines.pop_front();
            let expired = session
                .pending
                .get(&id)
                .is_some_and(|pending| pending.deadline <= now);
            if expired {
                session.pending.remove(&id);
                bump(&self.state.counters.no_answer);
                trace!(relay = %self.target.url, %id, "no OK before the timeout");
            }
        }
    }

    /// Sends `REQ` for subscriptions this socket lacks (or whose filters
    /// changed) and `CLOSE` for those the caller ended.
    async fn sync_subscriptions(
        &self,
        ws: &mut WsStream,
        session: &mut Session,
    ) -> Result<(), End> {
        let mut frames: Vec<Utf8Bytes> = Vec::new();
        {
            let subscriptions = self.shared.subscriptions();
            for (id, sub) in subscriptions.iter() {
                let current = session.sent.get(id).map(|sent| sent.serial);
                if current != Some(sub.serial) {
                    frames.push(sub.req.clone());
                    let sent = Sent {
                        serial: sub.serial,
                        closed: false,
                        awaiting_auth: false,
                    };
                    session.sent.insert(id.clone(), sent);
                }
            }
            let ended: Vec<SubscriptionId> = session
                .sent
                .keys()
                .filter(|id| subscriptions.get(id).is_none())
                .cloned()
                .collect();
            for id in ended {
                if let Some(sent) = session.sent.remove(&id)
                    && !sent.closed
                {
                    match serde_json::to_string(&ClientMessage::Close(Cow::Borrowed(&id))) {
                        Ok(frame) => frames.push(frame.into()),
                        Err(error) => warn!(%error, "could not serialize CLOSE"),
                    }
                }
            }
        }
        for frame in frames {
            self.write(ws, Message::Text(frame)).await?;
        }
        Ok(())
    }

    async fn on_message(
        &mut self,
        ws: &mut WsStream,
        session: &mut Session,
        message: Message,
    ) -> Result<(), End> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(data) => {
                bump(&self.state.counters.bad_frames);
                warn!(relay = %self.target.url, len = data.len(), "dropping binary frame");
                return Ok(());
            }
            Message::Close(frame) => {
                let reason = frame.map_or_else(
                    || "closed by relay".to_owned(),
                    |frame| format!("closed by relay: {} {}", frame.code, frame.reason),
                );
                return Err(End::Lost(reason));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(()),
        };
        if text.len() > self.shared.config.max_message_size {
            bump(&self.state.counters.bad_frames);
            warn!(relay = %self.target.url, len = text.len(), "dropping oversized frame");
            return Ok(());
        }
        let message = match RelayMessage::from_json(text.as_bytes()) {
            Ok(message) => message,
            Err(error) => {
                bump(&self.state.counters.bad_frames);
                let start: String = text.as_str().chars().take(80).collect();
                warn!(relay = %self.target.url, %error, frame = %start, "dropping bad frame");
                return Ok(());
            }
        };
        match message {
            RelayMessage::Event {
                subscription_id,
                event,
            } => {
                self.on_event(subscription_id.into_owned(), event.into_owned())
                    .await
            }
            RelayMessage::Ok {
                event_id,
                status,
                message,
            } => self.on_ok(ws, session, event_id, status, message).await,
            RelayMessage::EndOfStoredEvents(subscription_id) => {
                let event = PoolEvent::EndOfStoredEvents {
                    relay: self.target.url.clone(),
                    subscription_id: subscription_id.into_owned(),
                };
                self.notify_or_stop(event).await
            }
            RelayMessage::Closed {
                subscription_id,
                message,
            } => {
                let subscription_id = subscription_id.into_owned();
                if let Some(sent) = session.sent.get_mut(&subscription_id) {
                    sent.closed = true;
                    sent.awaiting_auth = message.starts_with(AUTH_REQUIRED)
                        && self.shared.config.auth_keys.is_some()
                        && !session.authenticated;
                }
                debug!(relay = %self.target.url, id = %subscription_id, %message, "subscription closed");
                let event = PoolEvent::Closed {
                    relay: self.target.url.clone(),
                    subscription_id,
                    message: message.into_owned(),
                };
                self.notify_or_stop(event).await
            }
            RelayMessage::Notice(message) => {
                bump(&self.state.counters.notices);
                info!(relay = %self.target.url, %message, "notice");
                let event = PoolEvent::Notice {
                    relay: self.target.url.clone(),
                    message: message.into_owned(),
                };
                self.notify_or_stop(event).await
            }
            RelayMessage::Auth { challenge } => self.on_auth(ws, session, &challenge).await,
            other => {
                debug!(relay = %self.target.url, message = ?other, "ignoring unsolicited message");
                Ok(())
            }
        }
    }

    async fn notify_or_stop(&mut self, event: PoolEvent) -> Result<(), End> {
        if self.notify(event).await {
            Ok(())
        } else {
            Err(End::Stop)
        }
    }

    /// Routes an event to the caller once per subscription, whichever relay
    /// delivers it first.
    async fn on_event(&mut self, subscription_id: SubscriptionId, event: Event) -> Result<(), End> {
        bump(&self.state.counters.events_received);
        let Some(serial) = self.shared.subscriptions().serial(&subscription_id) else {
            trace!(relay = %self.target.url, id = %subscription_id, "event for an ended subscription");
            return Ok(());
        };
        let verify = self.shared.config.verify_events;
        // Verified events are the same event whatever their signature; if the
        // caller verifies later, a copy with another signature (possibly a
        // forgery) must still reach it.
        let fingerprint = if verify {
            0
        } else {
            let sig: &[u8] = event.sig.as_ref();
            self.shared.fingerprints.hash_one(sig)
        };
        let key = (event.id, serial, fingerprint);
        if self.shared.seen().contains(&key) {
            bump(&self.state.counters.duplicates);
            return Ok(());
        }
        // Verify before remembering the id: a forged copy arriving first must
        // not shadow the genuine event.
        if verify && event.verify().is_err() {
            bump(&self.state.counters.invalid_events);
            warn!(relay = %self.target.url, id = %event.id, "dropping event with a bad id or signature");
            return Ok(());
        }
        if !self.shared.seen().insert(key) {
            bump(&self.state.counters.duplicates);
            return Ok(());
        }
        let event = PoolEvent::Event {
            relay: self.target.url.clone(),
            subscription_id,
            event: Box::new(event),
        };
        self.notify_or_stop(event).await
    }

    async fn on_ok(
        &mut self,
        ws: &mut WsStream,
        session: &mut Session,
        event_id: EventId,
        accepted: bool,
        message: Cow<'_, str>,
    ) -> Result<(), End> {
        if session.auth_event == Some(event_id) {
            session.auth_event = None;
            return self.on_auth_answer(ws, session, accepted, message).await;
        }
        let Some(pending) = session.pending.remove(&event_id) else {
            trace!(relay = %self.target.url, %event_id, "OK for an event no longer awaited");
            return Ok(());
        };
        if accepted {
            bump(&self.state.counters.ok);
        } else if message.starts_with(AUTH_REQUIRED)
            && self.shared.config.auth_keys.is_some()
            && !session.authenticated
            && !pending.auth_retried
        {
            debug!(relay = %self.target.url, %event_id, "refused until AUTH; will re-send");
            session.awaiting_auth.push(Outgoing {
                id: event_id,
                frame: pending.frame,
            });
        } else {
            bump(&self.state.counters.rejected);
            debug!(relay = %self.target.url, %event_id, %message, "event rejected");
            let event = PoolEvent::Rejected {
                relay: self.target.url.clone(),
                event_id,
                message: message.into_owned(),
            };
            return self.notify_or_stop(event).await;
        }
        Ok(())
    }

    /// The relay answered our `AUTH`: on success, re-send what it refused.
    async fn on_auth_answer(
        &mut self,
        ws: &mut WsStream,
        session: &mut Session,
        accepted: bool,
        message: Cow<'_, str>,
    ) -> Result<(), End> {
        if !accepted {
            warn!(relay = %self.target.url, %message, "AUTH rejected");
            self.state
                .set_auth(AuthState::Rejected(message.to_string()));
            add(
                &self.state.counters.rejected,
                session.awaiting_auth.len() as u64,
            );
            session.awaiting_auth.clear();
            let event = PoolEvent::AuthRejected {
                relay: self.target.url.clone(),
                message: message.into_owned(),
            };
            return self.notify_or_stop(event).await;
        }
        info!(relay = %self.target.url, "authenticated");
        session.authenticated = true;
        self.state.set_auth(AuthState::Accepted);
        let mut frames: Vec<Utf8Bytes> = Vec::new();
        {
            let subscriptions = self.shared.subscriptions();
            for (id, sent) in session.sent.iter_mut() {
                if !sent.awaiting_auth {
                    continue;
                }
                sent.awaiting_auth = false;
                if let Some(sub) = subscriptions.get(id)
                    && sub.serial == sent.serial
                {
                    sent.closed = false;
                    frames.push(sub.req.clone());
                }
            }
        }
        for frame in frames {
            self.write(ws, Message::Text(frame)).await?;
        }
        for outgoing in std::mem::take(&mut session.awaiting_auth) {
            self.send_event(ws, session, outgoing, true).await?;
        }
        let event = PoolEvent::Authenticated {
            relay: self.target.url.clone(),
        };
        self.notify_or_stop(event).await
    }

    /// Answers a NIP-42 challenge with a kind-22242 event signed by the
    /// pool's keys.
    async fn on_auth(
        &mut self,
        ws: &mut WsStream,
        session: &mut Session,
        challenge: &str,
    ) -> Result<(), End> {
        let Some(keys) = self.shared.config.auth_keys.as_ref() else {
            warn!(relay = %self.target.url, "relay asked for AUTH but the pool has no keys");
            self.state.set_auth(AuthState::NoKeys);
            return Ok(());
        };
        let auth = ClientAuthentication::new(challenge, (*self.target.url).clone());
        let event = match auth.finalize(keys) {
            Ok(event) => event,
            Err(error) => {
                warn!(relay = %self.target.url, %error, "could not sign the AUTH event");
                return Ok(());
            }
        };
        let id = event.id;
        let frame = match serde_json::to_string(&ClientMessage::auth(event)) {
            Ok(frame) => frame,
            Err(error) => {
                warn!(relay = %self.target.url, %error, "could not serialize the AUTH event");
                return Ok(());
            }
        };
        session.auth_event = Some(id);
        self.write(ws, Message::Text(frame.into())).await?;
        debug!(relay = %self.target.url, "AUTH sent");
        self.state.set_auth(AuthState::Sent);
        let event = PoolEvent::AuthSent {
            relay: self.target.url.clone(),
        };
        self.notify_or_stop(event).await
    }
}
