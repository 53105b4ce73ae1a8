//! What `/metrics` reports (Prometheus text format) and `/healthz` judges.
//!
//! The service loop updates these as it works; the HTTP side only renders
//! them. Every label is bounded: methods are NIP-46's (anything else is
//! `unknown`), decisions and outcomes are the bunker's own codes, replicas
//! are the handful sharing a store. Nothing is labelled per client, per
//! request or per relay.

use std::time::Duration;

use nip46::Method;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use relay::pool::RelayStatus;
use store::AuditEntry;

/// Latency buckets, in seconds: a local answer takes milliseconds, a
/// takeover seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// The bunker's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: Histogram,
    commit_seconds: Histogram,
    held: IntGauge,
    sessions: IntGauge,
    relays: IntGauge,
    relays_connected: IntGauge,
    store_up: IntGauge,
    replica_live: IntGaugeVec,
    replica_clients: IntGaugeVec,
    deferred: IntGauge,
    taken_over: IntCounter,
    republished: IntCounter,
}

/// Why the metrics could not be set up (a duplicate name: a bug).
#[derive(Debug, thiserror::Error)]
#[error("could not register the metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Fresh metrics, all zero, the store assumed up.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new_custom(Some("rampart".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests answered or refused, by method, decision and outcome.",
            ),
            &["method", "decision", "outcome"],
        )?;
        let request_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "request_seconds",
                "From a request's arrival to its answer being queued for the relays.",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "store_commit_seconds",
                "From handing a step's changes to the store writer to their commit.",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        let held = IntGauge::new("held_requests", "Requests waiting for the user.")?;
        let sessions = IntGauge::new("sessions", "Sessions this process mirrors.")?;
        let relays = IntGauge::new("relays", "Relays in the pool.")?;
        let relays_connected = IntGauge::new("relays_connected", "Relays connected now.")?;
        let store_up = IntGauge::new("store_up", "1 when the last store operation succeeded.")?;
        let replica_live = IntGaugeVec::new(
            Opts::new(
                "replica_live",
                "1 for each replica whose heartbeat is within its lease.",
            ),
            &["replica"],
        )?;
        let replica_clients = IntGaugeVec::new(
            Opts::new(
                "replica_clients",
                "Clients with a session that each live replica owns.",
            ),
            &["replica"],
        )?;
        let deferred = IntGauge::new(
            "replica_deferred_events",
            "Requests kept aside for another replica (or while fenced).",
        )?;
        let taken_over = IntCounter::new(
            "replica_taken_over_total",
            "Requests claimed and answered here after their replica stopped.",
        )?;
        let republished = IntCounter::new(
            "replica_republished_total",
            "Sealed answers of stopped replicas published again.",
        )?;
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(held.clone()),
            Box::new(sessions.clone()),
            Box::new(relays.clone()),
            Box::new(relays_connected.clone()),
            Box::new(store_up.clone()),
            Box::new(replica_live.clone()),
            Box::new(replica_clients.clone()),
            Box::new(deferred.clone()),
            Box::new(taken_over.clone()),
            Box::new(republished.clone()),
        ] {
            registry.register(metric)?;
        }
        store_up.set(1);
        Ok(Metrics {
            registry,
            requests,
            request_seconds,
            commit_seconds,
            held,
            sessions,
            relays,
            relays_connected,
            store_up,
            replica_live,
            replica_clients,
            deferred,
            taken_over,
            republished,
        })
    }

    /// Count the requests an audit row stands for.
    pub fn answered(&self, row: &AuditEntry) {
        let method = row
            .method
            .parse::<Method>()
            .map_or("unknown", |m| m.as_str());
        self.requests
            .with_label_values(&[method, row.decision.as_str(), bounded(&row.outcome)])
            .inc_by(u64::from(row.events));
    }

    /// A request took this long to answer.
    pub fn request_took(&self, elapsed: Duration) {
        self.request_seconds.observe(elapsed.as_secs_f64());
    }

    /// A commit took this long (queue included).
    pub fn commit_took(&self, elapsed: Duration) {
        self.commit_seconds.observe(elapsed.as_secs_f64());
    }

    /// Whether the store answers.
    pub fn set_store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// Whether the last store operation succeeded.
    pub fn store_is_up(&self) -> bool {
        self.store_up.get() == 1
    }

    /// The engine's counts.
    pub fn set_engine(&self, held: usize, sessions: usize) {
        self.held.set(gauge(held));
        self.sessions.set(gauge(sessions));
    }

    /// The replicas' state: who is live and how many clients each owns.
    pub fn set_replicas(
        &self,
        owned: &std::collections::BTreeMap<store::ReplicaId, usize>,
        deferred: usize,
    ) {
        self.replica_live.reset();
        self.replica_clients.reset();
        for (replica, clients) in owned {
            self.replica_live
                .with_label_values(&[replica.as_str()])
                .set(1);
            self.replica_clients
                .with_label_values(&[replica.as_str()])
                .set(gauge(*clients));
        }
        self.deferred.set(gauge(deferred));
    }

    /// Requests claimed at a takeover, and sealed answers republished.
    pub fn took_over(&self, handled: usize, republished: usize) {
        self.taken_over.inc_by(handled as u64);
        self.republished.inc_by(republished as u64);
    }

    /// The text format, with the relays' state as of now.
    pub fn render(&self, relays: &[RelayStatus]) -> String {
        self.relays.set(gauge(relays.len()));
        self.relays_connected
            .set(gauge(relays.iter().filter(|r| r.connected).count()));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "could not render the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Outcomes are the bunker's own codes; anything else is `other`.
fn bounded(outcome: &str) -> &str {
    let plain = outcome.len() <= 32 && outcome.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if plain { outcome } else { "other" }
}

#[cfg(test)]
mod tests {
    use nip46::nostr::prelude::{EventId, PublicKey, Timestamp};
    use store::{AuditDecision, KeyId};

    use super::*;

    fn row(method: &str, outcome: &str) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at: Timestamp::from_secs(1),
            key_id: KeyId(1),
            client: Some(PublicKey::from_byte_array([2; 32])),
            event_id: Some(EventId::from_byte_array([3; 32])),
            event_created_at: Timestamp::from_secs(1),
            events: 1,
            request_id: "r".into(),
            method: method.into(),
            kind: None,
            decision: AuditDecision::Allowed,
            outcome: outcome.into(),
            signed_event_id: None,
            operator: None,
        }
    }

    #[test]
    fn labels_stay_bounded_whatever_peers_send() {
        let m = Metrics::new().expect("metrics");
        m.answered(&row("sign_event", "ok"));
        m.answered(&row("sign_event", "ok"));
        m.answered(&row("made_up_by_a_peer_1", "ok"));
        m.answered(&row("made_up_by_a_peer_2", "Weird Outcome!"));
        let text = m.render(&[]);
        assert!(
            text.contains(
                r#"rampart_requests_total{decision="allowed",method="sign_event",outcome="ok"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"method="unknown",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"method="unknown",outcome="other"} 1"#),
            "{text}"
        );
        assert!(!text.contains("made_up"), "{text}");
        assert!(text.contains("rampart_store_up 1"), "{text}");
    }
}
