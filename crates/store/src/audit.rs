//! The audit log: one row for every request the bunker answered or refused.

use nip46::nostr::prelude::{EventId, PublicKey, Timestamp};
use serde::{Deserialize, Serialize};

use crate::key::KeyId;

/// What the bunker decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    /// A rule allowed it.
    Allowed,
    /// The user approved it.
    Approved,
    /// A rule, the user, or the lack of a session refused it.
    Denied,
    /// It waits for the user (an `auth_url` or nothing was sent yet).
    Pending,
    /// The session's rate limit refused it.
    RateLimited,
    /// Its parameters were invalid or its method unknown.
    Invalid,
    /// Not a request: an operator's login or edit (the row's `method` says
    /// which, e.g. `session.revoke`; its `operator` who).
    Action,
}

impl AuditDecision {
    /// Stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allowed => "allowed",
            AuditDecision::Approved => "approved",
            AuditDecision::Denied => "denied",
            AuditDecision::Pending => "pending",
            AuditDecision::RateLimited => "rate_limited",
            AuditDecision::Invalid => "invalid",
            AuditDecision::Action => "action",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            AuditDecision::Allowed,
            AuditDecision::Approved,
            AuditDecision::Denied,
            AuditDecision::Pending,
            AuditDecision::RateLimited,
            AuditDecision::Invalid,
            AuditDecision::Action,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// One audit row: a request the bunker answered or refused, or (decision
/// [`AuditDecision::Action`]) an operator's login or edit, which names no
/// request event and perhaps no client or key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Store-assigned sequence number (0 before it is stored).
    pub seq: i64,
    /// When the bunker decided.
    pub at: Timestamp,
    /// The user key ([`KeyId`] 0 for an action on no key or on every key).
    pub key_id: KeyId,
    /// The client (none for an action on no app).
    pub client: Option<PublicKey>,
    /// The kind-24133 event that carried the request (none for an action).
    pub event_id: Option<EventId>,
    /// That event's own `created_at` (what replay protection keys on; rows
    /// written before it was recorded read back their `at`).
    pub event_created_at: Timestamp,
    /// How many request events the row stands for: 1, or for refusals of
    /// strangers counted together, how many were refused (the row names the
    /// last one).
    pub events: u32,
    /// The NIP-46 request id; for an action, what it was about (a key's
    /// name, the rules set).
    pub request_id: String,
    /// Method name as sent (unknown ones included, truncated).
    pub method: String,
    /// Kind, for `sign_event`.
    pub kind: Option<u16>,
    /// The decision.
    pub decision: AuditDecision,
    /// What was sent back: `ok`, `auth_url`, or an error code.
    pub outcome: String,
    /// For a signed event: its id, so a signature can be traced to its row.
    pub signed_event_id: Option<EventId>,
    /// Who: for a held request, the people whose answers released or
    /// refused it (comma-separated operator names, or
    /// [`crate::operator::OWNER`]); for an action, its operator. None for
    /// what a rule decided.
    pub operator: Option<String>,
}

/// A request event the bunker processed, as replay protection remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditedEvent {
    /// The event id.
    pub event_id: EventId,
    /// Its author (the client).
    pub client: PublicKey,
    /// Its `created_at`.
    pub created_at: Timestamp,
}

/// A filter over the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Rows at or after this time.
    pub since: Option<Timestamp>,
    /// Rows before this time.
    pub until: Option<Timestamp>,
    /// Only this key.
    pub key_id: Option<KeyId>,
    /// Only these keys (an operator's scope; empty: no rows).
    pub key_ids: Option<Vec<KeyId>>,
    /// Only this client.
    pub client: Option<PublicKey>,
    /// Only this method.
    pub method: Option<String>,
    /// Only this decision.
    pub decision: Option<AuditDecision>,
    /// At most this many rows (newest first); `None` = all.
    pub limit: Option<u32>,
}
