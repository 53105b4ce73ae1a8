//! Held requests described for a person: kind names, what an event does,
//! and one-line summaries.
//!
//! The dashboard, the terminal prompt and `rampart approvals list` all show
//! the same words for the same request, so they all read them from here.

use std::borrow::Cow;

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

/// One line for a person, starting with what matters most — for signing,
/// the content: `"gm" · sign_event kind 1 (Short text note), 2 tags`.
/// What it shortens it says, with the count of hidden characters.
pub fn one_line(approval: &PendingApproval) -> String {
    let method = approval.method.as_str();
    match &approval.summary {
        RequestSummary::SignEvent {
            kind,
            content,
            content_hidden,
            tags,
            tags_hidden,
            ..
        } => {
            let kind = *kind;
            let mut line = String::new();
            let content = content.trim();
            if !content.is_empty() || *content_hidden > 0 {
                line.push_str(&format!(
                    "\"{}\" · ",
                    clip_counted(content, 60, *content_hidden)
                ));
            }
            line.push_str(&format!("{method} kind {}", kind_label(kind)));
            let tag_count = tags.len() as u64 + tags_hidden;
            if tag_count > 0 {
                line.push_str(&format!(
                    ", {tag_count} tag{}",
                    if tag_count == 1 { "" } else { "s" }
                ));
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

/// At most `max` characters on one line: control characters (newlines
/// included) become spaces, and a cut says how many characters it hid.
pub fn clip(text: &str, max: usize) -> String {
    clip_counted(text, max, 0)
}

/// [`clip`], where `already_hidden` characters were cut before.
fn clip_counted(text: &str, max: usize, already_hidden: u64) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_control() || is_bidi_control(c) {
                ' '
            } else {
                c
            }
        })
        .collect();
    let total = clean.chars().count();
    if total <= max && already_hidden == 0 {
        return clean;
    }
    let kept: String = clean.chars().take(max).collect();
    let hidden = (total.saturating_sub(max)) as u64 + already_hidden;
    format!("{kept}…(+{hidden})")
}

/// Characters that reorder text on a terminal or a page (Unicode bidi
/// controls): an app could make "Allow" read as something else.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// JSON text made safe for a terminal and still the same JSON: characters
/// `serde_json` leaves as they are but a terminal acts on (DEL, C1 controls,
/// bidi controls) become `\uXXXX` escapes (every other control character is
/// escaped by JSON already).
pub fn json_terminal_safe(json: &str) -> Cow<'_, str> {
    // C0 controls are escaped by JSON inside strings; outside them they are
    // layout (a pretty-printed document's newlines) and stay.
    let acts = |c: char| (c.is_control() && u32::from(c) >= 0x7f) || is_bidi_control(c);
    if !json.chars().any(acts) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if acts(c) {
            // Outside strings JSON has no such characters, and inside them
            // the escape means the same character.
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Text from a peer, safe to print on a terminal: control characters
/// (escape sequences, carriage returns, …) and bidi controls are shown
/// escaped (`\u{1b}`), everything else as is.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() || is_bidi_control(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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
            event: None,
            created_at: Timestamp::from_secs(0),
            expires_at: Timestamp::from_secs(60),
            status: ApprovalStatus::Pending,
            votes: Vec::new(),
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
                content_hidden: 0,
                tags: vec![vec!["p".into(), "ab".into()]],
                tags_hidden: 0,
                created_at: Some(7),
            },
        );
        let line = one_line(&a);
        assert!(
            line.starts_with(
                "\"{\"name\":\"x\"} more\" · sign_event kind 0 (Profile metadata), 1 tag"
            ),
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
            content_hidden: 0,
            tags: vec![vec!["t".into(), "5".into()]],
            tags_hidden: 0,
            created_at: None,
        };
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "sign_event", "kind": 1, "content": "gm", "content_hidden": 0,
                "tags": [["t", "5"]], "tags_hidden": 0, "created_at": null})
        );
        assert_eq!(
            serde_json::from_value::<RequestSummary>(json).unwrap(),
            summary
        );
        // Rows written before the hidden counts existed read back as 0.
        let old = serde_json::json!({"type": "sign_event", "kind": 1, "content": "gm", "tags": [["t", "5"]], "created_at": null});
        assert_eq!(
            serde_json::from_value::<RequestSummary>(old).unwrap(),
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
        assert_eq!(clip("abcdef", 4), "abcd…(+2)");
        assert_eq!(clip("a\u{1b}[31mb", 10), "a [31mb");
        assert_eq!(clip_counted("abc", 60, 1234), "abc…(+1234)");
        assert_eq!(terminal_safe("plain"), "plain");
        let json = serde_json::json!({"name": "a\u{7f}b\u{85}c\u{202e}d\u{1b}"}).to_string();
        let safe = json_terminal_safe(&json);
        assert!(
            !safe.chars().any(|c| c.is_control() || is_bidi_control(c)),
            "{safe:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(
            back["name"], "a\u{7f}b\u{85}c\u{202e}d\u{1b}",
            "the same JSON"
        );
        assert_eq!(
            terminal_safe("a\u{1b}[2Jb\rc\u{202e}d"),
            "a\\u{1b}[2Jb\\u{d}c\\u{202e}d"
        );
    }
}
