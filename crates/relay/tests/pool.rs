//! The relay pool against the embedded relay (and against a hostile raw
//! websocket server): publish/subscribe, de-duplication, reconnects with
//! queued events, NIP-42, and frames that must not kill a connection.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::{
    event, eventually, init_tracing, test_config, wait_for, wait_for_eose, wait_for_event, within,
};
use futures_util::{SinkExt, StreamExt};
use nostr::prelude::{Filter, Keys, Kind, SubscriptionId};
use relay::server::{self, ServerConfig};
use relay::{AuthState, PoolEvent, PublishError, RelayPool};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const NOSTR_CONNECT: u16 = 24133;

fn nostr_connect_to(keys: &Keys) -> Filter {
    Filter::new()
        .kind(Kind::from(NOSTR_CONNECT))
        .author(keys.public_key())
}

#[tokio::test]
async fn publishes_and_receives_through_the_embedded_relay() {
    init_tracing();
    let relay = server::spawn(ServerConfig::any_kind()).await.unwrap();
    let alice = Keys::generate();

    let (subscriber, mut notifications) = RelayPool::new(test_config());
    subscriber.add_relay(&relay.url()).unwrap();
    let sub = subscriber.subscribe(nostr_connect_to(&alice)).unwrap();
    wait_for_eose(&mut notifications, 1).await;

    let (publisher, _publisher_events) = RelayPool::new(test_config());
    assert!(matches!(
        publisher.publish(&event(&alice, NOSTR_CONNECT, "x", vec![])),
        Err(PublishError::NoRelays)
    ));
    publisher.add_relay(&relay.url()).unwrap();
    assert!(!publisher.add_relay(&relay.url()).unwrap(), "added twice");
    let request = event(&alice, NOSTR_CONNECT, "request", vec![]);
    let report = publisher.publish(&request).unwrap();
    assert_eq!(report.queued, 1);
    assert!(report.dropped.is_empty());

    let (relay_url, subscription_id, received) =
        wait_for(&mut notifications, "the event", |n| match n {
            PoolEvent::Event {
                relay,
                subscription_id,
                event,
            } => Some((relay.to_string(), subscription_id.clone(), event.clone())),
            _ => None,
        })
        .await;
    assert_eq!(received.id, request.id);
    assert_eq!(subscription_id, sub);
    assert!(relay_url.starts_with(&relay.url()));

    // The embedded relay answers OK even for ephemeral kinds.
    eventually("the publisher's OK count", || publisher.status()[0].ok == 1).await;
    let status = subscriber.relay_status(&relay.url()).unwrap();
    assert!(status.connected);
    assert_eq!(status.events_received, 1);

    // Once unsubscribed, nothing more is delivered for it.
    assert!(subscriber.unsubscribe(&sub));
    assert!(!subscriber.unsubscribe(&sub));
    let probe_id = SubscriptionId::new("probe");
    let later = event(&alice, NOSTR_CONNECT, "later", vec![]);
    subscriber
        .subscribe_with_id(probe_id.clone(), Filter::new().id(later.id))
        .unwrap();
    wait_for_eose(&mut notifications, 1).await;
    publisher.publish(&later).unwrap();
    let id = wait_for(&mut notifications, "the probe event", |n| match n {
        PoolEvent::Event {
            subscription_id, ..
        } => Some(subscription_id.clone()),
        _ => None,
    })
    .await;
    assert_eq!(id, probe_id, "event delivered for an ended subscription");

    publisher.shutdown().await;
    subscriber.shutdown().await;
    assert!(subscriber.add_relay(&relay.url()).is_err());
    relay.shutdown().await;
}

#[tokio::test]
async fn deduplicates_events_across_two_relays() {
    init_tracing();
    let first = server::spawn(ServerConfig::any_kind()).await.unwrap();
    let second = server::spawn(ServerConfig::any_kind()).await.unwrap();
    let alice = Keys::generate();

    let (subscriber, mut notifications) = RelayPool::new(test_config());
    subscriber.set_relays([first.url(), second.url()]).unwrap();
    subscriber.subscribe(nostr_connect_to(&alice)).unwrap();
    wait_for_eose(&mut notifications, 2).await;

    let (publisher, _events) = RelayPool::new(test_config());
    publisher.set_relays([first.url(), second.url()]).unwrap();
    let request = event(&alice, NOSTR_CONNECT, "once", vec![]);
    assert_eq!(publisher.publish(&request).unwrap().queued, 2);
    wait_for_event(&mut notifications, request.id).await;

    eventually("both copies to arrive", || {
        let status = subscriber.status();
        status.iter().map(|s| s.events_received).sum::<u64>() == 2
            && status.iter().map(|s| s.duplicates).sum::<u64>() == 1
    })
    .await;
    while let Ok(n) = notifications.try_recv() {
        assert!(
            !matches!(n, PoolEvent::Event { .. }),
            "a second copy was delivered: {n:?}"
        );
    }

    // switch_relays: dropping one relay leaves the other working.
    subscriber.set_relays([second.url()]).unwrap();
    assert_eq!(subscriber.relay_urls().len(), 1);
    let next = event(&alice, NOSTR_CONNECT, "after switch", vec![]);
    publisher.publish(&next).unwrap();
    let (via, _) = wait_for(&mut notifications, "event after switch", |n| match n {
        PoolEvent::Event { relay, event, .. } if event.id == next.id => {
            Some((relay.to_string(), ()))
        }
        _ => None,
    })
    .await;
    assert!(via.starts_with(&second.url()));
    publisher.shutdown().await;
    subscriber.shutdown().await;
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn reconnects_resubscribes_and_flushes_events_queued_while_down() {
    init_tracing();
    let relay = server::spawn(ServerConfig::any_kind()).await.unwrap();
    let addr = relay.local_addr();
    let url = relay.url();
    let alice = Keys::generate();

    let (pool, mut notifications) = RelayPool::new(test_config());
    pool.add_relay(&url).unwrap();
    pool.subscribe(nostr_connect_to(&alice)).unwrap();
    wait_for_eose(&mut notifications, 1).await;

    relay.shutdown().await;
    wait_for(&mut notifications, "the disconnect", |n| {
        matches!(n, PoolEvent::Disconnected { .. }).then_some(())
    })
    .await;

    // Published while the relay is down: queued, and said so.
    let queued = event(&alice, NOSTR_CONNECT, "while down", vec![]);
    let report = pool.publish(&queued).unwrap();
    assert_eq!((report.queued, report.waiting_for_reconnect), (1, 1));
    assert_eq!(pool.status()[0].queued, 1);

    let relay = server::spawn_on(addr, ServerConfig::any_kind())
        .await
        .unwrap();
    wait_for(&mut notifications, "the reconnect", |n| {
        matches!(n, PoolEvent::Connected { .. }).then_some(())
    })
    .await;
    // The subscription was re-sent before the queued event, on the same
    // socket, so the relay forwards the (ephemeral) event back to us.
    wait_for_eose(&mut notifications, 1).await;
    wait_for_event(&mut notifications, queued.id).await;

    // Another client publishing after the reconnect reaches us too.
    let (other, _events) = RelayPool::new(test_config());
    other.add_relay(&url).unwrap();
    let live = event(&alice, NOSTR_CONNECT, "after restart", vec![]);
    other.publish(&live).unwrap();
    wait_for_event(&mut notifications, live.id).await;

    let status = pool.status().remove(0);
    assert!(status.connected);
    assert_eq!(status.reconnects, 1);
    assert_eq!(status.dropped, 0);
    assert!(status.last_error.is_some());
    other.shutdown().await;
    pool.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn full_queues_are_reported_not_silently_dropped() {
    init_tracing();
    // Nothing listens on this port: the relay stays down.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", port.local_addr().unwrap());
    drop(port);
    let mut config = test_config();
    config.queue_capacity = 2;
    let (pool, _events) = RelayPool::new(config);
    pool.add_relay(&url).unwrap();
    let keys = Keys::generate();
    for n in 0..2 {
        let report = pool
            .publish(&event(&keys, 1, &n.to_string(), vec![]))
            .unwrap();
        assert_eq!(report.waiting_for_reconnect, 1);
    }
    match pool.publish(&event(&keys, 1, "third", vec![])) {
        Err(PublishError::AllQueuesFull { dropped }) => assert_eq!(dropped.len(), 1),
        other => panic!("expected a full queue, got {other:?}"),
    }
    let status = pool.status().remove(0);
    assert_eq!((status.queued, status.dropped), (2, 1));
    assert!(!status.connected);
    // Removing the relay counts what was still queued as dropped.
    assert!(pool.remove_relay(&url));
    assert!(pool.status().is_empty());
    pool.shutdown().await;
}

#[tokio::test]
async fn authenticates_with_nip42_and_resends_what_was_refused() {
    init_tracing();
    let config = ServerConfig {
        require_auth: true,
        ..ServerConfig::any_kind()
    };
    let relay = server::spawn(config).await.unwrap();
    let keys = Keys::generate();

    let (pool, mut notifications) = RelayPool::new(test_config().with_auth_keys(keys.clone()));
    // Subscribe and publish before the relay has even been reached: both are
    // refused with auth-required at first and re-sent after AUTH. The early
    // event is a stored kind, so the re-sent subscription finds it whichever
    // of the two the relay accepts first.
    let filter = Filter::new()
        .kinds([Kind::TextNote, Kind::from(NOSTR_CONNECT)])
        .author(keys.public_key());
    pool.subscribe(filter).unwrap();
    pool.add_relay(&relay.url()).unwrap();
    let early = event(&keys, 1, "early", vec![]);
    pool.publish(&early).unwrap();

    wait_for(&mut notifications, "authentication", |n| {
        matches!(n, PoolEvent::Authenticated { .. }).then_some(())
    })
    .await;
    wait_for_event(&mut notifications, early.id).await;
    let status = pool.status().remove(0);
    assert_eq!(status.auth, AuthState::Accepted);
    assert_eq!(status.rejected, 0);

    let late = event(&keys, NOSTR_CONNECT, "late", vec![]);
    pool.publish(&late).unwrap();
    wait_for_event(&mut notifications, late.id).await;
    eventually("two OKs", || pool.status()[0].ok == 2).await;

    // Without keys, the same relay refuses and says why.
    let (anonymous, mut anonymous_events) = RelayPool::new(test_config());
    anonymous.subscribe(nostr_connect_to(&keys)).unwrap();
    anonymous.add_relay(&relay.url()).unwrap();
    let message = wait_for(&mut anonymous_events, "CLOSED", |n| match n {
        PoolEvent::Closed { message, .. } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert!(message.starts_with("auth-required:"), "{message}");
    anonymous
        .publish(&event(&keys, NOSTR_CONNECT, "refused", vec![]))
        .unwrap();
    eventually("the refusal", || anonymous.status()[0].rejected == 1).await;
    assert_eq!(anonymous.status()[0].auth, AuthState::NoKeys);

    anonymous.shutdown().await;
    pool.shutdown().await;
    relay.shutdown().await;
}

/// A relay that sends garbage before a valid event, on every connection.
/// Returns its URL and the event it serves.
async fn hostile_relay(max_message_size: usize) -> (String, nostr::prelude::Event) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let keys = Keys::generate();
    let valid = event(&keys, NOSTR_CONNECT, "valid", vec![]);
    // Well-formed, but signed for another event.
    let forged = {
        let other = event(&keys, NOSTR_CONNECT, "other", vec![]);
        let mut forged =
            serde_json::to_value(event(&keys, NOSTR_CONNECT, "forged", vec![])).unwrap();
        forged["sig"] = serde_json::json!(other.sig.to_string());
        forged
    };
    let served = valid.clone();
    tokio::spawn(async move {
        let mut connection = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            connection += 1;
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                continue;
            };
            // Wait for the pool's REQ to learn the subscription id.
            let sub = loop {
                let value = next_json(&mut ws).await;
                if value[0] == "REQ" {
                    break value[1].as_str().unwrap().to_owned();
                }
            };
            let valid_frame = serde_json::json!(["EVENT", sub, valid]).to_string();
            let garbage = [
                Message::text("this is not json"),
                Message::text(r#"["FROB","x"]"#),
                Message::text(r#"{"EVENT":1}"#),
                Message::text(serde_json::json!(["EVENT", sub, {"id": "nope"}]).to_string()),
                Message::text(serde_json::json!(["EVENT", sub, forged]).to_string()),
                Message::binary(vec![0u8; 16]),
                // Over the pool's limit but under the websocket hard limit:
                // read and dropped, the connection stays.
                Message::text(format!(
                    "[\"NOTICE\",\"{}\"]",
                    "x".repeat(max_message_size * 2)
                )),
            ];
            for frame in garbage {
                if ws.send(frame).await.is_err() {
                    break;
                }
            }
            if connection == 1 {
                let _ = ws.send(Message::text(valid_frame)).await;
                // Then a frame so big the websocket layer refuses it: the
                // pool must drop this connection and come back.
                let huge = format!("[\"NOTICE\",\"{}\"]", "y".repeat(max_message_size * 8));
                let _ = ws.send(Message::text(huge)).await;
            } else {
                let again = serde_json::json!(["NOTICE", "second connection"]).to_string();
                let _ = ws.send(Message::text(again)).await;
            }
            // Keep the socket open until the pool goes away.
            tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
        }
    });
    (format!("ws://{addr}"), served)
}

#[tokio::test]
async fn bad_frames_are_dropped_without_ending_the_connection_task() {
    init_tracing();
    let max = 16 * 1024;
    let (url, valid) = hostile_relay(max).await;
    let mut config = test_config();
    config.max_message_size = max;
    let (pool, mut notifications) = RelayPool::new(config);
    pool.add_relay(&url).unwrap();
    pool.subscribe(Filter::new().kind(Kind::from(NOSTR_CONNECT)))
        .unwrap();

    let received = wait_for_event(&mut notifications, valid.id).await;
    assert_eq!(received.content, "valid");
    let status = pool.status().remove(0);
    assert_eq!(status.reconnects, 0, "garbage must not cost the connection");
    assert_eq!(status.invalid_events, 1, "the forged event");
    assert!(status.bad_frames >= 6, "{status:?}");

    // The oversized frame after it resets the socket; the task reconnects.
    let notice = wait_for(&mut notifications, "the second connection", |n| match n {
        PoolEvent::Notice { message, .. } if message == "second connection" => {
            Some(message.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(notice, "second connection");
    let status = pool.status().remove(0);
    assert_eq!(status.reconnects, 1);
    assert!(status.connected);
    within("shutdown", pool.shutdown()).await;
}

#[tokio::test]
async fn dropping_the_pool_stops_its_tasks() {
    init_tracing();
    let relay = server::spawn(ServerConfig::any_kind()).await.unwrap();
    let (pool, mut notifications) = RelayPool::new(test_config());
    pool.add_relay(&relay.url()).unwrap();
    wait_for(&mut notifications, "connect", |n| {
        matches!(n, PoolEvent::Connected { .. }).then_some(())
    })
    .await;
    drop(pool);
    // Every sender of the channel lives in a connection task: it closes when
    // the tasks have ended.
    within("the connection tasks to end", async {
        while notifications.recv().await.is_some() {}
    })
    .await;
    within("relay shutdown", relay.shutdown()).await;
}

#[tokio::test]
async fn resends_an_event_refused_with_auth_required_once_authenticated() {
    init_tracing();
    // A scripted relay: refuses the first EVENT with auth-required, then
    // challenges, accepts the AUTH, and reports what it saw.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let script = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        let first = next_json(&mut ws).await;
        assert_eq!(first[0], "EVENT");
        let id = first[1]["id"].clone();
        let refusal = serde_json::json!(["OK", id, false, "auth-required: who are you?"]);
        ws.send(Message::text(refusal.to_string())).await.unwrap();
        let challenge = serde_json::json!(["AUTH", "challenge-1"]);
        ws.send(Message::text(challenge.to_string())).await.unwrap();

        let auth = next_json(&mut ws).await;
        assert_eq!(auth[0], "AUTH");
        assert_eq!(auth[1]["kind"], 22242);
        let tags = auth[1]["tags"].as_array().unwrap().clone();
        assert!(
            tags.contains(&serde_json::json!(["challenge", "challenge-1"])),
            "{tags:?}"
        );
        assert!(tags.iter().any(|t| t[0] == "relay"), "{tags:?}");
        let accepted = serde_json::json!(["OK", auth[1]["id"], true, ""]);
        ws.send(Message::text(accepted.to_string())).await.unwrap();

        let again = next_json(&mut ws).await;
        assert_eq!(again[0], "EVENT");
        assert_eq!(again[1]["id"], id);
        let ok = serde_json::json!(["OK", id, true, ""]);
        ws.send(Message::text(ok.to_string())).await.unwrap();
        // Hold the socket until the pool leaves.
        while let Some(Ok(_)) = ws.next().await {}
    });

    let keys = Keys::generate();
    let (pool, mut notifications) = RelayPool::new(test_config().with_auth_keys(keys.clone()));
    pool.add_relay(&url).unwrap();
    pool.publish(&event(&keys, NOSTR_CONNECT, "needs auth", vec![]))
        .unwrap();
    wait_for(&mut notifications, "authentication", |n| {
        matches!(n, PoolEvent::Authenticated { .. }).then_some(())
    })
    .await;
    eventually("the OK of the re-sent event", || pool.status()[0].ok == 1).await;
    let status = pool.status().remove(0);
    assert_eq!((status.rejected, status.published), (0, 2));
    assert_eq!(status.auth, AuthState::Accepted);
    pool.shutdown().await;
    within("the scripted relay", script).await.unwrap();
}

/// The next text message of a raw server-side socket, as JSON.
async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> serde_json::Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(text.as_str()).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("pool went away: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_forged_copy_cannot_hide_the_genuine_event() {
    init_tracing();
    let keys = Keys::generate();
    let genuine = event(&keys, NOSTR_CONNECT, "genuine", vec![]);
    let other = event(&keys, NOSTR_CONNECT, "other", vec![]);
    // Same id and content, someone else's signature.
    let mut forged = serde_json::to_value(&genuine).unwrap();
    forged["sig"] = serde_json::json!(other.sig.to_string());

    for verify in [true, false] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let (forged, genuine_json) = (forged.clone(), serde_json::to_value(&genuine).unwrap());
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            let req = next_json(&mut ws).await;
            let sub = req[1].clone();
            for copy in [forged, genuine_json] {
                let frame = serde_json::json!(["EVENT", sub, copy]).to_string();
                ws.send(Message::text(frame)).await.unwrap();
            }
            ws.send(Message::text(r#"["NOTICE","done"]"#))
                .await
                .unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        });

        let mut config = test_config();
        config.verify_events = verify;
        let (pool, mut notifications) = RelayPool::new(config);
        pool.add_relay(&url).unwrap();
        pool.subscribe(Filter::new().kind(Kind::from(NOSTR_CONNECT)))
            .unwrap();
        let mut delivered = Vec::new();
        wait_for(&mut notifications, "the relay's last frame", |n| match n {
            PoolEvent::Event { event, .. } => {
                delivered.push(event.sig);
                None
            }
            PoolEvent::Notice { .. } => Some(()),
            _ => None,
        })
        .await;
        if verify {
            assert_eq!(
                delivered,
                vec![genuine.sig],
                "verified: only the genuine copy"
            );
        } else {
            assert_eq!(
                delivered.len(),
                2,
                "unverified: both copies, the caller decides"
            );
            assert_eq!(delivered[1], genuine.sig);
        }
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn wss_urls_open_a_tls_session() {
    init_tracing();
    // Not a TLS server: it only checks that the pool starts a TLS handshake
    // (a ClientHello record) instead of a plain websocket upgrade.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("wss://{}", listener.local_addr().unwrap());
    let (pool, _events) = RelayPool::new(test_config());
    pool.add_relay(&url).unwrap();
    let (mut stream, _) = within("the pool's connection", listener.accept())
        .await
        .unwrap();
    let mut first = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut stream, &mut first)
        .await
        .unwrap();
    assert_eq!(first[0], 0x16, "expected a TLS handshake record");
    drop(stream);
    eventually("the failed handshake to be recorded", || {
        pool.status()[0].last_error.is_some()
    })
    .await;
    assert!(!pool.status()[0].connected);
    pool.shutdown().await;
}
