//! Connection tokens: the single-use secrets inside `bunker://` URIs.
//!
//! Only a SHA-256 of the secret is stored, so a copy of the database does not
//! hand out sessions; candidates are hashed and compared in constant time.

use nip46::nostr::prelude::{PublicKey, Timestamp};
use nip46::{ConnectSecret, PermissionSet};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::key::KeyId;

/// Store-assigned token id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(pub i64);

/// SHA-256 of a connection secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    /// Hash a secret.
    pub fn of(secret: &str) -> Self {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Constant-time equality.
    pub fn ct_matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// A minted token, as stored.
#[derive(Clone)]
pub struct ConnectionToken {
    /// Store id.
    pub id: TokenId,
    /// The user key the token connects to.
    pub key_id: KeyId,
    /// Hash of the secret.
    pub secret_hash: SecretHash,
    /// What a session created with it may do.
    pub grant: PermissionSet,
    /// After this the secret is refused; `None` = never expires.
    pub expires_at: Option<Timestamp>,
    /// When minted.
    pub created_at: Timestamp,
    /// When it was used (a used token is refused).
    pub used_at: Option<Timestamp>,
    /// Which client used it.
    pub used_by: Option<PublicKey>,
    /// Free-text label given at mint time.
    pub label: Option<String>,
}

impl ConnectionToken {
    /// Whether a fresh `connect` may still use it at `now`.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.used_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }
}

/// A token to be stored. The secret itself is returned to the minter once
/// and never stored.
pub struct NewToken {
    /// The user key.
    pub key_id: KeyId,
    /// Hash of the secret.
    pub secret_hash: SecretHash,
    /// The grant.
    pub grant: PermissionSet,
    /// Expiry of the secret.
    pub expires_at: Option<Timestamp>,
    /// Mint time.
    pub created_at: Timestamp,
    /// Optional label.
    pub label: Option<String>,
}

impl NewToken {
    /// A token for `secret` (hashed here).
    pub fn new(
        key_id: KeyId,
        secret: &ConnectSecret,
        grant: PermissionSet,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Self {
        NewToken {
            key_id,
            secret_hash: SecretHash::of(secret.expose()),
            grant,
            expires_at,
            created_at: now,
            label: None,
        }
    }
}
