//! Operators: the named people who use the dashboard, each with a role and
//! the keys it covers, and who a dashboard login belongs to.
//!
//! The store's owner — whoever holds the data directory and the passphrase:
//! the terminal prompt, the CLI, `rampart dashboard login` — is not a row
//! here; it acts under the reserved name [`OWNER`], which no operator can
//! take (operator names never start with `@`).

use nip46::nostr::prelude::Timestamp;
use serde::{Deserialize, Serialize};

use crate::key::KeyId;

/// The name the store's owner acts under (terminal, CLI, the owner's
/// dashboard login link): in votes on held requests and in audit rows.
pub const OWNER: &str = "@owner";

/// Longest operator name.
pub const MAX_NAME: usize = 64;

/// Store-assigned id of an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OperatorId(pub i64);

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything the dashboard does, for every key.
    Owner,
    /// Decide held requests, manage sessions and mint tokens, for its keys.
    Approver,
    /// Read the audit log and the sessions of its keys; change nothing.
    Auditor,
}

impl Role {
    /// Stored (and typed) name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
        }
    }

    /// Parse a stored or typed name.
    pub fn parse(text: &str) -> Option<Self> {
        [Role::Owner, Role::Approver, Role::Auditor]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The keys an operator covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyScope {
    /// Every key, those added later included.
    All,
    /// These keys (a key removed leaves the list).
    Keys(Vec<KeyId>),
}

impl KeyScope {
    /// Whether the scope covers `key`.
    pub fn covers(&self, key: KeyId) -> bool {
        match self {
            KeyScope::All => true,
            KeyScope::Keys(keys) => keys.contains(&key),
        }
    }
}

/// An operator as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Store id.
    pub id: OperatorId,
    /// Unique name ([`check_name`]).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Which keys. An owner covers every key whatever is stored here.
    pub keys: KeyScope,
    /// When added.
    pub created_at: Timestamp,
}

impl Operator {
    /// Whether this operator's role and keys cover `key`.
    pub fn covers(&self, key: KeyId) -> bool {
        self.role == Role::Owner || self.keys.covers(key)
    }
}

/// An operator to be stored.
#[derive(Debug, Clone)]
pub struct NewOperator {
    /// Unique name ([`check_name`]).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Which keys.
    pub keys: KeyScope,
    /// When added.
    pub created_at: Timestamp,
}

/// Why a name cannot be an operator's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorNameError {
    /// Empty or longer than [`MAX_NAME`].
    #[error("an operator name is 1 to {MAX_NAME} characters")]
    Length,
    /// A character outside lowercase letters, digits, `.`, `_` and `-`, or
    /// not starting with a letter or digit.
    #[error(
        "an operator name is lowercase letters, digits, `.`, `_` and `-`, starting with a \
         letter or digit"
    )]
    Characters,
    /// `owner`: how the store's owner is shown.
    #[error("`owner` is how the store's owner is shown; choose another name")]
    Reserved,
}

/// Check an operator name: 1–64 of `a-z 0-9 . _ -`, starting with a letter
/// or digit, not `owner` — so never [`OWNER`] nor shown as it, one spelling
/// per person (no `Alice` beside `alice`), and safe in logs, CSV and HTML.
pub fn check_name(name: &str) -> Result<(), OperatorNameError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(OperatorNameError::Length);
    }
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    let starts_plain = name.as_bytes()[0].is_ascii_alphanumeric();
    if !plain || !starts_plain {
        return Err(OperatorNameError::Characters);
    }
    if name == "owner" {
        return Err(OperatorNameError::Reserved);
    }
    Ok(())
}

/// Whom a dashboard login link or session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DashboardUser {
    /// The store's owner (`rampart dashboard login`, the link printed at start).
    Owner,
    /// An operator (`rampart operator add` / `operator login`).
    Operator(OperatorId),
}

impl DashboardUser {
    /// The stored `operator_id` column (NULL for the owner).
    pub fn operator_id(self) -> Option<i64> {
        match self {
            DashboardUser::Owner => None,
            DashboardUser::Operator(id) => Some(id.0),
        }
    }

    /// From the stored `operator_id` column.
    pub fn from_operator_id(id: Option<i64>) -> Self {
        match id {
            None => DashboardUser::Owner,
            Some(id) => DashboardUser::Operator(OperatorId(id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_and_never_the_owner() {
        assert!(check_name("alice").is_ok());
        assert!(check_name("ops-team.1_a").is_ok());
        assert_eq!(check_name(""), Err(OperatorNameError::Length));
        assert_eq!(
            check_name(&"a".repeat(MAX_NAME + 1)),
            Err(OperatorNameError::Length)
        );
        assert_eq!(check_name(OWNER), Err(OperatorNameError::Characters));
        assert_eq!(check_name("-x"), Err(OperatorNameError::Characters));
        assert_eq!(check_name("a b"), Err(OperatorNameError::Characters));
        assert_eq!(check_name("=cmd"), Err(OperatorNameError::Characters));
        assert_eq!(check_name("ålice"), Err(OperatorNameError::Characters));
        assert_eq!(check_name("Alice"), Err(OperatorNameError::Characters));
        assert_eq!(check_name("owner"), Err(OperatorNameError::Reserved));
        assert!(check_name("owner2").is_ok());
    }

    #[test]
    fn scopes_and_roles() {
        let op = |role, keys| Operator {
            id: OperatorId(1),
            name: "a".into(),
            role,
            keys,
            created_at: Timestamp::from_secs(0),
        };
        let two = KeyScope::Keys(vec![KeyId(2)]);
        assert!(op(Role::Approver, two.clone()).covers(KeyId(2)));
        assert!(!op(Role::Approver, two.clone()).covers(KeyId(3)));
        assert!(op(Role::Owner, two).covers(KeyId(3)));
        assert!(op(Role::Auditor, KeyScope::All).covers(KeyId(9)));
        for role in [Role::Owner, Role::Approver, Role::Auditor] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
