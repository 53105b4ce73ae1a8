//! The relay alone: how long the transport takes, measured in the same run
//! as the requests, so the bunker's share of their latency can be told apart.
//!
//! A NIP-46 request crosses the relay twice: client → relay → signer, then
//! signer → relay → client. The probe does the same with no signer in
//! between: from its own connection it publishes a kind-24133 event it is
//! subscribed to and waits for it (one crossing), then publishes a second,
//! already signed event and waits for that (the second crossing). The first
//! event is signed inside the timed section and the second verified on
//! arrival, as a client seals a request and opens a response; the rest of
//! the client's work (decrypting, checking the signed event) is left in the
//! request's latency, so the bunker's share is, if anything, overstated.
//! Probes run at a low rate all through the load phase, under the same load.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use nip46::envelope;
use nip46::nostr::prelude::{Event, Filter, Keys, Kind, Tag, Tags, Timestamp, UnsignedEvent};
use relay::{PoolConfig, PoolEvent, RelayPool};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

/// How long one crossing may take before the probe gives up.
const CROSSING_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that publishes to itself.
pub struct RelayProbe {
    keys: Keys,
    pool: RelayPool,
    events: mpsc::Receiver<PoolEvent>,
    seq: u64,
}

impl RelayProbe {
    /// Connect to `relay_url` and subscribe to the probe's own events.
    pub async fn connect(relay_url: &str) -> Result<RelayProbe> {
        let keys = Keys::generate();
        let config = PoolConfig {
            // Verified by hand, on the second crossing only.
            verify_events: false,
            ..PoolConfig::default()
        };
        let (pool, mut events) = RelayPool::new(config);
        pool.add_relay(relay_url)
            .with_context(|| format!("probe: cannot add relay {relay_url}"))?;
        let filter = Filter::new()
            .kind(Kind::NostrConnect)
            .author(keys.public_key())
            .pubkey(keys.public_key());
        pool.subscribe(vec![filter])
            .context("probe: cannot subscribe")?;
        let live = async {
            while let Some(event) = events.recv().await {
                if matches!(event, PoolEvent::EndOfStoredEvents { .. }) {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(CROSSING_TIMEOUT, live).await {
            Ok(true) => {}
            _ => bail!("probe: no subscription on {relay_url} within {CROSSING_TIMEOUT:?}"),
        }
        Ok(RelayProbe {
            keys,
            pool,
            events,
            seq: 0,
        })
    }

    /// A kind-24133 event to ourselves, about the size of a request.
    fn event(&mut self) -> Result<Event> {
        self.seq += 1;
        let mut aux = [0u8; 32];
        aux[..8].copy_from_slice(&self.seq.to_le_bytes());
        let content = format!("{:0>400}", self.seq);
        let unsigned = UnsignedEvent {
            id: None,
            pubkey: self.keys.public_key(),
            created_at: Timestamp::now(),
            kind: Kind::NostrConnect,
            tags: Tags::from_list(vec![Tag::public_key(self.keys.public_key())]),
            content,
        };
        envelope::sign(&self.keys, unsigned, &aux).context("probe: cannot sign")
    }

    /// Publish `event` and wait until the relay sends it back.
    async fn cross(&mut self, event: &Event) -> Result<Event> {
        self.pool.publish(event).context("probe: cannot publish")?;
        let wait = async {
            while let Some(got) = self.events.recv().await {
                if let PoolEvent::Event { event: got, .. } = got
                    && got.id == event.id
                {
                    return Some(*got);
                }
            }
            None
        };
        match tokio::time::timeout(CROSSING_TIMEOUT, wait).await {
            Ok(Some(got)) => Ok(got),
            Ok(None) => bail!("probe: the relay connection closed"),
            Err(_) => bail!("probe: event not back within {CROSSING_TIMEOUT:?}"),
        }
    }

    /// Two crossings back to back, as one request makes.
    pub async fn round_trip(&mut self) -> Result<Duration> {
        let second = self.event()?;
        let started = Instant::now();
        let first = self.event()?;
        self.cross(&first).await?;
        let back = self.cross(&second).await?;
        envelope::verify(&back).context("probe: the relay altered an event")?;
        Ok(started.elapsed())
    }

    /// Probe `per_second` times a second until `stop` turns true; returns
    /// the samples.
    pub async fn sample(
        mut self,
        per_second: f64,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Vec<Duration>> {
        let mut samples = Vec::new();
        let period = Duration::from_secs_f64(1.0 / per_second.max(0.01));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                _ = ticks.tick() => samples.push(self.round_trip().await?),
            }
        }
        self.pool.shutdown().await;
        Ok(samples)
    }
}
