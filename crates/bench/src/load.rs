//! The load phase: every client sends its requests, at most K in flight,
//! either as fast as answers come back (closed loop) or on a fixed schedule
//! (open loop, `--rate`), and every answer is checked.
//!
//! Checking is part of the request: a signed event must verify (id,
//! signature, author, and be the event asked for — the client library does
//! this), a NIP-44 ciphertext must decrypt to the plaintext sent, a ping must
//! come back `pong`. A result that fails a check counts as an error.
//!
//! Latency runs from the moment a request is handed to the client library
//! to the moment its checked result is back. In an open loop a request that
//! waits for a free in-flight slot, or for a late timer, starts late; how
//! late is reported separately as the schedule lag, so an overloaded run
//! shows up as such instead of hiding in the latency.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use client::{Client, Error};
use nip46::Command;
use nip46::nostr::nips::nip44;
use nip46::nostr::prelude::{EventBuilder, FinalizeUnsignedEvent, Keys, Kind, Tag, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::pacing::Schedule;

/// Error messages kept as examples.
const ERROR_SAMPLES: usize = 5;

/// The NIP-46 method to load the signer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Workload {
    /// `sign_event` of a short kind-1 note.
    SignEvent,
    /// `nip44_encrypt` of a short text to a fixed peer.
    Nip44Encrypt,
    /// `ping`.
    Ping,
}

impl Workload {
    /// The method name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::SignEvent => "sign_event",
            Workload::Nip44Encrypt => "nip44_encrypt",
            Workload::Ping => "ping",
        }
    }
}

/// What each client does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Requests per client.
    pub requests: usize,
    /// Requests in flight per client, at most.
    pub in_flight: usize,
    /// The method.
    pub workload: Workload,
    /// Open loop: when each request is due. `None`: closed loop.
    pub schedule: Option<Schedule>,
}

/// Failed requests, by kind, with a few examples.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Errors {
    /// How many.
    pub count: u64,
    /// How many of each kind (`timeout`, `denied`, `bad_response`, …).
    pub by_kind: BTreeMap<String, u64>,
    /// The first few messages.
    pub samples: Vec<String>,
}

impl Errors {
    fn add(&mut self, kind: &str, message: String) {
        self.count += 1;
        *self.by_kind.entry(kind.to_owned()).or_default() += 1;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(message);
        }
    }

    fn merge(&mut self, other: Errors) {
        self.count += other.count;
        for (kind, n) in other.by_kind {
            *self.by_kind.entry(kind).or_default() += n;
        }
        let room = ERROR_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }
}

/// What the load phase measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Latency of each successful request.
    pub latencies: Vec<Duration>,
    /// Open loop: how late each request started after it was due.
    pub lags: Vec<Duration>,
    /// Requests answered and checked.
    pub ok: u64,
    /// Requests that failed.
    pub errors: Errors,
    /// From the first request sent to the last answer.
    pub elapsed: Duration,
}

impl Outcome {
    fn record(&mut self, joined: Result<Done, tokio::task::JoinError>) {
        match joined {
            Ok(done) => {
                self.lags.extend(done.lag);
                match done.result {
                    Ok(()) => {
                        self.ok += 1;
                        self.latencies.push(done.latency);
                    }
                    Err((kind, message)) => self.errors.add(kind, message),
                }
            }
            Err(e) => self
                .errors
                .add("other", format!("a request task failed: {e}")),
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.latencies.extend(other.latencies);
        self.lags.extend(other.lags);
        self.ok += other.ok;
        self.errors.merge(other.errors);
    }
}

/// Why a request failed: a short kind and the message.
type Failure = (&'static str, String);

fn classify(error: &Error) -> &'static str {
    match error {
        Error::Timeout { .. } => "timeout",
        Error::Denied { .. } => "denied",
        Error::Signer { .. } => "signer_error",
        Error::Disconnected(_) => "disconnected",
        Error::BadResponse { .. } => "bad_response",
        _ => "other",
    }
}

/// One request of `workload` with sequence number `seq`, its result checked.
pub async fn request(
    client: &Client,
    workload: Workload,
    seq: u64,
    peer: &Keys,
) -> Result<(), Failure> {
    let failed = |e: Error| (classify(&e), e.to_string());
    match workload {
        Workload::SignEvent => {
            let unsigned = EventBuilder::new(Kind::TextNote, format!("rampart bench note {seq}"))
                .tag(Tag::hashtag("rampart"))
                .custom_created_at(Timestamp::now())
                .finalize_unsigned(client.user_pubkey());
            // The library checks id, signature, author and content.
            client.sign_event(unsigned).await.map_err(failed)?;
        }
        Workload::Nip44Encrypt => {
            let text = format!("rampart bench message {seq}");
            let ciphertext = client
                .nip44_encrypt(&peer.public_key(), &text)
                .await
                .map_err(failed)?;
            let plaintext = nip44::decrypt(peer.secret_key(), &client.user_pubkey(), &ciphertext)
                .map_err(|e| {
                (
                    "bad_response",
                    format!("the ciphertext does not decrypt: {e}"),
                )
            })?;
            if plaintext != text {
                return Err((
                    "bad_response",
                    "the ciphertext decrypts to another text".into(),
                ));
            }
        }
        Workload::Ping => {
            let result = client.call(Command::Ping).await.map_err(failed)?;
            if result != "pong" {
                return Err(("bad_response", format!("ping answered {result:?}")));
            }
        }
    }
    Ok(())
}

/// Run `plan` on every client; returns what was measured.
pub async fn run(clients: &[Client], plan: &Plan) -> Outcome {
    let peer = Arc::new(Keys::generate());
    let start = Instant::now();
    let mut per_client = JoinSet::new();
    for (index, client) in clients.iter().enumerate() {
        per_client.spawn(run_client(
            client.clone(),
            index,
            clients.len(),
            plan.clone(),
            start,
            peer.clone(),
        ));
    }
    let mut outcome = Outcome::default();
    while let Some(joined) = per_client.join_next().await {
        match joined {
            Ok(part) => outcome.merge(part),
            Err(e) => outcome
                .errors
                .add("other", format!("a client task failed: {e}")),
        }
    }
    outcome.elapsed = start.elapsed();
    outcome
}

/// One request's result: when it was due late by, how long it took.
struct Done {
    result: Result<(), Failure>,
    latency: Duration,
    lag: Option<Duration>,
}

async fn run_client(
    client: Client,
    index: usize,
    clients: usize,
    plan: Plan,
    start: Instant,
    peer: Arc<Keys>,
) -> Outcome {
    let slots = Arc::new(Semaphore::new(plan.in_flight.max(1)));
    let mut running = JoinSet::new();
    let mut outcome = Outcome::default();
    for j in 0..plan.requests {
        let due = plan.schedule.map(|s| start + s.due(index, j));
        if let Some(due) = due {
            tokio::time::sleep_until(due).await;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let client = client.clone();
        let peer = peer.clone();
        let seq = (j * clients + index) as u64;
        let workload = plan.workload;
        running.spawn(async move {
            let sent = Instant::now();
            let lag = due.map(|due| sent.saturating_duration_since(due));
            let result = request(&client, workload, seq, &peer).await;
            let latency = sent.elapsed();
            drop(slot);
            Done {
                result,
                latency,
                lag,
            }
        });
        while let Some(joined) = running.try_join_next() {
            outcome.record(joined);
        }
    }
    while let Some(joined) = running.join_next().await {
        outcome.record(joined);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_merge_counts_and_keep_few_samples() {
        let mut a = Errors::default();
        for i in 0..4 {
            a.add("timeout", format!("t{i}"));
        }
        let mut b = Errors::default();
        b.add("denied", "d".into());
        b.add("timeout", "t".into());
        b.add("timeout", "t".into());
        a.merge(b);
        assert_eq!(a.count, 7);
        assert_eq!(a.by_kind["timeout"], 6);
        assert_eq!(a.by_kind["denied"], 1);
        assert_eq!(a.samples.len(), ERROR_SAMPLES);
    }
}
