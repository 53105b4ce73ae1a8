//! Two `rampart run` replicas on one PostgreSQL database and one relay,
//! with many clients: every request is answered exactly once (duplicates
//! counted by request id, at the clients, and by request event, in the
//! audit log), the load is split between the replicas, and when one is
//! killed with SIGKILL mid-load the other takes over its clients — the
//! requests it had in flight are answered after its lease.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nip46::nostr::prelude::{EventId, Timestamp};
use nip46::{BunkerUri, Outcome};
use relay::server::{self, ServerConfig};
use testkit::postgres::PostgresCluster;
use testkit::{RampartProcess, RawClient};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");
/// A request not answered within this is a failure (a takeover takes a
/// lease, 5 s, and a heartbeat).
const ANSWER_WITHIN: Duration = Duration::from_secs(25);

/// Rows of a query on the shared database, every column as text (the sync
/// client must not run on an async thread).
async fn sql(url: &str, query: &str) -> Vec<Vec<Option<String>>> {
    let (url, query) = (url.to_owned(), query.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .simple_query(&query)
            .unwrap()
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    })
    .await
    .unwrap()
}

fn replica(url: &str, relay: &str, name: &str) -> RampartProcess {
    RampartProcess::start(
        Path::new(BIN),
        Some(relay),
        &[("RAMPART_DATABASE", url), ("RAMPART_REPLICA", name)],
        &["--grant", "full", "--no-prompt"],
    )
}

/// A client connected with a fresh token.
async fn connected(bunker: &RampartProcess) -> RawClient {
    let token = bunker.mint("full", &[]);
    let uri: BunkerUri = token.parse().unwrap();
    let secret = uri.secret.as_ref().unwrap().expose().to_owned();
    let mut client = RawClient::new(&token).await;
    let signer = client.signer.to_hex();
    let answer = client
        .call("connect", "connect", serde_json::json!([signer, secret]))
        .await;
    assert!(
        matches!(answer.outcome, Outcome::Result(_)),
        "connect: {answer:?}"
    );
    client
}

/// What one request saw.
#[derive(Debug, Clone)]
struct Sent {
    client: usize,
    event: EventId,
    sent: Instant,
    /// When each answer arrived, and the answer event's id.
    answers: Vec<(Instant, EventId)>,
    /// Answers that were not a signed event.
    errors: Vec<String>,
}

/// Send sign_event requests one after another until `stop`, recording
/// every answer (one for an earlier request counts as a duplicate of it).
async fn load(
    index: usize,
    mut client: RawClient,
    stop: Instant,
    record: Arc<Mutex<BTreeMap<String, Sent>>>,
) -> RawClient {
    let mut n = 0;
    while Instant::now() < stop {
        n += 1;
        let id = format!("c{index}-{n}");
        // The spec's template: no pubkey (the signer's user key signs).
        let template = serde_json::json!({
            "kind": 1,
            "content": format!("note {id}"),
            "tags": [],
            "created_at": Timestamp::now().as_secs(),
        });
        let event = client.request(&id, "sign_event", serde_json::json!([template.to_string()]));
        record.lock().unwrap().insert(
            id.clone(),
            Sent {
                client: index,
                event: event.id,
                sent: Instant::now(),
                answers: Vec::new(),
                errors: Vec::new(),
            },
        );
        client.publish(&event);
        let deadline = Instant::now() + ANSWER_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some((answer, _, response)) = client.next_answer(left).await else {
                break;
            };
            if let Some(sent) = record.lock().unwrap().get_mut(&response.id) {
                sent.answers.push((Instant::now(), answer.id));
                if !matches!(response.outcome, Outcome::Result(_)) {
                    sent.errors.push(format!("{:?}", response.outcome));
                }
            }
            if response.id == id {
                break;
            }
        }
    }
    client
}

/// Late answers (duplicates) still arriving after the load.
async fn drain(mut client: RawClient, record: Arc<Mutex<BTreeMap<String, Sent>>>) {
    while let Some((answer, _, response)) = client.next_answer(Duration::from_secs(3)).await {
        if let Some(sent) = record.lock().unwrap().get_mut(&response.id) {
            sent.answers.push((Instant::now(), answer.id));
        }
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_answer_each_request_once_and_take_over_from_a_killed_one() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    let url = cluster.fresh_database();
    let relay = server::spawn(ServerConfig {
        events_per_second: 100_000,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut a = replica(&url, &relay.url(), "a");
    let b = replica(&url, &relay.url(), "b");

    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(connected(&a).await);
    }
    let record = Arc::new(Mutex::new(BTreeMap::new()));
    let started = Instant::now();
    let stop = started + Duration::from_secs(16);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(load(i, c, stop, Arc::clone(&record))))
        .collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    a.kill9();
    let killed = Instant::now();
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    let drains: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(drain(c, Arc::clone(&record))))
        .collect();
    for task in drains {
        task.await.unwrap();
    }
    let record = record.lock().unwrap().clone();
    for (name, log) in [("a", a.log_path()), ("b", b.log_path())] {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| {
                l.contains("live replicas")
                    || l.contains("took over")
                    || l.contains("answered first")
            })
            .take(30)
        {
            eprintln!("[{name}] {line}");
        }
    }

    // Exactly once, at the clients.
    let unanswered: Vec<&String> = record
        .iter()
        .filter(|(_, s)| s.answers.is_empty())
        .map(|(id, _)| id)
        .collect();
    assert!(
        unanswered.is_empty(),
        "{} unanswered, first: {:?}",
        unanswered.len(),
        &unanswered[..unanswered.len().min(5)]
    );
    let failed: Vec<(&String, &Vec<String>)> = record
        .iter()
        .filter(|(_, s)| !s.errors.is_empty())
        .map(|(id, s)| (id, &s.errors))
        .collect();
    assert!(
        failed.is_empty(),
        "{} answered with errors, first: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    let duplicated: Vec<(&String, &Sent)> = record
        .iter()
        .filter(|(_, s)| {
            s.answers
                .iter()
                .map(|(_, e)| e)
                .collect::<BTreeSet<_>>()
                .len()
                > 1
        })
        .collect();
    assert!(
        duplicated.is_empty(),
        "{} answered twice, first: {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(3)]
    );

    // Exactly once, in the store: one audit row and one claim per request event.
    let twice = sql(
        &url,
        "SELECT event_id, count(*) FROM audit GROUP BY event_id HAVING count(*) > 1",
    )
    .await;
    assert!(twice.is_empty(), "request events audited twice: {twice:?}");
    let claims: BTreeMap<String, String> = sql(&url, "SELECT request_event, replica FROM answers")
        .await
        .into_iter()
        .map(|row| (row[0].clone().unwrap(), row[1].clone().unwrap()))
        .collect();
    let by = |s: &Sent| claims.get(&s.event.to_hex()).cloned();

    // Before the kill both replicas answered (each client's cryptography on one).
    let before: BTreeMap<Option<String>, usize> = record
        .values()
        .filter(|s| s.answers[0].0 < killed)
        .fold(BTreeMap::new(), |mut m, s| {
            *m.entry(by(s)).or_insert(0) += 1;
            m
        });
    assert!(
        before.get(&Some("a".into())).is_some_and(|n| *n > 0)
            && before.get(&Some("b".into())).is_some_and(|n| *n > 0),
        "the load was not split: {before:?}"
    );
    let mut per_client: BTreeMap<usize, BTreeMap<Option<String>, usize>> = BTreeMap::new();
    for s in record.values().filter(|s| s.answers[0].0 < killed) {
        *per_client
            .entry(s.client)
            .or_default()
            .entry(by(s))
            .or_insert(0) += 1;
    }
    eprintln!("answers per client before the kill: {per_client:?}");
    // a's clients: those it answered before the kill. Every request of
    // theirs answered after it was answered by b.
    let a_clients: BTreeSet<usize> = record
        .values()
        .filter(|s| s.answers[0].0 < killed && by(s).as_deref() == Some("a"))
        .map(|s| s.client)
        .collect();
    let taken_over: Vec<&Sent> = record
        .values()
        .filter(|s| a_clients.contains(&s.client) && s.answers[0].0 > killed)
        .collect();
    assert!(
        !taken_over.is_empty(),
        "no request of a's clients after the kill"
    );
    // Answered by b — or sealed by a, which died before sending it, and
    // republished by b after a's lease (the same answer, not a new one).
    // (An answer a sent just before it died may arrive just after.)
    let republished: Vec<&&Sent> = taken_over
        .iter()
        .filter(|s| {
            by(s).as_deref() == Some("a") && s.answers[0].0 > killed + Duration::from_secs(1)
        })
        .collect();
    for s in &republished {
        assert!(
            s.sent < killed,
            "a's answer to a request sent after it died: {s:?}"
        );
    }
    for s in &taken_over {
        assert!(
            matches!(by(s).as_deref(), Some("a" | "b")),
            "an unclaimed answer: {s:?}"
        );
    }
    // The requests a had in flight: sent before the kill, answered after it.
    let in_flight: Vec<Duration> = taken_over
        .iter()
        .filter(|s| s.sent < killed)
        .map(|s| s.answers[0].0 - killed)
        .collect();
    let first = in_flight.iter().min().copied();
    eprintln!(
        "requests: {}, before the kill: {before:?}; a's clients: {}; taken over after the kill: {}; \
         republished from a's sealed answers: {}; in flight at the kill: {}, first answered {:?} after it",
        record.len(),
        a_clients.len(),
        taken_over.len(),
        republished.len(),
        in_flight.len(),
        first
    );
    assert!(
        !in_flight.is_empty(),
        "a had no request in flight when it was killed"
    );
    drop(b);
}
