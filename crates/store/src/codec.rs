//! How values without a column type of their own are written into any
//! backend: session rules and relay lists as JSON, origins as words. One
//! place, so every backend stores (and reads back) the same text.

use nip46::Permission;
use nip46::nostr::prelude::{RelayUrl, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::session::{Rule, RuleEffect, SessionOrigin};

/// A rule as stored.
#[derive(Serialize, Deserialize)]
struct StoredRule {
    permission: String,
    effect: RuleEffect,
    expires_at: Option<u64>,
}

/// Text a peer chose (a request id, a method name), as every backend can
/// keep it: NUL, which PostgreSQL's text refuses, becomes U+FFFD.
pub fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Any value as JSON text.
pub fn to_json<T: Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Database(format!("cannot encode {what} as JSON: {e}")))
}

/// Session rules as JSON.
pub fn rules_to_json(rules: &[Rule]) -> Result<String, StoreError> {
    let stored: Vec<StoredRule> = rules
        .iter()
        .map(|r| StoredRule {
            permission: r.permission.to_string(),
            effect: r.effect,
            expires_at: r.expires_at.map(|t| t.as_secs()),
        })
        .collect();
    to_json(&stored, "session rules")
}

/// Session rules from JSON; the error says what is wrong (never the value).
pub fn rules_from_json(text: &str) -> Result<Vec<Rule>, String> {
    let stored: Vec<StoredRule> =
        serde_json::from_str(text).map_err(|e| format!("bad JSON ({e})"))?;
    stored
        .into_iter()
        .map(|r| {
            let permission: Permission = r.permission.parse().map_err(|e| format!("{e}"))?;
            Ok(Rule {
                permission,
                effect: r.effect,
                expires_at: r.expires_at.map(Timestamp::from_secs),
            })
        })
        .collect()
}

/// Relay URLs as a JSON list.
pub fn relays_to_json(relays: &[RelayUrl]) -> Result<String, StoreError> {
    let urls: Vec<&str> = relays.iter().map(RelayUrl::as_str).collect();
    to_json(&urls, "relay URLs")
}

/// Relay URLs from a JSON list.
pub fn relays_from_json(text: &str) -> Result<Vec<RelayUrl>, String> {
    let urls: Vec<String> = serde_json::from_str(text).map_err(|e| format!("bad JSON ({e})"))?;
    urls.iter()
        .map(|u| RelayUrl::parse(u).map_err(|e| e.to_string()))
        .collect()
}

/// A session origin from its word.
pub fn origin_from_str(text: &str) -> Option<SessionOrigin> {
    [SessionOrigin::Bunker, SessionOrigin::NostrConnect]
        .into_iter()
        .find(|o| o.as_str() == text)
}

/// Event kinds as stored: `0,3,5` (empty: none).
pub fn kinds_to_text(kinds: &[u16]) -> String {
    kinds
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parse [`kinds_to_text`]'s form.
pub fn kinds_from_text(text: &str) -> Result<Vec<u16>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u16>()
                .map_err(|_| format!("`{s}` is not an event kind"))
        })
        .collect()
}
