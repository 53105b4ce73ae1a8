//! `rampart vault passphrase`: change the vault passphrase.
//!
//! Every key's secrets are opened with the old passphrase's key-encryption
//! key and sealed under a new one (fresh salt), and the store takes the new
//! parameters and every resealed key in one transaction: no key ever leaves
//! the process unencrypted, and a failure leaves the old passphrase working.

use anyhow::{Context, Result};
use bunker::vault::{self, Kek};
use store::Store;

use crate::config::Config;
use crate::env::Env;
use crate::passphrase;

/// `rampart vault …`
#[derive(clap::Subcommand)]
pub enum VaultCommand {
    /// Change the passphrase (old one from RAMPART_PASSPHRASE or a prompt,
    /// new one from RAMPART_NEW_PASSPHRASE or a prompt). Running bunkers
    /// keep serving; start them with the new passphrase from then on.
    Passphrase,
}

/// Run a vault command.
pub fn run(command: VaultCommand, config: &Config, env: &Env) -> Result<()> {
    match command {
        VaultCommand::Passphrase => change_passphrase(config, env),
    }
}

fn change_passphrase(config: &Config, env: &Env) -> Result<()> {
    let mut store = config.database()?.open()?;
    let old = passphrase::read(env, false)?;
    let from = Kek::for_store(&mut *store, &old, config.vault.log_n)
        .context("the passphrase does not open this store's vault")?;
    let new = passphrase::read_new(env)?;
    let to = Kek::create(&new, config.vault.log_n)?;
    let keys = store.keys()?;
    let resealed = vault::reseal(&keys, &from, &old, &to)?;
    reseal(&mut *store, &from, &to, &resealed)?;
    eprintln!(
        "the vault passphrase is changed: {} key(s) resealed",
        resealed.len()
    );
    Ok(())
}

fn reseal(store: &mut dyn Store, from: &Kek, to: &Kek, keys: &[store::ResealedKey]) -> Result<()> {
    store
        .reseal_keys(Some((from.params(), to.params())), keys)
        .context("could not store the resealed keys; the old passphrase still works")
}
