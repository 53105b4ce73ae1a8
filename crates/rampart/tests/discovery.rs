//! Discovery (NIP-46 appendix, NIP-89, NIP-05) end to end: a real `rampart
//! run` publishes its `kind:31990` announcement on the relay it serves, its
//! dashboard serves the matching `nostr.json`, and nostr-tools'
//! `fetchBunkerProviders` — the discovery code real clients run — finds and
//! verifies it.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use nip46::BunkerUri;
use nip46::nostr::prelude::{Filter, Kind, PublicKey};
use relay::{PoolConfig, PoolEvent, RelayPool};
use testkit::RampartProcess;
use testkit::peers::{node_json, node_package};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");
const DOMAIN: &str = "signer.test";

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `http://127.0.0.1:PORT` of the bunker's dashboard.
fn dashboard_origin(bunker: &RampartProcess) -> String {
    let login = bunker
        .dashboard_login_url()
        .expect("a dashboard login line");
    let url = url::Url::parse(&login).unwrap();
    format!("http://{}", url.authority())
}

/// The bunker's announcements on its relay (stored, so a late query sees
/// them). With `wait`, events published after the stored ones count too
/// (the bunker may still be connecting), up to 10 s.
async fn announcements(
    relay_url: &str,
    author: PublicKey,
    wait: bool,
) -> Vec<nip46::nostr::prelude::Event> {
    let (pool, mut events) = RelayPool::new(PoolConfig::default());
    pool.add_relay(relay_url).unwrap();
    pool.subscribe(vec![Filter::new().kind(Kind::from(31990)).author(author)])
        .unwrap();
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(PoolEvent::Event { event, .. })) => found.push(*event),
            Ok(Some(PoolEvent::EndOfStoredEvents { .. })) if !wait || !found.is_empty() => break,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    pool.shutdown().await;
    found
}

fn tag<'a>(event: &'a nip46::nostr::prelude::Event, name: &str) -> Vec<&'a str> {
    event
        .tags
        .iter()
        .filter(|t| t.as_slice().first().map(String::as_str) == Some(name))
        .filter_map(|t| t.as_slice().get(1).map(String::as_str))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_announcement_and_nostr_json_agree_and_nostr_tools_finds_the_bunker() {
    let bunker = RampartProcess::start(
        Path::new(BIN),
        None,
        &[("RAMPART_PUBLIC_URL", &format!("https://{DOMAIN}"))],
        &["--grant", "full"],
    );
    let origin = dashboard_origin(&bunker);
    let signer = bunker.uri().parse::<BunkerUri>().unwrap().signer;

    // nostr.json: public, no redirect, any origin; names._ is the announcer.
    let response = http()
        .get(format!("{origin}/.well-known/nostr.json?name=_"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "*",
        "readable from any origin"
    );
    let document: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let announcer = document["names"]["_"].as_str().unwrap().to_owned();
    // The only key's signer key announces (the oldest key's, with several).
    assert_eq!(announcer, signer.to_hex());
    let served = bunker.relay_url.trim_end_matches('/');
    assert_eq!(
        document["nip46"]["relays"][0]
            .as_str()
            .unwrap()
            .trim_end_matches('/'),
        served
    );
    assert_eq!(
        document["nip46"]["nostrconnect_url"],
        format!("https://{DOMAIN}/pair?uri=<nostrconnect>")
    );

    // The kind:31990 on the served relay, by that author.
    let found = announcements(&bunker.relay_url, signer, true).await;
    assert_eq!(found.len(), 1, "one announcement (replaced at each start)");
    let event = &found[0];
    event.verify().unwrap();
    assert_eq!(tag(event, "k"), ["24133"]);
    assert_eq!(
        tag(event, "relay")
            .iter()
            .map(|r| r.trim_end_matches('/'))
            .collect::<Vec<_>>(),
        [served]
    );
    assert_eq!(
        tag(event, "nostrconnect_url"),
        [format!("https://{DOMAIN}/pair?uri=<nostrconnect>").as_str()]
    );
    let content: serde_json::Value = serde_json::from_str(&event.content).unwrap();
    assert_eq!(content["nip05"], format!("_@{DOMAIN}"));

    // nostr-tools discovers it and verifies it against the domain.
    if !node_package("nostr-tools") {
        return;
    }
    let providers = node_json(
        "nostr-tools-discover.mjs",
        &[&bunker.relay_url, DOMAIN, &origin],
    );
    let providers = providers.as_array().unwrap();
    assert_eq!(providers.len(), 1, "{providers:?}");
    assert_eq!(providers[0]["bunkerPointer"]["pubkey"], announcer);
    assert_eq!(providers[0]["name"], "Rampart");
    assert_eq!(providers[0]["domain"], DOMAIN);
}

#[tokio::test(flavor = "multi_thread")]
async fn announcing_can_be_turned_off() {
    let bunker = RampartProcess::start(
        Path::new(BIN),
        None,
        &[("RAMPART_ANNOUNCE", "off")],
        &["--grant", "full"],
    );
    let origin = dashboard_origin(&bunker);
    let response = http()
        .get(format!("{origin}/.well-known/nostr.json?name=_"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    let signer = bunker.uri().parse::<BunkerUri>().unwrap().signer;
    // Give a (wrongly) queued announcement time to land before looking.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        announcements(&bunker.relay_url, signer, false)
            .await
            .is_empty()
    );
}
