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
use testkit::{DashboardClient, RampartProcess, RawClient};

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
        &[
            ("RAMPART_DATABASE", url),
            ("RAMPART_REPLICA", name),
            // Load, not abuse: the session rate limit out of the way.
            ("RAMPART_RATE_BURST", "100000"),
            ("RAMPART_RATE_PER_SECOND", "100000"),
        ],
        &["--grant", "full", "--no-prompt"],
    )
}

/// A client connected with a fresh token, on the bunker's relay.
async fn connected(bunker: &RampartProcess) -> RawClient {
    connected_as(
        bunker,
        nip46::nostr::prelude::Keys::generate(),
        &bunker.relay_url,
    )
    .await
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

/// Wait for the load tasks, then for late answers (duplicates); what every
/// request saw.
async fn finish(
    tasks: Vec<tokio::task::JoinHandle<RawClient>>,
    record: Arc<Mutex<BTreeMap<String, Sent>>>,
) -> BTreeMap<String, Sent> {
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    // Drained together, once every load is over.
    let drains: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(drain(c, Arc::clone(&record))))
        .collect();
    for task in drains {
        task.await.unwrap();
    }
    record.lock().unwrap().clone()
}

/// Which replica claimed each request event (hex id → replica).
async fn claims(url: &str) -> BTreeMap<String, String> {
    sql(url, "SELECT request_event, replica FROM answers")
        .await
        .into_iter()
        .map(|row| (row[0].clone().unwrap(), row[1].clone().unwrap()))
        .collect()
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
    let record = finish(tasks, record).await;

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
    let claims = claims(&url).await;
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

/// `/healthz` (status and body) and `/metrics` of a bunker.
async fn get(url: &str) -> (u16, String) {
    // reqwest is built with rustls but no provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Wait (≤ `limit`) until `/healthz` answers `status`.
async fn healthz_becomes(base: &str, status: u16, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (now, body) = get(&format!("{base}/healthz")).await;
        if now == status {
            return body;
        }
        assert!(Instant::now() < deadline, "/healthz stayed {now}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sign_request(client: &mut RawClient, id: &str) -> nip46::nostr::prelude::Event {
    let template = serde_json::json!({
        "kind": 1, "content": id, "tags": [], "created_at": Timestamp::now().as_secs(),
    });
    client.request(id, "sign_event", serde_json::json!([template.to_string()]))
}

/// The signed event in an answer.
fn signed(response: &nip46::Response) -> nip46::nostr::prelude::Event {
    match &response.outcome {
        Outcome::Result(json) => nip46::nostr::prelude::Event::from_json(json).unwrap(),
        other => panic!("not a signature: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_restart_holds_requests_until_it_is_back_and_healthz_says_so() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    // The cluster trusts loopback: the password is never checked, only
    // carried — and must never be shown.
    let url = cluster
        .fresh_database()
        .replace("postgres@", "postgres:hunter2@");
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let port = testkit::free_port();
    let listen = format!("127.0.0.1:{port}");
    let base = format!("http://{listen}");
    let bunker = RampartProcess::start(
        Path::new(BIN),
        Some(&relay.url()),
        &[
            ("RAMPART_DATABASE", &url),
            ("RAMPART_REPLICA", "solo"),
            ("RAMPART_METRICS_LISTEN", &listen),
        ],
        &["--grant", "full", "--no-prompt"],
    );
    let mut client = connected(&bunker).await;
    let first = client.call("before", "sign_event", serde_json::json!([
        serde_json::json!({"kind": 1, "content": "before", "tags": [], "created_at": Timestamp::now().as_secs()}).to_string()
    ])).await;
    let before = signed(&first);

    let body = healthz_becomes(&base, 200, Duration::from_secs(10)).await;
    assert!(
        body.contains(r#""ready":true"#) && body.contains(r#""replica":"solo""#),
        "{body}"
    );
    assert!(
        !body.contains("hunter2"),
        "the password on /healthz: {body}"
    );
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    for expected in [
        r#"rampart_requests_total{decision="allowed",method="sign_event",outcome="ok"} 1"#,
        "rampart_store_up 1",
        "rampart_relays_connected 1",
        "rampart_request_seconds_count",
        "rampart_store_commit_seconds_count",
    ] {
        assert!(metrics.contains(expected), "{expected} not in:\n{metrics}");
    }
    // Gauges are refreshed every second.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    for expected in [
        r#"rampart_replica_live{replica="solo"} 1"#,
        r#"rampart_replica_clients{replica="solo"} 1"#,
        "rampart_sessions 1",
    ] {
        assert!(metrics.contains(expected), "{expected} not in:\n{metrics}");
    }

    // The database goes away (every connection breaks) and comes back.
    cluster.stop();
    let body = healthz_becomes(&base, 503, Duration::from_secs(10)).await;
    assert!(body.contains(r#""store":"down""#), "{body}");
    let during = sign_request(&mut client, "during");
    client.publish(&during);
    // Not answered while there is nothing to record it in.
    let early = client.next_response(Duration::from_secs(2)).await;
    assert!(early.is_none(), "answered without a store: {early:?}");
    cluster.start_again();
    let answer = client
        .response_to("during", ANSWER_WITHIN)
        .await
        .expect("the request held during the outage is answered once the store is back");
    let after = signed(&answer);
    healthz_becomes(&base, 200, Duration::from_secs(15)).await;
    let log = std::fs::read_to_string(bunker.log_path()).unwrap();
    assert!(
        log.contains("reconnected to PostgreSQL") && log.contains("stops answering"),
        "the outage is in the log"
    );
    assert!(!log.contains("hunter2"), "the password in the log");

    // Every signature has its audit row.
    for event in [before, after] {
        let rows = sql(
            &url,
            &format!(
                "SELECT count(*) FROM audit WHERE signed_event_id = '{}'",
                event.id.to_hex()
            ),
        )
        .await;
        assert_eq!(
            rows[0][0].as_deref(),
            Some("1"),
            "audit rows of {}",
            event.id
        );
    }
    client.close().await;
}

/// Fresh client keys that `owner` serves among replicas a and b.
fn keys_owned_by(owner: &str) -> nip46::nostr::prelude::Keys {
    let live = [
        store::ReplicaId::parse("a").unwrap(),
        store::ReplicaId::parse("b").unwrap(),
    ];
    loop {
        let keys = nip46::nostr::prelude::Keys::generate();
        let found = bunker::replicas::owner_among(&live, &keys.public_key());
        if found.map(store::ReplicaId::as_str) == Some(owner) {
            return keys;
        }
    }
}

/// A client with chosen keys, connected with a fresh token.
async fn connected_as(
    bunker: &RampartProcess,
    keys: nip46::nostr::prelude::Keys,
    relay: &str,
) -> RawClient {
    let token = bunker.mint("full", &[]);
    let uri: BunkerUri = token.parse().unwrap();
    let secret = uri.secret.as_ref().unwrap().expose().to_owned();
    let mut client = RawClient::with_keys(keys, uri.signer, &[relay.to_owned()]).await;
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

/// Wait (≤ 10 s) until the store holds a's sealed answer to `request`.
async fn sealed_answer(url: &str, request: &EventId) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = sql(
            url,
            &format!(
                "SELECT replica, answer FROM answers WHERE request_event = '{}'",
                request.to_hex()
            ),
        )
        .await;
        if let Some(row) = rows.first()
            && let Some(answer) = &row[1]
        {
            assert_eq!(row[0].as_deref(), Some("a"));
            return answer.clone();
        }
        assert!(Instant::now() < deadline, "a never committed an answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_sealed_but_never_sent_is_republished_by_the_survivor_not_signed_again() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    let url = cluster.fresh_database();
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    // a reaches the relay through a proxy that can swallow what a sends.
    let proxy = testkit::TcpProxy::start(relay.local_addr()).await;
    let through_proxy = format!("ws://{}", proxy.addr());
    let mut a = replica(&url, &through_proxy, "a");
    let b = replica(&url, &relay.url(), "b");
    // Both have seen each other (a heartbeat and a warm-up).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut client = connected_as(&b, keys_owned_by("a"), &relay.url()).await;

    proxy.set_mode(testkit::ProxyMode::SwallowUpstream);
    let request = sign_request(&mut client, "sealed");
    client.publish(&request);
    let sealed = sealed_answer(&url, &request.id).await;
    let sealed = nip46::nostr::prelude::Event::from_json(&sealed).unwrap();
    let early = client.next_response(Duration::from_millis(500)).await;
    assert!(
        early.is_none(),
        "a's answer got through the proxy: {early:?}"
    );

    a.kill9();
    let killed = Instant::now();
    let (answer, _, response) = client
        .next_answer(ANSWER_WITHIN)
        .await
        .expect("the survivor republishes the sealed answer");
    let gap = killed.elapsed();
    assert_eq!(response.id, "sealed");
    assert_eq!(
        answer.id, sealed.id,
        "the very answer a sealed, not a new one"
    );
    assert_eq!(answer.pubkey, sealed.pubkey);
    let audited = sql(
        &url,
        &format!(
            "SELECT count(*) FROM audit WHERE event_id = '{}'",
            request.id.to_hex()
        ),
    )
    .await;
    assert_eq!(audited[0][0].as_deref(), Some("1"), "signed once");
    assert!(
        client.next_response(Duration::from_secs(2)).await.is_none(),
        "a second answer"
    );
    eprintln!("republished {gap:?} after the kill");
    client.close().await;
    drop(b);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_cut_off_from_the_database_stops_answering_and_answers_nothing_stale() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    let url = cluster.fresh_database();
    let proxy =
        testkit::TcpProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], cluster.port())))
            .await;
    let url_a = url.replace(
        &format!(":{}/", cluster.port()),
        &format!(":{}/", proxy.addr().port()),
    );
    let relay = server::spawn(ServerConfig {
        events_per_second: 100_000,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let a = replica(&url_a, &relay.url(), "a");
    let b = replica(&url, &relay.url(), "b");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut clients = Vec::new();
    for owner in ["a", "a", "a", "b", "b", "b"] {
        clients.push(connected_as(&b, keys_owned_by(owner), &relay.url()).await);
    }
    let record = Arc::new(Mutex::new(BTreeMap::new()));
    let started = Instant::now();
    let stop = started + Duration::from_secs(21);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(load(i, c, stop, Arc::clone(&record))))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set_mode(testkit::ProxyMode::Cut);
    let cut = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    proxy.set_mode(testkit::ProxyMode::Pass);
    let healed = Instant::now();
    let record = finish(tasks, record).await;
    assert!(
        record.values().all(|s| !s.answers.is_empty()),
        "a request went unanswered"
    );
    assert!(
        record.values().all(|s| s.errors.is_empty()),
        "an error answer"
    );
    let twice = record
        .values()
        .filter(|s| {
            s.answers
                .iter()
                .map(|(_, e)| e)
                .collect::<BTreeSet<_>>()
                .len()
                > 1
        })
        .count();
    assert_eq!(twice, 0, "requests answered twice");
    let claims = claims(&url).await;
    let by = |s: &Sent| claims.get(&s.event.to_hex()).cloned();
    // From a lease after the cut until the cut heals, a answers nothing:
    // its clients (0–2) are served by b.
    let lease = Duration::from_secs(5);
    let cut_off: Vec<&Sent> = record
        .values()
        .filter(|s| s.sent > cut + lease && s.answers[0].0 < healed)
        .collect();
    assert!(
        cut_off.iter().any(|s| s.client < 3),
        "no request of a's clients while it was cut off"
    );
    for s in &cut_off {
        assert_eq!(
            by(s).as_deref(),
            Some("b"),
            "answered by a while cut off: {s:?}"
        );
    }
    // After it is back (a reconnection, ≤ 2 s of backoff; a heartbeat; a
    // warm-up), a serves its clients again.
    let back: Vec<&Sent> = record
        .values()
        .filter(|s| s.client < 3 && s.sent > healed + Duration::from_secs(6))
        .collect();
    assert!(
        !back.is_empty() && back.iter().all(|s| by(s).as_deref() == Some("a")),
        "a did not come back"
    );
    let twice_audited = sql(
        &url,
        "SELECT event_id, count(*) FROM audit GROUP BY event_id HAVING count(*) > 1",
    )
    .await;
    assert!(twice_audited.is_empty(), "audited twice: {twice_audited:?}");
    let log = std::fs::read_to_string(a.log_path()).unwrap();
    assert!(
        log.contains("stops answering") && log.contains("heartbeat renewed"),
        "a said it stopped and resumed"
    );
    drop((a, b));
}

/// Log in to `bunker`'s dashboard as its owner (the link printed at start).
async fn owner_dashboard(bunker: &RampartProcess) -> DashboardClient {
    DashboardClient::login(&bunker.dashboard_login_url().expect("a login link")).await
}

/// Wait for `request_id` on `dashboard` and allow it; its approval id.
async fn allow_held(dashboard: &DashboardClient, request_id: &str) -> String {
    let approval = dashboard.held(request_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = dashboard.decide(&approval, "allow_once").await;
    assert_eq!(status, 200, "{body}");
    approval
}

#[tokio::test(flavor = "multi_thread")]
async fn held_requests_are_decided_on_any_replica_and_survive_their_holders_death() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    let url = cluster.fresh_database();
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let mut a = replica(&url, &relay.url(), "a");
    let b = replica(&url, &relay.url(), "b");
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A client of a's whose session may only read: signing is asked.
    let keys = keys_owned_by("a");
    let token = b.mint("read", &[]);
    let uri: BunkerUri = token.parse().unwrap();
    let secret = uri.secret.as_ref().unwrap().expose().to_owned();
    let mut client = RawClient::with_keys(keys, uri.signer, &[relay.url()]).await;
    let signer = client.signer.to_hex();
    let answer = client
        .call("connect", "connect", serde_json::json!([signer, secret]))
        .await;
    assert!(matches!(answer.outcome, Outcome::Result(_)));
    let on_b = owner_dashboard(&b).await;

    // Held by a, listed and decided on b's dashboard: a answers.
    let first = sign_request(&mut client, "held-1");
    client.publish(&first);
    allow_held(&on_b, "held-1").await;
    let answer = client
        .response_to("held-1", ANSWER_WITHIN)
        .await
        .expect("answered");
    assert_eq!(signed(&answer).content, "held-1");

    // Held by a, which dies: b adopts it, and answers it once decided.
    let second = sign_request(&mut client, "held-2");
    client.publish(&second);
    let approval = on_b.held("held-2").await["id"].as_str().unwrap().to_owned();
    let holder = sql(
        &url,
        &format!("SELECT holder FROM held_requests WHERE approval_id = '{approval}'"),
    )
    .await;
    assert_eq!(holder[0][0].as_deref(), Some("a"));
    a.kill9();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let holder = sql(
            &url,
            &format!("SELECT holder FROM held_requests WHERE approval_id = '{approval}'"),
        )
        .await;
        if holder[0][0].as_deref() == Some("b") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "b did not adopt a's held request"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        client
            .next_response(Duration::from_millis(300))
            .await
            .is_none(),
        "answered before anyone decided"
    );
    let (status, body) = on_b.decide(&approval, "allow_once").await;
    assert_eq!(status, 200, "{body}");
    let answer = client
        .response_to("held-2", ANSWER_WITHIN)
        .await
        .expect("answered by b");
    let event = signed(&answer);
    assert_eq!(event.content, "held-2");
    let rows = sql(
        &url,
        &format!(
            "SELECT count(*) FROM audit WHERE event_id = '{}' AND signed_event_id IS NOT NULL",
            second.id.to_hex()
        ),
    )
    .await;
    assert_eq!(rows[0][0].as_deref(), Some("1"), "signed once");
    assert!(
        client.next_response(Duration::from_secs(1)).await.is_none(),
        "a second answer"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_secret_makes_one_session_and_a_revocation_and_a_lock_reach_every_replica_within_a_second()
 {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    let url = cluster.fresh_database();
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let a = replica(&url, &relay.url(), "a");
    let b = replica(&url, &relay.url(), "b");
    tokio::time::sleep(Duration::from_secs(3)).await;

    // One secret sent at once by a client of a's and a client of b's.
    let token = b.mint("full", &[]);
    let uri: BunkerUri = token.parse().unwrap();
    let secret = uri.secret.as_ref().unwrap().expose().to_owned();
    let mut racers = Vec::new();
    for owner in ["a", "b"] {
        racers.push(RawClient::with_keys(keys_owned_by(owner), uri.signer, &[relay.url()]).await);
    }
    let signer = uri.signer.to_hex();
    for racer in &mut racers {
        let connect = racer.request("race", "connect", serde_json::json!([signer, secret]));
        racer.publish(&connect);
    }
    let mut won = Vec::new();
    for racer in &mut racers {
        let answer = racer
            .response_to("race", ANSWER_WITHIN)
            .await
            .expect("an answer");
        won.push(matches!(answer.outcome, Outcome::Result(_)));
    }
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let sessions = sql(&url, "SELECT count(*) FROM sessions").await;
    assert_eq!(sessions[0][0].as_deref(), Some("1"));

    // The winner's session is revoked from b's side; whichever replica owns
    // it refuses its next request within a second.
    let winner = if won[0] { 0 } else { 1 };
    let mut client = racers.swap_remove(winner);
    let ok = client.call("before", "ping", serde_json::json!([])).await;
    assert!(matches!(ok.outcome, Outcome::Result(_)));
    let out = b.cli(&["sessions", "revoke", &client.keys.public_key().to_hex()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let refused = client.call("after", "ping", serde_json::json!([])).await;
    assert!(
        matches!(refused.outcome, Outcome::Error(_)),
        "still served a second after the revocation: {refused:?}"
    );

    // The kill switch, from a's side: a client of each replica is refused
    // `key locked` a second later, and served again once unlocked.
    let mut owned = Vec::new();
    for owner in ["a", "b"] {
        let token: BunkerUri = a.mint("full", &[]).parse().unwrap();
        let secret = token.secret.as_ref().unwrap().expose().to_owned();
        let mut c = RawClient::with_keys(keys_owned_by(owner), token.signer, &[relay.url()]).await;
        let ack = c
            .call("c", "connect", serde_json::json!([signer, secret]))
            .await;
        assert!(matches!(ack.outcome, Outcome::Result(_)), "{ack:?}");
        owned.push(c);
    }
    let out = a.cli(&["lock"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (c, owner) in owned.iter_mut().zip(["a", "b"]) {
        let refused = c.call("locked", "ping", serde_json::json!([])).await;
        assert_eq!(
            refused,
            nip46::Response::error("locked", nip46::ErrorCode::Unauthorized, "key locked"),
            "the client of {owner} a second after the lock"
        );
    }
    let out = b.cli(&["unlock"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (c, owner) in owned.iter_mut().zip(["a", "b"]) {
        let served = c.call("unlocked", "ping", serde_json::json!([])).await;
        assert_eq!(
            served,
            nip46::Response::ok("unlocked", "pong"),
            "the client of {owner} a second after the unlock"
        );
    }
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_restarted_within_its_lease_waits_it_out_and_nothing_is_lost() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    let url = cluster.fresh_database();
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let mut a = replica(&url, &relay.url(), "a");
    let b = replica(&url, &relay.url(), "b");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut clients = Vec::new();
    for owner in ["a", "a", "b"] {
        clients.push(connected_as(&b, keys_owned_by(owner), &relay.url()).await);
    }
    let record = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Instant::now() + Duration::from_secs(14);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(load(i, c, stop, Arc::clone(&record))))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Killed and back at once (systemd's Restart=always): the new run finds
    // its name live, waits for the old run's lease, then serves.
    a.kill9();
    tokio::task::block_in_place(|| a.restart(&["--grant", "full", "--no-prompt"]));
    let record = finish(tasks, record).await;
    assert!(
        record.values().all(|s| !s.answers.is_empty()),
        "a request went unanswered"
    );
    let errors: Vec<&Sent> = record.values().filter(|s| !s.errors.is_empty()).collect();
    assert!(
        errors.is_empty(),
        "{} error answers, first: {:?}",
        errors.len(),
        errors.first()
    );
    let twice = record
        .values()
        .filter(|s| {
            s.answers
                .iter()
                .map(|(_, e)| e)
                .collect::<BTreeSet<_>>()
                .len()
                > 1
        })
        .count();
    assert_eq!(twice, 0, "requests answered twice");
    let log = std::fs::read_to_string(a.log_path()).unwrap();
    assert!(
        log.contains("already exists"),
        "the new run did not wait for the old one"
    );
    // The new run serves its clients again in the end.
    let claims = claims(&url).await;
    let last_of_a = record
        .values()
        .filter(|s| s.client < 2)
        .max_by_key(|s| s.sent)
        .unwrap();
    assert_eq!(
        claims.get(&last_of_a.event.to_hex()).map(String::as_str),
        Some("a")
    );
    drop(b);
}

/// A `sign_event` of `kind` (sensitive kinds are held whatever the grant).
fn sign_kind(client: &mut RawClient, id: &str, kind: u16) -> nip46::nostr::prelude::Event {
    let template = serde_json::json!({
        "kind": kind, "content": id, "tags": [], "created_at": Timestamp::now().as_secs(),
    });
    client.request(id, "sign_event", serde_json::json!([template.to_string()]))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quorum_is_met_by_two_operators_on_two_replicas_dashboards() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    let url = cluster.fresh_database();
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let a = replica(&url, &relay.url(), "a");
    let b = replica(&url, &relay.url(), "b");
    a.cli_ok(&["policy", "quorum", "--key", "default", "2"]);
    let carol = a.cli_ok(&[
        "operator",
        "add",
        "carol",
        "--role",
        "approver",
        "--all-keys",
    ]);
    let dave = b.cli_ok(&[
        "operator", "add", "dave", "--role", "approver", "--keys", "default",
    ]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let carol_on_a = DashboardClient::login(&DashboardClient::link_on(
        &a.dashboard_login_url().unwrap(),
        &carol,
    ))
    .await;
    let dave_on_b = DashboardClient::login(&DashboardClient::link_on(
        &b.dashboard_login_url().unwrap(),
        &dave,
    ))
    .await;
    // A client a serves, with a `full` grant: only the sensitive kinds ask.
    let mut client = connected_as(&a, keys_owned_by("a"), &relay.url()).await;

    // The profile needs two people: carol's allow (on a, its holder) is
    // recorded, not sent; dave sees it on b.
    let profile = sign_kind(&mut client, "profile", 0);
    client.publish(&profile);
    let listed = carol_on_a.held("profile").await;
    assert_eq!(listed["allows_needed"], 2, "{listed}");
    let approval = listed["id"].as_str().unwrap().to_owned();
    let (status, said) = carol_on_a.decide(&approval, "allow_once").await;
    assert_eq!(status, 200, "{said}");
    assert_eq!(said["settled"], false, "{said}");
    assert_eq!(
        (said["allowed"].clone(), said["needed"].clone()),
        (1.into(), 2.into())
    );
    let (_, again) = carol_on_a.decide(&approval, "allow_once").await;
    assert_eq!(again["allowed"], 1, "the same person counts once: {again}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = dave_on_b.held("profile").await;
        if seen["allowed_by"] == serde_json::json!(["carol"]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "b's dashboard does not show carol's allow: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        client
            .next_response(Duration::from_millis(500))
            .await
            .is_none(),
        "signed with one allow of two"
    );
    // dave's allow, on the replica that does not hold it, completes it.
    let (status, said) = dave_on_b.decide(&approval, "allow_once").await;
    assert_eq!(status, 200, "{said}");
    let answer = client
        .response_to("profile", ANSWER_WITHIN)
        .await
        .expect("released by the quorum");
    let event = signed(&answer);
    assert_eq!(event.kind.as_u16(), 0);
    let rows = sql(
        &url,
        &format!(
            "SELECT operator FROM audit WHERE event_id = '{}' AND decision = 'approved'",
            profile.id.to_hex()
        ),
    )
    .await;
    assert_eq!(rows, [[Some("carol,dave".to_owned())]], "who released it");

    // One deny refuses it, whoever allowed before.
    let relays = sign_kind(&mut client, "relays", 10_002);
    client.publish(&relays);
    let approval = carol_on_a.held("relays").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = carol_on_a.decide(&approval, "allow_once").await;
    assert_eq!(status, 200);
    let (status, said) = dave_on_b.decide(&approval, "deny_once").await;
    assert_eq!(status, 200, "{said}");
    let answer = client
        .response_to("relays", ANSWER_WITHIN)
        .await
        .expect("refused");
    assert!(
        matches!(&answer.outcome, Outcome::Error(e) if e.code == Some(nip46::ErrorCode::Unauthorized)),
        "{answer:?}"
    );

    // Removing an operator ends its dashboard session at once, on every replica.
    a.cli_ok(&["operator", "remove", "dave"]);
    let (status, _) = dave_on_b.get_json("/api/pending").await;
    assert_eq!(status, 401, "a removed operator is logged out");
    let (status, _) = carol_on_a.get_json("/api/pending").await;
    assert_eq!(status, 200);
    a.cli_ok(&["audit", "verify"]);
    client.close().await;
}
