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
pub mod backend;
pub mod change;
pub mod error;
pub mod key;
pub mod session;
#[cfg(feature = "testing")]
pub mod suite;
pub mod token;
pub mod writer;

pub use approval::{
    ApprovalDecision, ApprovalId, ApprovalStatus, DecisionScope, PendingApproval, RequestSummary,
};
pub use audit::{AuditDecision, AuditEntry, AuditQuery, AuditedEvent};
pub use backend::Store;
pub use change::Change;
pub use error::StoreError;
pub use key::{KeyId, NewKey, StoredKey};
pub use session::{Rule, RuleEffect, Session, SessionOrigin};
pub use token::{ConnectionToken, NewToken, SecretHash, TokenId};
pub use writer::{CommitJob, StoreWriter};
