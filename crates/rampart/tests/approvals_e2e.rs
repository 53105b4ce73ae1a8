//! Held requests end to end, with a real `rampart run`, a real relay and a
//! raw client: answered from another shell (`rampart approvals`), through
//! the dashboard's JSON API after logging in with the printed link, or not
//! at all (the client gets `unauthorized` when the wait is over). Every
//! answer carries the original request id.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use nip46::nostr::prelude::Event;
use nip46::{ErrorCode, Outcome, Response};
use testkit::{DashboardClient, RampartProcess, RawClient};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");
const WAIT: Duration = Duration::from_secs(10);

fn code(r: &Response) -> Option<ErrorCode> {
    match &r.outcome {
        Outcome::Error(e) => e.code,
        _ => None,
    }
}

fn signed(r: &Response) -> Event {
    match &r.outcome {
        Outcome::Result(s) => serde_json::from_str(s).expect("a signed event"),
        other => panic!("expected a signed event, got {other:?}"),
    }
}

fn template(kind: u16, content: &str) -> serde_json::Value {
    serde_json::json!([
        serde_json::json!({"kind": kind, "content": content, "tags": [["t", "e2e"]]}).to_string()
    ])
}

/// Publish a request without waiting for its answer.
fn send(c: &mut RawClient, id: &str, method: &str, params: serde_json::Value) {
    let event = c.request(id, method, params);
    c.publish(&event);
}

async fn connected(bunker: &RampartProcess) -> RawClient {
    let secret = bunker.uri().split("secret=").nth(1).unwrap().to_string();
    let mut c = RawClient::new(bunker.uri()).await;
    let r = c
        .call(
            "c",
            "connect",
            serde_json::json!(["", secret, "", r#"{"name":"E2E App"}"#]),
        )
        .await;
    assert_eq!(r, Response::ok("c", "ack"));
    c
}

/// The store's view of held requests, polled until `n` show up.
fn listed(bunker: &RampartProcess, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let out = bunker.cli(&["approvals", "list", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if rows.len() >= n {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("fewer than {n} held requests listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_from_another_shell_stick_and_unanswered_ones_expire() {
    let bunker = RampartProcess::start(
        Path::new(BIN),
        None,
        &[("RAMPART_APPROVAL_TIMEOUT_SECS", "3")],
        &["--grant", "read"],
    );
    let mut c = connected(&bunker).await;

    // Held: no answer yet; listed with what it asks.
    send(&mut c, "held-1", "sign_event", template(1, "from the CLI"));
    let rows = listed(&bunker, 1);
    assert_eq!(rows[0]["request_id"], "held-1");
    assert_eq!(rows[0]["app"], "E2E App");
    assert_eq!(rows[0]["permission"], "sign_event:1");
    assert!(
        rows[0]["description"]
            .as_str()
            .unwrap()
            .contains("Short text note")
    );
    let id = rows[0]["id"].as_str().unwrap().to_string();

    // Always allow, by an id prefix: the client gets its event with the original id.
    let out = bunker.cli(&["approvals", "allow", &id[..8], "--always"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c
        .response_to("held-1", WAIT)
        .await
        .expect("the held request is answered");
    assert_eq!(signed(&r).content, "from the CLI");
    // Remembered: the next kind-1 request is answered at once…
    let r = c
        .call("next-1", "sign_event", template(1, "no question"))
        .await;
    assert_eq!(signed(&r).content, "no question");
    // …a kind-0 one is held, and denied from the CLI.
    send(&mut c, "held-0", "sign_event", template(0, "{}"));
    let rows = listed(&bunker, 1);
    let id = rows[0]["id"].as_str().unwrap().to_string();
    let out = bunker.cli(&["approvals", "deny", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c.response_to("held-0", WAIT).await.unwrap();
    assert_eq!(code(&r), Some(ErrorCode::Unauthorized));
    let out = bunker.cli(&["approvals", "allow", &id]);
    assert!(!out.status.success(), "answered already");

    // Nobody answers: `unauthorized` after the timeout, never silence.
    let peer = c.signer.to_hex();
    send(
        &mut c,
        "ignored",
        "nip44_decrypt",
        serde_json::json!([peer, "AAAA"]),
    );
    let r = c
        .response_to("ignored", WAIT)
        .await
        .expect("an answer after the timeout");
    assert_eq!(code(&r), Some(ErrorCode::Unauthorized));

    let sessions = bunker.cli(&["sessions", "list", "--json"]);
    let sessions: serde_json::Value = serde_json::from_slice(&sessions.stdout).unwrap();
    assert!(
        sessions[0]["allowed"]
            .as_str()
            .unwrap()
            .contains("sign_event:1"),
        "{sessions}"
    );
    c.close().await;
}

/// The bunker's owner on its dashboard (the link printed at start).
async fn owner_dashboard(bunker: &RampartProcess) -> DashboardClient {
    DashboardClient::login(
        &bunker
            .dashboard_login_url()
            .expect("a login link on stderr"),
    )
    .await
}

/// `GET path`, which must succeed; its JSON.
async fn get_ok(dash: &DashboardClient, path: &str) -> serde_json::Value {
    let (status, body) = dash.get_json(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_url_then_the_dashboard_api_answers_at_once() {
    let bunker = RampartProcess::start(
        Path::new(BIN),
        None,
        &[("RAMPART_AUTH_URL", "true")],
        &["--grant", "read"],
    );
    let dash = owner_dashboard(&bunker).await;
    let mut c = connected(&bunker).await;

    // The auth_url challenge comes first, pointing at this bunker's dashboard.
    send(&mut c, "api-1", "sign_event", template(1, "via the API"));
    let peer = c.signer.to_hex();
    send(
        &mut c,
        "api-2",
        "nip44_encrypt",
        serde_json::json!([peer, "secret"]),
    );
    let mut urls = HashMap::new();
    while urls.len() < 2 {
        let (_, r) = c.next_response(WAIT).await.expect("auth_url challenges");
        match r.outcome {
            Outcome::AuthUrl(url) => {
                urls.insert(r.id.clone(), url);
            }
            other => panic!("expected auth_url, got {other:?}"),
        }
    }
    assert!(
        urls["api-1"].starts_with(&format!("{}/approve/", dash.base)),
        "{urls:?}"
    );

    let pending = get_ok(&dash, "/api/pending").await;
    assert_eq!(pending.as_array().unwrap().len(), 2, "{pending}");
    let id_of = |request: &str| {
        let url = &urls[request];
        url.rsplit('/').next().unwrap().to_string()
    };
    let (status, body) = dash
        .post_json(
            &format!("/api/approvals/{}", id_of("api-1")),
            serde_json::json!({"answer": "allow_once"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let r = c.response_to("api-1", WAIT).await.unwrap();
    assert_eq!(signed(&r).content, "via the API");
    let (status, _) = dash
        .post_json(
            &format!("/api/approvals/{}", id_of("api-2")),
            serde_json::json!({"answer": "deny_always"}),
        )
        .await;
    assert_eq!(status, 200);
    let r = c.response_to("api-2", WAIT).await.unwrap();
    assert_eq!(code(&r), Some(ErrorCode::Unauthorized));
    // Denied for good: refused at once, no challenge.
    let r = c
        .call(
            "api-3",
            "nip44_encrypt",
            serde_json::json!([c.signer.to_hex(), "again"]),
        )
        .await;
    assert_eq!(code(&r), Some(ErrorCode::Unauthorized));

    // The audit log through the API shows the approval.
    let audit = get_ok(&dash, "/api/audit?decision=approved").await;
    assert_eq!(audit[0]["request_id"], "api-1", "{audit}");
    // A session edit through the API reaches the running bunker.
    let client = c.keys.public_key().to_hex();
    let (status, body) = dash
        .post_json(
            &format!("/api/sessions/1/{client}/rules"),
            serde_json::json!({"permission": "sign_event:7", "effect": "allow"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut answered = false;
    for i in 0..50 {
        let id = format!("react-{i}");
        send(&mut c, &id, "sign_event", template(7, "+"));
        let (_, r) = c.next_response(WAIT).await.unwrap();
        if matches!(r.outcome, Outcome::Result(_)) {
            answered = true;
            break;
        }
        // Not reloaded yet: challenged; refuse it and try again.
        if let Outcome::AuthUrl(url) = r.outcome {
            let approval = url.rsplit('/').next().unwrap().to_string();
            dash.post_json(
                &format!("/api/approvals/{approval}"),
                serde_json::json!({"answer": "deny_once"}),
            )
            .await;
            c.response_to(&id, WAIT).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the rule added in the dashboard never applied");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_are_refused_when_the_bunker_stops() {
    let mut bunker = RampartProcess::start(Path::new(BIN), None, &[], &["--grant", "read"]);
    let mut c = connected(&bunker).await;
    send(&mut c, "held", "sign_event", template(1, "never decided"));
    listed(&bunker, 1);
    assert!(bunker.stop(), "graceful shutdown");
    let r = c
        .response_to("held", WAIT)
        .await
        .expect("an answer before the bunker exits");
    assert_eq!(code(&r), Some(ErrorCode::Unauthorized));
    c.close().await;
}

/// What you approve is what is signed, shown whole: a held request's
/// complete event (`approvals show`) is the event the client gets, and the
/// one-line listing starts with the content and says what it shortened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_shown_is_the_event_signed() {
    let bunker = RampartProcess::start(Path::new(BIN), None, &[], &["--grant", "read"]);
    let mut c = connected(&bunker).await;
    let content = format!("visible part {}", "hidden ".repeat(500));
    let tags: Vec<Vec<String>> = (0..40)
        .map(|i| vec!["t".to_owned(), format!("tag{i}")])
        .collect();
    // No created_at: the bunker fixes it when it holds the request.
    let template = serde_json::json!({"kind": 1, "content": content, "tags": tags}).to_string();
    send(&mut c, "whole", "sign_event", serde_json::json!([template]));
    let id = listed(&bunker, 1)[0]["id"].as_str().unwrap().to_string();

    let out = bunker.cli(&["approvals", "list"]);
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(line.lines().count(), 1, "{line}");
    let fields: Vec<&str> = line.trim_end().split('\t').collect();
    assert_eq!(fields[0], id, "the id first: {line}");
    assert_eq!(fields[2], "E2E App");
    assert!(
        fields[3].starts_with("\"visible part hidden"),
        "content first: {line}"
    );
    assert!(fields[3].contains("…(+"), "says what it shortened: {line}");
    assert!(fields[3].contains("40 tags"), "{line}");

    let out = bunker.cli(&["approvals", "show", &id[..8]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let event = &shown["event"];
    assert_eq!(event["content"], content.as_str(), "complete content");
    assert_eq!(event["tags"].as_array().unwrap().len(), 40, "every tag");
    let event_id = event["id"].as_str().expect("its id").to_string();
    let created_at = event["created_at"]
        .as_u64()
        .expect("its time, fixed when held");

    // Decided a moment later: the client gets exactly that event.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = bunker.cli(&["approvals", "allow", &id[..8]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c.response_to("whole", WAIT).await.expect("answered");
    let signed = signed(&r);
    signed.verify().unwrap();
    assert_eq!(signed.id.to_hex(), event_id);
    assert_eq!(signed.created_at.as_secs(), created_at);
    assert_eq!(signed.content, content);
}
