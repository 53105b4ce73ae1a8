//! `rampart run`: unlock the vault and serve NIP-46 requests.
//!
//! With no relay configured it starts the embedded relay on loopback, so a
//! fresh machine needs nothing else. When ready it prints one `bunker://`
//! line per key on stdout (with a fresh single-use secret), and a QR code of
//! it when stdout is a terminal. Logs go to stderr. SIGINT/SIGTERM stop it
//! gracefully.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Context, Result};
use bunker::engine::{Engine, TransportKey};
use bunker::service::{self, ServiceConfig};
use bunker::vault::Vault;
use nip46::nostr::nips::nip19::ToBech32;
use nip46::nostr::nips::nip49::KeySecurity;
use nip46::nostr::prelude::{Keys, RelayUrl, Timestamp};
use relay::pool::{PoolConfig, RelayPool};
use relay::server::{self, ServerConfig};
use store::{SqliteStore, Store};
use tokio::sync::mpsc;

use crate::cmd::token;
use crate::config::{Config, parse_grant};
use crate::passphrase;

/// `rampart run`
#[derive(clap::Args)]
pub struct Args {
    /// Relay to serve on (repeatable). Default: the configured relays, or the embedded relay.
    #[arg(long = "relay")]
    relays: Vec<String>,
    /// Grant of the tokens printed at start: read, write, encrypt, full, or a permission list.
    #[arg(long)]
    grant: Option<String>,
}

/// Serve until a signal arrives.
pub async fn run(args: Args, mut config: Config, env: &HashMap<String, String>) -> Result<()> {
    if !args.relays.is_empty() {
        config.relays = args.relays;
    }
    let grant = match &args.grant {
        Some(g) => parse_grant(g)?,
        None => config.default_grant()?,
    };
    let mut store = SqliteStore::open(&config.database_path())
        .with_context(|| format!("could not open the database in {}", config.data_dir.display()))?;
    let mut keys = store.keys()?;
    let pass = passphrase::read(env, keys.is_empty())?;
    if keys.is_empty() {
        let fresh = Keys::generate();
        let sealed = bunker::vault::seal_key("default", fresh.secret_key(), KeySecurity::Medium, &pass, config.vault.log_n, Timestamp::now())?;
        store.add_key(&sealed)?;
        let npub = fresh.public_key().to_bech32().unwrap_or_default();
        eprintln!("created key `default`: {npub}");
        keys = store.keys()?;
    }
    let unlock_keys = keys.clone();
    let mut vault = tokio::task::spawn_blocking(move || Vault::unlock(&unlock_keys, &pass))
        .await
        .context("unlock task failed")??;

    let (embedded, relays) = if config.relays.is_empty() {
        let handle = server::spawn_on(config.embedded_relay, ServerConfig::default())
            .await
            .with_context(|| format!("could not start the embedded relay on {}", config.embedded_relay))?;
        let url = RelayUrl::parse(&handle.url())?;
        eprintln!("embedded relay on {url}");
        (Some(handle), vec![url])
    } else {
        (None, config.relay_urls()?)
    };

    let transport: Vec<TransportKey> = keys
        .iter()
        .filter_map(|k| vault.take_signer(k.id).map(|signer| TransportKey { key_id: k.id, signer }))
        .collect();
    let auth_keys = transport.first().map(|t| t.signer.clone());
    let engine = Engine::new(config.engine(relays.clone())?, Arc::new(vault), transport);

    let pool_config = PoolConfig {
        // The engine verifies after its cheap checks; verifying twice costs ~20 µs a request.
        verify_events: false,
        auth_keys,
        ..PoolConfig::default()
    };
    let (pool, events) = RelayPool::new(pool_config);
    for relay in &relays {
        pool.add_relay(relay.as_str())?;
    }

    for key in &keys {
        let uri = token::mint(&mut store, key, grant.clone(), None, Some("rampart run".into()), relays.clone())?;
        println!("{uri}");
        if std::io::stdout().is_terminal() {
            print_qr(&uri.to_string());
        }
    }

    let (_admin_tx, admin_rx) = mpsc::channel(64);
    let result = service::run(ServiceConfig::default(), engine, Box::new(store), pool, events, admin_rx, shutdown_signal()).await;
    if let Some(handle) = embedded {
        handle.shutdown().await;
    }
    result.map_err(Into::into)
}

fn print_qr(text: &str) {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => println!("{}", code.render::<qrcode::render::unicode::Dense1x2>().quiet_zone(true).build()),
        Err(e) => tracing::debug!(error = %e, "no QR code"),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("signal received");
}
