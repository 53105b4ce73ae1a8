//! One client of the embedded relay, from websocket handshake to close.
//!
//! Each accepted socket gets a task running [`run`]: it answers the client's
//! `EVENT`, `REQ`, `CLOSE` and `AUTH`, and forwards live events to the
//! client's subscriptions. A malformed message is answered with a `NOTICE`
//! (or `OK false` / `CLOSED`) and never ends the connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use nostr::prelude::{
    ClientMessage, Event, Filter, Kind, MatchEventOptions, PublicKey, RelayMessage, SubscriptionId,
    Timestamp,
};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::{debug, trace, warn};

use super::Relay;
use super::auth;
use super::router::{ConnectionId, Interest};
use super::signature::AuthorKey;
use super::store::{Insert, Stored};
use crate::websocket;

type Ws = WebSocketStream<TcpStream>;

/// Longest subscription id NIP-01 allows.
const MAX_SUBSCRIPTION_ID_LEN: usize = 64;

/// An open subscription of this client.
struct Subscription {
    filters: Vec<Filter>,
    /// The id as a JSON string, serialized once for every event frame.
    id_json: String,
}

/// Per-connection state.
struct Client {
    relay: Arc<Relay>,
    /// This connection's key in the relay's router.
    feed: ConnectionId,
    peer: SocketAddr,
    subscriptions: HashMap<SubscriptionId, Subscription>,
    challenge: Option<String>,
    authenticated: Option<PublicKey>,
    /// The key this connection last published as, parsed.
    author: AuthorKey,
    /// Events it may still publish now (refilled at `events_per_second`).
    allowance: f64,
    allowance_at: Instant,
}

/// Why the connection ends.
struct Closed;

/// Takes the connection out of the router when it ends, however it ends.
struct Registered {
    relay: Arc<Relay>,
    id: ConnectionId,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.relay.router().remove(self.id);
    }
}

/// Serves one accepted TCP connection until the client leaves, the socket
/// fails, or the relay shuts down. `_permit` holds a connection slot.
pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    relay: Arc<Relay>,
    mut shutdown: watch::Receiver<()>,
    _permit: OwnedSemaphorePermit,
) {
    let ws_config = websocket::config(relay.config.max_message_size);
    let origins = relay.config.allowed_origins.clone();
    // The Err type is tungstenite's handshake response, as its callback
    // signature requires (and only built to refuse a handshake).
    #[allow(clippy::result_large_err)]
    let check_origin = move |request: &Request, response: Response| match &origins {
        Some(allowed) => check_origin(request, response, allowed),
        None => Ok(response),
    };
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check_origin, Some(ws_config));
    let mut ws = match timeout(relay.config.io_timeout, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            debug!(%peer, %error, "websocket handshake failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "websocket handshake timed out");
            return;
        }
    };
    let mut feed = relay.router().register(
        relay.config.broadcast_capacity,
        relay.config.max_queued_bytes,
    );
    let _registered = Registered {
        relay: relay.clone(),
        id: feed.id,
    };
    let burst = f64::from(relay.config.events_per_second.max(1));
    let mut client = Client {
        relay,
        feed: feed.id,
        peer,
        subscriptions: HashMap::new(),
        challenge: None,
        authenticated: None,
        author: AuthorKey::default(),
        allowance: burst,
        allowance_at: Instant::now(),
    };
    debug!(%peer, "client connected");
    // The challenge also lets the signers this relay serves prove who they
    // are, so that their answers are never rate-limited.
    if client.relay.config.require_auth || !client.relay.config.trusted_authors.is_empty() {
        let challenge = auth::new_challenge();
        let frame = to_frame(&RelayMessage::auth(challenge.as_str()));
        client.challenge = Some(challenge);
        if client.send(&mut ws, frame).await.is_err() {
            return;
        }
    }
    let idle_timeout = client.relay.config.idle_timeout;
    let mut last_heard = Instant::now();
    loop {
        // Only a connection with nothing subscribed can be idle: a
        // subscriber may wait for events as long as it likes.
        let idle = client.subscriptions.is_empty();
        let result = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            () = tokio::time::sleep_until(last_heard + idle_timeout), if idle => {
                debug!(%peer, "idle connection without subscriptions closed");
                break;
            }
            message = ws.next() => match message {
                Some(Ok(message)) => {
                    last_heard = Instant::now();
                    client.on_message(&mut ws, message).await
                }
                Some(Err(error)) => {
                    debug!(%peer, %error, "connection failed");
                    return;
                }
                None => break,
            },
            event = feed.recv() => match event {
                Some(stored) => {
                    let missed = feed.missed.swap(0, Ordering::Relaxed);
                    if missed > 0 {
                        warn!(%peer, missed, "slow client missed live events");
                        let notice = format!("error: too slow, missed {missed} live events");
                        if client.send(&mut ws, to_frame(&RelayMessage::notice(notice))).await.is_err() {
                            return;
                        }
                    }
                    client.forward(&mut ws, &stored).await
                }
                None => break,
            },
        };
        if result.is_err() {
            return;
        }
    }
    let _ = timeout(client.relay.config.io_timeout, ws.close(None)).await;
    debug!(%peer, "client disconnected");
}

/// Refuse a browser's handshake from an origin not in `allowed` (403).
/// A request without `Origin` (not from a browser) passes.
// The Err type is the refusal tungstenite's handshake callback returns.
#[allow(clippy::result_large_err)]
fn check_origin(
    request: &Request,
    response: Response,
    allowed: &[String],
) -> Result<Response, ErrorResponse> {
    let Some(origin) = request.headers().get("origin") else {
        return Ok(response);
    };
    let permitted = origin
        .to_str()
        .is_ok_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)));
    if permitted {
        return Ok(response);
    }
    let mut refusal = ErrorResponse::new(Some("origin not allowed".to_owned()));
    *refusal.status_mut() = StatusCode::FORBIDDEN;
    Err(refusal)
}

/// Serializes a relay message. Relay messages built here always serialize.
fn to_frame(message: &RelayMessage<'_>) -> Utf8Bytes {
    serde_json::to_string(message)
        .unwrap_or_else(|_| r#"["NOTICE","error: internal serialization failure"]"#.to_owned())
        .into()
}

fn ok(event: &Event, accepted: bool, message: &str) -> Utf8Bytes {
    to_frame(&RelayMessage::ok(event.id, accepted, message))
}

/// `["EVENT",<id_json>,<event json>]` from pre-serialized parts.
fn event_frame(id_json: &str, stored: &Stored) -> Utf8Bytes {
    let mut frame = String::with_capacity(12 + id_json.len() + stored.json.len());
    frame.push_str(r#"["EVENT","#);
    frame.push_str(id_json);
    frame.push(',');
    frame.push_str(&stored.json);
    frame.push(']');
    frame.into()
}

impl Client {
    async fn send(&self, ws: &mut Ws, frame: Utf8Bytes) -> Result<(), Closed> {
        match timeout(self.relay.config.io_timeout, ws.send(Message::Text(frame))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                debug!(peer = %self.peer, %error, "write failed");
                Err(Closed)
            }
            Err(_) => {
                warn!(peer = %self.peer, "write timed out, dropping client");
                Err(Closed)
            }
        }
    }

    async fn notice(&self, ws: &mut Ws, message: String) -> Result<(), Closed> {
        self.send(ws, to_frame(&RelayMessage::notice(message)))
            .await
    }

    async fn on_message(&mut self, ws: &mut Ws, message: Message) -> Result<(), Closed> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                return self
                    .notice(ws, "error: binary messages are not supported".to_owned())
                    .await;
            }
            Message::Close(_) => return Err(Closed),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(()),
        };
        let max = self.relay.config.max_message_size;
        if text.len() > max {
            // Counted like any frame: reading the id of a large frame is
            // work a flood must not get for free.
            if !self.take_allowance() {
                return self
                    .notice(ws, "rate-limited: too many messages, slow down".to_owned())
                    .await;
            }
            return self.on_oversized(ws, &text, max).await;
        }
        let message = ClientMessage::from_json(text.as_bytes());
        // Every frame counts against the connection's rate: an EVENT is
        // refused `OK false rate-limited:` (in `on_event`), anything else
        // with a NOTICE here.
        if !matches!(message, Ok(ClientMessage::Event(_))) && !self.take_allowance() {
            return self
                .notice(ws, "rate-limited: too many messages, slow down".to_owned())
                .await;
        }
        let message = match message {
            Ok(message) => message,
            Err(error) => return self.on_unparsable(ws, &text, &error.to_string()).await,
        };
        match message {
            ClientMessage::Event(event) => self.on_event(ws, event.into_owned()).await,
            ClientMessage::Req {
                subscription_id,
                filters,
            } => {
                let filters = filters.into_iter().map(|f| f.into_owned()).collect();
                self.on_req(ws, subscription_id.into_owned(), filters).await
            }
            ClientMessage::Close(subscription_id) => {
                self.subscriptions.remove(&*subscription_id);
                self.route(&[]);
                Ok(())
            }
            ClientMessage::Auth(event) => self.on_auth(ws, &event).await,
            ClientMessage::Count {
                subscription_id, ..
            } => {
                let closed = RelayMessage::closed(
                    subscription_id.into_owned(),
                    "unsupported: COUNT is not supported by this relay",
                );
                self.send(ws, to_frame(&closed)).await
            }
            _ => {
                self.notice(ws, "unsupported: negentropy is not supported".to_owned())
                    .await
            }
        }
    }

    /// Answers a message over the size limit: `OK false` naming the limit
    /// when it is an `EVENT` whose id can be read (so the client learns why
    /// nobody answers), a `NOTICE` otherwise. Only the id is read: the rest
    /// of the event is skipped, not parsed into values.
    async fn on_oversized(&self, ws: &mut Ws, text: &str, max: usize) -> Result<(), Closed> {
        #[derive(serde::Deserialize)]
        struct IdOnly {
            id: String,
        }
        #[derive(serde::Deserialize)]
        struct EventFrame<'a>(#[serde(borrow)] &'a str, IdOnly);

        debug!(peer = %self.peer, len = text.len(), "oversized message");
        let reason = format!(
            "invalid: message of {} bytes exceeds this relay's limit of {max} bytes",
            text.len()
        );
        let id = serde_json::from_str::<EventFrame<'_>>(text)
            .ok()
            .filter(|frame| frame.0 == "EVENT")
            .and_then(|frame| frame.1.id.parse().ok());
        match id {
            Some(id) => {
                self.send(ws, to_frame(&RelayMessage::ok(id, false, reason)))
                    .await
            }
            None => self.notice(ws, reason).await,
        }
    }

    /// Answers a message that does not parse: `OK false` when it is an
    /// `EVENT` whose id can still be read (so the client is not left
    /// waiting), a `NOTICE` otherwise.
    async fn on_unparsable(&self, ws: &mut Ws, text: &str, error: &str) -> Result<(), Closed> {
        debug!(peer = %self.peer, %error, "unparsable message");
        let id = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|value| match value.get(0)?.as_str()? {
                "EVENT" => value.get(1)?.get("id")?.as_str()?.parse().ok(),
                _ => None,
            });
        match id {
            Some(id) => {
                let reason = format!("invalid: malformed event: {error}");
                self.send(ws, to_frame(&RelayMessage::ok(id, false, reason)))
                    .await
            }
            None => {
                self.notice(ws, format!("error: could not parse message: {error}"))
                    .await
            }
        }
    }

    async fn on_event(&mut self, ws: &mut Ws, event: Event) -> Result<(), Closed> {
        let config = &self.relay.config;
        if config.require_auth && self.authenticated.is_none() {
            let frame = ok(&event, false, "auth-required: authenticate to publish");
            return self.send(ws, frame).await;
        }
        if event.kind == Kind::Authentication {
            let frame = ok(
                &event,
                false,
                "invalid: send AUTH events with AUTH, not EVENT",
            );
            return self.send(ws, frame).await;
        }
        if let Some(reason) = config.kinds.refusal(&event) {
            return self.send(ws, ok(&event, false, reason)).await;
        }
        if !self.take_allowance() {
            let frame = ok(&event, false, "rate-limited: too many events, slow down");
            return self.send(ws, frame).await;
        }

        if !event.verify_id() {
            let frame = ok(
                &event,
                false,
                "invalid: event id does not match its content",
            );
            return self.send(ws, frame).await;
        }
        if !self.author.verify(&event) {
            return self
                .send(ws, ok(&event, false, "invalid: bad signature"))
                .await;
        }
        let id = event.id;
        let json = match serde_json::to_string(&event) {
            Ok(json) => json,
            Err(error) => {
                let frame = ok(
                    &event,
                    false,
                    &format!("error: could not serialize: {error}"),
                );
                return self.send(ws, frame).await;
            }
        };
        let stored = Arc::new(Stored { event, json });
        let outcome = if stored.event.kind.is_ephemeral() {
            if self.relay.remember_ephemeral(id) {
                Insert::Stored
            } else {
                Insert::Duplicate
            }
        } else {
            self.relay.store().insert(stored.clone())
        };
        let message = match outcome {
            Insert::Stored => {
                trace!(peer = %self.peer, %id, "event accepted");
                self.relay.router().route(&stored);
                ""
            }
            Insert::Duplicate => "duplicate: already have this event",
            Insert::Obsolete => "duplicate: a newer version of this event is stored",
        };
        self.send(ws, ok(&stored.event, true, message)).await
    }

    async fn on_req(
        &mut self,
        ws: &mut Ws,
        id: SubscriptionId,
        filters: Vec<Filter>,
    ) -> Result<(), Closed> {
        let config = &self.relay.config;
        let refusal = if config.require_auth && self.authenticated.is_none() {
            Some("auth-required: authenticate to subscribe".to_owned())
        } else if id.as_str().is_empty() || id.as_str().chars().count() > MAX_SUBSCRIPTION_ID_LEN {
            Some("invalid: subscription id must be 1 to 64 characters".to_owned())
        } else if filters.len() > config.max_filters {
            Some(format!(
                "invalid: at most {} filters per REQ",
                config.max_filters
            ))
        } else if !self.subscriptions.contains_key(&id)
            && self.subscriptions.len() >= config.max_subscriptions
        {
            Some(format!(
                "error: too many subscriptions (at most {})",
                config.max_subscriptions
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            return self
                .send(ws, to_frame(&RelayMessage::closed(id, reason)))
                .await;
        }
        let id_json = match serde_json::to_string(&id) {
            Ok(json) => json,
            Err(error) => {
                let reason = format!("error: could not serialize the id: {error}");
                return self
                    .send(ws, to_frame(&RelayMessage::closed(id, reason)))
                    .await;
            }
        };
        // Live events are routed here from now on, before the stored ones
        // are read, so nothing falls between the query and the live feed.
        self.route(&filters);
        let found = self.relay.store().query(&filters, config.max_limit);
        for stored in &found {
            let frame = Message::Text(event_frame(&id_json, stored));
            if timeout(config.io_timeout, ws.feed(frame)).await.is_err() {
                return Err(Closed);
            }
        }
        let eose = to_frame(&RelayMessage::eose(id.clone()));
        let replaced = self
            .subscriptions
            .insert(id, Subscription { filters, id_json });
        if replaced.is_some() {
            // The old filters of this id no longer count.
            self.route(&[]);
        }
        self.send(ws, eose).await
    }

    async fn on_auth(&mut self, ws: &mut Ws, event: &Event) -> Result<(), Closed> {
        let Some(challenge) = self.challenge.as_deref() else {
            let frame = ok(event, false, "invalid: this relay did not ask for AUTH");
            return self.send(ws, frame).await;
        };
        let relay_url = self.relay.config.relay_url.as_deref();
        match auth::check(event, challenge, relay_url, Timestamp::now()) {
            Ok(()) => {
                debug!(peer = %self.peer, pubkey = %event.pubkey, "client authenticated");
                self.authenticated = Some(event.pubkey);
                self.send(ws, ok(event, true, "")).await
            }
            Err(reason) => self.send(ws, ok(event, false, reason)).await,
        }
    }

    /// One event's worth of this connection's rate limit; the signers this
    /// relay serves (authenticated) are never limited.
    fn take_allowance(&mut self) -> bool {
        let config = &self.relay.config;
        if self
            .authenticated
            .is_some_and(|pk| config.trusted_authors.contains(&pk))
        {
            return true;
        }
        let rate = f64::from(config.events_per_second.max(1));
        let now = Instant::now();
        let elapsed = now.duration_since(self.allowance_at).as_secs_f64();
        self.allowance = (self.allowance + elapsed * rate).min(rate);
        self.allowance_at = now;
        if self.allowance < 1.0 {
            return false;
        }
        self.allowance -= 1.0;
        true
    }

    /// Tell the router what this connection's subscriptions (and `extra`
    /// filters, about to be subscribed) may match.
    fn route(&self, extra: &[Filter]) {
        let filters = self
            .subscriptions
            .values()
            .flat_map(|sub| sub.filters.iter())
            .chain(extra);
        self.relay
            .router()
            .set_interest(self.feed, Interest::of(filters));
    }

    /// Sends a live event to every subscription of this client it matches.
    async fn forward(&self, ws: &mut Ws, stored: &Stored) -> Result<(), Closed> {
        let options = MatchEventOptions::new();
        for sub in self.subscriptions.values() {
            if sub
                .filters
                .iter()
                .any(|filter| filter.match_event(&stored.event, options))
            {
                self.send(ws, event_frame(&sub.id_json, stored)).await?;
            }
        }
        Ok(())
    }
}
