//! Pending approvals: requests no rule covers, waiting for the user.
//!
//! The record carries what the user needs to decide (app, key, method, a
//! readable summary of the request) and, for `sign_event`, the complete
//! unsigned event with its id: what the user approves is exactly what is
//! signed. The rest of the request stays in the running bunker's memory; an
//! approval outlives neither its expiry nor a restart.

use nip46::nostr::prelude::{PublicKey, Timestamp, UnsignedEvent};
use nip46::{ClientMetadata, Method};
use serde::{Deserialize, Serialize};

use crate::key::KeyId;

/// Random id of an approval (hex), used in URLs and CLI commands.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ApprovalId(pub String);

impl ApprovalId {
    /// An id from 16 random bytes.
    pub fn from_entropy(bytes: [u8; 16]) -> Self {
        ApprovalId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl std::fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long a user's answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scope")]
pub enum DecisionScope {
    /// Only this request.
    Once,
    /// This method (this kind, for `sign_event`) for this app, from now on,
    /// optionally until a time.
    Always {
        /// End of the rule; `None` = until revoked.
        until: Option<Timestamp>,
    },
}

/// The user's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// Allow (true) or deny (false).
    pub allow: bool,
    /// Once or always.
    pub scope: DecisionScope,
}

/// One person's answer to a held request: who (an operator's name, or
/// [`crate::operator::OWNER`]) and what. A request whose kind needs a
/// quorum is released once enough distinct people allowed it; one deny
/// refuses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Who answered.
    pub by: String,
    /// The answer.
    pub decision: ApprovalDecision,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ApprovalStatus {
    /// Waiting for the user.
    Pending,
    /// The user answered (the bunker may not have acted on it yet).
    Decided(ApprovalDecision),
    /// Nobody answered in time; the client got `unauthorized`.
    Expired,
    /// The bunker acted on the decision.
    Done(ApprovalDecision),
}

/// What a held request asks, as the engine summarized it for the person
/// deciding. Written once by the engine, read by every interface (dashboard,
/// terminal prompt, `rampart approvals`); stored as tagged JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum RequestSummary {
    /// `sign_event`: the event the app wants signed.
    SignEvent {
        /// Its kind.
        kind: u16,
        /// The content, shortened to [`RequestSummary::MAX_TEXT`] characters.
        content: String,
        /// Characters of the content not in `content`.
        #[serde(default)]
        content_hidden: u64,
        /// The first [`RequestSummary::MAX_TAGS`] tags, each value shortened
        /// to [`RequestSummary::MAX_TAG_VALUE`] characters (a value cut
        /// short ends in `…`).
        tags: Vec<Vec<String>>,
        /// Tags not in `tags`.
        #[serde(default)]
        tags_hidden: u64,
        /// The time the app asked for, if any (unix seconds).
        created_at: Option<u64>,
    },
    /// Encryption to a third party.
    Encrypt {
        /// The third party.
        peer: PublicKey,
        /// The text to encrypt, shortened to [`RequestSummary::MAX_TEXT`] characters.
        plaintext: String,
        /// Characters of the text not in `plaintext`.
        #[serde(default)]
        plaintext_hidden: u64,
    },
    /// Decryption from a third party.
    Decrypt {
        /// The third party.
        peer: PublicKey,
        /// Length of the ciphertext.
        ciphertext_len: u64,
    },
    /// Anything else: the method says it all.
    Other,
}

impl RequestSummary {
    /// Characters of content or plaintext a summary keeps.
    pub const MAX_TEXT: usize = 2000;
    /// Tags a summary keeps.
    pub const MAX_TAGS: usize = 32;
    /// Characters of one tag value a summary keeps.
    pub const MAX_TAG_VALUE: usize = 200;
    /// Values of one tag a summary keeps (then one `…(+N values)`).
    pub const MAX_TAG_VALUES: usize = 8;
}

/// A request waiting for the user. Its `Debug` leaves out what the request
/// carries (content, plaintext): it says what it is, not what it says.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingApproval {
    /// Random id.
    pub id: ApprovalId,
    /// The user key asked for.
    pub key_id: KeyId,
    /// The client asking.
    pub client: PublicKey,
    /// The app's claimed metadata (unverified).
    pub metadata: ClientMetadata,
    /// The NIP-46 request id (the reply will carry it).
    pub request_id: String,
    /// The method.
    pub method: Method,
    /// Kind, for `sign_event`.
    pub kind: Option<u16>,
    /// What the request asks, for the person deciding (bounded in size;
    /// what it shortens it says).
    pub summary: RequestSummary,
    /// For `sign_event`: the complete event that is signed if allowed, its
    /// `created_at` fixed when the request was held and its `id` computed.
    pub event: Option<UnsignedEvent>,
    /// When asked.
    pub created_at: Timestamp,
    /// When the client gets `unauthorized` if nobody answers.
    pub expires_at: Timestamp,
    /// Status.
    pub status: ApprovalStatus,
    /// The answers given so far, oldest first (a request needing a quorum
    /// waits with some allows recorded; see [`Vote`]).
    pub votes: Vec<Vote>,
}

impl std::fmt::Debug for PendingApproval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingApproval")
            .field("id", &self.id)
            .field("key_id", &self.key_id)
            .field("client", &self.client)
            .field("request_id", &self.request_id)
            .field("method", &self.method)
            .field("kind", &self.kind)
            .field("event_id", &self.event.as_ref().and_then(|e| e.id))
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("status", &self.status)
            .field("votes", &self.votes)
            .finish_non_exhaustive()
    }
}
