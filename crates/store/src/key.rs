//! User keys as stored: an id, the public parts in clear, the secrets sealed
//! so that only the vault can open them — wrapped under the vault's
//! key-encryption key ([`VaultParams`]), or, for keys stored before it
//! existed, NIP-49 `ncryptsec` text (rewrapped at the next unlock).

use nip46::nostr::prelude::{PublicKey, Timestamp};
use serde::{Deserialize, Serialize};

/// Store-assigned id of a user key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId(pub i64);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A user key as stored: public parts in clear, secrets sealed.
///
/// Each user key has its own signer (transport) key, so the user's pubkey never
/// authors kind-24133 traffic. Its `Debug` leaves the secrets out.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Store id.
    pub id: KeyId,
    /// Unique human name.
    pub name: String,
    /// The user's pubkey (what `get_public_key` returns).
    pub user_pubkey: PublicKey,
    /// The signer's pubkey (what `bunker://` names, what signs responses).
    pub signer_pubkey: PublicKey,
    /// The user secret key, sealed (stored in the `user_ncryptsec` column).
    pub user_secret: String,
    /// The signer secret key, sealed (stored in `signer_ncryptsec`).
    pub signer_secret: String,
    /// When added.
    pub created_at: Timestamp,
    /// Since when the key is locked (`rampart lock`): every request for it
    /// is refused and nothing is signed with it until it is unlocked.
    pub locked_at: Option<Timestamp>,
    /// The event kinds this key always asks the user to sign, whatever a
    /// session's grant; `None`: the bunker's default set.
    pub sensitive_kinds: Option<Vec<u16>>,
    /// How many distinct people must allow a held request for one of its
    /// sensitive kinds before it is signed (1: anyone who may decide).
    pub quorum: u32,
}

/// A key to be stored. Its `Debug` leaves the secrets out.
#[derive(Clone)]
pub struct NewKey {
    /// Unique human name.
    pub name: String,
    /// User pubkey.
    pub user_pubkey: PublicKey,
    /// Signer pubkey.
    pub signer_pubkey: PublicKey,
    /// User secret, sealed.
    pub user_secret: String,
    /// Signer secret, sealed.
    pub signer_secret: String,
    /// When added.
    pub created_at: Timestamp,
}

impl NewKey {
    /// The key as stored under `id` (what a backend's `keys()` returns once it is added).
    pub fn stored(self, id: KeyId) -> StoredKey {
        StoredKey {
            id,
            name: self.name,
            user_pubkey: self.user_pubkey,
            signer_pubkey: self.signer_pubkey,
            user_secret: self.user_secret,
            signer_secret: self.signer_secret,
            created_at: self.created_at,
            locked_at: None,
            sensitive_kinds: None,
            quorum: 1,
        }
    }
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("user_pubkey", &self.user_pubkey)
            .field("signer_pubkey", &self.signer_pubkey)
            .field("created_at", &self.created_at)
            .field("locked_at", &self.locked_at)
            .field("sensitive_kinds", &self.sensitive_kinds)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("name", &self.name)
            .field("user_pubkey", &self.user_pubkey)
            .field("signer_pubkey", &self.signer_pubkey)
            .finish_non_exhaustive()
    }
}

/// How the vault's key-encryption key is derived from the passphrase
/// (scrypt over this salt at this cost), and a value sealed under it that
/// tells a wrong passphrase from a damaged key. Public: none of it reveals
/// the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultParams {
    /// scrypt salt.
    pub salt: [u8; 32],
    /// scrypt cost (2^log_n rounds).
    pub log_n: u8,
    /// A known value sealed under the key.
    pub check: Vec<u8>,
}

/// A key's secrets sealed again (a new passphrase, or moved from NIP-49 to
/// the key-encryption key). Its `Debug` leaves them out.
pub struct ResealedKey {
    /// The key.
    pub id: KeyId,
    /// The sealed texts it replaces (user, signer): if the store holds
    /// others, the key changed meanwhile and nothing is written.
    pub replaces: (String, String),
    /// The user secret, sealed.
    pub user_secret: String,
    /// The signer secret, sealed.
    pub signer_secret: String,
}

impl std::fmt::Debug for ResealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResealedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
