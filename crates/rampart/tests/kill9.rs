//! Crash safety: under load, `kill -9` the bunker; after a restart, every
//! signature a client received has its audit row, and sessions and their
//! permissions are intact.
//!
//! A signature is only published after its audit row is committed, so no
//! received signature may be missing from the log, however the process dies.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use nip46::nostr::prelude::Event;
use nip46::{Outcome, Response};
use relay::server::{self, ServerConfig};
use testkit::{RampartProcess, RawClient, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_audit_row() {
    // The relay outlives the bunker, as a real one would.
    let port = free_port();
    let relay = server::spawn_on(([127, 0, 0, 1], port).into(), ServerConfig::default())
        .await
        .unwrap();
    let relay_url = relay.url();
    let mut bunker =
        RampartProcess::start(Path::new(BIN), Some(&relay_url), &[], &["--grant", "write"]);

    let mut clients = Vec::new();
    for i in 0..3 {
        let uri = if i == 0 {
            bunker.uri().to_string()
        } else {
            bunker.mint("write", &[])
        };
        let secret = uri.split("secret=").nth(1).unwrap().to_string();
        let mut c = RawClient::new(&uri).await;
        assert_eq!(
            c.call("c", "connect", serde_json::json!(["", secret]))
                .await,
            Response::ok("c", "ack")
        );
        clients.push(c);
    }

    // Load: every client keeps 20 sign_event requests in flight until the kill.
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (n, mut c) in clients.into_iter().enumerate() {
        let killed = killed.clone();
        tasks.push(tokio::spawn(async move {
            let mut received: Vec<Event> = Vec::new();
            let mut seq = 0u64;
            while !killed.load(std::sync::atomic::Ordering::SeqCst) {
                for _ in 0..20 {
                    seq += 1;
                    let template = serde_json::json!({"kind": 1, "content": format!("load {n}-{seq}"), "tags": []}).to_string();
                    let ev = c.request(&format!("{n}-{seq}"), "sign_event", serde_json::json!([template]));
                    c.publish(&ev);
                }
                for _ in 0..20 {
                    let Some((_, r)) = c.next_response(Duration::from_millis(1500)).await else { break };
                    if let Outcome::Result(json) = r.outcome {
                        received.push(serde_json::from_str(&json).unwrap());
                    }
                }
            }
            // Drain what was already on its way.
            while let Some((_, r)) = c.next_response(Duration::from_millis(500)).await {
                if let Outcome::Result(json) = r.outcome {
                    received.push(serde_json::from_str(&json).unwrap());
                }
            }
            (c, received)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bunker.kill9();
    killed.store(true, std::sync::atomic::Ordering::SeqCst);

    let mut received = Vec::new();
    let mut clients = Vec::new();
    for t in tasks {
        let (c, r) = t.await.unwrap();
        received.extend(r);
        clients.push(c);
    }
    assert!(
        received.len() > 20,
        "the load produced too few signatures ({}) to mean anything",
        received.len()
    );

    bunker.restart(&["--grant", "write"]);
    let audit = bunker.cli(&[
        "audit",
        "--json",
        "--method",
        "sign_event",
        "--limit",
        "1000000",
    ]);
    assert!(audit.status.success());
    let audited: HashSet<String> = String::from_utf8_lossy(&audit.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["signed_event_id"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<String> = received
        .iter()
        .map(|e| e.id.to_hex())
        .filter(|id| !audited.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} received signatures have no audit row",
        missing.len(),
        received.len()
    );

    // Sessions and their grants survived: every client signs again without reconnecting.
    let sessions = bunker.cli(&["sessions", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&sessions.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    for (i, c) in clients.iter_mut().enumerate() {
        let template =
            serde_json::json!({"kind": 1, "content": "after restart", "tags": []}).to_string();
        let r = c
            .call(
                &format!("after-{i}"),
                "sign_event",
                serde_json::json!([template]),
            )
            .await;
        assert!(matches!(r.outcome, Outcome::Result(_)), "{r:?}");
    }
    eprintln!(
        "kill -9: {} signatures received before the kill, all audited",
        received.len()
    );
    relay.shutdown().await;
}
