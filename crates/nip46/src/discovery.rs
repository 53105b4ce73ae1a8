//! How a remote signer tells clients about itself (NIP-46's appendix
//! "Announcing remote-signer metadata"): a NIP-89 `kind:31990` event with
//! `k` = 24133, and a NIP-05 `nostr.json` whose `names._` is the pubkey that
//! authors that event, so a client can check the announcement against the
//! domain before it sends users there.
//!
//! Both are built here, without I/O: the bunker signs and publishes the
//! event, the dashboard serves the document.

use std::collections::BTreeMap;

use nostr::prelude::{Kind, PublicKey, RelayUrl, Tag, Tags, Timestamp, UnsignedEvent};
use serde_json::{Map, Value, json};

/// NIP-89 handler information.
pub const HANDLER_KIND: u16 = 31990;

/// The `d` tag of Rampart's announcement: one per signer key, replaced at
/// every start.
pub const ANNOUNCEMENT_ID: &str = "rampart-bunker";

/// The placeholder NIP-46 defines in a `nostrconnect_url` template.
pub const NOSTRCONNECT_PLACEHOLDER: &str = "<nostrconnect>";

/// What a signer announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerAnnouncement {
    /// Relays the signer listens on (`relay` tags).
    pub relays: Vec<RelayUrl>,
    /// A template with [`NOSTRCONNECT_PLACEHOLDER`] pointing at a page that
    /// takes a `nostrconnect://` string.
    pub nostrconnect_url: Option<String>,
    /// Shown by clients that list signers (`name` in the content).
    pub name: String,
    /// `_@domain` when the signer has a public domain: clients that discover
    /// signers (nostr-tools' `fetchBunkerProviders`) read it from the content
    /// and verify the author against that domain's `nostr.json`.
    pub nip05: Option<String>,
}

impl SignerAnnouncement {
    /// The unsigned `kind:31990` event, authored by `author`.
    pub fn unsigned_event(&self, author: PublicKey, created_at: Timestamp) -> UnsignedEvent {
        let mut tags = vec![
            Tag::identifier(ANNOUNCEMENT_ID),
            Tag::custom("k", [crate::envelope::KIND.to_string()]),
        ];
        tags.extend(
            self.relays
                .iter()
                .map(|r| Tag::custom("relay", [r.to_string()])),
        );
        if let Some(url) = &self.nostrconnect_url {
            tags.push(Tag::custom("nostrconnect_url", [url.clone()]));
        }
        let mut content = Map::new();
        content.insert("name".into(), Value::String(self.name.clone()));
        if let Some(nip05) = &self.nip05 {
            content.insert("nip05".into(), Value::String(nip05.clone()));
        }
        UnsignedEvent::new(
            author,
            created_at,
            Kind::from(HANDLER_KIND),
            Tags::from_list(tags),
            Value::Object(content).to_string(),
        )
    }
}

/// A signer's NIP-05 document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nip05Document {
    /// The author of the announcement (`names._`).
    pub announcer: PublicKey,
    /// Relays (`nip46.relays`).
    pub relays: Vec<RelayUrl>,
    /// `nip46.nostrconnect_url`.
    pub nostrconnect_url: Option<String>,
    /// Further names an owner chose to publish, each a signer pubkey (what
    /// a NIP-05 login connects to).
    pub names: BTreeMap<String, PublicKey>,
}

impl Nip05Document {
    /// The JSON answer to `nostr.json?name=<name>`: that name alone when
    /// given (an unknown one gives empty `names`, as NIP-05 servers do),
    /// every published name without one. `nip46` also maps each listed
    /// pubkey to the relays (the older form clients such as nostr-tools'
    /// `queryBunkerProfile` read).
    pub fn to_json(&self, name: Option<&str>) -> Value {
        let all = std::iter::once(("_", &self.announcer))
            .chain(self.names.iter().map(|(n, pk)| (n.as_str(), pk)));
        let listed: Vec<(&str, &PublicKey)> = match name {
            Some(wanted) => all.filter(|(n, _)| *n == wanted).collect(),
            None => all.collect(),
        };
        let relays: Vec<&str> = self.relays.iter().map(RelayUrl::as_str).collect();
        let mut names = Map::new();
        let mut nip46 = Map::new();
        nip46.insert("relays".into(), json!(relays));
        if let Some(url) = &self.nostrconnect_url {
            nip46.insert("nostrconnect_url".into(), Value::String(url.clone()));
        }
        for (n, pk) in listed {
            names.insert(n.to_owned(), Value::String(pk.to_hex()));
            nip46.insert(pk.to_hex(), json!(relays));
        }
        json!({ "names": names, "nip46": nip46 })
    }
}

#[cfg(test)]
mod tests {
    use nostr::prelude::Keys;

    use super::*;

    fn relays() -> Vec<RelayUrl> {
        vec![
            RelayUrl::parse("wss://relay.one").unwrap(),
            RelayUrl::parse("wss://relay.two").unwrap(),
        ]
    }

    #[test]
    fn announcement_has_the_tags_the_spec_names() {
        let author = Keys::generate().public_key();
        let announcement = SignerAnnouncement {
            relays: relays(),
            nostrconnect_url: Some("https://signer.example/pair?uri=<nostrconnect>".into()),
            name: "Rampart".into(),
            nip05: Some("_@signer.example".into()),
        };
        let event = announcement.unsigned_event(author, Timestamp::from_secs(10));
        assert_eq!(event.kind.as_u16(), 31990);
        let tags: Vec<Vec<String>> = event.tags.iter().map(|t| t.clone().to_vec()).collect();
        assert!(tags.contains(&vec!["k".into(), "24133".into()]));
        assert!(tags.contains(&vec!["d".into(), ANNOUNCEMENT_ID.into()]));
        assert!(tags.contains(&vec!["relay".into(), "wss://relay.one".into()]));
        assert!(tags.contains(&vec!["relay".into(), "wss://relay.two".into()]));
        assert!(tags.contains(&vec![
            "nostrconnect_url".into(),
            "https://signer.example/pair?uri=<nostrconnect>".into()
        ]));
        let content: Value = serde_json::from_str(&event.content).unwrap();
        assert_eq!(content["nip05"], "_@signer.example");
        assert_eq!(content["name"], "Rampart");

        let bare = SignerAnnouncement {
            nostrconnect_url: None,
            nip05: None,
            ..announcement
        };
        let event = bare.unsigned_event(author, Timestamp::from_secs(10));
        assert!(
            !event
                .tags
                .iter()
                .any(|t| t.as_slice()[0] == "nostrconnect_url")
        );
    }

    #[test]
    fn document_names_the_announcer_and_the_published_keys() {
        let announcer = Keys::generate().public_key();
        let alice = Keys::generate().public_key();
        let document = Nip05Document {
            announcer,
            relays: relays(),
            nostrconnect_url: Some("https://s.example/pair?uri=<nostrconnect>".into()),
            names: BTreeMap::from([("alice".to_owned(), alice)]),
        };
        let only = document.to_json(Some("_"));
        assert_eq!(only["names"]["_"], announcer.to_hex());
        assert!(only["names"].get("alice").is_none());
        assert_eq!(only["nip46"]["relays"][1], "wss://relay.two");
        assert_eq!(only["nip46"][announcer.to_hex()][0], "wss://relay.one");
        assert_eq!(
            only["nip46"]["nostrconnect_url"],
            "https://s.example/pair?uri=<nostrconnect>"
        );
        let all = document.to_json(None);
        assert_eq!(all["names"]["alice"], alice.to_hex());
        let unknown = document.to_json(Some("bob"));
        assert_eq!(unknown["names"], json!({}));
    }
}
