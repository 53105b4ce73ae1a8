//! The relay pool against a real external relay, nostr-rs-relay 0.8.12.
//!
//! The binary is looked up in `$NOSTR_RS_RELAY`, then `PATH`, then
//! `~/.cargo/bin` (`bash .ci/install` builds it there). Without it these tests
//! print why they are skipped and pass — unless `CI` is set, where a missing
//! binary is a failure.
//!
//! nostr-rs-relay quirks these tests rely on: it sends no `OK` for ephemeral
//! kinds (24133 included) and no `OK` for a successful `AUTH`; with
//! `nip42_auth` it challenges every connection but only restricts kind-4
//! DMs (with `nip42_dms`), so it never refuses anything with `auth-required:`.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    event, eventually, init_tracing, test_config, wait_for, wait_for_eose, wait_for_event, within,
};
use nostr::prelude::{Filter, Keys, Kind, Tag};
use relay::{AuthState, PoolEvent, RelayPool};
use testkit::NostrRsRelay;

const NOSTR_CONNECT: u16 = 24133;

#[tokio::test]
async fn nostr_rs_relay_publish_subscribe_kind_24133() {
    init_tracing();
    let Some(relay) = NostrRsRelay::start() else {
        return;
    };
    let alice = Keys::generate();

    let (subscriber, mut notifications) = RelayPool::new(test_config());
    subscriber.add_relay(&relay.url()).unwrap();
    let filter = Filter::new()
        .kind(Kind::from(NOSTR_CONNECT))
        .author(alice.public_key());
    subscriber.subscribe(filter).unwrap();
    wait_for_eose(&mut notifications, 1).await;

    let (publisher, _events) = RelayPool::new(test_config());
    publisher.add_relay(&relay.url()).unwrap();
    let request = event(&alice, NOSTR_CONNECT, "request", vec![]);
    // Returns at once, though this relay will never answer OK for it.
    assert_eq!(publisher.publish(&request).unwrap().queued, 1);
    wait_for_event(&mut notifications, request.id).await;

    // A stored kind is answered OK; the ephemeral one times out unanswered.
    publisher
        .publish(&event(&alice, 1, "stored", vec![]))
        .unwrap();
    eventually("an OK for the stored event and none for 24133", || {
        let status = publisher.status().remove(0);
        status.ok == 1 && status.no_answer == 1
    })
    .await;
    publisher.shutdown().await;
    subscriber.shutdown().await;
}

#[tokio::test]
async fn nostr_rs_relay_reconnect_after_restart() {
    init_tracing();
    let Some(mut relay) = NostrRsRelay::start() else {
        return;
    };
    let alice = Keys::generate();

    let (pool, mut notifications) = RelayPool::new(test_config());
    pool.add_relay(&relay.url()).unwrap();
    pool.subscribe(
        Filter::new()
            .kind(Kind::from(NOSTR_CONNECT))
            .author(alice.public_key()),
    )
    .unwrap();
    wait_for_eose(&mut notifications, 1).await;

    relay.stop();
    wait_for(&mut notifications, "the disconnect", |n| {
        matches!(n, PoolEvent::Disconnected { .. }).then_some(())
    })
    .await;
    let queued = event(&alice, NOSTR_CONNECT, "while down", vec![]);
    let report = pool.publish(&queued).unwrap();
    assert_eq!(report.waiting_for_reconnect, 1);

    relay.resume();
    // Re-subscribed (EOSE), then the queued event, on the same socket.
    wait_for_eose(&mut notifications, 1).await;
    wait_for_event(&mut notifications, queued.id).await;

    let (other, _events) = RelayPool::new(test_config());
    other.add_relay(&relay.url()).unwrap();
    let live = event(&alice, NOSTR_CONNECT, "after restart", vec![]);
    other.publish(&live).unwrap();
    wait_for_event(&mut notifications, live.id).await;
    let status = pool.status().remove(0);
    assert!(status.connected);
    assert_eq!((status.reconnects, status.dropped), (1, 0));
    other.shutdown().await;
    pool.shutdown().await;
}

#[tokio::test]
async fn nostr_rs_relay_nip42_auth_unlocks_direct_messages() {
    init_tracing();
    let Some(relay) = NostrRsRelay::start_with_auth() else {
        return;
    };
    let alice = Keys::generate();
    let bob = Keys::generate();
    let dm = event(
        &alice,
        4,
        "ciphertext",
        vec![Tag::public_key(bob.public_key())],
    );
    let to_bob = || Filter::new().kind(Kind::from(4)).pubkey(bob.public_key());

    let (sender, _events) = RelayPool::new(test_config());
    sender.add_relay(&relay.url()).unwrap();
    sender.publish(&dm).unwrap();
    eventually("the DM to be stored", || sender.status()[0].ok == 1).await;

    // Without keys the relay's challenge goes unanswered and, with
    // nip42_dms, the stored DM is withheld.
    let (anonymous, mut anonymous_events) = RelayPool::new(test_config());
    anonymous.add_relay(&relay.url()).unwrap();
    anonymous.subscribe(to_bob()).unwrap();
    let mut leaked = false;
    wait_for(&mut anonymous_events, "EOSE without the DM", |n| match n {
        PoolEvent::Event { .. } => {
            leaked = true;
            None
        }
        PoolEvent::EndOfStoredEvents { .. } => Some(()),
        _ => None,
    })
    .await;
    assert!(!leaked, "the relay sent a DM to an unauthenticated client");
    eventually("the challenge", || {
        anonymous.status()[0].auth == AuthState::NoKeys
    })
    .await;

    // Bob's pool answers the challenge. nostr-rs-relay sends no OK for a
    // successful AUTH, so subscribe after sending it: the REQ follows the
    // AUTH on the same socket and is served authenticated.
    let (recipient, mut notifications) = RelayPool::new(test_config().with_auth_keys(bob.clone()));
    recipient.add_relay(&relay.url()).unwrap();
    wait_for(&mut notifications, "AUTH sent", |n| {
        matches!(n, PoolEvent::AuthSent { .. }).then_some(())
    })
    .await;
    recipient.subscribe(to_bob()).unwrap();
    wait_for_event(&mut notifications, dm.id).await;
    wait_for_eose(&mut notifications, 1).await;
    // And live DMs reach the authenticated subscriber.
    let second = event(&alice, 4, "again", vec![Tag::public_key(bob.public_key())]);
    sender.publish(&second).unwrap();
    within("the live DM", wait_for_event(&mut notifications, second.id)).await;
    let status = recipient.status().remove(0);
    assert_eq!(
        status.auth,
        AuthState::Sent,
        "no OK for AUTH from nostr-rs-relay"
    );

    sender.shutdown().await;
    anonymous.shutdown().await;
    recipient.shutdown().await;
}
