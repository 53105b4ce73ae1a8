//! A raw NIP-46 client for tests: it builds kind-24133 events by hand with
//! the protocol core and sends them through the relay pool, so a test can
//! send garbage, replays or stale events and assert exactly what comes back.

use std::time::Duration;

use nip46::envelope::{self, Entropy};
use nip46::nostr::prelude::{Event, Filter, Keys, Kind, PublicKey, Tag, Timestamp, UnsignedEvent};
use nip46::{BunkerUri, Conversation, Response, Scheme};
use relay::pool::{PoolConfig, PoolEvent, RelayPool};
use tokio::sync::mpsc;

/// A client key, a conversation with one signer, and a pool on its relays.
pub struct RawClient {
    /// The client's keys.
    pub keys: Keys,
    /// The signer it talks to.
    pub signer: PublicKey,
    conversation: Conversation,
    pool: RelayPool,
    events: mpsc::Receiver<PoolEvent>,
    counter: u8,
}

impl RawClient {
    /// Connect to the relays of a `bunker://` URI and listen for responses.
    pub async fn new(uri: &str) -> Self {
        let uri: BunkerUri = uri.parse().expect("bunker uri");
        Self::with_keys(
            Keys::generate(),
            uri.signer,
            &uri.relays.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        )
        .await
    }

    /// [`RawClient::new`], then `connect` with the URI's secret; panics
    /// unless the signer acks.
    pub async fn connected(uri: &str) -> Self {
        let parsed: BunkerUri = uri.parse().expect("bunker uri");
        let secret = parsed.secret.as_ref().expect("a bunker uri with a secret");
        let secret = secret.expose().to_owned();
        let mut client = Self::new(uri).await;
        let answer = client
            .call("c", "connect", serde_json::json!(["", secret]))
            .await;
        assert_eq!(answer, Response::ok("c", "ack"), "connect with {uri}");
        client
    }

    /// Connect with given keys to a signer on `relays`.
    pub async fn with_keys(keys: Keys, signer: PublicKey, relays: &[String]) -> Self {
        let config = PoolConfig::default()
            .with_backoff(Duration::from_millis(50), Duration::from_millis(500));
        let (pool, mut events) = RelayPool::new(config);
        for r in relays {
            pool.add_relay(r).expect("add relay");
        }
        let filter = Filter::new()
            .kind(Kind::NostrConnect)
            .pubkey(keys.public_key());
        pool.subscribe(vec![filter]).expect("subscribe");
        // Wait until the subscription is live everywhere.
        let mut live = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while live < relays.len() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(PoolEvent::EndOfStoredEvents { .. })) => live += 1,
                Ok(Some(_)) => {}
                _ => panic!("relay subscription never became live"),
            }
        }
        let conversation = Conversation::new(&keys, signer).expect("conversation");
        RawClient {
            keys,
            signer,
            conversation,
            pool,
            events,
            counter: 0,
        }
    }

    /// Seal `json` for the signer, with a chosen scheme and time.
    pub fn event(&mut self, json: &str, scheme: Scheme, created_at: Timestamp) -> Event {
        self.counter = self.counter.wrapping_add(1);
        let mut nonce = Keys::generate().public_key().to_bytes();
        nonce[0] = self.counter;
        let entropy = Entropy {
            nonce,
            aux: [self.counter; 32],
        };
        envelope::seal(
            &self.keys,
            &mut self.conversation,
            scheme,
            json,
            created_at,
            &entropy,
        )
        .expect("seal")
    }

    /// A signed kind-24133 event with arbitrary (unencrypted) content.
    pub fn raw_event(&self, content: &str) -> Event {
        let unsigned = UnsignedEvent::new(
            self.keys.public_key(),
            Timestamp::now(),
            Kind::NostrConnect,
            [Tag::public_key(self.signer)],
            content,
        );
        envelope::sign(&self.keys, unsigned, &[1; 32]).expect("sign")
    }

    /// A request event, NIP-44, created now.
    pub fn request(&mut self, id: &str, method: &str, params: serde_json::Value) -> Event {
        let json = serde_json::json!({"id": id, "method": method, "params": params}).to_string();
        self.event(&json, Scheme::Nip44, Timestamp::now())
    }

    /// Publish an event (never waits for OK).
    pub fn publish(&self, event: &Event) {
        self.pool.publish(event).expect("publish");
    }

    /// The next response from the signer within `timeout`, with its scheme.
    pub async fn next_response(&mut self, timeout: Duration) -> Option<(Scheme, Response)> {
        self.next_answer(timeout)
            .await
            .map(|(_, scheme, response)| (scheme, response))
    }

    /// The next response within `timeout`, with the event that carried it
    /// (the pool passes each event id once).
    pub async fn next_answer(&mut self, timeout: Duration) -> Option<(Event, Scheme, Response)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let event = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(PoolEvent::Event { event, .. })) => event,
                Ok(Some(_)) => continue,
                _ => return None,
            };
            if event.pubkey != self.signer {
                continue;
            }
            if let Ok(opened) = envelope::open_response(&self.keys, &mut self.conversation, &event)
            {
                return Some((*event, opened.scheme, opened.body));
            }
        }
    }

    /// The response with this id within `timeout` (other responses are skipped).
    pub async fn response_to(&mut self, id: &str, timeout: Duration) -> Option<Response> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (_, response) = self.next_response(left).await?;
            if response.id == id {
                return Some(response);
            }
        }
    }

    /// Send a request and wait (10 s) for its response; panics on timeout.
    pub async fn call(&mut self, id: &str, method: &str, params: serde_json::Value) -> Response {
        let event = self.request(id, method, params);
        self.publish(&event);
        self.response_to(id, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no response to {method} ({id})"))
    }

    /// Stop the pool.
    pub async fn close(self) {
        self.pool.shutdown().await;
    }
}
