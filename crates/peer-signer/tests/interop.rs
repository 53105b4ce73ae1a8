//! Rampart's client against a third-party signer: rust-nostr's
//! `NostrConnectRemoteSigner` (nostr-connect 0.44), run as the real
//! `peer-signer` process on a real relay. Nothing is mocked.
//!
//! Quirks of this signer the client has to live with (see the client docs):
//! it never answers methods it does not know (`switch_relays`, `logout`),
//! it needs `pubkey` and `created_at` in `sign_event` templates, errors
//! carry no code, and it answers a `nostrconnect://` URI with a `connect`
//! *request* rather than a response.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command as Process, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use client::{Client, ClientOptions, Error, Session};
use nip46::nostr::nips::{nip04, nip44};
use nip46::nostr::prelude::{EventBuilder, FinalizeEventAsync, Keys, Kind, RelayUrl, Tag};
use nip46::{BunkerUri, Command, Method};
use relay::server::{self, RelayHandle, ServerConfig};
use testkit::app::{WAIT, client_options, note, within};

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
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
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

    let event = EventBuilder::new(Kind::TextNote, "signed by rust-nostr")
        .tags([Tag::hashtag("interop")])
        .finalize_async(&client)
        .await
        .unwrap();
    event.verify().unwrap();
    assert_eq!(event.pubkey, user);

    let peer_keys = Keys::generate();
    let ct = client
        .nip44_encrypt(&peer_keys.public_key(), "nip44 text")
        .await
        .unwrap();
    assert_eq!(
        nip44::decrypt(peer_keys.secret_key(), &user, &ct).unwrap(),
        "nip44 text"
    );
    assert_eq!(
        client
            .nip44_decrypt(&peer_keys.public_key(), &ct)
            .await
            .unwrap(),
        "nip44 text"
    );
    let ct = client
        .nip04_encrypt(&peer_keys.public_key(), "nip04 text")
        .await
        .unwrap();
    assert_eq!(
        nip04::decrypt(peer_keys.secret_key(), &user, &ct).unwrap(),
        "nip04 text"
    );
    assert_eq!(
        client
            .nip04_decrypt(&peer_keys.public_key(), &ct)
            .await
            .unwrap(),
        "nip04 text"
    );
    client.ping().await.unwrap();

    // Many at once.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let client = client.clone();
        tasks.spawn(async move { client.sign_event(note(&client, &format!("n{i}"))).await });
    }
    while let Some(r) = within("50 signatures", tasks.join_next()).await {
        r.unwrap().unwrap();
    }

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
