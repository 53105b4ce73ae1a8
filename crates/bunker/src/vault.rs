//! The NIP-49 vault: user keys and their signer keys, encrypted at rest under
//! one passphrase, decrypted once at start and held in memory.
//!
//! It is the first [`KeyBackend`]. Secrets live in `nostr`'s `Keys`, which
//! wipe themselves on drop; nothing here derives `Debug` or `Clone`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use nip46::nostr::nips::nip19::{FromBech32, ToBech32};
use nip46::nostr::nips::nip49::{EncryptedSecretKey, KeySecurity};
use nip46::nostr::prelude::{Event, Keys, PublicKey, SecretKey, Timestamp, UnsignedEvent};
use nip46::{Conversation, Scheme, envelope};
use store::{KeyId, NewKey, StoredKey};
use zeroize::Zeroizing;

use crate::keys::{KeyBackend, KeyError};

/// scrypt cost used when encrypting (NIP-49 `log_n`); 2^16 rounds ≈ 0.1–0.2 s.
pub const DEFAULT_LOG_N: u8 = 16;
/// Highest scrypt cost accepted when decrypting (2^22 ≈ 4 GiB would be refused).
pub const MAX_LOG_N: u8 = 20;
/// Conversation keys kept for third-party encryption before the cache is cleared.
const CONVERSATION_CACHE: usize = 4096;

/// The vault passphrase. Wiped on drop; neither `Debug` nor `Clone`.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wrap a passphrase (NFKC normalisation is done by NIP-49 itself).
    pub fn new(passphrase: impl Into<String>) -> Self {
        Passphrase(Zeroizing::new(passphrase.into()))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

/// Why a vault operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The passphrase does not open a stored key.
    #[error("wrong passphrase for key `{0}`")]
    WrongPassphrase(String),
    /// A stored `ncryptsec` is damaged, or its scrypt cost is above the limit.
    #[error("key `{name}` cannot be decrypted: {reason}")]
    Unreadable {
        /// The key name.
        name: String,
        /// Why.
        reason: Unreadable,
    },
    /// The stored pubkey does not match the decrypted secret.
    #[error("key `{0}` is inconsistent: its secret does not match its stored pubkey")]
    Mismatch(String),
    /// Input to import is not an nsec, 64-hex secret or ncryptsec.
    #[error("not a secret key: expected nsec1…, 64 hex characters, or ncryptsec1…")]
    BadSecretInput,
    /// Encryption failed.
    #[error("could not encrypt the key: {0}")]
    Encrypt(#[source] nip46::nostr::error::Error),
    /// A key encrypted at this scrypt cost could never be opened again
    /// (opening refuses costs above the limit); lower `[vault] log_n`.
    #[error(
        "scrypt log_n {0} is above {MAX_LOG_N}: the key could never be opened; lower [vault] log_n"
    )]
    CostTooHigh(u8),
}

/// Why a stored `ncryptsec` cannot be opened at all (before the passphrase).
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// It is not a valid `ncryptsec` string; restore the key from a backup.
    #[error("not a valid ncryptsec ({0})")]
    NotNcryptsec(#[source] nip46::nostr::error::Error),
    /// Its scrypt cost would take too much memory and time to open.
    #[error("scrypt log_n {log_n} is above {MAX_LOG_N}")]
    CostTooHigh {
        /// The cost it states.
        log_n: u8,
    },
}

/// A secret key read from user input.
pub enum SecretInput {
    /// Plain secret (nsec or hex): it has been handled unencrypted.
    Plain(SecretKey),
    /// An `ncryptsec` that still needs its passphrase.
    Encrypted(EncryptedSecretKey),
}

impl SecretInput {
    /// Parse `nsec1…`, 64 hex characters or `ncryptsec1…` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        let text = text.trim();
        if text.starts_with("ncryptsec1") {
            return EncryptedSecretKey::from_bech32(text)
                .map(SecretInput::Encrypted)
                .map_err(|_| VaultError::BadSecretInput);
        }
        SecretKey::parse(text)
            .map(SecretInput::Plain)
            .map_err(|_| VaultError::BadSecretInput)
    }
}

fn encrypt(
    secret: &SecretKey,
    passphrase: &Passphrase,
    log_n: u8,
    security: KeySecurity,
) -> Result<String, VaultError> {
    if log_n > MAX_LOG_N {
        return Err(VaultError::CostTooHigh(log_n));
    }
    EncryptedSecretKey::new(secret, passphrase.expose(), log_n, security)
        .and_then(|e| e.to_bech32())
        .map_err(VaultError::Encrypt)
}

fn decrypt(name: &str, ncryptsec: &str, passphrase: &Passphrase) -> Result<Keys, VaultError> {
    let unreadable = |reason: Unreadable| VaultError::Unreadable {
        name: name.to_owned(),
        reason,
    };
    let encrypted = EncryptedSecretKey::from_bech32(ncryptsec)
        .map_err(|e| unreadable(Unreadable::NotNcryptsec(e)))?;
    if encrypted.log_n() > MAX_LOG_N {
        return Err(unreadable(Unreadable::CostTooHigh {
            log_n: encrypted.log_n(),
        }));
    }
    let secret = encrypted
        .decrypt_with_max_log_n(passphrase.expose(), MAX_LOG_N)
        .map_err(|_| VaultError::WrongPassphrase(name.to_owned()))?;
    Ok(Keys::new(secret))
}

/// Seal a user secret and a freshly generated signer key for storage.
///
/// `security` records whether the user secret was ever handled unencrypted
/// (NIP-49's key-security byte).
pub fn seal_key(
    name: &str,
    user: &SecretKey,
    security: KeySecurity,
    passphrase: &Passphrase,
    log_n: u8,
    now: Timestamp,
) -> Result<NewKey, VaultError> {
    let user_keys = Keys::new(user.clone());
    let signer = Keys::generate();
    Ok(NewKey {
        name: name.to_owned(),
        user_pubkey: user_keys.public_key(),
        signer_pubkey: signer.public_key(),
        user_ncryptsec: encrypt(user, passphrase, log_n, security)?,
        signer_ncryptsec: encrypt(signer.secret_key(), passphrase, log_n, KeySecurity::Medium)?,
        created_at: now,
    })
}

/// Open an imported `ncryptsec` with its own passphrase.
pub fn open_import(
    encrypted: &EncryptedSecretKey,
    passphrase: &Passphrase,
) -> Result<SecretKey, VaultError> {
    encrypted
        .decrypt_with_max_log_n(passphrase.expose(), MAX_LOG_N)
        .map_err(|_| VaultError::WrongPassphrase("import".into()))
}

/// Check the passphrase against a stored key and return its user `ncryptsec`
/// (the only export form).
pub fn export(stored: &StoredKey, passphrase: &Passphrase) -> Result<String, VaultError> {
    let keys = decrypt(&stored.name, &stored.user_ncryptsec, passphrase)?;
    if keys.public_key() != stored.user_pubkey {
        return Err(VaultError::Mismatch(stored.name.clone()));
    }
    Ok(stored.user_ncryptsec.clone())
}

/// One unlocked key pair.
struct Unlocked {
    name: String,
    signer_pubkey: PublicKey,
    user: Keys,
    /// Moved out to the engine by [`Vault::take_signer`].
    signer: Option<Keys>,
}

/// The unlocked keys, usable through [`KeyBackend`].
pub struct Vault {
    /// Behind a lock only so that a key removed from the store can be
    /// dropped ([`KeyBackend::forget`]); reads never wait for each other.
    keys: RwLock<HashMap<KeyId, Arc<Unlocked>>>,
    conversations: Mutex<HashMap<(KeyId, PublicKey), Conversation>>,
}

/// Public facts about one unlocked key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Store id.
    pub id: KeyId,
    /// Name.
    pub name: String,
    /// User pubkey.
    pub user_pubkey: PublicKey,
    /// Signer pubkey.
    pub signer_pubkey: PublicKey,
}

impl Vault {
    /// Decrypt every stored key with the passphrase.
    pub fn unlock(stored: &[StoredKey], passphrase: &Passphrase) -> Result<Vault, VaultError> {
        let mut keys = HashMap::with_capacity(stored.len());
        for s in stored {
            let user = decrypt(&s.name, &s.user_ncryptsec, passphrase)?;
            let signer = decrypt(&s.name, &s.signer_ncryptsec, passphrase)?;
            if user.public_key() != s.user_pubkey || signer.public_key() != s.signer_pubkey {
                return Err(VaultError::Mismatch(s.name.clone()));
            }
            keys.insert(
                s.id,
                Arc::new(Unlocked {
                    name: s.name.clone(),
                    signer_pubkey: s.signer_pubkey,
                    user,
                    signer: Some(signer),
                }),
            );
        }
        Ok(Vault {
            keys: RwLock::new(keys),
            conversations: Mutex::new(HashMap::new()),
        })
    }

    /// The loaded keys, by id.
    pub fn infos(&self) -> Vec<KeyInfo> {
        let mut infos: Vec<KeyInfo> = self
            .read()
            .iter()
            .map(|(id, k)| KeyInfo {
                id: *id,
                name: k.name.clone(),
                user_pubkey: k.user.public_key(),
                signer_pubkey: k.signer_pubkey,
            })
            .collect();
        infos.sort_by_key(|i| i.id);
        infos
    }

    /// Hand the signer (transport) key of `id` to the engine. The vault keeps
    /// no copy it would need: transport keys never serve user operations.
    pub fn take_signer(&mut self, id: KeyId) -> Option<Keys> {
        let keys = self.keys.get_mut().unwrap_or_else(PoisonError::into_inner);
        // Unshared until the vault is handed to the engine (behind an Arc
        // itself, after every signer has been taken).
        Arc::get_mut(keys.get_mut(&id)?)?.signer.take()
    }

    /// A poisoned lock only means a thread panicked while holding it; the
    /// map itself is never left half-written (one insert or remove).
    fn read(&self) -> RwLockReadGuard<'_, HashMap<KeyId, Arc<Unlocked>>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn user(&self, key: KeyId) -> Result<Arc<Unlocked>, KeyError> {
        self.read()
            .get(&key)
            .cloned()
            .ok_or(KeyError::UnknownKey(key))
    }

    fn with_conversation<T>(
        &self,
        key: KeyId,
        peer: &PublicKey,
        f: impl FnOnce(&Keys, &mut Conversation) -> Result<T, nip46::EnvelopeError>,
    ) -> Result<T, KeyError> {
        let unlocked = self.user(key)?;
        let user = &unlocked.user;
        // A poisoned lock only means another thread panicked mid-operation;
        // the cache holds derived keys that are still valid.
        let mut cache = self.conversations.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CONVERSATION_CACHE && !cache.contains_key(&(key, *peer)) {
            cache.clear();
        }
        let conversation = match cache.entry((key, *peer)) {
            Entry::Occupied(cached) => cached.into_mut(),
            Entry::Vacant(slot) => slot.insert(Conversation::new(user, *peer)?),
        };
        Ok(f(user, conversation)?)
    }

    fn decrypt_as(
        &self,
        key: KeyId,
        peer: &PublicKey,
        ciphertext: &str,
        expected: Scheme,
    ) -> Result<String, KeyError> {
        if nip46::Scheme::detect(ciphertext) != expected {
            return Err(KeyError::WrongScheme { expected });
        }
        self.with_conversation(key, peer, |user, c| {
            c.decrypt(user, ciphertext).map(|(_, text)| text)
        })
    }
}

impl KeyBackend for Vault {
    fn user_pubkey(&self, key: KeyId) -> Option<PublicKey> {
        self.read().get(&key).map(|k| k.user.public_key())
    }

    fn forget(&self, key: KeyId) {
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        self.conversations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(k, _), _| *k != key);
    }

    fn sign_event(
        &self,
        key: KeyId,
        unsigned: UnsignedEvent,
        aux: &[u8; 32],
    ) -> Result<Event, KeyError> {
        Ok(envelope::sign(&self.user(key)?.user, unsigned, aux)?)
    }

    fn nip04_encrypt(
        &self,
        key: KeyId,
        peer: &PublicKey,
        plaintext: &str,
        iv: &[u8; 32],
    ) -> Result<String, KeyError> {
        self.with_conversation(key, peer, |user, c| {
            c.encrypt(user, Scheme::Nip04, plaintext, iv)
        })
    }

    fn nip04_decrypt(
        &self,
        key: KeyId,
        peer: &PublicKey,
        ciphertext: &str,
    ) -> Result<String, KeyError> {
        self.decrypt_as(key, peer, ciphertext, Scheme::Nip04)
    }

    fn nip44_encrypt(
        &self,
        key: KeyId,
        peer: &PublicKey,
        plaintext: &str,
        nonce: &[u8; 32],
    ) -> Result<String, KeyError> {
        self.with_conversation(key, peer, |user, c| {
            c.encrypt(user, Scheme::Nip44, plaintext, nonce)
        })
    }

    fn nip44_decrypt(
        &self,
        key: KeyId,
        peer: &PublicKey,
        ciphertext: &str,
    ) -> Result<String, KeyError> {
        self.decrypt_as(key, peer, ciphertext, Scheme::Nip44)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nip46::nostr::nips::{nip04, nip44};

    #[test]
    fn a_cost_that_could_never_be_opened_is_refused() {
        let pass = Passphrase::new("p");
        let user = Keys::generate();
        let err = seal_key(
            "k",
            user.secret_key(),
            KeySecurity::Medium,
            &pass,
            MAX_LOG_N + 1,
            Timestamp::from_secs(1),
        )
        .expect_err("refused");
        assert!(
            matches!(err, VaultError::CostTooHigh(n) if n == MAX_LOG_N + 1),
            "{err}"
        );
    }

    const LOG_N: u8 = 8;

    fn stored(id: i64, new: NewKey) -> StoredKey {
        new.stored(KeyId(id))
    }

    #[test]
    fn seal_unlock_and_use() {
        let pass = Passphrase::new("correct horse");
        let user = Keys::generate();
        let new = seal_key(
            "alice",
            user.secret_key(),
            KeySecurity::Medium,
            &pass,
            LOG_N,
            Timestamp::from_secs(1),
        )
        .unwrap();
        assert_ne!(
            new.user_pubkey, new.signer_pubkey,
            "signer key must differ from user key"
        );
        assert!(new.user_ncryptsec.starts_with("ncryptsec1"));
        let s = stored(1, new);
        let vault = Vault::unlock(std::slice::from_ref(&s), &pass).unwrap();
        assert_eq!(vault.user_pubkey(KeyId(1)), Some(user.public_key()));

        let unsigned = UnsignedEvent::new(
            user.public_key(),
            Timestamp::from_secs(5),
            nip46::nostr::prelude::Kind::TextNote,
            [],
            "hi",
        );
        let ev = vault.sign_event(KeyId(1), unsigned, &[3; 32]).unwrap();
        ev.verify().unwrap();

        let peer = Keys::generate();
        let ct = vault
            .nip44_encrypt(KeyId(1), &peer.public_key(), "secret", &[1; 32])
            .unwrap();
        assert_eq!(
            nip44::decrypt(peer.secret_key(), &user.public_key(), &ct).unwrap(),
            "secret"
        );
        // NIP-44 conversation keys are symmetric: the user can read what it sent.
        assert_eq!(
            vault
                .nip44_decrypt(KeyId(1), &peer.public_key(), &ct)
                .unwrap(),
            "secret"
        );
        let ct4 = nip04::encrypt(peer.secret_key(), &user.public_key(), "old").unwrap();
        assert_eq!(
            vault
                .nip04_decrypt(KeyId(1), &peer.public_key(), &ct4)
                .unwrap(),
            "old"
        );
        assert!(
            vault
                .nip44_decrypt(KeyId(1), &peer.public_key(), &ct4)
                .is_err()
        );
        assert!(matches!(vault.user(KeyId(9)), Err(KeyError::UnknownKey(_))));
    }

    #[test]
    fn wrong_passphrase_is_refused() {
        let pass = Passphrase::new("right");
        let user = Keys::generate();
        let s = stored(
            1,
            seal_key(
                "k",
                user.secret_key(),
                KeySecurity::Unknown,
                &pass,
                LOG_N,
                Timestamp::from_secs(1),
            )
            .unwrap(),
        );
        assert!(matches!(
            Vault::unlock(std::slice::from_ref(&s), &Passphrase::new("wrong")),
            Err(VaultError::WrongPassphrase(_))
        ));
        assert!(matches!(
            export(&s, &Passphrase::new("wrong")),
            Err(VaultError::WrongPassphrase(_))
        ));
        assert_eq!(export(&s, &pass).unwrap(), s.user_ncryptsec);
    }

    #[test]
    fn secret_input_forms() {
        let keys = Keys::generate();
        let hex = keys.secret_key().to_secret_hex();
        let nsec = keys.secret_key().to_bech32().unwrap();
        for text in [hex.as_str(), nsec.as_str()] {
            let SecretInput::Plain(sk) = SecretInput::parse(&format!(" {text}\n")).unwrap() else {
                panic!()
            };
            assert_eq!(Keys::new(sk).public_key(), keys.public_key());
        }
        let enc = encrypt(
            keys.secret_key(),
            &Passphrase::new("p"),
            LOG_N,
            KeySecurity::Medium,
        )
        .unwrap();
        let SecretInput::Encrypted(e) = SecretInput::parse(&enc).unwrap() else {
            panic!()
        };
        assert_eq!(
            Keys::new(open_import(&e, &Passphrase::new("p")).unwrap()).public_key(),
            keys.public_key()
        );
        assert!(SecretInput::parse("npub1xyz").is_err());
        assert!(SecretInput::parse("").is_err());
    }
}
