//! One client of the signer under test: its own key, its own relay
//! connections, and a record of everything that came back.
//!
//! A probe believes nothing: it subscribes to every kind-24133 event that
//! `p`-tags it, whoever wrote it, takes the pool's signature check off, and
//! keeps each event as it arrived, so the transport checks can judge the
//! author, the tags and the signature of every answer the signer gave.
//! Answers are matched to requests by id only.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nip46::envelope::{self, Entropy};
use nip46::limits::Limits;
use nip46::nostr::prelude::{Event, EventId, Filter, Keys, Kind, PublicKey, RelayUrl, Timestamp};
use nip46::{Conversation, Outcome, Response, Scheme};
use relay::{PoolConfig, PoolEvent, RelayPool};
use tokio::sync::mpsc;

/// Events a probe keeps, at most: a run gets a few dozen answers per
/// client, and a signer (or anyone) flooding the probe must not grow it
/// without bound. Past it, events are counted and dropped.
pub const MAX_RECEIVED: usize = 2048;

/// How long a probe waits for its relay subscriptions to go live.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(10);

/// Why a probe could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A relay URL the pool refused.
    #[error("relay {relay}: {reason}")]
    Relay {
        /// The relay.
        relay: String,
        /// Why.
        reason: String,
    },
    /// No relay confirmed the subscription in time.
    #[error("no relay confirmed the subscription within {0:?}; are the token's relays up?")]
    NotSubscribed(Duration),
    /// The signer's pubkey cannot be used for encryption.
    #[error("the signer pubkey cannot be used: {0}")]
    SignerKey(String),
    /// The system's random generator failed.
    #[error("no randomness: {0}")]
    Randomness(String),
}

/// An event for this probe: one that `p`-tags it, or one from the signer
/// that opens with this probe's conversation key (the signer's events for
/// other clients are left out).
#[derive(Debug, Clone)]
pub struct Received {
    /// The event as it arrived.
    pub event: Event,
    /// Its decryption and parse, when it opened with the signer's key.
    pub response: Option<(Scheme, Response)>,
    /// Whether its id and signature verify.
    pub signature_ok: bool,
    /// Whether it `p`-tags this probe.
    pub tags_us: bool,
    /// When it arrived.
    pub at: Instant,
}

/// An answer matched to a request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The response.
    pub response: Response,
    /// The scheme it was encrypted with.
    pub scheme: Scheme,
    /// The event that carried it.
    pub event: Event,
    /// From sending the request to the answer.
    pub elapsed: Duration,
}

/// A request sent.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Its id.
    pub id: String,
    /// The request text (before encryption).
    pub text: String,
    /// The event that carried it.
    pub event: Event,
    /// When it was sent.
    pub at: Instant,
}

/// One client key talking to the signer.
pub struct Probe {
    keys: Keys,
    signer: PublicKey,
    conversation: Conversation,
    pool: RelayPool,
    events: mpsc::Receiver<PoolEvent>,
    /// Everything received, in order (the transport checks read it).
    pub received: Vec<Received>,
    /// Received but not yet claimed by a wait.
    unclaimed: VecDeque<usize>,
    /// Events of ours a relay refused (`OK false`), with its reason (one
    /// per request sent, at most one per relay).
    pub refused: Vec<(EventId, String)>,
    /// Events dropped because [`MAX_RECEIVED`] were kept already.
    pub overflow: u64,
    counter: u64,
}

impl Probe {
    /// A fresh key subscribed on `relays`, talking to `signer`.
    pub async fn new(signer: PublicKey, relays: &[RelayUrl]) -> Result<Self, ProbeError> {
        Self::with_keys(Keys::generate(), signer, relays).await
    }

    /// The same, with a given key.
    pub async fn with_keys(
        keys: Keys,
        signer: PublicKey,
        relays: &[RelayUrl],
    ) -> Result<Self, ProbeError> {
        let config = PoolConfig {
            // Judged by the checks: a bad signature is a finding, not noise.
            verify_events: false,
            ..PoolConfig::default().with_backoff(Duration::from_millis(50), Duration::from_secs(1))
        };
        let (pool, mut events) = RelayPool::new(config);
        for relay in relays {
            pool.add_relay(relay.as_str())
                .map_err(|e| ProbeError::Relay {
                    relay: relay.to_string(),
                    reason: e.to_string(),
                })?;
        }
        // Everything the signer writes (an answer that forgets to `p`-tag
        // us is still seen, and judged) and everything addressed to us.
        let since = Timestamp::now() - 10u64;
        let filters = vec![
            Filter::new()
                .kind(Kind::NostrConnect)
                .author(signer)
                .since(since),
            Filter::new()
                .kind(Kind::NostrConnect)
                .pubkey(keys.public_key())
                .since(since),
        ];
        pool.subscribe(filters).map_err(|e| ProbeError::Relay {
            relay: "pool".into(),
            reason: e.to_string(),
        })?;
        let deadline = tokio::time::Instant::now() + SUBSCRIBE_WITHIN;
        let mut live = 0;
        while live < relays.len() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(PoolEvent::EndOfStoredEvents { .. })) => live += 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) if live > 0 => break,
                _ => return Err(ProbeError::NotSubscribed(SUBSCRIBE_WITHIN)),
            }
        }
        let conversation =
            Conversation::new(&keys, signer).map_err(|e| ProbeError::SignerKey(e.to_string()))?;
        Ok(Probe {
            keys,
            signer,
            conversation,
            pool,
            events,
            received: Vec::new(),
            unclaimed: VecDeque::new(),
            refused: Vec::new(),
            overflow: 0,
            counter: 0,
        })
    }

    /// This probe's public key.
    pub fn pubkey(&self) -> PublicKey {
        self.keys.public_key()
    }

    /// A fresh request id.
    pub fn next_id(&mut self, tag: &str) -> String {
        self.counter += 1;
        format!("{tag}-{}", self.counter)
    }

    /// Seal `text` for the signer with `scheme`, now.
    pub fn seal(&mut self, text: &str, scheme: Scheme) -> Result<Event, ProbeError> {
        let mut nonce = [0u8; 32];
        let mut aux = [0u8; 32];
        getrandom::fill(&mut nonce)
            .and_then(|()| getrandom::fill(&mut aux))
            .map_err(|e| ProbeError::Randomness(e.to_string()))?;
        let entropy = Entropy { nonce, aux };
        envelope::seal(
            &self.keys,
            &mut self.conversation,
            scheme,
            text,
            Timestamp::now(),
            &entropy,
        )
        .map_err(|e| ProbeError::Randomness(e.to_string()))
    }

    /// Send `{"id", "method", "params"}` (NIP-44).
    pub fn request(
        &mut self,
        id: &str,
        method: &str,
        params: serde_json::Value,
    ) -> Result<Sent, ProbeError> {
        self.request_with(id, method, params, Scheme::Nip44)
    }

    /// Send a request encrypted with `scheme`.
    pub fn request_with(
        &mut self,
        id: &str,
        method: &str,
        params: serde_json::Value,
        scheme: Scheme,
    ) -> Result<Sent, ProbeError> {
        let text = serde_json::json!({"id": id, "method": method, "params": params}).to_string();
        let event = self.seal(&text, scheme)?;
        self.publish(&event);
        Ok(Sent {
            id: id.to_owned(),
            text,
            event,
            at: Instant::now(),
        })
    }

    /// Publish an event as is (never waits for relays' OK).
    pub fn publish(&self, event: &Event) {
        // A relay that is down makes the request go unanswered, which the
        // check reports; nothing more to do here.
        let _ = self.pool.publish(event);
    }

    /// Pull every event that has arrived into `received`, waiting until
    /// `deadline` for at least one when none is waiting.
    async fn pump(&mut self, deadline: tokio::time::Instant) -> bool {
        let first = match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Ok(Some(event)) => event,
            _ => return false,
        };
        self.take(first);
        while let Ok(event) = self.events.try_recv() {
            self.take(event);
        }
        true
    }

    fn take(&mut self, event: PoolEvent) {
        let event = match event {
            PoolEvent::Event { event, .. } => event,
            PoolEvent::Rejected {
                event_id, message, ..
            } => {
                self.refused.push((event_id, message));
                return;
            }
            _ => return,
        };
        let me = self.keys.public_key();
        let tags_us = event.tags.public_keys().any(|pk| pk == me);
        // Decrypted without the envelope's precheck, which would refuse an
        // answer that forgets the `p` tag: that is for the checks to judge.
        let sized = event.content.len() <= Limits::default().max_response_content();
        let response = if event.pubkey == self.signer && sized {
            self.conversation
                .decrypt(&self.keys, &event.content)
                .ok()
                .and_then(|(scheme, text)| Response::parse(&text).ok().map(|r| (scheme, r)))
        } else {
            None
        };
        if !tags_us && response.is_none() {
            return; // the signer talking to another client
        }
        if self.received.len() >= MAX_RECEIVED {
            self.overflow += 1;
            return;
        }
        self.received.push(Received {
            signature_ok: event.verify().is_ok(),
            tags_us,
            event: *event,
            response,
            at: Instant::now(),
        });
        self.unclaimed.push_back(self.received.len() - 1);
    }

    /// The first answer to `sent` (an `auth_url` challenge is skipped: the
    /// real answer follows with the same id), within `timeout`.
    pub async fn answer(&mut self, sent: &Sent, timeout: Duration) -> Option<Answer> {
        let deadline = tokio::time::Instant::from_std(sent.at) + timeout;
        loop {
            if let Some(answer) = self.claim(sent) {
                return Some(answer);
            }
            if !self.pump(deadline).await {
                return None;
            }
        }
    }

    /// Every answer to `sent` that arrives within `timeout` (for replays).
    pub async fn answers(&mut self, sent: &Sent, timeout: Duration) -> Vec<Answer> {
        let deadline = tokio::time::Instant::from_std(sent.at) + timeout;
        let mut all = Vec::new();
        loop {
            while let Some(answer) = self.claim(sent) {
                all.push(answer);
            }
            if !self.pump(deadline).await {
                return all;
            }
        }
    }

    fn claim(&mut self, sent: &Sent) -> Option<Answer> {
        let position = self.unclaimed.iter().position(|&i| {
            self.received[i]
                .response
                .as_ref()
                .is_some_and(|(_, r)| r.id == sent.id && !matches!(r.outcome, Outcome::AuthUrl(_)))
        })?;
        let index = self.unclaimed.remove(position)?;
        let received = &self.received[index];
        let (scheme, response) = received.response.clone()?;
        Some(Answer {
            response,
            scheme,
            event: received.event.clone(),
            elapsed: received.at.saturating_duration_since(sent.at),
        })
    }

    /// Send a request and wait for its answer.
    pub async fn call(
        &mut self,
        method: &str,
        params: serde_json::Value,
        timeout: Duration,
    ) -> Result<(Sent, Option<Answer>), ProbeError> {
        let id = self.next_id(method);
        let sent = self.request(&id, method, params)?;
        let answer = self.answer(&sent, timeout).await;
        Ok((sent, answer))
    }

    /// Wait `for_` and collect whatever arrives (nothing is claimed).
    pub async fn settle(&mut self, for_: Duration) {
        let deadline = tokio::time::Instant::now() + for_;
        while self.pump(deadline).await {}
    }

    /// Close the relay connections.
    pub async fn close(self) -> Vec<Received> {
        self.pool.shutdown().await;
        self.received
    }
}
