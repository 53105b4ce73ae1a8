//! `rampart key`: generate, import, list, export and remove user keys.
//!
//! Secrets are read from stdin (never argv) and only ever leave as NIP-49
//! `ncryptsec`. Every key in a vault shares one passphrase, checked against
//! an existing key before a new one is added.

use std::io::{IsTerminal, Read};

use anyhow::{Context, Result, bail};
use bunker::vault::{self, Passphrase, SecretInput, Vault};
use nip46::nostr::nips::nip19::ToBech32;
use nip46::nostr::nips::nip49::KeySecurity;
use nip46::nostr::prelude::{Keys, SecretKey, Timestamp};
use store::{Store, StoredKey};

use zeroize::Zeroizing;

use crate::config::Config;
use crate::env::Env;
use crate::passphrase;

/// `rampart key …`
#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Create a new user key.
    Generate {
        /// Name of the key.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Import a key from stdin (nsec, 64 hex characters, or ncryptsec).
    Import {
        /// Name of the key.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List keys (names, npubs, signer npubs).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a key as ncryptsec (the only export form).
    Export {
        /// Name of the key.
        name: String,
    },
    /// Delete a key, with its tokens and sessions.
    Remove {
        /// Name of the key.
        name: String,
    },
}

/// Run a key command.
pub fn run(command: KeyCommand, config: &Config, env: &Env) -> Result<()> {
    let mut store = config.database()?.open()?;
    match command {
        KeyCommand::Generate { name } => {
            let keys = Keys::generate();
            let added = add(
                &mut *store,
                config,
                env,
                &name,
                keys.secret_key(),
                KeySecurity::Medium,
            )?;
            println!("{}", npub(&added));
        }
        KeyCommand::Import { name } => {
            let input = read_secret_input()?;
            let (secret, security) = match SecretInput::parse(&input)? {
                SecretInput::Plain(sk) => (sk, KeySecurity::Weak),
                SecretInput::Encrypted(enc) => {
                    let pass = import_passphrase(env)?;
                    // NIP-49's key-security byte says how the key was
                    // handled before it was encrypted: kept as it was.
                    (vault::open_import(&enc, &pass)?, enc.key_security())
                }
            };
            let added = add(&mut *store, config, env, &name, &secret, security)?;
            println!("{}", npub(&added));
        }
        KeyCommand::List { json } => list(&*store, json)?,
        KeyCommand::Export { name } => {
            let key = find(&*store, &name)?;
            let pass = passphrase::read(env, false)?;
            println!("{}", vault::export(&key, &pass)?);
        }
        KeyCommand::Remove { name } => {
            store.remove_key(&name)?;
            eprintln!("removed key `{name}` with its tokens and sessions");
        }
    }
    Ok(())
}

/// Seal and store a key, checking the passphrase against the vault's keys.
pub fn add(
    store: &mut dyn Store,
    config: &Config,
    env: &Env,
    name: &str,
    secret: &SecretKey,
    security: KeySecurity,
) -> Result<StoredKey> {
    let existing = store.keys()?;
    if existing.iter().any(|k| k.name == name) {
        bail!("a key named `{name}` already exists");
    }
    let pass = passphrase::read(env, existing.is_empty())?;
    check_passphrase(&existing, &pass)?;
    let new = vault::seal_key(
        name,
        secret,
        security,
        &pass,
        config.vault.log_n,
        Timestamp::now(),
    )?;
    store.add_key(&new)?;
    find(store, name)
}

/// All keys of a vault share one passphrase.
pub fn check_passphrase(existing: &[StoredKey], pass: &Passphrase) -> Result<()> {
    if let Some(first) = existing.first() {
        Vault::unlock(std::slice::from_ref(first), pass)
            .context("the passphrase does not open this vault")?;
    }
    Ok(())
}

fn find(store: &dyn Store, name: &str) -> Result<StoredKey> {
    store
        .keys()?
        .into_iter()
        .find(|k| k.name == name)
        .with_context(|| format!("no key named `{name}`; see `rampart key list`"))
}

fn npub(key: &StoredKey) -> String {
    key.user_pubkey
        .to_bech32()
        .unwrap_or_else(|_| key.user_pubkey.to_hex())
}

fn list(store: &dyn Store, json: bool) -> Result<()> {
    let keys = store.keys()?;
    if json {
        let rows: Vec<_> = keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "name": k.name,
                    "npub": npub(k),
                    "pubkey": k.user_pubkey.to_hex(),
                    "signer_pubkey": k.signer_pubkey.to_hex(),
                    "created_at": k.created_at.as_secs(),
                    "locked_at": k.locked_at.map(|t| t.as_secs()),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if keys.is_empty() {
        eprintln!("no keys yet: `rampart key generate` or `rampart key import`");
    }
    for k in keys {
        let locked = if k.locked_at.is_some() {
            "\tLOCKED"
        } else {
            ""
        };
        println!(
            "{}\t{}\tsigner {}{locked}",
            k.name,
            npub(&k),
            k.signer_pubkey.to_hex()
        );
    }
    Ok(())
}

fn read_secret_input() -> Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        return Ok(Zeroizing::new(rpassword::prompt_password(
            "Secret key (nsec, hex or ncryptsec): ",
        )?));
    }
    let mut text = Zeroizing::new(String::new());
    std::io::stdin().read_to_string(&mut text)?;
    Ok(text)
}

/// An imported ncryptsec may use another passphrase than the vault.
fn import_passphrase(env: &Env) -> Result<Passphrase> {
    if let Some(p) = env
        .get("RAMPART_IMPORT_PASSPHRASE")
        .filter(|p| !p.is_empty())
    {
        return Ok(Passphrase::new(p.as_str()));
    }
    if std::io::stdin().is_terminal() {
        return Ok(Passphrase::new(rpassword::prompt_password(
            "Passphrase of the ncryptsec: ",
        )?));
    }
    passphrase::read(env, false)
}
