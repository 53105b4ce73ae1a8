//! `rampart uri`: mint a single-use `bunker://` token for a key.
//!
//! Minting needs no passphrase: the token names the signer's public key, and
//! only a hash of the secret is stored. The dashboard mints through the same
//! function ([`bunker::admin::mint_token`]).

use std::time::Duration;

use anyhow::{Context, Result};
use bunker::OsRandomness;
use bunker::admin;
use nip46::nostr::prelude::{RelayUrl, Timestamp};
use nip46::{BunkerUri, PermissionSet};
use store::{Change, ServedRelays, Store, StoredKey};

use crate::config::{Config, parse_grant};

/// `rampart uri`
#[derive(clap::Args)]
pub struct Args {
    /// Key name (default: the only key, or the first).
    #[arg(long)]
    key: Option<String>,
    /// What the session may do: read, write, encrypt, full, or a permission list.
    #[arg(long)]
    grant: Option<String>,
    /// How long the secret stays usable (e.g. 10m, 24h, 7d). Default: no expiry.
    #[arg(long, value_parser = humantime::parse_duration)]
    expires: Option<Duration>,
    /// Relays to put in the token (default: those the bunker serves on, as it
    /// recorded them at its last start; else the configured relays or the embedded relay).
    #[arg(long = "relay")]
    relays: Vec<String>,
    /// A label to recognise the token by.
    #[arg(long)]
    label: Option<String>,
}

/// Mint and print a token.
pub fn run(args: Args, config: &Config) -> Result<()> {
    let mut store = config.database()?.open()?;
    let key = admin::pick_key(&*store, args.key.as_deref())?;
    let grant = match &args.grant {
        Some(g) => parse_grant(g)?,
        None => config.default_grant()?,
    };
    let relays = if args.relays.is_empty() {
        advertised_relays(config, &*store)?
    } else {
        parse_relays(&args.relays)?
    };
    let expires = admin::until(Timestamp::now(), args.expires);
    let uri = mint(&mut *store, &key, grant, expires, args.label, relays)?;
    println!("{uri}");
    Ok(())
}

/// Store a fresh token for `key` and return its URI.
pub fn mint(
    store: &mut dyn Store,
    key: &StoredKey,
    grant: PermissionSet,
    expires_at: Option<Timestamp>,
    label: Option<String>,
    relays: Vec<RelayUrl>,
) -> Result<BunkerUri> {
    let mut rng = OsRandomness::new();
    let uri = admin::mint_token(
        store,
        key,
        grant,
        expires_at,
        label,
        relays,
        &mut rng,
        Timestamp::now(),
    )?;
    Ok(uri)
}

/// The relays a token should name: those the bunker last recorded serving
/// on (it records them at every start, so a token minted here names the
/// relays of the bunker that is running, wherever it was started), else the
/// configured ones, else the embedded relay.
pub fn advertised_relays(config: &Config, store: &dyn Store) -> Result<Vec<RelayUrl>> {
    if let Some(served) = store.served_relays()?
        && !served.relays.is_empty()
    {
        let configured = config.relay_urls()?;
        if !configured.is_empty() && configured != served.relays {
            eprintln!(
                "note: the token names the relays the bunker served on at its last start, not the configured ones (restart `rampart run` to use those, or pass --relay)"
            );
        }
        return Ok(served.relays);
    }
    configured_relays(config)
}

/// The relays the configuration names, or the embedded relay.
pub fn configured_relays(config: &Config) -> Result<Vec<RelayUrl>> {
    let relays = config.relay_urls()?;
    if !relays.is_empty() {
        return Ok(relays);
    }
    Ok(vec![RelayUrl::parse(&format!(
        "ws://{}",
        config.embedded_relay
    ))?])
}

/// Record where the bunker serves, for the tokens other processes mint.
pub fn record_served_relays(store: &mut dyn Store, relays: &[RelayUrl]) -> Result<()> {
    store.apply(&[Change::RecordServedRelays(ServedRelays {
        relays: relays.to_vec(),
        recorded_at: Timestamp::now(),
    })])?;
    Ok(())
}

/// Parse `--relay` flags.
fn parse_relays(relays: &[String]) -> Result<Vec<RelayUrl>> {
    relays
        .iter()
        .map(|r| RelayUrl::parse(r).with_context(|| format!("`{r}` is not a ws:// or wss:// URL")))
        .collect()
}
