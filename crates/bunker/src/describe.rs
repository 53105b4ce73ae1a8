//! Held requests described for a person: kind names, what an event does,
//! and one-line summaries.
//!
//! The dashboard, the terminal prompt and `rampart approvals list` all show
//! the same words for the same request, so they all read them from here.

use nip46::ClientMetadata;
use serde::Serialize;
use store::PendingApproval;

/// The common name of an event kind, when it has one.
pub fn kind_name(kind: u16) -> Option<&'static str> {
    Some(match kind {
        0 => "Profile metadata",
        1 => "Short text note",
        3 => "Follow list",
        4 => "Encrypted direct message (NIP-04)",
        5 => "Deletion request",
        6 => "Repost",
        7 => "Reaction",
        8 => "Badge award",
        9 => "Chat message",
        13 => "Seal",
        14 => "Direct message",
        16 => "Generic repost",
        40 => "Channel creation",
        41 => "Channel metadata",
        42 => "Channel message",
        1059 => "Gift wrap",
        1063 => "File metadata",
        1111 => "Comment",
        1984 => "Report",
        9734 => "Zap request",
        9735 => "Zap receipt",
        10000 => "Mute list",
        10002 => "Relay list",
        10050 => "DM relay list",
        13194 => "Wallet info",
        22242 => "Relay authentication",
        23194 => "Wallet request",
        24133 => "Nostr Connect message",
        27235 => "HTTP authentication",
        30000 => "Follow set",
        30023 => "Long-form article",
        30078 => "App-specific data",
        31990 => "App handler",
        _ => return None,
    })
}

/// What signing this kind does that a user might not expect, if anything.
pub fn kind_warning(kind: u16) -> Option<&'static str> {
    Some(match kind {
        0 => "Replaces your whole profile.",
        3 => "Replaces your whole follow list.",
        5 => "Asks relays to delete your events.",
        10000 => "Replaces your mute list.",
        10002 => "Replaces your relay list.",
        22242 => "Logs in to a relay as you.",
        27235 => "Logs in to a website as you.",
        9734 => "Part of sending a zap (a payment).",
        _ => return None,
    })
}

/// `1 (Short text note)`, or just the number.
pub fn kind_label(kind: u16) -> String {
    match kind_name(kind) {
        Some(name) => format!("{kind} ({name})"),
        None => kind.to_string(),
    }
}

/// What a held request asks, parsed back from its summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum RequestDetails {
    /// `sign_event`: the event the app wants signed.
    SignEvent {
        /// Its kind.
        kind: u16,
        /// The content (clipped).
        content: String,
        /// The tags.
        tags: Vec<Vec<String>>,
        /// The time the app asked for, if any.
        created_at: Option<u64>,
    },
    /// Encryption to a third party.
    Encrypt {
        /// The third party (hex pubkey).
        peer: String,
        /// The text to encrypt (clipped).
        plaintext: String,
    },
    /// Decryption from a third party.
    Decrypt {
        /// The third party (hex pubkey).
        peer: String,
        /// Length of the ciphertext.
        ciphertext_len: u64,
    },
    /// Anything else: the method says it all.
    Other,
}

impl RequestDetails {
    /// Read an approval's summary (written by the engine as JSON).
    pub fn of(approval: &PendingApproval) -> Self {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&approval.summary) else {
            return RequestDetails::Other;
        };
        let text = |k: &str| value[k].as_str().unwrap_or_default().to_owned();
        if let Some(kind) = value["kind"].as_u64().and_then(|k| u16::try_from(k).ok()) {
            let tags = value["tags"]
                .as_array()
                .map(|tags| {
                    tags.iter()
                        .map(|tag| {
                            tag.as_array()
                                .map(|items| {
                                    items
                                        .iter()
                                        .map(|i| {
                                            i.as_str().map_or_else(|| i.to_string(), str::to_owned)
                                        })
                                        .collect()
                                })
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default();
            return RequestDetails::SignEvent {
                kind,
                content: text("content"),
                tags,
                created_at: value["created_at"].as_u64(),
            };
        }
        if value.get("plaintext").is_some() {
            return RequestDetails::Encrypt {
                peer: text("peer"),
                plaintext: text("plaintext"),
            };
        }
        if let Some(len) = value["ciphertext_len"].as_u64() {
            return RequestDetails::Decrypt {
                peer: text("peer"),
                ciphertext_len: len,
            };
        }
        RequestDetails::Other
    }
}

/// The app's name as it claims it, or a short form of its pubkey.
pub fn app_label(metadata: &ClientMetadata, client_hex: &str) -> String {
    match metadata
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        Some(name) => clip(name, 40),
        None => format!("app {}…", &client_hex[..client_hex.len().min(12)]),
    }
}

/// One line for a person: `sign_event kind 1 (Short text note): "gm"`.
pub fn one_line(approval: &PendingApproval) -> String {
    let method = approval.method.as_str();
    match RequestDetails::of(approval) {
        RequestDetails::SignEvent { kind, content, .. } => {
            let content = content.replace(['\n', '\r', '\t'], " ");
            let mut line = format!("{method} kind {}", kind_label(kind));
            if !content.trim().is_empty() {
                line.push_str(&format!(": \"{}\"", clip(content.trim(), 60)));
            }
            if let Some(warning) = kind_warning(kind) {
                line.push_str(&format!(" — {warning}"));
            }
            line
        }
        RequestDetails::Encrypt { peer, .. } => {
            format!("{method} to {}…", &peer[..peer.len().min(12)])
        }
        RequestDetails::Decrypt {
            peer,
            ciphertext_len,
        } => {
            format!(
                "{method} {ciphertext_len} bytes from {}…",
                &peer[..peer.len().min(12)]
            )
        }
        RequestDetails::Other => method.to_owned(),
    }
}

/// At most `max` characters, with an ellipsis when cut, and no control characters.
pub fn clip(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        return clean;
    }
    let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use nip46::Method;
    use nip46::nostr::prelude::{Keys, Timestamp};
    use store::{ApprovalId, ApprovalStatus, KeyId};

    fn approval(method: Method, kind: Option<u16>, summary: serde_json::Value) -> PendingApproval {
        PendingApproval {
            id: ApprovalId("00".into()),
            key_id: KeyId(1),
            client: Keys::generate().public_key(),
            metadata: ClientMetadata::default(),
            request_id: "r".into(),
            method,
            kind,
            summary: summary.to_string(),
            created_at: Timestamp::from_secs(0),
            expires_at: Timestamp::from_secs(60),
            status: ApprovalStatus::Pending,
        }
    }

    #[test]
    fn sign_event_is_read_back_and_named() {
        let a = approval(
            Method::SignEvent,
            Some(0),
            serde_json::json!({"kind": 0, "content": "{\"name\":\"x\"}\nmore", "tags": [["p", "ab"], ["t", 5]], "created_at": 7}),
        );
        let RequestDetails::SignEvent {
            kind,
            tags,
            created_at,
            ..
        } = RequestDetails::of(&a)
        else {
            panic!("not read as sign_event");
        };
        assert_eq!((kind, created_at), (0, Some(7)));
        assert_eq!(
            tags,
            vec![
                vec!["p".to_string(), "ab".into()],
                vec!["t".into(), "5".into()]
            ]
        );
        let line = one_line(&a);
        assert!(
            line.starts_with("sign_event kind 0 (Profile metadata): \"{\"name\":\"x\"} more\""),
            "{line}"
        );
        assert!(!line.contains('\n'));
        assert!(line.ends_with("Replaces your whole profile."), "{line}");
    }

    #[test]
    fn other_methods_and_labels() {
        let peer = "ab".repeat(32);
        let a = approval(
            Method::Nip44Decrypt,
            None,
            serde_json::json!({"peer": peer, "ciphertext_len": 88}),
        );
        assert_eq!(one_line(&a), "nip44_decrypt 88 bytes from abababababab…");
        let a = approval(
            Method::GetPublicKey,
            None,
            serde_json::json!({"method": "get_public_key"}),
        );
        assert_eq!(one_line(&a), "get_public_key");
        assert_eq!(kind_label(1), "1 (Short text note)");
        assert_eq!(kind_label(4242), "4242");
        let named = ClientMetadata {
            name: Some("  Damus ".into()),
            url: None,
            image: None,
        };
        assert_eq!(app_label(&named, &peer), "Damus");
        assert_eq!(
            app_label(&ClientMetadata::default(), &peer),
            "app abababababab…"
        );
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("a\u{1b}[31mb", 10), "a [31mb");
    }
}
