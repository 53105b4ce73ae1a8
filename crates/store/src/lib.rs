//! What Rampart keeps: user keys (encrypted), connection tokens, sessions and
//! their rules, pending approvals and the audit log, behind one [`Store`] trait.
//!
//! This crate is the model only: types, the [`Change`]s the running bunker
//! writes, the [`Store`] trait and the group-commit [`writer`] (which works on
//! any backend). Backends live in their own crates (`rampart-store-sqlite`,
//! the default) and each passes the same shared test suite (`suite`, behind
//! the `testing` feature), so the engine never links a database driver.

pub mod approval;
pub mod audit;
pub mod key;
pub mod session;
#[cfg(feature = "testing")]
pub mod suite;
pub mod token;
pub mod writer;

pub use approval::{
    ApprovalDecision, ApprovalId, ApprovalStatus, DecisionScope, PendingApproval, RequestSummary,
};
pub use audit::{AuditDecision, AuditEntry, AuditQuery};
pub use key::{KeyId, NewKey, StoredKey};
pub use session::{Rule, RuleEffect, Session, SessionOrigin};
pub use token::{ConnectionToken, NewToken, SecretHash, TokenId};
pub use writer::{CommitJob, StoreWriter};

use nip46::nostr::prelude::{EventId, PublicKey, Timestamp};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file was written by a newer Rampart.
    #[error(
        "the database schema is version {found}, newer than this binary knows ({known}); upgrade Rampart"
    )]
    SchemaTooNew {
        /// Version found in the file.
        found: i64,
        /// Newest version this binary knows.
        known: i64,
    },
    /// A unique name is taken.
    #[error("{0} already exists")]
    Duplicate(String),
    /// A named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A single-use connection token was consumed already (perhaps by
    /// another process sharing the database).
    #[error("{0} was already used; connection secrets work once, mint a new one")]
    AlreadyUsed(String),
    /// A stored value could not be read back (corruption or manual edits).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(String),
}

/// One write of the running bunker. A batch of changes is one transaction.
#[derive(Debug, Clone)]
pub enum Change {
    /// Append an audit row.
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
    /// Insert or replace the session for (key, client), `revision` as given
    /// (the writer increments it). An unknown key is [`StoreError::NotFound`].
    PutSession(Session),
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
    /// Change an approval's status. A missing approval (its key removed
    /// meanwhile) is not an error.
    SetApprovalStatus {
        /// The approval.
        id: ApprovalId,
        /// Its new status.
        status: ApprovalStatus,
    },
}

/// Persistent state. Implementations are used from one thread at a time.
pub trait Store: Send {
    /// Add a user key; a duplicate name is [`StoreError::Duplicate`].
    fn add_key(&mut self, key: &NewKey) -> Result<KeyId, StoreError>;
    /// Every key, oldest first.
    fn keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Remove a key by name with its tokens, sessions and approvals (audit rows stay).
    fn remove_key(&mut self, name: &str) -> Result<(), StoreError>;

    /// Store a minted token.
    fn add_token(&mut self, token: &NewToken) -> Result<TokenId, StoreError>;
    /// Every token, used and expired ones included.
    fn tokens(&self) -> Result<Vec<ConnectionToken>, StoreError>;

    /// Every session, revoked ones included.
    fn sessions(&self) -> Result<Vec<Session>, StoreError>;

    /// Every approval record, newest first.
    fn approvals(&self) -> Result<Vec<PendingApproval>, StoreError>;

    /// Audit rows matching the query, newest first.
    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Ids of request events audited at or after `since` (to refuse replays
    /// across a restart).
    fn audited_event_ids(&self, since: Timestamp) -> Result<Vec<EventId>, StoreError>;

    /// Apply a batch of changes in one transaction: all or nothing.
    fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError>;

    /// A number that changes when another process has written to the store
    /// since the last call (SQLite's `data_version`), so a running bunker
    /// notices CLI edits. Writes through this same store do not change it.
    fn external_version(&mut self) -> Result<u64, StoreError>;
}
