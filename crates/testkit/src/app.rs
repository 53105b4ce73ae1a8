//! The app side of the client library's end-to-end tests: client options
//! that retry relays quickly, a bounded wait, and a note to sign. Shared by
//! the tests against our bunker and against third-party signers.

use std::future::Future;
use std::time::Duration;

use client::{Client, ClientOptions};
use nip46::nostr::prelude::{Kind, Tag, Timestamp, UnsignedEvent};
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
