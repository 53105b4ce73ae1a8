//! Helpers shared by the integration tests: event builders, bounded waits on
//! pool notifications, and a raw websocket client for poking relays.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code, missing_docs)]

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nostr::prelude::{Event, EventBuilder, FinalizeEvent, Keys, Kind, Tag};
use relay::{PoolConfig, PoolEvent, RelayPool};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound of every wait: a broken test fails instead of hanging CI.
pub const WAIT: Duration = Duration::from_secs(15);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A pool configuration for tests: millisecond backoffs, short OK timeout.
pub fn test_config() -> PoolConfig {
    PoolConfig::default()
        .with_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .with_ok_timeout(Duration::from_millis(500))
}

pub fn event(keys: &Keys, kind: u16, content: &str, tags: Vec<Tag>) -> Event {
    EventBuilder::new(Kind::from(kind), content)
        .tags(tags)
        .finalize(keys)
        .expect("signing an event")
}

/// Bounds a future by [`WAIT`], panicking with `what` on timeout.
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Reads notifications until `pick` returns `Some`, skipping the others.
pub async fn wait_for<T>(
    events: &mut mpsc::Receiver<PoolEvent>,
    what: &str,
    mut pick: impl FnMut(&PoolEvent) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            let event = events
                .recv()
                .await
                .expect("pool notification channel closed");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    })
    .await
}

/// Waits for the event with this id on any subscription.
pub async fn wait_for_event(
    events: &mut mpsc::Receiver<PoolEvent>,
    id: nostr::prelude::EventId,
) -> Event {
    wait_for(events, &format!("event {id}"), |n| match n {
        PoolEvent::Event { event, .. } if event.id == id => Some((**event).clone()),
        _ => None,
    })
    .await
}

/// Waits for end-of-stored-events on `n` relays.
pub async fn wait_for_eose(events: &mut mpsc::Receiver<PoolEvent>, n: usize) {
    let mut seen = 0;
    wait_for(events, "EOSE", |e| {
        if matches!(e, PoolEvent::EndOfStoredEvents { .. }) {
            seen += 1;
        }
        (seen == n).then_some(())
    })
    .await;
}

/// Polls a condition on the pool's counters (which have no notification of
/// their own) until it holds, within [`WAIT`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

pub fn pool(config: PoolConfig) -> (RelayPool, mpsc::Receiver<PoolEvent>) {
    RelayPool::new(config)
}

/// A bare websocket client speaking JSON arrays.
pub struct RawClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawClient {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = within("connect", tokio_tungstenite::connect_async(url))
            .await
            .expect("websocket connect");
        Self { ws }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    /// The next JSON message from the relay.
    pub async fn recv(&mut self) -> Value {
        within("a relay message", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return serde_json::from_str(text.as_str()).expect("relay sent JSON");
                    }
                    Some(Ok(_)) => continue,
                    other => panic!("connection ended: {other:?}"),
                }
            }
        })
        .await
    }

    /// Whether the relay closed the connection (waits for it at most
    /// [`WAIT`]; anything else received is skipped).
    pub async fn is_closed(&mut self) -> bool {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// Sends an event and returns the relay's `OK` as `(accepted, message)`.
    pub async fn publish(&mut self, event: &Event) -> (bool, String) {
        self.send(serde_json::json!(["EVENT", event])).await;
        loop {
            let reply = self.recv().await;
            if reply[0] == "OK" && reply[1] == event.id.to_hex() {
                return (
                    reply[2].as_bool().expect("OK status"),
                    reply[3].as_str().expect("OK message").to_owned(),
                );
            }
        }
    }

    /// Sends a REQ and collects stored event ids until EOSE.
    pub async fn query(&mut self, id: &str, filters: Vec<Value>) -> Vec<String> {
        let mut req = vec![Value::from("REQ"), Value::from(id)];
        req.extend(filters);
        self.send(Value::Array(req)).await;
        let mut ids = Vec::new();
        loop {
            let message = self.recv().await;
            match message[0].as_str() {
                Some("EVENT") if message[1] == id => {
                    ids.push(message[2]["id"].as_str().expect("id").to_owned());
                }
                Some("EOSE") if message[1] == id => return ids,
                Some("CLOSED") if message[1] == id => panic!("subscription closed: {message}"),
                _ => {}
            }
        }
    }
}
