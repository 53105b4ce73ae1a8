//! The client against a third-party signer from another ecosystem:
//! applesauce-signers' `NostrConnectProvider` (npm), driven by
//! `tests/interop/applesauce-provider.mjs` under Node, on a real relay.
//!
//! Skipped (with a message) when Node or the npm packages are missing,
//! except under CI, where that is a failure (`.ci/install` runs `npm ci`).
//!
//! Quirks of this signer: `switch_relays` answers `"result": null` when
//! nothing changes (the protocol core refuses a null result; the client
//! reads it), `connect` echoes the secret instead of `"ack"`, error replies
//! carry `"result": ""` and no code, and it serves one client at a time.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nip46::nostr::prelude::RelayUrl;
use nip46::{BunkerUri, Method};
use rampart_client::{Client, ClientOptions, Error};
use relay::server::{self, RelayHandle, ServerConfig};
use testkit::Peer;
use testkit::app::{WAIT, check_sign_and_encrypt, client_options, note, sign_concurrently, within};

/// Start the provider, or `None` (skip) when Node or the packages are not
/// installed outside CI.
fn provider(args: &[&str]) -> Option<Peer> {
    Peer::applesauce_args(args)
}

async fn relay() -> RelayHandle {
    server::spawn(ServerConfig::default()).await.expect("relay")
}

fn options() -> ClientOptions {
    client_options("applesauce interop", Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread")]
async fn our_client_signs_through_applesauce() {
    let relay = relay().await;
    let Some(provider) = provider(&["--relay", &relay.url(), "--secret", "apple-secret"]) else {
        return;
    };
    let client = within("connect", Client::connect(&provider.uri, options()))
        .await
        .unwrap();
    assert_ne!(client.user_pubkey(), client.signer_pubkey());
    let peer = check_sign_and_encrypt(&client, "signed by applesauce").await;

    // Quirk: `"result": null` means "keep the relays".
    assert_eq!(client.switch_relays().await.unwrap(), None);

    // (This signer handles one request at a time, ~0.1 s each.)
    sign_concurrently(&client, 20).await;

    // Its errors carry no code.
    let err = client
        .nip44_decrypt(&peer.public_key(), "garbage")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Signer {
                method: Method::Nip44Decrypt,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), None);

    client.logout().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_follows_switch_relays() {
    let (old, new) = (relay().await, relay().await);
    let Some(provider) = provider(&[
        "--relay",
        &old.url(),
        "--relay",
        &new.url(),
        "--switch-to",
        &new.url(),
    ]) else {
        return;
    };
    // Hand the client the old relay only.
    let mut uri: BunkerUri = provider.uri.parse().unwrap();
    uri.relays = vec![RelayUrl::parse(&old.url()).unwrap()];
    let client = within("connect", Client::connect_bunker(uri, options()))
        .await
        .unwrap();
    let new_url = RelayUrl::parse(&new.url()).unwrap();
    assert_eq!(client.relays(), vec![new_url.clone()]);
    // The old relay can go away.
    old.shutdown().await;
    let event = client
        .sign_event(note(&client, "on the new relay"))
        .await
        .unwrap();
    event.verify().unwrap();
    assert_eq!(client.session().relays, vec![new_url]);
}

#[tokio::test(flavor = "multi_thread")]
async fn nostrconnect_uri_accepted_by_applesauce() {
    let relay = relay().await;
    let url = RelayUrl::parse(&relay.url()).unwrap();
    let pending = within(
        "listening",
        Client::nostrconnect(vec![url], options().perms("sign_event:1".parse().unwrap())),
    )
    .await
    .unwrap();
    let uri = pending.uri().to_string();
    let Some(_provider) = provider(&["--relay", &relay.url(), "--nostrconnect", &uri]) else {
        return;
    };
    let client = within("pairing", pending.wait(WAIT)).await.unwrap();
    assert_ne!(client.user_pubkey(), client.signer_pubkey());
    let event = client
        .sign_event(note(&client, "client-initiated"))
        .await
        .unwrap();
    assert_eq!(event.pubkey, client.user_pubkey());
}
