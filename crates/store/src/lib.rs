//! What Rampart keeps: user keys (encrypted), connection tokens, sessions and
//! their rules, pending approvals, the audit log, the relays it serves on and
//! the replicas sharing it, behind one [`Store`] trait.
//!
//! This crate is the model only: types, the [`Change`]s the running bunker
//! writes, the [`Store`] trait and the group-commit [`writer`] (which works on
//! any backend). Backends live in their own crates (`rampart-store-sqlite`,
//! the default) and each passes the same shared test suite (`suite`, behind
//! the `testing` feature), so the engine never links a database driver.

pub mod approval;
pub mod audit;
pub mod backend;
pub mod chain;
pub mod change;
pub mod codec;
pub mod error;
pub mod key;
pub mod operator;
pub mod relays;
pub mod replica;
pub mod rows;
pub mod session;
#[cfg(feature = "testing")]
pub mod suite;
pub mod token;
pub mod writer;

pub use approval::{
    ApprovalDecision, ApprovalId, ApprovalStatus, DecisionScope, PendingApproval, RequestSummary,
    Vote,
};
pub use audit::{AuditDecision, AuditEntry, AuditQuery, AuditedEvent};
pub use backend::Store;
pub use chain::{
    ChainError, ChainPoint, ChainedRow, StoredChainRow, Verified, Verifier, VerifyError,
    verify_store,
};
pub use change::Change;
pub use error::StoreError;
pub use key::{KeyId, NewKey, ResealedKey, StoredKey, VaultParams};
pub use operator::{DashboardUser, KeyScope, NewOperator, OWNER, Operator, OperatorId, Role};
pub use relays::ServedRelays;
pub use replica::{Claim, DashboardSecret, HeldRequest, ReplicaBeat, ReplicaId, SealedAnswer};
pub use session::{Rule, RuleEffect, Session, SessionOrigin};
pub use token::{ConnectionToken, NewToken, SecretHash, TokenId};
pub use writer::{CommitJob, StoreWriter};

#[cfg(test)]
mod tests {
    use nip46::nostr::prelude::{PublicKey, Timestamp};
    use nip46::{Method, PermissionSet};

    use super::*;

    #[test]
    fn debug_output_leaves_secrets_and_plaintext_out() {
        let pk = PublicKey::from_byte_array([2; 32]);
        let t = Timestamp::from_secs(1);
        let key = NewKey {
            name: "alice".into(),
            user_pubkey: pk,
            signer_pubkey: pk,
            user_secret: "ncryptsec1-user-secret".into(),
            signer_secret: "ncryptsec1-signer-secret".into(),
            created_at: t,
        };
        let stored = key.clone().stored(KeyId(1));
        let mut session = Session::new(
            KeyId(1),
            pk,
            &PermissionSet::empty(),
            SessionOrigin::NostrConnect,
            t,
        );
        session.connect_reply = Some("uri-secret".into());
        let approval = PendingApproval {
            id: ApprovalId("a".into()),
            key_id: KeyId(1),
            client: pk,
            metadata: Default::default(),
            request_id: "r".into(),
            method: Method::Nip44Encrypt,
            kind: None,
            summary: RequestSummary::Encrypt {
                peer: pk,
                plaintext: "the private message".into(),
                plaintext_hidden: 0,
            },
            event: None,
            created_at: t,
            expires_at: t,
            status: ApprovalStatus::Pending,
            votes: Vec::new(),
        };
        let shown = format!("{key:?} {stored:?} {session:?} {approval:?}");
        for secret in [
            "ncryptsec1-user-secret",
            "ncryptsec1-signer-secret",
            "uri-secret",
            "the private message",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("alice") && shown.contains("nip44_encrypt")
                || shown.contains("Nip44Encrypt")
        );
    }
}
