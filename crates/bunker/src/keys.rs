//! The operations that need a user's secret key, behind a small interface.
//!
//! The request path only ever calls [`KeyBackend`], so a hardware or remote
//! key store can replace the NIP-49 vault without touching it.

use nip46::nostr::prelude::{Event, PublicKey, UnsignedEvent};
use nip46::{EnvelopeError, Scheme};
use store::KeyId;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No unlocked key with this id.
    #[error("key {0} is not loaded; unlock the vault or check the key id")]
    UnknownKey(KeyId),
    /// The operation itself failed (bad ciphertext, bad peer pubkey, …).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// A decrypt call got ciphertext of the other scheme (NIP-04 for
    /// `nip44_decrypt` or the reverse); call the method that matches it.
    #[error("ciphertext is not {}", .expected.as_str())]
    WrongScheme {
        /// The scheme the method decrypts.
        expected: Scheme,
    },
}

/// The operations that need a user's secret key.
pub trait KeyBackend: Send + Sync {
    /// The user pubkey of a loaded key.
    fn user_pubkey(&self, key: KeyId) -> Option<PublicKey>;
    /// Drop a key (removed from the store): its secret leaves memory, and
    /// every later operation with it fails with [`KeyError::UnknownKey`].
    fn forget(&self, key: KeyId);
    /// Sign an event whose `pubkey` is the user's.
    fn sign_event(
        &self,
        key: KeyId,
        unsigned: UnsignedEvent,
        aux: &[u8; 32],
    ) -> Result<Event, KeyError>;
    /// NIP-04 encrypt to a third party.
    fn nip04_encrypt(
        &self,
        key: KeyId,
        peer: &PublicKey,
        plaintext: &str,
        iv: &[u8; 32],
    ) -> Result<String, KeyError>;
    /// NIP-04 decrypt from a third party.
    fn nip04_decrypt(
        &self,
        key: KeyId,
        peer: &PublicKey,
        ciphertext: &str,
    ) -> Result<String, KeyError>;
    /// NIP-44 encrypt to a third party.
    fn nip44_encrypt(
        &self,
        key: KeyId,
        peer: &PublicKey,
        plaintext: &str,
        nonce: &[u8; 32],
    ) -> Result<String, KeyError>;
    /// NIP-44 decrypt from a third party.
    fn nip44_decrypt(
        &self,
        key: KeyId,
        peer: &PublicKey,
        ciphertext: &str,
    ) -> Result<String, KeyError>;
}
