//! The embedded relay, spoken to with a bare websocket client: OK for every
//! event (ephemeral kinds included), signature checks, filters, bad frames
//! and NIP-42.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{RawClient, event, init_tracing};
use nostr::prelude::{
    ClientAuthentication, Event, EventBuilder, FinalizeEvent, Keys, Kind, RelayUrl, Tag, Timestamp,
};
use relay::server::{self, ServerConfig};
use serde_json::json;

#[tokio::test]
async fn answers_ok_to_an_ephemeral_24133_event_and_forwards_it_unstored() {
    init_tracing();
    let relay = server::spawn(ServerConfig::any_kind()).await.unwrap();
    let keys = Keys::generate();
    let mut listener = RawClient::connect(&relay.url()).await;
    assert!(
        listener
            .query("live", vec![json!({"kinds": [24133]})])
            .await
            .is_empty()
    );

    let mut client = RawClient::connect(&relay.url()).await;
    let request = event(&keys, 24133, "ciphertext", vec![]);
    assert_eq!(client.publish(&request).await, (true, String::new()));
    // Forwarded live...
    let forwarded = listener.recv().await;
    assert_eq!(forwarded[0], "EVENT");
    assert_eq!(forwarded[1], "live");
    assert_eq!(forwarded[2]["id"], request.id.to_hex());
    // ...answered `duplicate:` when re-sent...
    let (accepted, message) = client.publish(&request).await;
    assert!(accepted && message.starts_with("duplicate:"), "{message}");
    // ...and not stored.
    assert!(
        client
            .query("later", vec![json!({"kinds": [24133]})])
            .await
            .is_empty()
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn refuses_bad_signatures_and_ids_and_detects_duplicates() {
    init_tracing();
    let relay = server::spawn(ServerConfig::any_kind()).await.unwrap();
    let keys = Keys::generate();
    let mut client = RawClient::connect(&relay.url()).await;

    let good = event(&keys, 1, "hello", vec![]);
    assert_eq!(client.publish(&good).await, (true, String::new()));
    let (accepted, message) = client.publish(&good).await;
    assert!(accepted && message.starts_with("duplicate:"), "{message}");

    // A well-formed event carrying the signature of another event.
    let other = event(&keys, 1, "other", vec![]);
    let fresh = event(&keys, 1, "fresh", vec![]);
    let mut bad_sig = serde_json::to_value(&fresh).unwrap();
    bad_sig["sig"] = json!(other.sig.to_string());
    client.send(json!(["EVENT", bad_sig])).await;
    let reply = client.recv().await;
    assert_eq!(reply[0], "OK");
    assert_eq!(reply[1], fresh.id.to_hex());
    assert_eq!(reply[2], false);
    assert!(
        reply[3].as_str().unwrap().starts_with("invalid:"),
        "{reply}"
    );

    // Tampered content: the id no longer matches.
    let mut tampered = serde_json::to_value(&good).unwrap();
    tampered["content"] = json!("tampered");
    client.send(json!(["EVENT", tampered])).await;
    let reply = client.recv().await;
    assert_eq!(
        (reply[0].as_str(), reply[2].as_bool()),
        (Some("OK"), Some(false))
    );
    assert!(
        reply[3].as_str().unwrap().starts_with("invalid:"),
        "{reply}"
    );

    // A malformed event still gets an OK false when its id is readable.
    let mut malformed = serde_json::to_value(&good).unwrap();
    malformed["sig"] = json!("zz");
    client.send(json!(["EVENT", malformed])).await;
    let reply = client.recv().await;
    assert_eq!(
        (reply[0].as_str(), reply[2].as_bool()),
        (Some("OK"), Some(false))
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn bad_frames_get_a_notice_or_closed_and_the_connection_survives() {
    init_tracing();
    let config = ServerConfig {
        max_message_size: 1024,
        ..ServerConfig::any_kind()
    };
    let relay = server::spawn(config).await.unwrap();
    let mut client = RawClient::connect(&relay.url()).await;

    client.send_text("this is not json").await;
    assert_eq!(client.recv().await[0], "NOTICE");
    client.send(json!(["FROB", 1])).await;
    assert_eq!(client.recv().await[0], "NOTICE");
    client
        .send_text(format!("[\"NOTICE\",\"{}\"]", "x".repeat(2000)))
        .await;
    let notice = client.recv().await;
    assert_eq!(notice[0], "NOTICE");
    assert!(notice[1].as_str().unwrap().contains("exceeds"), "{notice}");
    client.send(json!(["REQ", "x".repeat(65), {}])).await;
    let closed = client.recv().await;
    assert_eq!(closed[0], "CLOSED");
    assert!(
        closed[2].as_str().unwrap().starts_with("invalid:"),
        "{closed}"
    );

    let keys = Keys::generate();
    assert!(
        client
            .publish(&event(&keys, 1, "still here", vec![]))
            .await
            .0
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn filters_select_stored_events() {
    init_tracing();
    let relay = server::spawn(ServerConfig::any_kind()).await.unwrap();
    let alice = Keys::generate();
    let bob = Keys::generate();
    let mut client = RawClient::connect(&relay.url()).await;

    let note = event(&alice, 1, "note", vec![]);
    let reply = event(
        &bob,
        1,
        "reply",
        vec![Tag::event(note.id), Tag::public_key(alice.public_key())],
    );
    let reaction = event(&bob, 7, "+", vec![Tag::event(note.id)]);
    let old = EventBuilder::new(Kind::TextNote, "old")
        .custom_created_at(Timestamp::from_secs(1_000))
        .finalize(&alice)
        .unwrap();
    for e in [&note, &reply, &reaction, &old] {
        assert!(client.publish(e).await.0);
    }
    let hex = |e: &Event| e.id.to_hex();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let expect = |events: &[&Event]| sorted(events.iter().map(|e| hex(e)).collect());

    let ids = client
        .query("ids", vec![json!({"ids": [hex(&note)]})])
        .await;
    assert_eq!(ids, vec![hex(&note)]);
    let by_author = client
        .query(
            "authors",
            vec![json!({"authors": [bob.public_key().to_hex()]})],
        )
        .await;
    assert_eq!(sorted(by_author), expect(&[&reply, &reaction]));
    let kinds = client.query("kinds", vec![json!({"kinds": [7]})]).await;
    assert_eq!(kinds, vec![hex(&reaction)]);
    let e_tag = client.query("e", vec![json!({"#e": [hex(&note)]})]).await;
    assert_eq!(sorted(e_tag), expect(&[&reply, &reaction]));
    let p_tag = client
        .query("p", vec![json!({"#p": [alice.public_key().to_hex()]})])
        .await;
    assert_eq!(p_tag, vec![hex(&reply)]);
    let until = client.query("until", vec![json!({"until": 2_000})]).await;
    assert_eq!(until, vec![hex(&old)]);
    let since = client
        .query("since", vec![json!({"since": 2_000, "kinds": [1]})])
        .await;
    assert_eq!(sorted(since), expect(&[&note, &reply]));
    let limited = client
        .query("limit", vec![json!({"kinds": [1], "limit": 1})])
        .await;
    assert_eq!(limited.len(), 1);
    assert_ne!(limited[0], hex(&old), "limit returns the newest first");
    let union = client
        .query(
            "union",
            vec![json!({"kinds": [7]}), json!({"ids": [hex(&old)]})],
        )
        .await;
    assert_eq!(sorted(union), expect(&[&reaction, &old]));

    // CLOSE ends the subscription: nothing more arrives for it.
    client.send(json!(["REQ", "live", {"kinds": [1]}])).await;
    assert_eq!(client.recv().await[0], "EVENT");
    loop {
        if client.recv().await[0] == "EOSE" {
            break;
        }
    }
    client.send(json!(["CLOSE", "live"])).await;
    let after = event(&alice, 1, "after close", vec![]);
    client.send(json!(["EVENT", after])).await;
    assert_eq!(client.recv().await, json!(["OK", hex(&after), true, ""]));
    // Anything sent for "live" would arrive before the answer to this probe.
    client
        .send(json!(["REQ", "probe", {"ids": [hex(&after)]}]))
        .await;
    let mut probed = false;
    loop {
        let message = client.recv().await;
        assert_ne!(message[1], "live", "event after CLOSE: {message}");
        if message[0] == "EVENT" && message[1] == "probe" {
            probed = true;
        }
        if message == json!(["EOSE", "probe"]) {
            break;
        }
    }
    assert!(probed);
    relay.shutdown().await;
}

#[tokio::test]
async fn require_auth_refuses_until_a_valid_auth_event() {
    init_tracing();
    let config = ServerConfig {
        require_auth: true,
        ..ServerConfig::any_kind()
    };
    let relay = server::spawn(config).await.unwrap();
    let keys = Keys::generate();
    let mut client = RawClient::connect(&relay.url()).await;
    let challenge = client.recv().await;
    assert_eq!(challenge[0], "AUTH");
    let challenge = challenge[1].as_str().unwrap().to_owned();

    let note = event(&keys, 1, "hi", vec![]);
    let (accepted, message) = client.publish(&note).await;
    assert!(
        !accepted && message.starts_with("auth-required:"),
        "{message}"
    );
    client.send(json!(["REQ", "s", {}])).await;
    let closed = client.recv().await;
    assert_eq!(closed[0], "CLOSED");
    assert!(
        closed[2].as_str().unwrap().starts_with("auth-required:"),
        "{closed}"
    );

    let url = RelayUrl::parse(&relay.url()).unwrap();
    let wrong = ClientAuthentication::new("wrong", url.clone())
        .finalize(&keys)
        .unwrap();
    client.send(json!(["AUTH", wrong])).await;
    let reply = client.recv().await;
    assert_eq!(
        (reply[0].as_str(), reply[2].as_bool()),
        (Some("OK"), Some(false))
    );

    let auth = ClientAuthentication::new(challenge, url)
        .finalize(&keys)
        .unwrap();
    client.send(json!(["AUTH", auth])).await;
    let reply = client.recv().await;
    assert_eq!(reply, json!(["OK", auth.id.to_hex(), true, ""]));
    assert_eq!(client.publish(&note).await, (true, String::new()));
    assert_eq!(
        client.query("s", vec![json!({})]).await,
        vec![note.id.to_hex()]
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    init_tracing();
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::any_kind()
    };
    let relay = server::spawn(config).await.unwrap();
    let mut first = RawClient::connect(&relay.url()).await;
    let second = common::within("the refusal", tokio_tungstenite::connect_async(relay.url())).await;
    assert!(second.is_err(), "a second connection was accepted");
    // The first one is unaffected.
    let keys = Keys::generate();
    assert!(first.publish(&event(&keys, 1, "hi", vec![])).await.0);
    drop(first);
    relay.shutdown().await;
}

/// Live events reach exactly the subscriptions that match them, whatever
/// the routing index says (it only preselects connections), and a relay on
/// a thread of its own serves like any other.
#[tokio::test]
async fn live_events_reach_matching_subscriptions_only() {
    init_tracing();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let relay = server::spawn_dedicated(addr, ServerConfig::any_kind())
        .await
        .unwrap();
    let (signer, app, other) = (Keys::generate(), Keys::generate(), Keys::generate());
    let p = |k: &Keys| k.public_key().to_hex();
    let mut bunker = RawClient::connect(&relay.url()).await;
    bunker
        .query("in", vec![json!({"kinds": [24133], "#p": [p(&signer)]})])
        .await;
    let mut client = RawClient::connect(&relay.url()).await;
    client
        .query(
            "out",
            vec![json!({"kinds": [24133], "#p": [p(&app)], "authors": [p(&signer)]})],
        )
        .await;
    let mut notes = RawClient::connect(&relay.url()).await;
    notes.query("notes", vec![json!({"kinds": [1]})]).await;

    let mut publisher = RawClient::connect(&relay.url()).await;
    // A request to the signer, a forged "answer" to the app by someone else,
    // the real answer, and a note.
    let request = event(
        &app,
        24133,
        "req",
        vec![Tag::public_key(signer.public_key())],
    );
    let forged = event(
        &other,
        24133,
        "fake",
        vec![Tag::public_key(app.public_key())],
    );
    let answer = event(
        &signer,
        24133,
        "res",
        vec![Tag::public_key(app.public_key())],
    );
    let note = event(&other, 1, "hello", vec![]);
    for e in [&request, &forged, &answer, &note] {
        assert!(publisher.publish(e).await.0);
    }
    assert_eq!(bunker.recv().await[2]["id"], request.id.to_hex());
    // The forged answer matches the #p key but not the author: not sent.
    assert_eq!(client.recv().await[2]["id"], answer.id.to_hex());
    assert_eq!(notes.recv().await[2]["id"], note.id.to_hex());

    // After CLOSE nothing more arrives; a marker event shows the order.
    notes.send(json!(["CLOSE", "notes"])).await;
    notes.query("marker", vec![json!({"kinds": [7]})]).await;
    assert!(
        publisher
            .publish(&event(&other, 1, "again", vec![]))
            .await
            .0
    );
    let marker = event(&other, 7, "+", vec![]);
    assert!(publisher.publish(&marker).await.0);
    let next = notes.recv().await;
    assert_eq!(
        (next[1].as_str(), &next[2]["id"]),
        (Some("marker"), &json!(marker.id.to_hex()))
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn by_default_it_serves_nip46_only() {
    init_tracing();
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let keys = Keys::generate();
    let mut client = RawClient::connect(&relay.url()).await;
    let (accepted, message) = client.publish(&event(&keys, 1, "a note", vec![])).await;
    assert!(!accepted && message.starts_with("blocked: "), "{message}");
    let (accepted, _) = client
        .publish(&event(&keys, 24133, "ciphertext", vec![]))
        .await;
    assert!(accepted, "NIP-46 traffic goes through");
    let k = |v: &str| Tag::parse(["k", v]).unwrap();
    let d = |v: &str| Tag::identifier(v);
    let other = event(&keys, 31990, "{}", vec![k("1"), d("x")]);
    let (accepted, message) = client.publish(&other).await;
    assert!(!accepted && message.starts_with("blocked: "), "{message}");
    let old = EventBuilder::new(Kind::from(31990), "{\"v\":1}")
        .tags([k("24133"), d("signer")])
        .custom_created_at(Timestamp::from_secs(Timestamp::now().as_secs() - 10))
        .finalize(&keys)
        .unwrap();
    let new = event(&keys, 31990, "{\"v\":2}", vec![k("24133"), d("signer")]);
    assert!(client.publish(&old).await.0);
    assert!(client.publish(&new).await.0);
    // Stored, one per author and d tag; the request was forwarded, not kept.
    let stored = client.query("s", vec![json!({})]).await;
    assert_eq!(stored, vec![new.id.to_hex()]);
    relay.shutdown().await;
}

#[tokio::test]
async fn one_connection_is_rate_limited_but_a_trusted_signer_is_not() {
    init_tracing();
    let signer = Keys::generate();
    let config = ServerConfig {
        events_per_second: 50,
        trusted_authors: vec![signer.public_key()],
        ..ServerConfig::default()
    };
    let relay = server::spawn(config).await.unwrap();
    // A stranger (it ignores the AUTH challenge).
    let stranger = Keys::generate();
    let mut client = RawClient::connect(&relay.url()).await;
    assert_eq!(client.recv().await[0], "AUTH");
    let mut refused = 0;
    for i in 0..120 {
        let (accepted, message) = client
            .publish(&event(&stranger, 24133, &format!("{i}"), vec![]))
            .await;
        if !accepted {
            assert!(message.starts_with("rate-limited: "), "{message}");
            refused += 1;
        }
    }
    assert!(refused >= 50, "{refused} refused");
    // Other frames count too (CLOSE has no answer, so the NOTICEs show it).
    let mut chatty = RawClient::connect(&relay.url()).await;
    assert_eq!(chatty.recv().await[0], "AUTH");
    for _ in 0..200 {
        chatty.send(json!(["CLOSE", "nothing"])).await;
    }
    let notice = chatty.recv().await;
    assert_eq!(notice[0], "NOTICE");
    assert!(
        notice[1].as_str().unwrap().starts_with("rate-limited: "),
        "{notice}"
    );
    // The signer authenticates as itself and is never limited.
    let mut bunker = RawClient::connect(&relay.url()).await;
    let challenge = bunker.recv().await[1].as_str().unwrap().to_owned();
    let url = RelayUrl::parse(&relay.url()).unwrap();
    let auth = ClientAuthentication::new(challenge, url)
        .finalize(&signer)
        .unwrap();
    bunker.send(json!(["AUTH", auth])).await;
    assert_eq!(bunker.recv().await[2], true);
    for i in 0..120 {
        let (accepted, message) = bunker
            .publish(&event(&signer, 24133, &format!("{i}"), vec![]))
            .await;
        assert!(accepted, "{message}");
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn idle_connections_without_subscriptions_are_closed() {
    init_tracing();
    let config = ServerConfig {
        idle_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let relay = server::spawn(config).await.unwrap();
    let mut idle = RawClient::connect(&relay.url()).await;
    let mut subscribed = RawClient::connect(&relay.url()).await;
    assert!(
        subscribed
            .query("s", vec![json!({"kinds": [24133]})])
            .await
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(idle.is_closed().await, "the idle connection was closed");
    // The subscriber still gets live events.
    let keys = Keys::generate();
    let mut sender = RawClient::connect(&relay.url()).await;
    let request = event(&keys, 24133, "x", vec![]);
    assert!(sender.publish(&request).await.0);
    let got = subscribed.recv().await;
    assert_eq!(got[0], "EVENT");
    relay.shutdown().await;
}

#[tokio::test]
async fn an_origin_allow_list_refuses_other_origins_when_set() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    init_tracing();
    let config = ServerConfig {
        allowed_origins: Some(vec!["https://app.example".to_owned()]),
        ..ServerConfig::default()
    };
    let relay = server::spawn(config).await.unwrap();
    let with_origin = |origin: &str| {
        let mut request = relay.url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request
    };
    assert!(
        tokio_tungstenite::connect_async(with_origin("https://evil.example"))
            .await
            .is_err()
    );
    assert!(
        tokio_tungstenite::connect_async(with_origin("https://app.example"))
            .await
            .is_ok()
    );
    // Not a browser (no Origin): allowed.
    assert!(tokio_tungstenite::connect_async(relay.url()).await.is_ok());
    relay.shutdown().await;
}

#[test]
fn the_connection_cap_stays_below_the_open_files_limit() {
    let cap = server::connection_cap(usize::MAX);
    // Read back what the process's limits are now (soft raised to hard).
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "the soft limit was raised: {line}");
    if let Ok(soft) = soft.parse::<usize>() {
        assert!(cap < soft, "cap {cap} below {soft}");
    }
    assert_eq!(
        server::connection_cap(10),
        10,
        "a smaller configured cap stays"
    );
}
