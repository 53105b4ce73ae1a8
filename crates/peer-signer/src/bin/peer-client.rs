//! `peer-client`: rust-nostr's NIP-46 client (`NostrConnect`, nostr-connect
//! 0.44) logging in to a bunker, to test Rampart's bunker against a
//! third-party client.
//!
//! ```text
//! peer-client 'bunker://…'
//! ```
//!
//! It gets the user key, signs a note, and does NIP-44 and NIP-04 round
//! trips with a third key (checked on the third party's side), then prints
//! one JSON object on stdout (`{"pubkey", "event", "ok": true}`). Exit codes:
//! 0 on success, 1 on a failure (one line on stderr), 2 on bad arguments.

use std::process::ExitCode;
use std::time::Duration;

use nostr_connect::prelude::{
    EventBuilder, Keys, NostrConnect, NostrConnectURI, NostrSigner, Tag, nip04, nip44,
};

/// Bound on each request.
const TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> ExitCode {
    let Some(uri) = std::env::args().nth(1) else {
        eprintln!("usage: peer-client 'bunker://…'");
        return ExitCode::from(2);
    };
    match run(&uri).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("peer-client: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(uri: &str) -> Result<String, String> {
    let uri = NostrConnectURI::parse(uri).map_err(|e| format!("bunker URI: {e}"))?;
    let client = NostrConnect::new(uri, Keys::generate(), TIMEOUT, None)
        .map_err(|e| format!("client: {e}"))?;
    let user = client
        .get_public_key()
        .await
        .map_err(|e| format!("connect / get_public_key: {e}"))?;
    let event = EventBuilder::text_note("hello from rust-nostr")
        .tags([Tag::hashtag("rampart")])
        .sign(&client)
        .await
        .map_err(|e| format!("sign_event: {e}"))?;
    event
        .verify()
        .map_err(|e| format!("the signed event does not verify: {e}"))?;
    if event.pubkey != user {
        return Err("the event is not signed by the user key".into());
    }
    let peer = Keys::generate();
    let ct = client
        .nip44_encrypt(&peer.public_key(), "secret message")
        .await
        .map_err(|e| format!("nip44_encrypt: {e}"))?;
    let opened = nip44::decrypt(peer.secret_key(), &user, &ct)
        .map_err(|e| format!("the peer cannot read the nip44 ciphertext: {e}"))?;
    if opened != "secret message" {
        return Err("nip44 round trip changed the text".into());
    }
    let reply = nip44::encrypt(peer.secret_key(), &user, "reply", nip44::Version::V2)
        .map_err(|e| e.to_string())?;
    let plain = client
        .nip44_decrypt(&peer.public_key(), &reply)
        .await
        .map_err(|e| format!("nip44_decrypt: {e}"))?;
    if plain != "reply" {
        return Err("nip44_decrypt gave another text".into());
    }
    let ct = client
        .nip04_encrypt(&peer.public_key(), "legacy")
        .await
        .map_err(|e| format!("nip04_encrypt: {e}"))?;
    let opened = nip04::decrypt(peer.secret_key(), &user, &ct)
        .map_err(|e| format!("the peer cannot read the nip04 ciphertext: {e}"))?;
    if opened != "legacy" {
        return Err("nip04 round trip changed the text".into());
    }
    client.shutdown().await;
    Ok(format!(
        "{{\"pubkey\":\"{}\",\"event\":{},\"ok\":true}}",
        user.to_hex(),
        nostr_connect::prelude::JsonUtil::as_json(&event)
    ))
}
