//! User keys as stored: an id, the public parts in clear, the secrets as
//! NIP-49 `ncryptsec` text that only the vault can open.

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

/// A user key as stored: public parts in clear, secrets as NIP-49 `ncryptsec`.
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
    /// The user secret key, NIP-49 encrypted.
    pub user_ncryptsec: String,
    /// The signer secret key, NIP-49 encrypted.
    pub signer_ncryptsec: String,
    /// When added.
    pub created_at: Timestamp,
    /// Since when the key is locked (`rampart lock`): every request for it
    /// is refused and nothing is signed with it until it is unlocked.
    pub locked_at: Option<Timestamp>,
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
    /// User secret, NIP-49.
    pub user_ncryptsec: String,
    /// Signer secret, NIP-49.
    pub signer_ncryptsec: String,
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
            user_ncryptsec: self.user_ncryptsec,
            signer_ncryptsec: self.signer_ncryptsec,
            created_at: self.created_at,
            locked_at: None,
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
