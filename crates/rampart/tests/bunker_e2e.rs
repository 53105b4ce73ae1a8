//! The bunker end to end: a real `rampart run` process, a real relay (the
//! embedded one, and nostr-rs-relay when installed), and a raw client that
//! sends well-formed and malformed requests. Every case asserts the exact
//! reply, or the absence of one, and that the bunker still serves afterwards.
//!
//! Absence is asserted by order, not by waiting: the bunker handles one
//! relay's events in order, so when a `ping` sent after a bad event gets the
//! first reply, the bad event got none.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use nip46::nostr::prelude::{Event, Keys, Timestamp};
use nip46::{ErrorCode, Outcome, Response, Scheme};
use testkit::{NostrRsRelay, RampartProcess, RawClient};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");
const WAIT: Duration = Duration::from_secs(10);

fn code(r: &Response) -> Option<ErrorCode> {
    match &r.outcome {
        Outcome::Error(e) => e.code,
        _ => None,
    }
}

fn result(r: &Response) -> &str {
    match &r.outcome {
        Outcome::Result(s) => s,
        other => panic!("expected a result, got {other:?}"),
    }
}

/// Which relay a scenario runs on. The bunker process is started per test.
enum Relay {
    Embedded,
    External(NostrRsRelay),
}

impl Relay {
    fn url(&self) -> Option<String> {
        match self {
            Relay::Embedded => None,
            Relay::External(r) => Some(r.url()),
        }
    }
}

fn bunker(relay: &Relay, env: &[(&str, &str)], args: &[&str]) -> RampartProcess {
    RampartProcess::start(Path::new(BIN), relay.url().as_deref(), env, args)
}

/// Send `bad`, then a ping; the first reply must be the ping's.
async fn assert_no_reply_then_serving(client: &mut RawClient, bad: &Event, tag: &str) {
    client.publish(bad);
    let ping = client.request(tag, "ping", serde_json::json!([]));
    client.publish(&ping);
    let (_, first) = client
        .next_response(WAIT)
        .await
        .expect("bunker stopped serving");
    assert_eq!(
        first,
        Response::ok(tag, "pong"),
        "`{tag}`: the bad event got a reply, or the bunker stopped"
    );
}

async fn every_method_and_bad_input(relay: Relay) {
    let bunker = bunker(&relay, &[], &["--grant", "full"]);
    let mut c = RawClient::new(bunker.uri()).await;
    let secret = bunker.uri().split("secret=").nth(1).unwrap().to_string();

    let r = c
        .call(
            "c1",
            "connect",
            serde_json::json!([c.signer.to_hex(), secret, "", r#"{"name":"e2e"}"#]),
        )
        .await;
    assert_eq!(r, Response::ok("c1", "ack"));

    let keys = bunker.cli(&["key", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    let user = listed[0]["pubkey"].as_str().unwrap().to_string();
    let r = c.call("pk", "get_public_key", serde_json::json!([])).await;
    assert_eq!(result(&r), user);
    assert_ne!(
        user,
        c.signer.to_hex(),
        "the signer key is not the user key"
    );

    let template = serde_json::json!({"kind": 1, "content": "e2e", "tags": [["t", "x"]], "created_at": Timestamp::now().as_secs()});
    let r = c
        .call("s", "sign_event", serde_json::json!([template.to_string()]))
        .await;
    let event: Event = serde_json::from_str(result(&r)).unwrap();
    event.verify().unwrap();
    assert_eq!(event.pubkey.to_hex(), user);
    assert_eq!(event.content, "e2e");

    let peer = Keys::generate();
    let peer_hex = peer.public_key().to_hex();
    for (enc, dec) in [
        ("nip44_encrypt", "nip44_decrypt"),
        ("nip04_encrypt", "nip04_decrypt"),
    ] {
        let r = c
            .call("e", enc, serde_json::json!([peer_hex, "e2e secret"]))
            .await;
        let ct = result(&r).to_string();
        let r = c.call("d", dec, serde_json::json!([peer_hex, ct])).await;
        assert_eq!(result(&r), "e2e secret");
    }

    assert_eq!(
        c.call("p", "ping", serde_json::json!([])).await,
        Response::ok("p", "pong")
    );
    let r = c.call("gr", "get_relays", serde_json::json!([])).await;
    let map: serde_json::Value = serde_json::from_str(result(&r)).unwrap();
    assert_eq!(map[&bunker.relay_url]["write"], true, "{map}");
    let r = c.call("sr", "switch_relays", serde_json::json!([])).await;
    assert_eq!(
        result(&r),
        serde_json::json!([bunker.relay_url]).to_string()
    );

    let r = c.call("u", "teleport", serde_json::json!([])).await;
    assert_eq!(code(&r), Some(ErrorCode::MethodNotFound));
    let r = c
        .call(
            "ip",
            "nip44_encrypt",
            serde_json::json!(["not-a-pubkey", "x"]),
        )
        .await;
    assert_eq!(code(&r), Some(ErrorCode::InvalidParams));

    // A legacy client: NIP-04 in, NIP-04 out.
    let legacy = c.event(
        r#"{"id":"old","method":"ping","params":[]}"#,
        Scheme::Nip04,
        Timestamp::now(),
    );
    c.publish(&legacy);
    let (scheme, r) = c.next_response(WAIT).await.unwrap();
    assert_eq!((scheme, r), (Scheme::Nip04, Response::ok("old", "pong")));

    // Garbage content, oversized content, replay, stale, future: no reply, still serving.
    let garbage = c.raw_event("definitely not encrypted");
    assert_no_reply_then_serving(&mut c, &garbage, "after-garbage").await;
    let huge = c.raw_event(&"A".repeat(200_000));
    assert_no_reply_then_serving(&mut c, &huge, "after-huge").await;
    let once = c.request("once", "ping", serde_json::json!([]));
    c.publish(&once);
    assert_eq!(
        c.response_to("once", WAIT).await.unwrap(),
        Response::ok("once", "pong")
    );
    assert_no_reply_then_serving(&mut c, &once, "after-replay").await;
    let stale = c.event(
        r#"{"id":"stale","method":"ping"}"#,
        Scheme::Nip44,
        Timestamp::from_secs(Timestamp::now().as_secs() - 3600),
    );
    assert_no_reply_then_serving(&mut c, &stale, "after-stale").await;
    let future = c.event(
        r#"{"id":"future","method":"ping"}"#,
        Scheme::Nip44,
        Timestamp::from_secs(Timestamp::now().as_secs() + 3600),
    );
    assert_no_reply_then_serving(&mut c, &future, "after-future").await;
    let not_json = c.event("{{{{", Scheme::Nip44, Timestamp::now());
    assert_no_reply_then_serving(&mut c, &not_json, "after-not-json").await;
    c.close().await;

    // Every answered request is in the audit log.
    let audit = bunker.cli(&["audit", "--json", "--limit", "1000"]);
    let rows = String::from_utf8_lossy(&audit.stdout);
    assert!(rows.contains("\"method\":\"sign_event\""), "{rows}");
    assert!(rows.contains(&format!("\"signed_event_id\":\"{}\"", event.id.to_hex())));
}

async fn permissions_secrets_logout_revoke(relay: Relay) {
    let mut bunker = bunker(
        &relay,
        &[("RAMPART_UNLISTED", "deny")],
        &["--grant", "sign_event:1"],
    );
    let uri = bunker.uri().to_string();
    let secret = uri.split("secret=").nth(1).unwrap().to_string();
    let mut c = RawClient::new(&uri).await;
    assert_eq!(
        c.call("c", "connect", serde_json::json!(["", secret]))
            .await,
        Response::ok("c", "ack")
    );

    let t = |kind: u16| {
        serde_json::json!(
            [serde_json::json!({"kind": kind, "content": "", "tags": []}).to_string()]
        )
    };
    let r = c.call("k1", "sign_event", t(1)).await;
    assert!(matches!(r.outcome, Outcome::Result(_)), "{r:?}");
    let r = c.call("k0", "sign_event", t(0)).await;
    assert_eq!(code(&r), Some(ErrorCode::Unauthorized));
    let r = c
        .call(
            "enc",
            "nip44_encrypt",
            serde_json::json!([Keys::generate().public_key().to_hex(), "x"]),
        )
        .await;
    assert_eq!(code(&r), Some(ErrorCode::Unauthorized));

    // The same secret from another client: refused, also after a restart.
    let mut other = RawClient::new(&uri).await;
    let r = other
        .call("c", "connect", serde_json::json!(["", secret]))
        .await;
    assert_eq!(code(&r), Some(ErrorCode::Unauthorized));
    other.close().await;
    assert!(bunker.stop(), "graceful shutdown");
    bunker.restart(&["--grant", "sign_event:1"]);
    let mut third = RawClient::new(&uri).await;
    let r = third
        .call("c", "connect", serde_json::json!(["", secret]))
        .await;
    assert_eq!(
        code(&r),
        Some(ErrorCode::Unauthorized),
        "a used secret stays used across restarts"
    );
    // The first client's session survived the restart.
    assert!(matches!(
        c.call("k1b", "sign_event", t(1)).await.outcome,
        Outcome::Result(_)
    ));

    // An expired secret.
    let expiring = bunker.mint("read", &["--expires", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let expired_secret = expiring.split("secret=").nth(1).unwrap().to_string();
    let r = third
        .call("c2", "connect", serde_json::json!(["", expired_secret]))
        .await;
    assert_eq!(code(&r), Some(ErrorCode::Unauthorized));
    assert!(format!("{r:?}").contains("expired"));

    // Logout ends the session.
    assert_eq!(
        c.call("lo", "logout", serde_json::json!([])).await,
        Response::ok("lo", "ack")
    );
    assert_eq!(
        code(&c.call("after", "ping", serde_json::json!([])).await),
        Some(ErrorCode::Unauthorized)
    );

    // Revoking from another shell takes effect in the running bunker.
    let fresh = bunker.mint("read", &[]);
    let fresh_secret = fresh.split("secret=").nth(1).unwrap().to_string();
    let r = third
        .call("c3", "connect", serde_json::json!(["", fresh_secret]))
        .await;
    assert_eq!(r, Response::ok("c3", "ack"));
    assert_eq!(
        third.call("p", "ping", serde_json::json!([])).await,
        Response::ok("p", "pong")
    );
    let out = bunker.cli(&["sessions", "revoke", &third.keys.public_key().to_hex()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut revoked = false;
    for i in 0..50 {
        let r = third
            .call(&format!("r{i}"), "ping", serde_json::json!([]))
            .await;
        if code(&r) == Some(ErrorCode::Unauthorized) {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revoked, "revocation did not reach the running bunker");
    c.close().await;
    third.close().await;
}

async fn rate_limit_and_nostrconnect(relay: Relay) {
    let bunker = bunker(
        &relay,
        &[
            ("RAMPART_RATE_BURST", "5"),
            ("RAMPART_RATE_PER_SECOND", "0.01"),
        ],
        &["--grant", "read"],
    );
    let uri = bunker.uri().to_string();
    let secret = uri.split("secret=").nth(1).unwrap().to_string();
    let mut c = RawClient::new(&uri).await;
    assert_eq!(
        c.call("c", "connect", serde_json::json!(["", secret]))
            .await,
        Response::ok("c", "ack")
    );
    for i in 0..5 {
        assert_eq!(
            c.call(&i.to_string(), "ping", serde_json::json!([])).await,
            Response::ok(i.to_string(), "pong")
        );
    }
    assert_eq!(
        code(&c.call("x", "ping", serde_json::json!([])).await),
        Some(ErrorCode::RateLimited)
    );
    c.close().await;

    // nostrconnect://: the client's key in the URI, the secret comes back from the signer key.
    let client = Keys::generate();
    let signer: nip46::BunkerUri = uri.parse().unwrap();
    let mut nc = RawClient::with_keys(
        client.clone(),
        signer.signer,
        std::slice::from_ref(&bunker.relay_url),
    )
    .await;
    let text = format!(
        "nostrconnect://{}?relay={}&secret=nc-secret-42&perms=sign_event%3A1&name=E2E+App",
        client.public_key().to_hex(),
        bunker.relay_url
    );
    let out = bunker.cli(&["connect", &text, "--grant", "write"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, r) = nc.next_response(WAIT).await.expect("connect response");
    assert_eq!(result(&r), "nc-secret-42");
    let r = nc.call("pk", "get_public_key", serde_json::json!([])).await;
    assert_eq!(result(&r).len(), 64);
    let sessions = bunker.cli(&["sessions", "list", "--json"]);
    assert!(String::from_utf8_lossy(&sessions.stdout).contains("E2E App"));
    nc.close().await;
}

/// The kill switch from another shell: a held request is refused at once,
/// every request after it `key locked` (a granted one too), `key list` says
/// so, a lock survives a restart, and unlock restores the session's rules.
async fn kill_switch(relay: Relay) {
    let mut bunker = bunker(&relay, &[], &["--grant", "sign_event:1"]);
    let uri = bunker.uri().to_string();
    let secret = uri.split("secret=").nth(1).unwrap().to_string();
    let mut c = RawClient::new(&uri).await;
    assert_eq!(
        c.call("c", "connect", serde_json::json!(["", secret]))
            .await,
        Response::ok("c", "ack")
    );
    let t = |kind: u16| {
        serde_json::json!(
            [serde_json::json!({"kind": kind, "content": "", "tags": []}).to_string()]
        )
    };
    // A kind-0 request is held for the user (no rule covers it).
    let held = c.request("held", "sign_event", t(0));
    c.publish(&held);
    assert!(
        c.next_response(Duration::from_millis(500)).await.is_none(),
        "held, not answered"
    );

    let out = bunker.cli(&["lock"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, refused) = c
        .next_response(WAIT)
        .await
        .expect("the held request is refused");
    assert_eq!(
        refused,
        Response::error("held", ErrorCode::Unauthorized, "key locked")
    );
    let r = c.call("granted", "sign_event", t(1)).await;
    assert_eq!(
        r,
        Response::error("granted", ErrorCode::Unauthorized, "key locked")
    );
    let listed = bunker.cli(&["key", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("LOCKED"));

    // Still locked after a restart.
    assert!(bunker.stop(), "graceful shutdown");
    bunker.restart(&["--grant", "sign_event:1"]);
    let r = c.call("restarted", "ping", serde_json::json!([])).await;
    assert_eq!(
        r,
        Response::error("restarted", ErrorCode::Unauthorized, "key locked")
    );

    let out = bunker.cli(&["unlock", "--key", "default"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut served = None;
    for i in 0..50 {
        let r = c.call(&format!("u{i}"), "sign_event", t(1)).await;
        if matches!(r.outcome, Outcome::Result(_)) {
            served = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served.is_some(), "unlock did not reach the running bunker");
    // A key's own sensitive kinds reach the running bunker: kind 1, granted,
    // is now held for the user.
    let out = bunker.cli(&["policy", "sensitive", "--kinds", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("default\t1\t(its own)"));
    let mut held_now = false;
    for i in 0..20 {
        let id = format!("k1-{i}");
        let ev = c.request(&id, "sign_event", t(1));
        c.publish(&ev);
        match c.response_to(&id, Duration::from_millis(300)).await {
            None => {
                held_now = true;
                break;
            }
            // Signed before the bunker's next reload: wait for it.
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(held_now, "kind 1 was still signed at once");
    let listed = bunker.cli(&["approvals", "list", "--json"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("\"kind\":1,"), "{listed}");
    let out = bunker.cli(&["lock", "--key", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key named `nobody`"));
    c.close().await;
}

macro_rules! on_both_relays {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Relay::Embedded).await;
                }
            )*
        }
        mod nostr_rs_relay {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(relay) = testkit::NostrRsRelay::start() else { return };
                    super::$name(super::Relay::External(relay)).await;
                }
            )*
        }
    };
}

on_both_relays!(
    every_method_and_bad_input,
    permissions_secrets_logout_revoke,
    rate_limit_and_nostrconnect,
    kill_switch
);

/// URIs carry secrets: every command that takes one reads it from stdin
/// when given `-`, so it need not be on the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uris_can_come_from_stdin_instead_of_argv() {
    let bunker = bunker(&Relay::Embedded, &[], &[]);
    let out = bunker.cli_with_stdin(&["inspect", "-"], &format!("{}\n", bunker.uri()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["type"], "bunker");
    assert_eq!(report["has_secret"], true);

    let app = Keys::generate();
    let uri = format!(
        "nostrconnect://{}?relay=ws%3A%2F%2F127.0.0.1%3A1&secret=s3cr3t&name=Stdin%20App",
        app.public_key().to_hex()
    );
    let out = bunker.cli_with_stdin(&["connect", "-", "--grant", "read"], &uri);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bunker.cli(&["sessions", "list", "--json"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("Stdin App") && listed.contains(&app.public_key().to_hex()),
        "{listed}"
    );

    let out = bunker.cli_with_stdin(&["inspect", "-"], "");
    assert!(
        !out.status.success(),
        "empty stdin is an error, not an empty value"
    );
}

/// `rampart run --relay X` records X in the store; `rampart uri` without
/// `--relay` (and with a configured embedded relay that is not running)
/// names X, and the token it prints connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_names_the_relays_the_bunker_serves_on() {
    let relay = relay::server::spawn(relay::server::ServerConfig::default())
        .await
        .unwrap();
    let served = relay.url();
    let bunker = bunker(&Relay::Embedded, &[], &["--relay", &served]);
    let printed: nip46::BunkerUri = bunker.uri().parse().unwrap();
    assert_eq!(
        printed.relays[0].as_str().trim_end_matches('/'),
        served.trim_end_matches('/')
    );

    // The CLI's environment still names the embedded relay the kit chose
    // (not running): the record wins over it.
    let out = bunker.cli(&["uri", "--grant", "read"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uri = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let parsed: nip46::BunkerUri = uri.parse().unwrap();
    let relays: Vec<String> = parsed.relays.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        relays
            .iter()
            .map(|r| r.trim_end_matches('/'))
            .collect::<Vec<_>>(),
        vec![served.trim_end_matches('/')],
        "{uri}"
    );
    let secret = parsed.secret.as_ref().unwrap().expose().to_string();
    let mut client = RawClient::new(&uri).await;
    let r = client
        .call(
            "c",
            "connect",
            serde_json::json!([parsed.signer.to_hex(), secret]),
        )
        .await;
    assert_eq!(result(&r), "ack");
    client.close().await;
    relay.shutdown().await;
}
