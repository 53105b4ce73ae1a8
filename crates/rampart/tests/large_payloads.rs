//! Large payloads end to end (NIP-44's extended length prefix, plaintexts of
//! 64 KiB and more): a 300 KB contact list signed through a real `rampart
//! run` on the embedded relay and on nostr-rs-relay (its size limits raised
//! in its config, as a relay operator would), and every bound past which
//! something is refused answered with the limit, never with silence.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use client::{Client, ClientOptions, Error};
use nip46::nostr::prelude::{Keys, Kind, PublicKey, Tag, Timestamp, UnsignedEvent};
use nip46::{ErrorCode, Limits, Outcome};
use relay::server::{self, ServerConfig};
use testkit::app::{client_options, within};
use testkit::{NostrRsRelay, RampartProcess, RawClient};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

/// A contact list of `n` follows by `user`: about 75 bytes of JSON each.
fn contact_list(user: PublicKey, n: usize) -> UnsignedEvent {
    let tags = (0..n).map(|_| Tag::public_key(Keys::generate().public_key()));
    UnsignedEvent::new(user, Timestamp::now(), Kind::ContactList, tags, "")
}

fn options() -> ClientOptions {
    client_options("large payloads", Duration::from_secs(30))
}

async fn connect(bunker: &RampartProcess, options: ClientOptions) -> Client {
    within("connect", Client::connect(bunker.uri(), options))
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}; see {}", bunker.log_path().display()))
}

/// 4,000 follows ≈ 300 KB: signed, verified, exactly what was asked.
async fn a_300_kb_contact_list_is_signed(relay: Option<&str>) {
    // A follow list is a sensitive kind (it would ask): none here.
    let env = [("RAMPART_SENSITIVE_KINDS", "")];
    let bunker = RampartProcess::start(Path::new(BIN), relay, &env, &["--grant", "full"]);
    let client = connect(&bunker, options()).await;
    let unsigned = contact_list(client.user_pubkey(), 4_000);
    let size = unsigned.as_json().len();
    assert!(size > 290_000, "the event is only {size} bytes");
    let event = within("a 300 KB signature", client.sign_event(unsigned.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}; see {}", bunker.log_path().display()));
    event.verify().unwrap();
    assert_eq!(event.pubkey, client.user_pubkey());
    assert_eq!(event.tags, unsigned.tags);
    assert_eq!(event.kind, Kind::ContactList);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_300_kb_event_through_the_embedded_relay() {
    a_300_kb_contact_list_is_signed(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_300_kb_event_through_nostr_rs_relay() {
    let Some(relay) = NostrRsRelay::start_with_size_limit(4 * 1024 * 1024) else {
        return;
    };
    a_300_kb_contact_list_is_signed(Some(&relay.url())).await;
}

/// A request over the signer's limit (but one the relay carries) gets
/// `invalid_params` naming the limit, from the signer, with its id.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_the_signers_limit_is_answered_with_the_limit() {
    let bunker = RampartProcess::start(
        Path::new(BIN),
        None,
        &[("RAMPART_MAX_MESSAGE_BYTES", "200000")],
        &["--grant", "full"],
    );
    let uri: nip46::BunkerUri = bunker.uri().parse().unwrap();
    let mut raw = RawClient::new(bunker.uri()).await;
    let secret = uri.secret.as_ref().unwrap().expose().to_string();
    let r = raw
        .call(
            "c",
            "connect",
            serde_json::json!([uri.signer.to_hex(), secret]),
        )
        .await;
    assert!(
        matches!(r.outcome, Outcome::Result(ref s) if s == "ack"),
        "{r:?}"
    );

    let peer = Keys::generate().public_key().to_hex();
    let fits = "a".repeat(150_000);
    let r = raw
        .call("fits", "nip44_encrypt", serde_json::json!([peer, fits]))
        .await;
    assert!(matches!(r.outcome, Outcome::Result(_)), "{r:?}");

    let big = "a".repeat(250_000);
    let r = raw
        .call("big", "nip44_encrypt", serde_json::json!([peer, big]))
        .await;
    match &r.outcome {
        Outcome::Error(e) => {
            assert_eq!(e.code, Some(ErrorCode::InvalidParams), "{e:?}");
            assert!(e.message.contains("limit of 200000 bytes"), "{e:?}");
        }
        other => panic!("expected invalid_params, got {other:?}"),
    }
    // Still serving.
    let r = raw.call("p", "ping", serde_json::json!([])).await;
    assert!(
        matches!(r.outcome, Outcome::Result(ref s) if s == "pong"),
        "{r:?}"
    );
    raw.close().await;
}

/// The client refuses a request over its own limit before sending, and a
/// request every relay refuses fails at once with the relay's reason.
#[tokio::test(flavor = "multi_thread")]
async fn the_client_says_which_limit_was_hit() {
    let relay = server::spawn(ServerConfig {
        max_message_size: 200_000,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let bunker = RampartProcess::start(
        Path::new(BIN),
        Some(&relay.url()),
        &[],
        &["--grant", "full"],
    );
    let small = connect(&bunker, options().limits(Limits::new(100_000))).await;
    let unsigned = contact_list(small.user_pubkey(), 2_000);
    match small.sign_event(unsigned.clone()).await {
        Err(Error::TooLarge { size, limit, .. }) => {
            assert!(size > 100_000 && limit == 100_000, "{size} {limit}");
        }
        other => panic!("expected the client's limit, got {other:?}"),
    }
    small.shutdown().await;

    // Within the client's (default) limit, over the relay's.
    let bunker2 = bunker.mint("full", &[]);
    let client = within("connect", Client::connect(&bunker2, options()))
        .await
        .unwrap();
    let started = Instant::now();
    match client.sign_event(unsigned).await {
        Err(e @ Error::RelayRefused { .. }) => {
            let text = e.to_string();
            assert!(text.contains("limit of 200000 bytes"), "{text}");
        }
        other => panic!("expected the relay's refusal, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the refusal came only after {:?}",
        started.elapsed()
    );
    client.shutdown().await;
    relay.shutdown().await;
}
