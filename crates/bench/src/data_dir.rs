//! A bunker's data directory prepared before `rampart run` starts on it: a
//! user key, and whatever the run needs already in the store (tokens for
//! the clients, idle sessions). Written before the start, they are loaded at
//! the start: nothing depends on the running bunker noticing outside edits
//! in time.

use std::path::Path;

use anyhow::Result;
use bunker::vault::{self, Passphrase};
use nip46::PermissionSet;
use nip46::nostr::nips::nip49::KeySecurity;
use nip46::nostr::prelude::{Keys, PublicKey, Timestamp};
use store::{Change, Session, SessionOrigin, Store, StoredKey};
use store_sqlite::SqliteStore;

/// Sessions written per transaction.
const CHUNK: usize = 1000;

/// The vault's key-derivation cost: the keys are throwaway, and unlocking
/// is not what is measured.
pub const LOG_N: u8 = 4;

/// Open the store in `data_dir` (created if missing) with one fresh user key.
pub fn create(data_dir: &Path, passphrase: &str) -> Result<(SqliteStore, StoredKey)> {
    let mut store = SqliteStore::open(&data_dir.join("rampart.sqlite"))?;
    let key = add_key(&mut store, passphrase)?;
    Ok((store, key))
}

/// Add one fresh user key, named `default` (the store must have none).
pub fn add_key(store: &mut dyn Store, passphrase: &str) -> Result<StoredKey> {
    let kek = vault::Kek::for_store(store, &Passphrase::new(passphrase), LOG_N)?;
    let sealed = vault::seal_key(
        "default",
        Keys::generate().secret_key(),
        KeySecurity::Medium,
        &kek,
        Timestamp::now(),
    )?;
    store.add_key(&sealed)?;
    Ok(bunker::admin::pick_key(&*store, None)?)
}

/// A session for each client, granted `grant`.
pub fn add_sessions(
    store: &mut SqliteStore,
    key: &StoredKey,
    clients: &[PublicKey],
    grant: &PermissionSet,
) -> Result<()> {
    let now = Timestamp::now();
    for chunk in clients.chunks(CHUNK) {
        let changes: Vec<Change> = chunk
            .iter()
            .map(|client| {
                Change::PutSession(Session::new(
                    key.id,
                    *client,
                    grant,
                    SessionOrigin::Bunker,
                    now,
                ))
            })
            .collect();
        store.apply(&changes)?;
    }
    Ok(())
}
