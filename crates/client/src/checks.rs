//! Results checked before they are believed.
//!
//! A signer is trusted with signing, not with telling the truth about what it
//! signed: a buggy or hostile one could return an event with a bad signature,
//! for another author, or with other content than the app asked for, and the
//! app would publish it. Every result is parsed and checked here, without I/O,
//! before the caller sees it. Also here: reading the two results whose form
//! varies between signers (`connect` and `switch_relays`).

use nip46::envelope;
use nip46::nostr::prelude::{Event, Keys, PublicKey, RelayUrl, UnsignedEvent};
use nip46::{ConnectSecret, Conversation, Limits, MAX_URI_RELAYS, Response, parse_relay_list};

/// Open an incoming event as a response from the conversation's peer:
/// cheapest checks first (kind, size, `p` tag, author), then the signature,
/// the decryption and the parse. Events from anyone but the paired signer
/// are refused before any cryptography.
pub(crate) fn open(
    keys: &Keys,
    conversation: &mut Conversation,
    event: &Event,
    limits: &Limits,
) -> Result<Response, String> {
    let (_, text) =
        envelope::open_text_limited(keys, conversation, event, limits.max_response_content())
            .map_err(|e| e.to_string())?;
    Response::parse(&text).map_err(|e| e.to_string())
}

/// Check a `sign_event` result against what was asked: it must parse, its id
/// and signature must verify, its author must be the user, and its kind,
/// content, tags and timestamp must be the requested ones.
pub(crate) fn signed_event(
    result: &str,
    asked: &UnsignedEvent,
    user: &PublicKey,
) -> Result<Event, String> {
    let event =
        Event::from_json(result).map_err(|e| format!("the result is not a signed event: {e}"))?;
    if event.pubkey != *user {
        return Err(format!(
            "the event is signed by {} instead of the user {}",
            event.pubkey.to_hex(),
            user.to_hex()
        ));
    }
    let mut differs = Vec::new();
    if event.kind != asked.kind {
        differs.push("kind");
    }
    if event.content != asked.content {
        differs.push("content");
    }
    if event.tags != asked.tags {
        differs.push("tags");
    }
    if event.created_at != asked.created_at {
        differs.push("created_at");
    }
    if !differs.is_empty() {
        return Err(format!(
            "the signed event is not the one asked for (its {} differ)",
            differs.join(", ")
        ));
    }
    event
        .verify()
        .map_err(|_| "the event's id or signature does not verify".to_owned())?;
    Ok(event)
}

/// Check a `connect` result: `"ack"`, or the secret echoed back.
pub(crate) fn connect_result(result: &str, secret: Option<&ConnectSecret>) -> Result<(), String> {
    if result == "ack" || secret.is_some_and(|s| s.matches(result)) {
        return Ok(());
    }
    Err("the connect result is neither \"ack\" nor the connection secret".to_owned())
}

/// Read a `get_public_key` result.
pub(crate) fn public_key(result: &str) -> Result<PublicKey, String> {
    let text = result.trim();
    let parsed = if text.len() == 64 {
        PublicKey::from_hex(text)
    } else {
        // Liberal: some signers answer with an npub.
        PublicKey::parse(text)
    };
    parsed.map_err(|_| format!("`{}` is not a public key", shorten(text)))
}

/// Read a `switch_relays` result: `None` when nothing changes. At most
/// [`MAX_URI_RELAYS`] relays are followed.
pub(crate) fn relay_list(result: &str) -> Option<Vec<RelayUrl>> {
    let mut relays = parse_relay_list(result)?;
    relays.truncate(MAX_URI_RELAYS);
    Some(relays)
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nip46::nostr::prelude::{
        EventBuilder, FinalizeEvent, FinalizeUnsignedEvent, Keys, Kind, SecretKey, Tag, Timestamp,
    };

    fn keys(b: u8) -> Keys {
        Keys::new(SecretKey::from_slice(&[b; 32]).unwrap())
    }

    fn asked(user: &Keys) -> UnsignedEvent {
        EventBuilder::new(Kind::TextNote, "hello")
            .tags([Tag::hashtag("rampart")])
            .custom_created_at(Timestamp::from_secs(1_700_000_000))
            .finalize_unsigned(user.public_key())
    }

    fn sealed(from: &Keys, to: PublicKey, text: &str) -> Event {
        let mut conversation = Conversation::new(from, to).unwrap();
        let entropy = envelope::Entropy {
            nonce: [3; 32],
            aux: [4; 32],
        };
        envelope::seal(
            from,
            &mut conversation,
            envelope::Scheme::Nip44,
            text,
            Timestamp::now(),
            &entropy,
        )
        .unwrap()
    }

    #[test]
    fn only_the_paired_signer_is_heard() {
        let (client, signer, stranger) = (keys(5), keys(6), keys(7));
        let mut conversation = Conversation::new(&client, signer.public_key()).unwrap();
        let text = Response::ok("1", "pong").to_json();

        let good = sealed(&signer, client.public_key(), &text);
        assert_eq!(
            open(&client, &mut conversation, &good, &Limits::default()).unwrap(),
            Response::ok("1", "pong")
        );

        // Another author, even one that encrypts to us properly.
        let forged = sealed(&stranger, client.public_key(), &text);
        assert!(open(&client, &mut conversation, &forged, &Limits::default()).is_err());

        // Addressed to someone else.
        let elsewhere = sealed(&signer, stranger.public_key(), &text);
        assert!(open(&client, &mut conversation, &elsewhere, &Limits::default()).is_err());

        // Tampered after signing.
        let mut tampered = good.clone();
        tampered.content.push('A');
        assert!(open(&client, &mut conversation, &tampered, &Limits::default()).is_err());

        // Authentic, but not a response.
        let request = sealed(
            &signer,
            client.public_key(),
            r#"{"id":"1","method":"ping"}"#,
        );
        assert!(open(&client, &mut conversation, &request, &Limits::default()).is_err());
    }

    #[test]
    fn a_faithful_signature_passes() {
        let user = keys(1);
        let unsigned = asked(&user);
        let signed = unsigned.clone().finalize(&user).unwrap();
        let event = signed_event(&signed.as_json(), &unsigned, &user.public_key()).unwrap();
        assert_eq!(event, signed);
    }

    #[test]
    fn unfaithful_signatures_are_caught() {
        let user = keys(1);
        let unsigned = asked(&user);
        let pk = user.public_key();

        // Another author.
        let other = keys(2);
        let mut by_other = unsigned.clone();
        by_other.pubkey = other.public_key();
        by_other.id = None;
        let forged = by_other.finalize(&other).unwrap();
        assert!(
            signed_event(&forged.as_json(), &unsigned, &pk)
                .unwrap_err()
                .contains("instead of the user")
        );

        // Other content, properly signed.
        let mut changed = unsigned.clone();
        changed.content = "goodbye".into();
        changed.id = None;
        let signed = changed.finalize(&user).unwrap();
        let err = signed_event(&signed.as_json(), &unsigned, &pk).unwrap_err();
        assert!(err.contains("content"), "{err}");

        // Other kind and tags.
        let mut changed = unsigned.clone();
        changed.kind = Kind::Reaction;
        changed.tags = Default::default();
        changed.id = None;
        let signed = changed.finalize(&user).unwrap();
        let err = signed_event(&signed.as_json(), &unsigned, &pk).unwrap_err();
        assert!(err.contains("kind, tags"), "{err}");

        // A broken signature.
        let good = unsigned.clone().finalize(&user).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&good.as_json()).unwrap();
        let sig = json["sig"].as_str().unwrap().to_owned();
        let flipped = if sig.starts_with('0') { "1" } else { "0" };
        json["sig"] = format!("{flipped}{}", &sig[1..]).into();
        let err = signed_event(&json.to_string(), &unsigned, &pk).unwrap_err();
        assert!(err.contains("verify"), "{err}");

        // Not an event.
        assert!(signed_event("pong", &unsigned, &pk).is_err());
    }

    #[test]
    fn connect_results() {
        let secret = ConnectSecret::new("s3cret");
        assert!(connect_result("ack", Some(&secret)).is_ok());
        assert!(connect_result("ack", None).is_ok());
        assert!(connect_result("s3cret", Some(&secret)).is_ok());
        assert!(connect_result("other", Some(&secret)).is_err());
        assert!(connect_result("s3cret", None).is_err());
    }

    #[test]
    fn public_keys_in_hex_or_npub() {
        let pk = keys(3).public_key();
        assert_eq!(public_key(&pk.to_hex()).unwrap(), pk);
        use nip46::nostr::nips::nip19::ToBech32;
        assert_eq!(public_key(&pk.to_bech32().unwrap()).unwrap(), pk);
        assert!(public_key("pong").is_err());
    }

    #[test]
    fn relay_lists() {
        assert_eq!(relay_list("null"), None);
        assert_eq!(relay_list("[]"), None);
        let list = relay_list(r#"["wss://a.example","not a url","ws://127.0.0.1:7000"]"#).unwrap();
        assert_eq!(list.len(), 2);
        let many: Vec<String> = (0..40).map(|i| format!("wss://r{i}.example")).collect();
        let json = serde_json::to_string(&many).unwrap();
        assert_eq!(relay_list(&json).unwrap().len(), MAX_URI_RELAYS);
    }
}
