//! The vault: user keys and their signer keys, sealed at rest under one
//! passphrase, opened once at start and held in memory.
//!
//! The passphrase gives, through one scrypt run per process, a
//! key-encryption key ([`Kek`]) that seals every secret with
//! XChaCha20-Poly1305, bound to its key's public key: opening 1,000 keys
//! costs one scrypt run and 2,000 decryptions (microseconds each), where
//! NIP-49 per secret cost two scrypt runs per key. Keys stored as NIP-49
//! `ncryptsec` by earlier versions are opened with the passphrase and
//! resealed under the key-encryption key at the next unlock; keys still
//! leave only as `ncryptsec` ([`export`]).
//!
//! It is the first [`KeyBackend`]. Secrets live in `nostr`'s `Keys`, which
//! wipe themselves on drop, and in [`Zeroizing`] buffers; nothing here
//! derives `Debug` or `Clone`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use nip46::nostr::nips::nip19::{FromBech32, ToBech32};
use nip46::nostr::nips::nip49::{EncryptedSecretKey, KeySecurity};
use nip46::nostr::prelude::{Event, Keys, PublicKey, SecretKey, Timestamp, UnsignedEvent};
use nip46::{Conversation, Scheme, envelope};
use store::{KeyId, NewKey, ResealedKey, Store, StoreError, StoredKey, VaultParams};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::keys::{KeyBackend, KeyError};

/// scrypt cost of a new vault (and of NIP-49 exports); 2^16 rounds ≈ 0.1–0.2 s.
pub const DEFAULT_LOG_N: u8 = 16;
/// Highest scrypt cost accepted when opening (2^22 ≈ 4 GiB would be refused).
pub const MAX_LOG_N: u8 = 20;
/// Conversation keys kept for third-party encryption before the cache is cleared.
const CONVERSATION_CACHE: usize = 4096;
/// How a secret sealed under the key-encryption key starts.
const SEALED: &str = "rampart-kek1:";
/// What the vault's check value holds.
const CHECK: &[u8] = b"rampart vault check v1";

/// The vault passphrase. Wiped on drop; neither `Debug` nor `Clone`.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wrap a passphrase (NFKC-normalised where it is used, as NIP-49 does).
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
    /// The passphrase does not open the vault.
    #[error("wrong passphrase: it does not open this store's vault")]
    WrongVaultPassphrase,
    /// The passphrase does not open a stored key.
    #[error("wrong passphrase for key `{0}`")]
    WrongPassphrase(String),
    /// A stored secret is damaged, or its scrypt cost is above the limit.
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
    /// The key-encryption key could not be derived or used.
    #[error("the vault's key-encryption key failed: {0}")]
    Kek(&'static str),
    /// A key encrypted at this scrypt cost could never be opened again
    /// (opening refuses costs above the limit); lower `[vault] log_n`.
    #[error(
        "scrypt log_n {0} is above {MAX_LOG_N}: the key could never be opened; lower [vault] log_n"
    )]
    CostTooHigh(u8),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a stored secret cannot be opened at all (before the passphrase).
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
    /// Sealed under the key-encryption key, but damaged (or sealed for
    /// another key); restore the key from a backup.
    #[error("the sealed secret is damaged")]
    Damaged,
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

/// Which of a key's two secrets: bound into each sealed secret, so the two
/// cannot be swapped.
#[derive(Clone, Copy)]
enum Purpose {
    User,
    Signer,
}

/// The vault's key-encryption key. Neither `Debug` nor `Clone`; the cipher
/// wipes its key on drop (`chacha20poly1305` zeroizes it).
pub struct Kek {
    cipher: XChaCha20Poly1305,
    params: VaultParams,
}

impl Kek {
    /// A new vault's key: a fresh salt, scrypt at `log_n`.
    pub fn create(passphrase: &Passphrase, log_n: u8) -> Result<Kek, VaultError> {
        if log_n > MAX_LOG_N {
            return Err(VaultError::CostTooHigh(log_n));
        }
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).map_err(|_| VaultError::Kek("no randomness"))?;
        let cipher = derive(passphrase, &salt, log_n)?;
        let check = seal(&cipher, b"check", CHECK)?;
        Ok(Kek {
            cipher,
            params: VaultParams { salt, log_n, check },
        })
    }

    /// The key of a vault with these parameters; a wrong passphrase is
    /// [`VaultError::WrongVaultPassphrase`].
    pub fn open(passphrase: &Passphrase, params: &VaultParams) -> Result<Kek, VaultError> {
        if params.log_n > MAX_LOG_N {
            return Err(VaultError::CostTooHigh(params.log_n));
        }
        let cipher = derive(passphrase, &params.salt, params.log_n)?;
        match unseal(&cipher, b"check", &params.check) {
            Some(check) if check.as_slice() == CHECK => Ok(Kek {
                cipher,
                params: params.clone(),
            }),
            _ => Err(VaultError::WrongVaultPassphrase),
        }
    }

    /// The store's vault key, opened with `passphrase`; a store without a
    /// vault gets one (scrypt at `log_n`; of two processes creating one at
    /// once, both end up with the first).
    pub fn for_store(
        store: &mut dyn Store,
        passphrase: &Passphrase,
        log_n: u8,
    ) -> Result<Kek, VaultError> {
        if let Some(params) = store.vault_params()? {
            return Kek::open(passphrase, &params);
        }
        // Keys from before the vault key: the new vault must share their
        // passphrase, or they could never be opened beside it.
        if let Some(old) = store
            .keys()?
            .iter()
            .find(|k| !k.user_secret.starts_with(SEALED))
        {
            decrypt_nip49(&old.name, &old.user_secret, passphrase)?;
        }
        let fresh = Kek::create(passphrase, log_n)?;
        let kept = store.init_vault(&fresh.params)?;
        if kept == fresh.params {
            return Ok(fresh);
        }
        Kek::open(passphrase, &kept)
    }

    /// What the store keeps to derive and check this key.
    pub fn params(&self) -> &VaultParams {
        &self.params
    }

    fn seal_secret(
        &self,
        purpose: Purpose,
        pubkey: &PublicKey,
        secret: &SecretKey,
        security: KeySecurity,
    ) -> Result<String, VaultError> {
        let mut plain = Zeroizing::new([0u8; 33]);
        plain[0] = security_byte(security);
        plain[1..].copy_from_slice(&secret.to_secret_bytes());
        let sealed = seal(&self.cipher, &aad(purpose, pubkey), plain.as_slice())?;
        Ok(format!("{SEALED}{}", URL_SAFE_NO_PAD.encode(sealed)))
    }

    fn open_secret(
        &self,
        name: &str,
        purpose: Purpose,
        pubkey: &PublicKey,
        text: &str,
    ) -> Result<(SecretKey, KeySecurity), VaultError> {
        let damaged = || VaultError::Unreadable {
            name: name.to_owned(),
            reason: Unreadable::Damaged,
        };
        let bytes = text
            .strip_prefix(SEALED)
            .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
            .ok_or_else(damaged)?;
        let plain = unseal(&self.cipher, &aad(purpose, pubkey), &bytes).ok_or_else(damaged)?;
        if plain.len() != 33 {
            return Err(damaged());
        }
        let secret = SecretKey::from_slice(&plain[1..]).map_err(|_| damaged())?;
        let security = KeySecurity::try_from(plain[0]).unwrap_or(KeySecurity::Unknown);
        Ok((secret, security))
    }

    /// Open one of a stored key's secrets: sealed under this key, or (from
    /// before the key-encryption key) NIP-49 under `passphrase`.
    fn open_stored(
        &self,
        name: &str,
        purpose: Purpose,
        pubkey: &PublicKey,
        text: &str,
        passphrase: &Passphrase,
    ) -> Result<(Keys, KeySecurity, bool), VaultError> {
        let (keys, security, legacy) = if text.starts_with(SEALED) {
            let (secret, security) = self.open_secret(name, purpose, pubkey, text)?;
            (Keys::new(secret), security, false)
        } else {
            let (keys, security) = decrypt_nip49(name, text, passphrase)?;
            (keys, security, true)
        };
        if keys.public_key() != *pubkey {
            return Err(VaultError::Mismatch(name.to_owned()));
        }
        Ok((keys, security, legacy))
    }
}

/// Both secrets of a stored key, opened. Neither `Debug` nor `Clone`.
struct OpenedKey {
    user: Keys,
    user_security: KeySecurity,
    signer: Keys,
    signer_security: KeySecurity,
    /// Either was NIP-49 (from before the vault key).
    legacy: bool,
}

impl Kek {
    /// Open both secrets of `s` (see [`Kek::open_stored`]).
    fn open_key(&self, s: &StoredKey, passphrase: &Passphrase) -> Result<OpenedKey, VaultError> {
        let (user, user_security, user_legacy) = self.open_stored(
            &s.name,
            Purpose::User,
            &s.user_pubkey,
            &s.user_secret,
            passphrase,
        )?;
        let (signer, signer_security, signer_legacy) = self.open_stored(
            &s.name,
            Purpose::Signer,
            &s.signer_pubkey,
            &s.signer_secret,
            passphrase,
        )?;
        Ok(OpenedKey {
            user,
            user_security,
            signer,
            signer_security,
            legacy: user_legacy || signer_legacy,
        })
    }

    /// `opened` (the secrets of `s`) sealed under this key, replacing what
    /// `s` holds.
    fn reseal(&self, s: &StoredKey, opened: &OpenedKey) -> Result<ResealedKey, VaultError> {
        Ok(ResealedKey {
            id: s.id,
            replaces: (s.user_secret.clone(), s.signer_secret.clone()),
            user_secret: self.seal_secret(
                Purpose::User,
                &s.user_pubkey,
                opened.user.secret_key(),
                opened.user_security,
            )?,
            signer_secret: self.seal_secret(
                Purpose::Signer,
                &s.signer_pubkey,
                opened.signer.secret_key(),
                opened.signer_security,
            )?,
        })
    }
}

fn security_byte(security: KeySecurity) -> u8 {
    match security {
        KeySecurity::Weak => 0,
        KeySecurity::Medium => 1,
        KeySecurity::Unknown => 2,
    }
}

fn aad(purpose: Purpose, pubkey: &PublicKey) -> Vec<u8> {
    let mut aad = b"rampart key v1\0".to_vec();
    aad.push(match purpose {
        Purpose::User => b'u',
        Purpose::Signer => b's',
    });
    aad.extend_from_slice(&pubkey.to_bytes());
    aad
}

fn derive(
    passphrase: &Passphrase,
    salt: &[u8; 32],
    log_n: u8,
) -> Result<XChaCha20Poly1305, VaultError> {
    let normalised: Zeroizing<String> = Zeroizing::new(passphrase.expose().nfkc().collect());
    let params = scrypt::Params::new(log_n, 8, 1, 32)
        .map_err(|_| VaultError::Kek("bad scrypt parameters"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(normalised.as_bytes(), salt, &params, key.as_mut_slice())
        .map_err(|_| VaultError::Kek("scrypt failed"))?;
    XChaCha20Poly1305::new_from_slice(key.as_slice()).map_err(|_| VaultError::Kek("bad key length"))
}

fn seal(cipher: &XChaCha20Poly1305, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(|_| VaultError::Kek("no randomness"))?;
    let sealed = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .map_err(|_| VaultError::Kek("encryption failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn unseal(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < 24 {
        return None;
    }
    let (nonce, body) = sealed.split_at(24);
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
        .ok()
        .map(Zeroizing::new)
}

fn encrypt_nip49(
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

fn decrypt_nip49(
    name: &str,
    ncryptsec: &str,
    passphrase: &Passphrase,
) -> Result<(Keys, KeySecurity), VaultError> {
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
    let security = encrypted.key_security();
    let secret = encrypted
        .decrypt_with_max_log_n(passphrase.expose(), MAX_LOG_N)
        .map_err(|_| VaultError::WrongPassphrase(name.to_owned()))?;
    Ok((Keys::new(secret), security))
}

/// Seal a user secret and a freshly generated signer key for storage.
///
/// `security` records whether the user secret was ever handled unencrypted
/// (NIP-49's key-security byte, kept for its export).
pub fn seal_key(
    name: &str,
    user: &SecretKey,
    security: KeySecurity,
    kek: &Kek,
    now: Timestamp,
) -> Result<NewKey, VaultError> {
    let user_keys = Keys::new(user.clone());
    let signer = Keys::generate();
    let (user_pubkey, signer_pubkey) = (user_keys.public_key(), signer.public_key());
    Ok(NewKey {
        name: name.to_owned(),
        user_pubkey,
        signer_pubkey,
        user_secret: kek.seal_secret(Purpose::User, &user_pubkey, user, security)?,
        signer_secret: kek.seal_secret(
            Purpose::Signer,
            &signer_pubkey,
            signer.secret_key(),
            KeySecurity::Medium,
        )?,
        created_at: now,
    })
}

/// A fresh signer (transport) key for a key whose old one is suspected
/// compromised: its pubkey, and its secret sealed for storage.
pub fn new_signer(kek: &Kek) -> Result<(PublicKey, String), VaultError> {
    let signer = Keys::generate();
    let pubkey = signer.public_key();
    let sealed = kek.seal_secret(
        Purpose::Signer,
        &pubkey,
        signer.secret_key(),
        KeySecurity::Medium,
    )?;
    Ok((pubkey, sealed))
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

/// A stored key's user secret as NIP-49 `ncryptsec` under `passphrase` at
/// `log_n` (the only form a key leaves in); one kept as `ncryptsec` from
/// before the key-encryption key is returned as it is, once checked.
pub fn export(
    stored: &StoredKey,
    kek: &Kek,
    passphrase: &Passphrase,
    log_n: u8,
) -> Result<String, VaultError> {
    let (keys, security, legacy) = kek.open_stored(
        &stored.name,
        Purpose::User,
        &stored.user_pubkey,
        &stored.user_secret,
        passphrase,
    )?;
    if legacy {
        return Ok(stored.user_secret.clone());
    }
    encrypt_nip49(keys.secret_key(), passphrase, log_n, security)
}

/// Every key's secrets sealed under `to` (a new passphrase's key), opened
/// with `from` (or NIP-49 under `passphrase`): what `reseal_keys` stores.
pub fn reseal(
    stored: &[StoredKey],
    from: &Kek,
    passphrase: &Passphrase,
    to: &Kek,
) -> Result<Vec<ResealedKey>, VaultError> {
    stored
        .iter()
        .map(|s| to.reseal(s, &from.open_key(s, passphrase)?))
        .collect()
}

/// What the running bunker needs to serve keys added to the store after
/// it started (`rampart key generate`, `key rotate-signer`): the vault and
/// its key-encryption key, kept for the process's life — no more exposure
/// than the unlocked keys beside it. Neither `Debug` nor `Clone`.
pub struct Loader {
    vault: Arc<Vault>,
    kek: Kek,
}

impl Loader {
    /// A loader into `vault`, opening with `kek`.
    pub fn new(vault: Arc<Vault>, kek: Kek) -> Self {
        Loader { vault, kek }
    }

    /// Open `stored` and serve its user key; its signer key, for the
    /// engine ([`Vault::load`]). A key sealed under another vault key (the
    /// passphrase changed since the start) is refused.
    pub fn load(&self, stored: &StoredKey) -> Result<Keys, VaultError> {
        self.vault.load(stored, &self.kek)
    }
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
    /// Open every stored key with the vault key (and, for keys from before
    /// it, NIP-49 with the passphrase). Returns the vault and those keys
    /// resealed under `kek`, for the caller to store (so the next unlock is
    /// fast).
    pub fn unlock(
        stored: &[StoredKey],
        kek: &Kek,
        passphrase: &Passphrase,
    ) -> Result<(Vault, Vec<ResealedKey>), VaultError> {
        let mut keys = HashMap::with_capacity(stored.len());
        let mut resealed = Vec::new();
        for s in stored {
            let opened = kek.open_key(s, passphrase)?;
            if opened.legacy {
                resealed.push(kek.reseal(s, &opened)?);
            }
            keys.insert(
                s.id,
                Arc::new(Unlocked {
                    name: s.name.clone(),
                    signer_pubkey: s.signer_pubkey,
                    user: opened.user,
                    signer: Some(opened.signer),
                }),
            );
        }
        let vault = Vault {
            keys: RwLock::new(keys),
            conversations: Mutex::new(HashMap::new()),
        };
        Ok((vault, resealed))
    }

    /// Open a key added to the store (or given a new signer) after the
    /// vault was unlocked, and serve its user key; its signer key is
    /// returned, for the engine. Only keys sealed under `kek` open here
    /// (every key written since the vault key existed is).
    pub fn load(&self, stored: &StoredKey, kek: &Kek) -> Result<Keys, VaultError> {
        let open = |purpose, pubkey: &PublicKey, text: &str| {
            if !text.starts_with(SEALED) {
                return Err(VaultError::Kek(
                    "a key sealed before the vault key opens at the next start",
                ));
            }
            let (secret, _) = kek.open_secret(&stored.name, purpose, pubkey, text)?;
            let keys = Keys::new(secret);
            if keys.public_key() != *pubkey {
                return Err(VaultError::Mismatch(stored.name.clone()));
            }
            Ok(keys)
        };
        let user = open(Purpose::User, &stored.user_pubkey, &stored.user_secret)?;
        let signer = open(
            Purpose::Signer,
            &stored.signer_pubkey,
            &stored.signer_secret,
        )?;
        let unlocked = Unlocked {
            name: stored.name.clone(),
            signer_pubkey: stored.signer_pubkey,
            user,
            signer: None,
        };
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stored.id, Arc::new(unlocked));
        Ok(signer)
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

    const LOG_N: u8 = 8;

    fn stored(id: i64, new: NewKey) -> StoredKey {
        new.stored(KeyId(id))
    }

    fn sealed(kek: &Kek, name: &str, user: &Keys) -> StoredKey {
        stored(
            1,
            seal_key(
                name,
                user.secret_key(),
                KeySecurity::Medium,
                kek,
                Timestamp::from_secs(1),
            )
            .unwrap(),
        )
    }

    #[test]
    fn a_cost_that_could_never_be_opened_is_refused() {
        let err = Kek::create(&Passphrase::new("p"), MAX_LOG_N + 1)
            .err()
            .expect("refused");
        assert!(
            matches!(err, VaultError::CostTooHigh(n) if n == MAX_LOG_N + 1),
            "{err}"
        );
    }

    #[test]
    fn seal_unlock_and_use() {
        let pass = Passphrase::new("correct horse");
        let kek = Kek::create(&pass, LOG_N).unwrap();
        let user = Keys::generate();
        let s = sealed(&kek, "alice", &user);
        assert_ne!(
            s.user_pubkey, s.signer_pubkey,
            "signer key must differ from user key"
        );
        assert!(s.user_secret.starts_with(SEALED));
        assert!(!s.user_secret.contains(&user.secret_key().to_secret_hex()));
        let (vault, resealed) = Vault::unlock(std::slice::from_ref(&s), &kek, &pass).unwrap();
        assert!(resealed.is_empty(), "nothing to move");
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
    fn wrong_passphrase_is_refused_and_exports_are_nip49() {
        let pass = Passphrase::new("right");
        let kek = Kek::create(&pass, LOG_N).unwrap();
        let user = Keys::generate();
        let s = sealed(&kek, "k", &user);
        assert!(matches!(
            Kek::open(&Passphrase::new("wrong"), kek.params()),
            Err(VaultError::WrongVaultPassphrase)
        ));
        let reopened = Kek::open(&pass, kek.params()).unwrap();
        let exported = export(&s, &reopened, &pass, LOG_N).unwrap();
        let SecretInput::Encrypted(e) = SecretInput::parse(&exported).unwrap() else {
            panic!("not an ncryptsec")
        };
        assert_eq!(e.key_security(), KeySecurity::Medium);
        assert_eq!(
            Keys::new(open_import(&e, &pass).unwrap()).public_key(),
            user.public_key()
        );
    }

    #[test]
    fn sealed_secrets_are_bound_to_their_key_and_purpose() {
        let pass = Passphrase::new("p");
        let kek = Kek::create(&pass, LOG_N).unwrap();
        let a = sealed(&kek, "a", &Keys::generate());
        let b = sealed(&kek, "b", &Keys::generate());
        // b's user secret under a's row, a's signer secret as its user secret.
        for user_secret in [b.user_secret.clone(), a.signer_secret.clone()] {
            let mut swapped = a.clone();
            swapped.user_secret = user_secret;
            assert!(matches!(
                Vault::unlock(std::slice::from_ref(&swapped), &kek, &pass),
                Err(VaultError::Unreadable {
                    reason: Unreadable::Damaged,
                    ..
                })
            ));
        }
        // Another vault's key opens nothing.
        let other = Kek::create(&pass, LOG_N).unwrap();
        assert!(Vault::unlock(std::slice::from_ref(&a), &other, &pass).is_err());
    }

    #[test]
    fn nip49_keys_from_before_are_opened_and_resealed() {
        let pass = Passphrase::new("p");
        let kek = Kek::create(&pass, LOG_N).unwrap();
        let user = Keys::generate();
        let signer = Keys::generate();
        let legacy = NewKey {
            name: "old".into(),
            user_pubkey: user.public_key(),
            signer_pubkey: signer.public_key(),
            user_secret: encrypt_nip49(user.secret_key(), &pass, LOG_N, KeySecurity::Weak).unwrap(),
            signer_secret: encrypt_nip49(signer.secret_key(), &pass, LOG_N, KeySecurity::Medium)
                .unwrap(),
            created_at: Timestamp::from_secs(1),
        }
        .stored(KeyId(4));
        assert!(matches!(
            Vault::unlock(std::slice::from_ref(&legacy), &kek, &Passphrase::new("no")),
            Err(VaultError::WrongPassphrase(_))
        ));
        let (vault, resealed) = Vault::unlock(std::slice::from_ref(&legacy), &kek, &pass).unwrap();
        assert_eq!(vault.user_pubkey(KeyId(4)), Some(user.public_key()));
        assert_eq!(resealed.len(), 1);
        let mut moved = legacy.clone();
        moved.user_secret = resealed[0].user_secret.clone();
        moved.signer_secret = resealed[0].signer_secret.clone();
        assert!(moved.user_secret.starts_with(SEALED));
        let (_, again) = Vault::unlock(std::slice::from_ref(&moved), &kek, &pass).unwrap();
        assert!(again.is_empty());
        // Its export is the stored ncryptsec, and the security byte survives the move.
        assert_eq!(
            export(&legacy, &kek, &pass, LOG_N).unwrap(),
            legacy.user_secret
        );
        let exported = export(&moved, &kek, &pass, LOG_N).unwrap();
        let SecretInput::Encrypted(e) = SecretInput::parse(&exported).unwrap() else {
            panic!("not an ncryptsec")
        };
        assert_eq!(e.key_security(), KeySecurity::Weak);
    }

    #[test]
    fn a_new_passphrase_reseals_every_key() {
        let old = Passphrase::new("old");
        let new = Passphrase::new("new");
        let from = Kek::create(&old, LOG_N).unwrap();
        let to = Kek::create(&new, LOG_N).unwrap();
        let user = Keys::generate();
        let s = sealed(&from, "k", &user);
        let resealed = reseal(std::slice::from_ref(&s), &from, &old, &to).unwrap();
        let mut moved = s.clone();
        moved.user_secret = resealed[0].user_secret.clone();
        moved.signer_secret = resealed[0].signer_secret.clone();
        let (vault, _) = Vault::unlock(std::slice::from_ref(&moved), &to, &new).unwrap();
        assert_eq!(vault.user_pubkey(KeyId(1)), Some(user.public_key()));
        assert!(Vault::unlock(std::slice::from_ref(&moved), &from, &old).is_err());
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
        let enc = encrypt_nip49(
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
