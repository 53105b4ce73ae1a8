//! Replicas sharing one store: who is alive (heartbeats stamped by the
//! store's clock), and which replica answered which request event (claims,
//! each with the sealed answer, so a survivor can republish an answer its
//! replica committed but died before sending).
//!
//! It also keeps the dashboard's login links and sessions, for the same
//! reason: a link minted on one host must work on any replica.
//!
//! The store only records; deciding who serves what is the bunker's
//! (`bunker::replicas`).

use nip46::nostr::prelude::{EventId, Timestamp};

/// Longest replica name.
pub const MAX_REPLICA_ID_LEN: usize = 64;

/// A replica's name: 1–64 of `A–Z a–z 0–9 . _ : -`, unique among the
/// processes sharing a store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(String);

/// Why a replica name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaIdError {
    /// Empty or longer than [`MAX_REPLICA_ID_LEN`].
    #[error("a replica name has 1 to {MAX_REPLICA_ID_LEN} characters")]
    Length,
    /// A character outside the allowed set.
    #[error("a replica name uses only letters, digits, '.', '_', ':' and '-'")]
    Character,
}

impl ReplicaId {
    /// Parse a name.
    pub fn parse(name: &str) -> Result<Self, ReplicaIdError> {
        if name.is_empty() || name.len() > MAX_REPLICA_ID_LEN {
            return Err(ReplicaIdError::Length);
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
        {
            return Err(ReplicaIdError::Character);
        }
        Ok(ReplicaId(name.to_owned()))
    }

    /// Stands for a holder whose stored name no Rampart would write.
    pub(crate) fn unknown() -> Self {
        ReplicaId(String::from("unknown"))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A replica's last heartbeat, as [`Store::beat`](crate::Store::beat) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaBeat {
    /// The replica.
    pub replica: ReplicaId,
    /// Milliseconds since its last heartbeat, by the store's clock (so
    /// replicas on machines whose clocks disagree still agree on this).
    pub age_ms: u64,
    /// When it (last) started.
    pub started_at: Timestamp,
    /// Which run of it (random per process).
    pub incarnation: String,
}

/// An answer committed with the request it answers: claims the request
/// event for `replica` ([`Change::Answer`](crate::Change::Answer)).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedAnswer {
    /// The request event answered.
    pub request: EventId,
    /// Who answered.
    pub replica: ReplicaId,
    /// The signed kind-24133 answer, as JSON (encrypted content: nothing
    /// secret in clear).
    pub answer: String,
    /// When.
    pub at: Timestamp,
}

impl std::fmt::Debug for SealedAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedAnswer")
            .field("request", &self.request)
            .field("replica", &self.replica)
            .field("answer_bytes", &self.answer.len())
            .finish()
    }
}

/// A request held for the user by a replica ([`Change::HoldRequest`](crate::Change::HoldRequest)).
#[derive(Clone, PartialEq, Eq)]
pub struct HeldRequest {
    /// Its approval.
    pub approval: crate::ApprovalId,
    /// The replica holding it.
    pub holder: ReplicaId,
    /// The request event, as JSON (encrypted content).
    pub request_event: String,
    /// That event's id.
    pub request_event_id: EventId,
}

impl std::fmt::Debug for HeldRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldRequest")
            .field("approval", &self.approval)
            .field("holder", &self.holder)
            .field("request_event_id", &self.request_event_id)
            .finish_non_exhaustive()
    }
}

/// Who holds a request event, as [`Store::claim`](crate::Store::claim) found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This replica does (claimed now, or earlier, and not answered yet).
    Ours,
    /// This replica answered it already (a commit whose acknowledgement was
    /// lost with the connection): publish this answer, never sign again.
    AnsweredHere {
        /// The sealed answer.
        answer: String,
    },
    /// Another replica claimed it first; `answer` is its sealed answer once
    /// committed (`None`: it claimed the request at a takeover and has not
    /// answered yet).
    Theirs {
        /// That replica.
        replica: ReplicaId,
        /// Its answer, if committed.
        answer: Option<String>,
    },
}

/// The dashboard's secrets the store keeps (their SHA-256 digests only),
/// so every replica's dashboard honours them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DashboardSecret {
    /// A one-time login link (`rampart dashboard login`, or printed at start).
    Login,
    /// A logged-in browser's cookie.
    Session,
}

impl DashboardSecret {
    /// The table that keeps this kind.
    pub const fn table(self) -> &'static str {
        match self {
            DashboardSecret::Login => "dashboard_logins",
            DashboardSecret::Session => "dashboard_sessions",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_names_are_short_and_plain() {
        assert!(ReplicaId::parse("host-1.example:a_b").is_ok());
        assert_eq!(ReplicaId::parse(""), Err(ReplicaIdError::Length));
        assert_eq!(
            ReplicaId::parse(&"a".repeat(65)),
            Err(ReplicaIdError::Length)
        );
        assert_eq!(ReplicaId::parse("a b"), Err(ReplicaIdError::Character));
        assert_eq!(ReplicaId::parse("é"), Err(ReplicaIdError::Character));
    }
}
