//! The writes of the running bunker: [`Change`]s, applied in batches, each
//! batch one transaction.

use nip46::nostr::prelude::{PublicKey, Timestamp};

use crate::approval::{ApprovalId, ApprovalStatus, PendingApproval, Vote};
use crate::audit::AuditEntry;
use crate::key::KeyId;
use crate::relays::ServedRelays;
use crate::replica::{HeldRequest, SealedAnswer};
use crate::session::{Rule, Session};
use crate::token::TokenId;

/// One write of the running bunker. A batch of changes is one transaction.
#[derive(Debug, Clone)]
pub enum Change {
    /// Append an audit row: the backend gives it the next `seq` and chains
    /// its hash to the previous row's ([`crate::chain`]).
    Audit(AuditEntry),
    /// Mark a token used by `client`.
    ///
    /// Fails with [`StoreError::AlreadyUsed`] if the token was used already
    /// and with [`StoreError::NotFound`] if it does not exist, failing the
    /// whole batch: this is the single-use guarantee across processes.
    ConsumeToken {
        /// The token.
        id: TokenId,
        /// Who used it.
        client: PublicKey,
        /// When.
        at: Timestamp,
    },
    /// An unused token stops working at `at` (its expiry becomes the earlier
    /// of its own and `at`); a used one, or a missing one, is left as is.
    RevokeToken {
        /// The token.
        id: TokenId,
        /// From when it no longer works.
        at: Timestamp,
    },
    /// Insert or replace the session for (key, client), `revision` as given
    /// (the writer increments it). An unknown key is [`StoreError::NotFound`].
    PutSession(Session),
    /// Add rules to a stored session, each replacing a stored rule for the
    /// same permission, and add one to its `revision`; every other rule and
    /// field stays as stored (a dashboard edit the bunker has not seen yet
    /// is kept, not overwritten). A missing session is not an error.
    AddRules {
        /// The key.
        key_id: KeyId,
        /// The client.
        client: PublicKey,
        /// The rules to set.
        rules: Vec<Rule>,
    },
    /// Remove the stored session's rules for these permissions (the app is
    /// asked again) and add one to its `revision`; every other rule and field
    /// stays as stored. A missing session is not an error.
    RemoveRules {
        /// The key.
        key_id: KeyId,
        /// The client.
        client: PublicKey,
        /// Whose rules go.
        permissions: Vec<nip46::Permission>,
    },
    /// The `connect` reply of a nostrconnect session was sent: clear its
    /// `connect_reply` and add one to its `revision`. A missing session is
    /// not an error.
    ClearConnectReply {
        /// The key.
        key_id: KeyId,
        /// The client.
        client: PublicKey,
    },
    /// Record use of a session: `last_used_at` becomes the later of the
    /// stored value and `at`, `requests` is added to the count; `revision`
    /// stays (usage is not a change of the session). A missing session
    /// (removed meanwhile) is not an error.
    TouchSession {
        /// The key.
        key_id: KeyId,
        /// The client.
        client: PublicKey,
        /// When.
        at: Timestamp,
        /// Requests to add to the count.
        requests: u64,
    },
    /// Revoke the session for (key, client) (also `logout`) and add one to
    /// its `revision`. A session revoked already keeps its first revocation
    /// time; a missing session is not an error.
    RevokeSession {
        /// The key.
        key_id: KeyId,
        /// The client.
        client: PublicKey,
        /// When.
        at: Timestamp,
    },
    /// Add a pending approval. A taken id is [`StoreError::Duplicate`], an
    /// unknown key [`StoreError::NotFound`].
    PutApproval(PendingApproval),
    /// Record someone's answer to a request still waiting (from another
    /// process: the CLI, another replica's dashboard), for the bunker
    /// holding it to apply on its next reload: the vote is added to a
    /// `pending` approval's votes (once per person and answer: the same
    /// again is kept once, not an error); any other (answered, expired, missing)
    /// is [`StoreError::NotFound`], so a decision never overwrites an
    /// answer.
    DecideApproval {
        /// The approval.
        id: ApprovalId,
        /// Who answered what.
        vote: Vote,
    },
    /// The bunker holding a request counted a vote that did not settle it
    /// (a quorum is still short): add it to the approval's votes, so every
    /// dashboard shows who allowed it so far. An approval that is no longer
    /// pending, or missing, is left as is (not an error).
    NoteVote {
        /// The approval.
        id: ApprovalId,
        /// Who allowed it.
        vote: Vote,
    },
    /// Set how many distinct people must allow a held request for a
    /// sensitive kind of a key (every key when `key_id` is `None`). An
    /// unknown key is [`StoreError::NotFound`].
    SetQuorum {
        /// The key, or every key.
        key_id: Option<KeyId>,
        /// At least 1.
        quorum: u32,
    },
    /// Change an approval's status. A missing approval (its key removed
    /// meanwhile) is not an error. A final status (answered, expired) also
    /// ends its hold ([`Change::HoldRequest`]): nobody adopts it any more.
    SetApprovalStatus {
        /// The approval.
        id: ApprovalId,
        /// Its new status.
        status: ApprovalStatus,
    },
    /// Retention: delete the audit rows older than `before` from the start
    /// of the log, up to the first row that is not; the last one deleted
    /// becomes the chain's checkpoint, so what stays still verifies.
    PruneAudit {
        /// Rows before this time go.
        before: Timestamp,
    },
    /// Set the kinds a key always asks to sign (`None`: the bunker's
    /// default set). An unknown key is [`StoreError::NotFound`].
    SetSensitiveKinds {
        /// The key.
        key_id: KeyId,
        /// The kinds, or the default.
        kinds: Option<Vec<u16>>,
    },
    /// Lock a key (`locked_at` set) or unlock it (`None`); every key when
    /// `key_id` is `None`. Locking a locked key keeps its first lock time;
    /// an unknown key is [`StoreError::NotFound`].
    SetKeyLock {
        /// The key, or every key.
        key_id: Option<KeyId>,
        /// Locked since then, or unlocked.
        locked_at: Option<Timestamp>,
    },
    /// Record the relays the bunker serves on, replacing the earlier record.
    RecordServedRelays(ServedRelays),
    /// A replica answered a request event: claim the event and keep the
    /// sealed answer. A claim held by another replica is
    /// [`StoreError::Claimed`], failing the batch (so the answer is never
    /// sent twice); one this replica took at a takeover is filled in.
    Answer(SealedAnswer),
    /// A replica holds a request for the user: who, and the request event
    /// (to be adopted by a survivor if it dies). The approval is in the
    /// same batch; an unknown one is [`StoreError::NotFound`].
    HoldRequest(HeldRequest),
}

impl Change {
    /// Whether the change alters what a running bunker mirrors (keys,
    /// tokens, sessions, approvals): other processes must reload after it.
    /// Audit rows, answers and usage counters do not.
    pub fn is_mirrored(&self) -> bool {
        !matches!(
            self,
            Change::Audit(_)
                | Change::PruneAudit { .. }
                | Change::Answer(_)
                | Change::HoldRequest(_)
                | Change::TouchSession { .. }
        )
    }
}
