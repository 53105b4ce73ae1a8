//! Operators on one bunker (SQLite): roles scope what each sees and does,
//! a quorum of distinct people releases a sensitive kind, one deny refuses
//! it, a removed operator is logged out at once, and the audit log names
//! who did what. (Two replicas on PostgreSQL: `replicas.rs`; an approver in
//! a real browser: `approval_browser.rs`.)

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use nip46::nostr::prelude::{Event, Timestamp};
use nip46::{ErrorCode, Outcome};
use testkit::{DashboardClient, RampartProcess, RawClient};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");
const WAIT: Duration = Duration::from_secs(15);

async fn operator(bunker: &RampartProcess, args: &[&str]) -> DashboardClient {
    let printed = bunker.cli_ok(args);
    let link = DashboardClient::link_on(&bunker.dashboard_login_url().unwrap(), &printed);
    DashboardClient::login(&link).await
}

fn sign_kind(client: &mut RawClient, id: &str, kind: u16) -> Event {
    let template = serde_json::json!({
        "kind": kind, "content": id, "tags": [], "created_at": Timestamp::now().as_secs(),
    });
    client.request(id, "sign_event", serde_json::json!([template.to_string()]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_scope_the_dashboard_and_a_quorum_of_two_releases_a_sensitive_kind() {
    let env = [("RAMPART_APPROVAL_TIMEOUT_SECS", "120")];
    let bunker = RampartProcess::start(Path::new(BIN), None, &env, &["--grant", "full"]);
    bunker.cli_ok(&["policy", "quorum", "--key", "default", "2"]);
    let quorum = bunker.cli_ok(&["policy", "quorum"]);
    assert_eq!(quorum.trim(), "default\t2");
    let owner = DashboardClient::login(&bunker.dashboard_login_url().unwrap()).await;
    let carol = operator(
        &bunker,
        &[
            "operator", "add", "carol", "--role", "approver", "--keys", "default",
        ],
    )
    .await;
    let erin = operator(
        &bunker,
        &["operator", "add", "erin", "--role", "auditor", "--all-keys"],
    )
    .await;
    let out = bunker.cli(&[
        "operator",
        "add",
        "carol",
        "--role",
        "auditor",
        "--all-keys",
    ]);
    assert!(!out.status.success(), "a name is taken once");
    let out = bunker.cli(&["operator", "add", "frank", "--role", "approver"]);
    assert!(!out.status.success(), "an approver needs keys");
    let out = bunker.cli(&["operator", "add", "@owner", "--role", "owner"]);
    assert!(!out.status.success(), "the owner's name is reserved");

    let mut app = RawClient::connected(bunker.uri()).await;

    // A profile (kind 0, sensitive by default) needs two people.
    let profile = sign_kind(&mut app, "profile", 0);
    app.publish(&profile);
    let listed = carol.held("profile").await;
    assert_eq!(listed["allows_needed"], 2, "{listed}");
    assert_eq!(listed["allowed_by"], serde_json::json!([]));
    let id = listed["id"].as_str().unwrap().to_owned();
    // The auditor reads but decides nothing.
    let (status, _) = erin.get_json("/api/pending").await;
    assert_eq!(status, 403, "an auditor answers no requests");
    let (status, _) = erin.decide(&id, "allow_once").await;
    assert_eq!(status, 403);
    let (status, sessions) = erin.get_json("/api/sessions").await;
    assert_eq!(status, 200);
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "{sessions}");
    let client_hex = sessions[0]["client"].as_str().unwrap().to_owned();
    let (status, _) = erin
        .post_json(
            &format!("/api/sessions/1/{client_hex}/revoke"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 403, "an auditor revokes nothing");
    let (status, _) = erin.post_json("/api/tokens", serde_json::json!({})).await;
    assert_eq!(status, 403, "an auditor mints nothing");

    let (status, said) = carol.decide(&id, "allow_once").await;
    assert_eq!(status, 200, "{said}");
    assert_eq!(said["settled"], false);
    let (_, said) = carol.decide(&id, "allow_once").await;
    assert_eq!(said["allowed"], 1, "carol counts once: {said}");
    assert_eq!(
        owner.held("profile").await["allowed_by"],
        serde_json::json!(["carol"])
    );
    assert!(
        app.next_response(Duration::from_millis(400))
            .await
            .is_none(),
        "one of two"
    );
    let (status, said) = owner.decide(&id, "allow_once").await;
    assert_eq!(status, 200, "{said}");
    assert_eq!(said["settled"], true, "{said}");
    let answer = app.response_to("profile", WAIT).await.expect("released");
    let Outcome::Result(json) = &answer.outcome else {
        panic!("{answer:?}")
    };
    assert_eq!(Event::from_json(json).unwrap().kind.as_u16(), 0);

    // One deny refuses the next, after an allow.
    let delete = sign_kind(&mut app, "delete", 5);
    app.publish(&delete);
    let id = carol.held("delete").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    owner.decide(&id, "allow_once").await;
    let (status, _) = carol.decide(&id, "deny_once").await;
    assert_eq!(status, 200);
    let answer = app.response_to("delete", WAIT).await.expect("refused");
    assert!(
        matches!(&answer.outcome, Outcome::Error(e) if e.code == Some(ErrorCode::Unauthorized)),
        "{answer:?}"
    );

    // The auditor reads the audit log: who released, who refused, who logged in.
    let (status, rows) = erin.get_json("/api/audit").await;
    assert_eq!(status, 200);
    let rows = rows.as_array().unwrap();
    let by = |request: &str, decision: &str| {
        rows.iter()
            .find(|r| r["request_id"] == request && r["decision"] == decision)
            .map(|r| r["operator"].clone())
    };
    assert_eq!(by("profile", "approved"), Some("carol,owner".into()));
    assert_eq!(by("delete", "denied"), Some("carol".into()));
    assert_eq!(by("auditor", "action"), Some("erin".into()), "erin's login");
    assert!(
        rows.iter()
            .any(|r| r["method"] == "approval.vote" && r["operator"] == "carol"),
        "carol's allow that did not settle it is a row of its own"
    );

    // Removed, carol is logged out at her next request.
    bunker.cli_ok(&["operator", "remove", "carol"]);
    let (status, _) = carol.get_json("/api/pending").await;
    assert_eq!(status, 401);
    let listed = bunker.cli_ok(&["operator", "list"]);
    assert_eq!(listed.trim(), "erin\tauditor\tall keys");
    let csv = bunker.cli_ok(&["audit", "--format", "csv"]);
    assert!(csv.lines().next().unwrap().ends_with(",operator"), "{csv}");
    assert!(csv.contains("operator.remove"), "{csv}");
    // The owner's edits from the CLI are audited as the owner's.
    bunker.cli_ok(&["lock", "--key", "default"]);
    bunker.cli_ok(&["unlock"]);
    let rows: Vec<serde_json::Value> = bunker
        .cli_ok(&["audit", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (method, key) in [
        ("key.lock", "default"),
        ("key.unlock", "-"),
        ("key.quorum", "default"),
    ] {
        assert!(
            rows.iter().any(|r| r["method"] == method
                && r["key"] == key
                && r["operator"] == "owner"
                && r["decision"] == "action"),
            "{method} on {key} by the owner: {rows:?}"
        );
    }
    bunker.cli_ok(&["audit", "verify"]);
    app.close().await;
}
