//! Rampart's client against a third-party signer: rust-nostr's
//! `NostrConnectRemoteSigner` (nostr-connect 0.44), run as the real
//! `peer-signer` process on a real relay. Nothing is mocked.
//!
//! Quirks of this signer the client has to live with (see the client docs):
//! it never answers methods it does not know (`switch_relays`, `logout`),
//! it needs `pubkey` and `created_at` in `sign_event` templates, errors
//! carry no code, and it answers a `nostrconnect://` URI with a `connect`
//! *request* rather than a response.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

use client::{Client, ClientOptions, Error, Session};
use nip46::nostr::prelude::RelayUrl;
use nip46::{BunkerUri, Command, Method};
use relay::server::{self, RelayHandle, ServerConfig};
use testkit::app::{WAIT, check_sign_and_encrypt, client_options, note, sign_concurrently, within};

const BIN: &str = env!("CARGO_BIN_EXE_peer-signer");

/// A running `peer-signer`, killed on drop.
struct Peer {
    child: Child,
    uri: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_peer(args: &[&str]) -> Peer {
    let mut child = Process::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start peer-signer");
    let rx = testkit::process::stdout_lines(&mut child);
    let uri = rx.recv_timeout(WAIT).expect("peer-signer printed no URI");
    Peer { child, uri }
}

async fn relay() -> RelayHandle {
    server::spawn(ServerConfig::default()).await.expect("relay")
}

fn options() -> ClientOptions {
    client_options("peer interop", Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread")]
async fn our_client_signs_through_nostr_connect() {
    let relay = relay().await;
    let peer = start_peer(&["--relay", &relay.url(), "--secret", "peer-secret"]);
    let client = within("connect", Client::connect(&peer.uri, options()))
        .await
        .unwrap();
    // Its signer key is not the user key: get_public_key was needed.
    assert_ne!(client.user_pubkey(), client.signer_pubkey());
    let user = client.user_pubkey();
    assert_eq!(client.get_public_key().await.unwrap(), user);

    check_sign_and_encrypt(&client, "signed by rust-nostr").await;

    // Many at once.
    sign_concurrently(&client, 50).await;

    // Quirk: methods it does not know get no answer at all.
    let err = client
        .call_with_timeout(Command::SwitchRelays, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                method: Method::SwitchRelays,
                ..
            }
        ),
        "{err}"
    );

    // The session can be resumed (this signer keeps no sessions at all).
    let session = Session::from_json(&client.session().to_json()).unwrap();
    client.shutdown().await;
    let again = within("restore", Client::restore(session, options()))
        .await
        .unwrap();
    again
        .sign_event(note(&again, "after restore"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_is_the_signers_error() {
    let relay = relay().await;
    let peer = start_peer(&["--relay", &relay.url(), "--secret", "right"]);
    let mut uri: BunkerUri = peer.uri.parse().unwrap();
    uri.secret = Some(nip46::ConnectSecret::new("wrong"));
    let err = within("connect", Client::connect_bunker(uri, options()))
        .await
        .unwrap_err();
    // No error codes: not `Denied`, but the signer's message.
    assert!(
        matches!(
            err,
            Error::Signer {
                method: Method::Connect,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), None);
    assert!(err.to_string().contains("Secret not match"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nostrconnect_uri_accepted_by_nostr_connect() {
    let relay = relay().await;
    let url = RelayUrl::parse(&relay.url()).unwrap();
    let pending = within("listening", Client::nostrconnect(vec![url], options()))
        .await
        .unwrap();
    let uri = pending.uri().to_string();
    let _peer = start_peer(&["--nostrconnect", &uri]);
    let client = within("pairing", pending.wait(WAIT)).await.unwrap();
    assert_ne!(client.user_pubkey(), client.signer_pubkey());
    let event = client
        .sign_event(note(&client, "client-initiated"))
        .await
        .unwrap();
    assert_eq!(event.pubkey, client.user_pubkey());
}
