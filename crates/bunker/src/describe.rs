//! Held requests described for a person: kind names, what an event does,
//! and one-line summaries.
//!
//! The dashboard, the terminal prompt and `rampart approvals list` all show
//! the same words for the same request, so they all read them from here.

use nip46::ClientMetadata;
use store::{PendingApproval, RequestSummary};

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
    match &approval.summary {
        RequestSummary::SignEvent { kind, content, .. } => {
            let kind = *kind;
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
        RequestSummary::Encrypt { peer, .. } => {
            format!("{method} to {}…", &peer.to_hex()[..12])
        }
        RequestSummary::Decrypt {
            peer,
            ciphertext_len,
        } => {
            format!(
                "{method} {ciphertext_len} bytes from {}…",
                &peer.to_hex()[..12]
            )
        }
        RequestSummary::Other => method.to_owned(),
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
    use nip46::nostr::prelude::{Keys, PublicKey, Timestamp};
    use store::{ApprovalId, ApprovalStatus, KeyId};

    fn approval(method: Method, kind: Option<u16>, summary: RequestSummary) -> PendingApproval {
        PendingApproval {
            id: ApprovalId("00".into()),
            key_id: KeyId(1),
            client: Keys::generate().public_key(),
            metadata: ClientMetadata::default(),
            request_id: "r".into(),
            method,
            kind,
            summary,
            created_at: Timestamp::from_secs(0),
            expires_at: Timestamp::from_secs(60),
            status: ApprovalStatus::Pending,
        }
    }

    #[test]
    fn sign_event_is_named_on_one_line() {
        let a = approval(
            Method::SignEvent,
            Some(0),
            RequestSummary::SignEvent {
                kind: 0,
                content: "{\"name\":\"x\"}\nmore".into(),
                tags: vec![vec!["p".into(), "ab".into()]],
                created_at: Some(7),
            },
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
    fn summaries_are_stored_as_tagged_json() {
        let summary = RequestSummary::SignEvent {
            kind: 1,
            content: "gm".into(),
            tags: vec![vec!["t".into(), "5".into()]],
            created_at: None,
        };
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "sign_event", "kind": 1, "content": "gm", "tags": [["t", "5"]], "created_at": null})
        );
        assert_eq!(
            serde_json::from_value::<RequestSummary>(json).unwrap(),
            summary
        );
    }

    #[test]
    fn other_methods_and_labels() {
        let peer =
            PublicKey::from_hex(&"ab".repeat(32)).unwrap_or_else(|_| Keys::generate().public_key());
        let hex = peer.to_hex();
        let a = approval(
            Method::Nip44Decrypt,
            None,
            RequestSummary::Decrypt {
                peer,
                ciphertext_len: 88,
            },
        );
        assert_eq!(
            one_line(&a),
            format!("nip44_decrypt 88 bytes from {}…", &hex[..12])
        );
        let a = approval(Method::GetPublicKey, None, RequestSummary::Other);
        assert_eq!(one_line(&a), "get_public_key");
        assert_eq!(kind_label(1), "1 (Short text note)");
        assert_eq!(kind_label(4242), "4242");
        let named = ClientMetadata {
            name: Some("  Damus ".into()),
            url: None,
            image: None,
        };
        assert_eq!(app_label(&named, &hex), "Damus");
        assert_eq!(
            app_label(&ClientMetadata::default(), &hex),
            format!("app {}…", &hex[..12])
        );
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("a\u{1b}[31mb", 10), "a [31mb");
    }
}
