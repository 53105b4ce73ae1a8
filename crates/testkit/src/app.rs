//! The app side of the client library's end-to-end tests: client options
//! that retry relays quickly, a bounded wait, a note to sign, and the checks
//! every signer must pass. Shared by the tests against our bunker and
//! against third-party signers.

use std::future::Future;
use std::time::Duration;

use client::{Client, ClientOptions};
use nip46::nostr::nips::{nip04, nip44};
use nip46::nostr::prelude::{
    EventBuilder, FinalizeEventAsync, Keys, Kind, Tag, Timestamp, UnsignedEvent,
};
use relay::PoolConfig;

/// How long [`within`] waits: generous, for a loaded CI machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// Options for a test client named `name`, waiting `request_timeout` for
/// each answer and retrying lost relays within a quarter of a second.
pub fn client_options(name: &str, request_timeout: Duration) -> ClientOptions {
    ClientOptions::new()
        .name(name)
        .request_timeout(request_timeout)
        .pool(
            PoolConfig::default()
                .with_backoff(Duration::from_millis(20), Duration::from_millis(250)),
        )
}

/// Awaits `future`, panicking with `what` if it takes longer than [`WAIT`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A kind-1 note by `client`'s user, now, tagged `#test`.
pub fn note(client: &Client, content: &str) -> UnsignedEvent {
    UnsignedEvent::new(
        client.user_pubkey(),
        Timestamp::now(),
        Kind::TextNote,
        [Tag::hashtag("test")],
        content,
    )
}

/// What any signer must do for `client`: sign an event through the `nostr`
/// signer trait (`content` says by whom), and NIP-44 and NIP-04 round trips
/// with a third key, whose side is checked with the `nostr` crate; then
/// `ping`. Returns the third key.
pub async fn check_sign_and_encrypt(client: &Client, content: &str) -> Keys {
    let user = client.user_pubkey();
    let event = EventBuilder::new(Kind::TextNote, content)
        .tags([Tag::hashtag("interop")])
        .finalize_async(client)
        .await
        .unwrap();
    event.verify().unwrap();
    assert_eq!(event.pubkey, user);

    let peer = Keys::generate();
    let ct = client
        .nip44_encrypt(&peer.public_key(), "nip44 text")
        .await
        .unwrap();
    assert_eq!(
        nip44::decrypt(peer.secret_key(), &user, &ct).unwrap(),
        "nip44 text"
    );
    assert_eq!(
        client.nip44_decrypt(&peer.public_key(), &ct).await.unwrap(),
        "nip44 text"
    );
    let ct = client
        .nip04_encrypt(&peer.public_key(), "nip04 text")
        .await
        .unwrap();
    assert_eq!(
        nip04::decrypt(peer.secret_key(), &user, &ct).unwrap(),
        "nip04 text"
    );
    assert_eq!(
        client.nip04_decrypt(&peer.public_key(), &ct).await.unwrap(),
        "nip04 text"
    );
    client.ping().await.unwrap();
    peer
}

/// Sends `n` `sign_event` requests through `client` at once; every one must
/// come back signed (the client library checks each event).
pub async fn sign_concurrently(client: &Client, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        tasks.spawn(async move { client.sign_event(note(&client, &format!("n{i}"))).await });
    }
    let what = format!("{n} signatures");
    while let Some(r) = within(&what, tasks.join_next()).await {
        r.unwrap().unwrap();
    }
}
