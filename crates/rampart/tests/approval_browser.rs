//! Approving in a real browser: a `rampart run` with auth_url challenges on,
//! a raw client whose requests need approval, and Chromium (driven by
//! playwright-core, `tests/interop/approve-in-browser.mjs`) logging in to the
//! dashboard, opening each auth_url and clicking the answer.
//!
//! Asserted here: the app holding an auth_url without a session sees only a
//! login page; "Allow once" gets the client its signed event with the
//! original request id; "Deny" gets it `unauthorized` with the original id;
//! "Always allow" answers the next request of that kind without asking.
//! A screenshot of the pending-request page is saved to
//! `artifacts/approve.png` (copied to `docs/screenshots/approve.png` for the
//! README by hand when the page changes).
//!
//! Needs Debian's `chromium` and `npm ci` in tests/interop (`bash
//! .ci/install`); skipped without them, except under CI.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nip46::nostr::prelude::Event;
use nip46::{ErrorCode, Outcome, Response};
use testkit::{DashboardClient, RampartProcess, RawClient, ci, skipped};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");
const WAIT: Duration = Duration::from_secs(10);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Chromium and playwright-core, or why not.
fn browser() -> Result<PathBuf, String> {
    let chromium = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.exists() {
        return Err(format!(
            "{} not found (apt-get install chromium, or set CHROMIUM)",
            chromium.display()
        ));
    }
    if !workspace()
        .join("tests/interop/node_modules/playwright-core")
        .exists()
    {
        return Err("playwright-core not installed (npm ci in tests/interop)".into());
    }
    Ok(chromium)
}

/// Chromium's path, or `None` after saying why the test is skipped (never
/// under CI).
fn browser_or_skip(test: &str) -> Option<PathBuf> {
    match browser() {
        Ok(path) => Some(path),
        Err(why) => {
            assert!(
                !ci(),
                "the browser test must run in CI: {why}; see .ci/install"
            );
            skipped(&format!("{test}: {why}"));
            None
        }
    }
}

/// Run a playwright script of tests/interop with `config`; its JSON report.
async fn run_script(script: &'static str, config: serde_json::Value) -> serde_json::Value {
    let dir = workspace().join("tests/interop");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(config.to_string())
            .current_dir(dir)
            .output()
    })
    .await
    .unwrap()
    .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser script failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("a JSON report")
}

fn template(kind: u16, content: &str, tags: serde_json::Value) -> serde_json::Value {
    serde_json::json!([
        serde_json::json!({"kind": kind, "content": content, "tags": tags}).to_string()
    ])
}

fn send(c: &mut RawClient, id: &str, params: serde_json::Value) {
    let event = c.request(id, "sign_event", params);
    c.publish(&event);
}

/// Responses until every id in `ids` has one that is not an auth_url.
async fn answers(c: &mut RawClient, ids: &[&str]) -> HashMap<String, Response> {
    let mut got = HashMap::new();
    while got.len() < ids.len() {
        let (_, r) = c
            .next_response(Duration::from_secs(60))
            .await
            .expect("an answer for every request");
        if ids.contains(&r.id.as_str()) && !matches!(r.outcome, Outcome::AuthUrl(_)) {
            got.insert(r.id.clone(), r);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_deny_in_chromium_through_auth_url() {
    let Some(chromium) = browser_or_skip("browser approval test") else {
        return;
    };
    let bunker = RampartProcess::start(
        Path::new(BIN),
        None,
        &[
            ("RAMPART_AUTH_URL", "true"),
            ("RAMPART_APPROVAL_TIMEOUT_SECS", "180"),
        ],
        &["--grant", "read"],
    );
    let login = bunker
        .dashboard_login_url()
        .expect("the login link is printed at start");
    let secret = bunker.uri().split("secret=").nth(1).unwrap().to_string();
    let mut c = RawClient::new(bunker.uri()).await;
    let metadata = r#"{"name":"Nostr Web Client","url":"https://client.example"}"#;
    let r = c
        .call(
            "c",
            "connect",
            serde_json::json!(["", secret, "", metadata]),
        )
        .await;
    assert_eq!(r, Response::ok("c", "ack"));

    // Three requests no rule covers; each is challenged with an auth_url.
    let note = template(
        1,
        "Hello from the browser test! Approving this note signs it with your key.",
        serde_json::json!([["t", "rampart"], ["p", c.signer.to_hex()]]),
    );
    send(&mut c, "allow-me", note);
    send(
        &mut c,
        "deny-me",
        template(0, r#"{"name":"someone else"}"#, serde_json::json!([])),
    );
    send(
        &mut c,
        "always-me",
        template(7, "+", serde_json::json!([["e", "ab".repeat(32)]])),
    );
    let mut urls: HashMap<String, String> = HashMap::new();
    while urls.len() < 3 {
        let (_, r) = c.next_response(WAIT).await.expect("auth_url challenges");
        let Outcome::AuthUrl(url) = r.outcome else {
            panic!("expected auth_url for {}, got {:?}", r.id, r.outcome)
        };
        assert!(
            url.starts_with("http://127.0.0.1:") && url.contains("/approve/"),
            "{url}"
        );
        urls.insert(r.id, url);
    }

    let artifacts = workspace().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("approve.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = serde_json::json!({
        "chromium": chromium,
        "loginUrl": login,
        "screenshot": screenshot,
        "steps": [
            {"url": urls["allow-me"], "answer": "allow_once", "via": "link"},
            {"url": urls["deny-me"], "answer": "deny_once", "via": "address-bar"},
            {"url": urls["always-me"], "answer": "allow_always", "via": "address-bar", "remember": "1day"},
        ],
    });
    let report = run_script("approve-in-browser.mjs", script).await;

    // Without a session: a login page, nothing to approve with.
    assert_eq!(report["loggedOut"]["heading"], "Log in first", "{report}");
    assert_eq!(report["loggedOut"]["approveButtons"], 0);
    assert_eq!(report["loggedOut"]["showsRequest"], false);
    assert_eq!(report["afterLogin"], "/");
    let steps = report["steps"].as_array().unwrap();
    assert!(
        steps[0]["app"]
            .as_str()
            .unwrap()
            .starts_with("Nostr Web Client"),
        "{report}"
    );
    assert!(
        steps[0]["ask"]
            .as_str()
            .unwrap()
            .contains("Short text note"),
        "{report}"
    );
    assert_eq!(
        steps[0]["reloaded"], true,
        "opened from another site, the page reloaded itself to get the Strict cookie: {report}"
    );
    assert_eq!(steps[0]["result"], "Allowed once");
    assert_eq!(steps[1]["result"], "Denied");
    assert_eq!(steps[2]["result"], "Allowed, and remembered");
    assert!(
        screenshot.exists(),
        "no screenshot at {}",
        screenshot.display()
    );

    // What the client received, each under its original request id.
    let got = answers(&mut c, &["allow-me", "deny-me", "always-me"]).await;
    let Outcome::Result(json) = &got["allow-me"].outcome else {
        panic!("allow-me: {:?}", got["allow-me"])
    };
    let event: Event = serde_json::from_str(json).unwrap();
    event.verify().unwrap();
    assert_eq!(event.kind.as_u16(), 1);
    assert!(event.content.starts_with("Hello from the browser test"));
    let Outcome::Error(e) = &got["deny-me"].outcome else {
        panic!("deny-me: {:?}", got["deny-me"])
    };
    assert_eq!(e.code, Some(ErrorCode::Unauthorized));
    assert!(matches!(got["always-me"].outcome, Outcome::Result(_)));

    // Remembered for a day: the next reaction is signed without a challenge.
    let r = c
        .call(
            "after-always",
            "sign_event",
            template(7, "+", serde_json::json!([])),
        )
        .await;
    assert!(matches!(r.outcome, Outcome::Result(_)), "{r:?}");
    c.close().await;
}

/// The ids of the held requests, by key name.
fn held_by_key(bunker: &RampartProcess) -> HashMap<String, String> {
    bunker
        .cli_ok(&["approvals", "list", "--json"])
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["key"].as_str().unwrap().to_owned(),
                v["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_sees_and_answers_only_its_keys_requests_in_chromium() {
    let Some(chromium) = browser_or_skip("approver browser test") else {
        return;
    };
    let env = [("RAMPART_APPROVAL_TIMEOUT_SECS", "180")];
    let args = ["--grant", "read"];
    let mut bunker = RampartProcess::start(Path::new(BIN), None, &env, &args);
    bunker.cli_ok(&["key", "generate", "--name", "bob"]);
    assert!(bunker.stop());
    bunker.restart(&args);
    let carol = bunker.cli_ok(&[
        "operator", "add", "carol", "--role", "approver", "--keys", "default",
    ]);
    let login = DashboardClient::link_on(&bunker.dashboard_login_url().unwrap(), &carol);
    let listed = bunker.cli_ok(&["operator", "list"]);
    assert!(listed.contains("carol\tapprover\tdefault"), "{listed}");

    // One app per key, each asking for something no rule covers.
    let mut mine = RawClient::connected(&bunker.mint("read", &["--key", "default"])).await;
    let mut other = RawClient::connected(&bunker.mint("read", &["--key", "bob"])).await;
    send(
        &mut mine,
        "for-carol",
        template(1, "carol may allow this one", serde_json::json!([])),
    );
    send(
        &mut other,
        "not-for-carol",
        template(
            1,
            "only the owner or bob's approvers see this",
            serde_json::json!([]),
        ),
    );
    let mut held = HashMap::new();
    for _ in 0..100 {
        held = held_by_key(&bunker);
        if held.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(held.len(), 2, "both requests are held: {held:?}");

    let artifacts = workspace().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("approver.png");
    let script = serde_json::json!({
        "chromium": chromium,
        "loginUrl": login,
        "mine": held["default"],
        "other": held["bob"],
        "screenshot": screenshot,
    });
    let report = run_script("approver-in-browser.mjs", script).await;

    assert_eq!(report["afterLogin"], "/", "{report}");
    assert_eq!(report["viewer"], "carol (approver)", "{report}");
    let nav: Vec<&str> = report["nav"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        nav,
        ["Pending", "Connections", "Connect an app"],
        "{report}"
    );
    // Only its key's request is shown; the other is invisible, and acting
    // on it is refused as if it did not exist.
    assert_eq!(
        report["cards"],
        serde_json::json!([held["default"]]),
        "{report}"
    );
    assert_eq!(report["pageMentionsOther"], false);
    let api = &report["api"];
    assert_eq!(
        api["pending"],
        serde_json::json!([{"id": held["default"], "key": "default"}]),
        "{report}"
    );
    assert_eq!(api["decideOther"], 404, "{report}");
    assert_eq!(api["approveOtherPage"], 404, "{report}");
    assert_eq!(api["approveMinePage"], 200, "{report}");
    assert_eq!(api["keysPage"], 403, "{report}");
    assert_eq!(api["auditPage"], 403, "{report}");
    assert_eq!(api["auditApi"], 403, "{report}");
    assert_eq!(api["lock"], 403, "an approver cannot lock keys: {report}");
    assert_eq!(report["cardsAfter"], serde_json::json!([]), "{report}");

    // Its answer reached its app; the other app still waits, for the owner.
    let got = answers(&mut mine, &["for-carol"]).await;
    let Outcome::Result(json) = &got["for-carol"].outcome else {
        panic!("for-carol: {:?}", got["for-carol"])
    };
    let event: Event = serde_json::from_str(json).unwrap();
    event.verify().unwrap();
    assert!(event.content.starts_with("carol may allow"));
    assert!(
        other
            .next_response(Duration::from_millis(500))
            .await
            .is_none(),
        "the other key's request was not answered"
    );
    assert_eq!(held_by_key(&bunker).keys().collect::<Vec<_>>(), ["bob"]);
    let out = bunker.cli(&["approvals", "deny", &held["bob"]]);
    assert!(out.status.success());
    let got = answers(&mut other, &["not-for-carol"]).await;
    assert!(matches!(got["not-for-carol"].outcome, Outcome::Error(_)));

    // The audit log names who did what: carol's login, carol's allow, the
    // owner's deny; and the chain verifies.
    let rows: Vec<serde_json::Value> = bunker
        .cli_ok(&["audit", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by = |method: &str, request: &str| {
        rows.iter()
            .find(|r| r["method"] == method && r["request_id"] == request)
            .map(|r| r["operator"].clone())
    };
    assert_eq!(
        by("dashboard.login", "approver"),
        Some(serde_json::json!("carol"))
    );
    assert_eq!(
        by("sign_event", "for-carol"),
        Some(serde_json::json!("carol"))
    );
    assert_eq!(
        by("sign_event", "not-for-carol"),
        Some(serde_json::json!("owner"))
    );
    assert_eq!(
        by("operator.add", "carol approver default"),
        Some(serde_json::json!("owner"))
    );
    bunker.cli_ok(&["audit", "verify"]);
    mine.close().await;
    other.close().await;
}
