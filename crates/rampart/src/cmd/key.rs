//! `rampart key`: generate, import, list, export and remove user keys.
//!
//! Secrets are read from stdin (never argv) and only ever leave as NIP-49
//! `ncryptsec`. Every key in a store shares one passphrase: the vault's
//! key-encryption key ([`Kek`]) is derived from it once per command and
//! seals each key, so `--count 1000` costs one scrypt run, not 2,000.

use std::io::{IsTerminal, Read};

use anyhow::{Context, Result, bail};
use bunker::admin;
use bunker::vault::{self, Kek, Passphrase, SecretInput};
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
    /// Create a new user key (or `--count N` of them: NAME-0001 … NAME-N).
    Generate {
        /// Name of the key (with --count, the prefix of each name).
        #[arg(long, default_value = "default")]
        name: String,
        /// How many keys to create.
        #[arg(long)]
        count: Option<u32>,
    },
    /// Import a key from stdin (nsec, 64 hex characters, or ncryptsec).
    Import {
        /// Name of the key.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List keys (names, npubs, signer pubkeys), every one by default.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only keys whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// At most this many (after --offset).
        #[arg(long)]
        limit: Option<usize>,
        /// Skip this many first.
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Print a key as ncryptsec (the only export form).
    Export {
        /// Name of the key.
        name: String,
    },
    /// Give a key a new signer (transport) key after a suspected
    /// compromise: its apps are disconnected and must connect again with a
    /// fresh token; the user key (npub, signatures) stays.
    RotateSigner {
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
        KeyCommand::Generate { name, count: None } => {
            let keys = Keys::generate();
            let kek = open_vault(&mut *store, config, env)?;
            let added = add(
                &mut *store,
                &kek,
                &name,
                keys.secret_key(),
                KeySecurity::Medium,
            )?;
            println!("{}", npub(&added));
        }
        KeyCommand::Generate {
            name,
            count: Some(count),
        } => generate_many(&mut *store, config, env, &name, count)?,
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
            let kek = open_vault(&mut *store, config, env)?;
            let added = add(&mut *store, &kek, &name, &secret, security)?;
            println!("{}", npub(&added));
        }
        KeyCommand::List {
            json,
            filter,
            limit,
            offset,
        } => list(&*store, json, filter.as_deref(), limit, offset)?,
        KeyCommand::Export { name } => {
            let key = find(&*store, &name)?;
            let pass = passphrase::read(env, false)?;
            let kek = Kek::for_store(&mut *store, &pass, config.vault.log_n)?;
            println!("{}", vault::export(&key, &kek, &pass, config.vault.log_n)?);
        }
        KeyCommand::RotateSigner { name } => {
            let key = find(&*store, &name)?;
            let kek = open_vault(&mut *store, config, env)?;
            let (signer, sealed) = vault::new_signer(&kek)?;
            store.replace_signer(key.id, &signer, &sealed, Timestamp::now())?;
            admin::audit_owner_action(
                &mut *store,
                "key.rotate_signer",
                key.id,
                None,
                &format!("{name} {}", signer.to_hex()),
            )?;
            println!("{}", signer.to_hex());
            eprintln!(
                "key `{name}` has a new signer key (above; the old one was {}). Its apps were \
                 disconnected: give each a fresh `rampart uri --key {name}` to connect again. \
                 A running `rampart run` (every replica) serves under the new signer within a \
                 second (one started with another passphrase than the vault's now: after a \
                 restart); restart it to also announce the new signer (NIP-05, NIP-89) and \
                 authenticate to relays with it.",
                key.signer_pubkey.to_hex()
            );
        }
        KeyCommand::Remove { name } => {
            let key = find(&*store, &name)?;
            store.remove_key(&name)?;
            admin::audit_owner_action(&mut *store, "key.remove", key.id, None, &name)?;
            eprintln!("removed key `{name}` with its tokens and sessions");
        }
    }
    Ok(())
}

/// The store's vault key, from the passphrase (asked twice when the store
/// has no vault yet: it is being created).
pub fn open_vault(store: &mut dyn Store, config: &Config, env: &Env) -> Result<Kek> {
    let fresh = store.vault_params()?.is_none() && store.keys()?.is_empty();
    let pass = passphrase::read(env, fresh)?;
    Kek::for_store(store, &pass, config.vault.log_n)
        .context("the passphrase does not open this store's vault")
}

/// Seal and store a key under the vault key.
pub fn add(
    store: &mut dyn Store,
    kek: &Kek,
    name: &str,
    secret: &SecretKey,
    security: KeySecurity,
) -> Result<StoredKey> {
    if store.keys()?.iter().any(|k| k.name == name) {
        bail!("a key named `{name}` already exists");
    }
    let new = vault::seal_key(name, secret, security, kek, Timestamp::now())?;
    store.add_key(&new)?;
    find(store, name)
}

/// `key generate --name NAME --count N`: NAME-0001 … NAME-N, each sealed
/// under the vault key (no scrypt per key), with a progress bar on a
/// terminal. Names taken already are refused before anything is added.
fn generate_many(
    store: &mut dyn Store,
    config: &Config,
    env: &Env,
    name: &str,
    count: u32,
) -> Result<()> {
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let width = count.to_string().len().max(4);
    let names: Vec<String> = (1..=count).map(|i| format!("{name}-{i:0width$}")).collect();
    let existing: std::collections::HashSet<String> =
        store.keys()?.into_iter().map(|k| k.name).collect();
    if let Some(taken) = names.iter().find(|n| existing.contains(*n)) {
        bail!("a key named `{taken}` already exists; choose another --name");
    }
    let kek = open_vault(store, config, env)?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(u64::from(count))
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} keys ({eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let now = Timestamp::now();
    for key_name in &names {
        let keys = Keys::generate();
        let sealed = vault::seal_key(key_name, keys.secret_key(), KeySecurity::Medium, &kek, now)?;
        store.add_key(&sealed)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "created {count} keys, {} … {}",
        names.first().map_or("", String::as_str),
        names.last().map_or("", String::as_str)
    );
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

fn list(
    store: &dyn Store,
    json: bool,
    filter: Option<&str>,
    limit: Option<usize>,
    offset: usize,
) -> Result<()> {
    let all = store.keys()?;
    let none_at_all = all.is_empty();
    let keys: Vec<StoredKey> = all
        .into_iter()
        .filter(|k| filter.is_none_or(|f| k.name.contains(f)))
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect();
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
    if none_at_all {
        eprintln!("no keys yet: `rampart key generate` or `rampart key import`");
    }
    // One write for thousands of lines.
    let mut out = String::new();
    for k in keys {
        let locked = if k.locked_at.is_some() {
            "\tLOCKED"
        } else {
            ""
        };
        out.push_str(&format!(
            "{}\t{}\tsigner {}{locked}\n",
            k.name,
            npub(&k),
            k.signer_pubkey.to_hex()
        ));
    }
    print!("{out}");
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
