//! `rampart run`: unlock the vault and serve NIP-46 requests.
//!
//! With no relay configured it starts the embedded relay on loopback, so a
//! fresh machine needs nothing else. When ready it prints one `bunker://`
//! line per key on stdout (with a fresh single-use secret), and a QR code of
//! it when stdout is a terminal. Logs go to stderr. SIGINT/SIGTERM stop it
//! gracefully.
//!
//! Requests no rule covers are held for the user, who answers in the web
//! dashboard (served here, on loopback; its one-time login link is printed on
//! stderr at start), in this terminal when it is interactive (one prompt line
//! per request), or from another shell (`rampart approvals`). All three reach
//! the engine through the admin channel or the store.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bunker::auth_url::AuthUrlBase;
use bunker::engine::{Engine, TransportKey};
use bunker::service::{self, AdminCommand, AdminSender, ServiceConfig};
use bunker::vault::{Kek, Loader, Vault};
use dashboard::{Dashboard, DashboardConfig};
use nip46::nostr::nips::nip19::ToBech32;
use nip46::nostr::nips::nip49::KeySecurity;
use std::collections::BTreeMap;

use nip46::discovery::{Nip05Document, SignerAnnouncement};
use nip46::envelope;
use nip46::nostr::prelude::{Event, Keys, PublicKey, RelayUrl, Timestamp};
use nip46::{BunkerUri, PermissionSet};
use relay::pool::{PoolConfig, PoolEvent, RelayPool};
use relay::server::{self, KindPolicy, ServerConfig};
use store::{Change, Store, StoredKey};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cmd::token;
use crate::config::{Config, parse_grant};
use crate::env::Env;
use crate::passphrase;
use crate::terminal::{console::Terminal, prompt};

/// `rampart run`
#[derive(clap::Args)]
pub struct Args {
    /// Relay to serve on (repeatable). Default: the configured relays, or the embedded relay.
    #[arg(long = "relay")]
    relays: Vec<String>,
    /// Grant of the tokens printed at start: read, write, encrypt, full, or a permission list.
    #[arg(long)]
    grant: Option<String>,
    /// Do not prompt for held requests in this terminal.
    #[arg(long)]
    no_prompt: bool,
}

/// Serve until a signal arrives.
pub async fn run(args: Args, mut config: Config, mut env: Env) -> Result<()> {
    // Held to the end: `rampart restore` refuses while a bunker runs here.
    let _running = lock_data_dir(&config.data_dir, false)
        .context("`rampart restore` is replacing this data dir's database")?;
    if !args.relays.is_empty() {
        config.relays = args.relays;
    }
    let grant = match &args.grant {
        Some(g) => parse_grant(g)?,
        None => config.default_grant()?,
    };
    // Bound first: a taken port or a bad setting fails before the passphrase
    // prompt, and auth_url challenges may point at the dashboard.
    let dashboard_listener = bind_dashboard(&config).await?;
    let dashboard_addr = dashboard_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let auth_url_base = config.auth_url_base(dashboard_addr)?;
    let ops_listener = match config.metrics.listen {
        Some(addr) => Some(crate::ops::bind(addr).await?),
        None => None,
    };

    let (mut store, keys, vault, kek) = open_store_and_unlock(&config, &env).await?;
    crate::env::forget_secrets(&mut env);
    let (embedded, relays) = start_relays(&config, &keys).await?;
    let served = relays.clone();
    store = blocking(move || {
        token::record_served_relays(&mut *store, &served)?;
        Ok(store)
    })
    .await?;
    let Serving {
        engine,
        pool,
        events,
        announcer,
        vault,
    } = build_engine_and_pool(&config, &keys, vault, &relays, dashboard_addr)?;
    // Keys added or re-keyed while serving open with the vault key, kept.
    let key_loader = Some(Arc::new(Loader::new(vault, kek)));

    // In-process interfaces decide through the admin channel; they stop
    // when the service has answered every held request and stopped.
    let (admin_tx, admin_rx) = mpsc::channel(64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let dashboard_task = match dashboard_listener {
        Some(listener) => Some(
            start_dashboard(
                &config,
                listener,
                auth_url_base.as_ref(),
                &relays,
                discovery_document(&config, &keys, &relays, announcer)?,
                admin_tx.clone(),
                stop_rx.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let prompt_task = if !args.no_prompt && interactive() {
        Some(tokio::spawn(terminal_prompt(
            admin_tx.clone(),
            keys.clone(),
        )))
    } else {
        None
    };

    // Printed once the bunker listens: a client that connects at once must
    // not find nobody subscribed (relays do not keep kind-24133 events).
    let replication = replication(&config).await?;
    // Each replica revokes only the start tokens it printed itself.
    let label = match &replication {
        Some(r) => format!("{START_LABEL} on {}", r.config.me),
        None => START_LABEL.to_owned(),
    };
    let (start_keys, start_relays, ttl) = (keys.clone(), relays.clone(), config.start_links_ttl());
    let (store, start) = blocking(move || {
        let start = start_tokens(&mut *store, &start_keys, &grant, &start_relays, ttl, &label)?;
        Ok((store, start))
    })
    .await?;
    let announce_task = tokio::spawn(announce(admin_tx.clone(), start));
    drop(admin_tx);
    // Counted only when served: an idle bunker without `[metrics] listen`
    // has no gauge timer to wake up for.
    let metrics = match ops_listener {
        Some(_) => Some(Arc::new(bunker::metrics::Metrics::new()?)),
        None => None,
    };
    let ops_task = ops_listener
        .zip(metrics.clone())
        .map(|(listener, metrics)| {
            let ops = crate::ops::Ops {
                metrics,
                pool: pool.clone(),
                database: config.database().map(|d| d.redacted()).unwrap_or_default(),
                replica: replication.as_ref().map(|r| r.config.me.to_string()),
            };
            tracing::info!(listen = ?config.metrics.listen, "serving /metrics and /healthz");
            crate::ops::serve(listener, ops, stop_rx.clone())
        });

    let database = config.database()?;
    let keeper_store = blocking(move || database.open()).await?;
    let keeper = crate::keeper::AuditKeeper::start(
        keeper_store,
        config.data_dir.clone(),
        config.audit.keep_days,
    );
    let result = service::run(
        ServiceConfig {
            replication,
            metrics,
            key_loader,
            ..ServiceConfig::default()
        },
        engine,
        store,
        pool,
        events,
        admin_rx,
        shutdown_signal(),
    )
    .await;

    let interfaces = Interfaces {
        stop: stop_tx,
        announce: announce_task,
        prompt: prompt_task,
        dashboard: dashboard_task,
        ops: ops_task,
    };
    interfaces.stop().await;
    tokio::task::spawn_blocking(move || keeper.stop())
        .await
        .ok();
    if let Some(handle) = embedded {
        handle.shutdown().await;
    }
    result.map_err(Into::into)
}

/// What runs beside the service and stops after it (the service answered
/// every held request before it returned).
struct Interfaces {
    stop: watch::Sender<bool>,
    announce: tokio::task::JoinHandle<()>,
    prompt: Option<tokio::task::JoinHandle<()>>,
    dashboard: Option<tokio::task::JoinHandle<()>>,
    ops: Option<tokio::task::JoinHandle<()>>,
}

impl Interfaces {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.announce.abort();
        if let Some(task) = self.prompt {
            task.abort();
        }
        if let Some(task) = self.ops {
            task.abort();
        }
        if let Some(task) = self.dashboard
            && tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
        {
            tracing::warn!("the dashboard did not stop in time");
        }
    }
}

/// The label of the tokens `rampart run` prints at start.
const START_LABEL: &str = "rampart run";

/// Keys for which `run` prints a token each at start; with more, a summary.
const PRINTED_KEYS: usize = 5;

/// What `run` prints once it listens.
enum StartTokens {
    /// One fresh token per key.
    Each(Vec<BunkerUri>),
    /// Too many keys for a line each: how many, and how to get a token.
    Summary(usize),
}

/// Revoke the unused tokens earlier runs printed (only their hashes are
/// kept, so they cannot be printed again and nobody should be holding one
/// they could not see), then mint one fresh token per key, expiring after
/// `ttl` — or none, with more than a handful of keys.
fn start_tokens(
    store: &mut dyn Store,
    keys: &[StoredKey],
    grant: &PermissionSet,
    relays: &[RelayUrl],
    ttl: Duration,
    label: &str,
) -> Result<StartTokens> {
    let now = Timestamp::now();
    let revoke: Vec<Change> = store
        .tokens()?
        .into_iter()
        .filter(|t| t.label.as_deref() == Some(label) && t.is_usable(now))
        .map(|t| Change::RevokeToken { id: t.id, at: now })
        .collect();
    if !revoke.is_empty() {
        store.apply(&revoke)?;
        tracing::info!(
            tokens = revoke.len(),
            "revoked the unused tokens earlier runs printed"
        );
    }
    if keys.len() > PRINTED_KEYS {
        return Ok(StartTokens::Summary(keys.len()));
    }
    let expires = Timestamp::from_secs(now.as_secs().saturating_add(ttl.as_secs()));
    let uris = keys
        .iter()
        .map(|key| {
            token::mint(
                store,
                key,
                grant.clone(),
                Some(expires),
                Some(label.to_owned()),
                relays.to_vec(),
            )
        })
        .collect::<Result<_>>()?;
    Ok(StartTokens::Each(uris))
}

/// How long claims and sealed answers are kept: far longer than a
/// takeover needs (seconds), short enough to bound the table.
const KEEP_ANSWERS: Duration = Duration::from_secs(3600);

/// On PostgreSQL, serve as a replica: a second connection for heartbeats
/// and claims. SQLite is one process's store: no replication.
async fn replication(config: &Config) -> Result<Option<service::Replication>> {
    let database = config.database()?;
    if !matches!(database, crate::database::Database::Postgres(_)) {
        return Ok(None);
    }
    let replica = config.replica_config()?;
    let store = blocking(move || database.open()).await?;
    tracing::info!(replica = %replica.me, lease_ms = replica.lease_ms, "serving as a replica");
    // Kept at least as long as replays are refused: a claim also refuses
    // a replayed request event on whichever replica owns its client.
    let keep_answers = KEEP_ANSWERS.max(Duration::from_secs(config.policy.past_window_secs));
    Ok(Some(service::Replication {
        config: replica,
        store,
        keep_answers,
    }))
}

/// Hold `<data-dir>/run.lock`: shared by every `rampart run` on the data
/// dir for as long as it runs, exclusive for `rampart restore` (which must
/// not replace a database under a running bunker). Released when the file
/// is closed, also by a process killed.
pub fn lock_data_dir(data_dir: &std::path::Path, exclusive: bool) -> Result<std::fs::File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("could not create {}", data_dir.display()))?;
    let path = data_dir.join("run.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("could not open {}", path.display()))?;
    let taken = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    taken.map_err(|_| anyhow::anyhow!("{} is locked by another process", path.display()))?;
    Ok(file)
}

/// Run blocking store work (every backend blocks; PostgreSQL's client
/// refuses to run on an async thread) on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a store task failed")?
}

/// Open the store, create a first key on a fresh one, and unlock every key
/// (NIP-49's scrypt runs on the blocking pool).
async fn open_store_and_unlock(
    config: &Config,
    env: &Env,
) -> Result<(Box<dyn Store>, Vec<StoredKey>, Vault, Kek)> {
    let database = config.database()?;
    tracing::info!(database = %database.redacted(), "opening the store");
    let (mut store, mut keys) = blocking(move || {
        let store = database.open()?;
        let keys = store.keys()?;
        Ok((store, keys))
    })
    .await?;
    let pass = passphrase::read(env, keys.is_empty())?;
    // One scrypt run (on the blocking pool) gives the key that opens every key.
    let log_n = config.vault.log_n;
    let (mut store, kek, pass) = blocking(move || {
        let kek = Kek::for_store(&mut *store, &pass, log_n)
            .context("the passphrase does not open this store's vault")?;
        Ok((store, kek, pass))
    })
    .await?;
    if keys.is_empty() {
        let fresh = Keys::generate();
        let sealed = bunker::vault::seal_key(
            "default",
            fresh.secret_key(),
            KeySecurity::Medium,
            &kek,
            Timestamp::now(),
        )?;
        let (back, listed) = blocking(move || {
            store.add_key(&sealed)?;
            let keys = store.keys()?;
            Ok((store, keys))
        })
        .await?;
        store = back;
        keys = listed;
        let npub = fresh.public_key().to_bech32().unwrap_or_default();
        eprintln!("created key `default`: {npub}");
    }
    let unlock_keys = keys.clone();
    let (vault, store, kek) = blocking(move || {
        let mut store = store;
        let (vault, resealed) = Vault::unlock(&unlock_keys, &kek, &pass)?;
        // Keys from before the key-encryption key: sealed under it now, so
        // the next start opens them without a scrypt run each.
        if !resealed.is_empty() {
            match store.reseal_keys(None, &resealed) {
                Ok(()) => tracing::info!(
                    keys = resealed.len(),
                    "moved keys from NIP-49 to the vault key"
                ),
                // Another process (a replica starting beside this one)
                // moved them first, under the same vault key: nothing lost.
                Err(store::StoreError::Changed(what)) => tracing::info!(
                    %what,
                    "keys were moved to the vault key by another process meanwhile"
                ),
                Err(e) => return Err(e.into()),
            }
        }
        Ok((vault, store, kek))
    })
    .await?;
    Ok((store, keys, vault, kek))
}

/// The relays to serve on: the configured ones, or the embedded relay
/// started here on its own thread, trusting our signer keys (their answers
/// are never rate-limited there).
async fn start_relays(
    config: &Config,
    keys: &[StoredKey],
) -> Result<(Option<server::RelayHandle>, Vec<RelayUrl>)> {
    if !config.relays.is_empty() {
        return Ok((None, config.relay_urls()?));
    }
    let settings = &config.relay;
    let defaults = ServerConfig::default();
    let relay_config = ServerConfig {
        trusted_authors: keys.iter().map(|k| k.signer_pubkey).collect(),
        events_per_second: settings.events_per_second.max(1),
        kinds: if settings.any_kind {
            KindPolicy::Any
        } else {
            KindPolicy::Nip46
        },
        allowed_origins: (!settings.allowed_origins.is_empty())
            .then(|| settings.allowed_origins.clone()),
        // Frames sized for the bunker's own bound, so what the relay
        // carries and what the bunker takes agree.
        max_message_size: config.limits().max_relay_message(),
        max_queued_bytes: defaults
            .max_queued_bytes
            .max(2 * config.limits().max_relay_message()),
        ..defaults
    };
    let handle = server::spawn_dedicated(config.embedded_relay, relay_config)
        .await
        .with_context(|| {
            format!(
                "could not start the embedded relay on {}",
                config.embedded_relay
            )
        })?;
    let url = RelayUrl::parse(&handle.url())?;
    eprintln!("embedded relay on {url}");
    Ok((Some(handle), vec![url]))
}

/// The engine, the relay pool it is served through, and who announced it.
struct Serving {
    engine: Engine,
    pool: RelayPool,
    events: mpsc::Receiver<PoolEvent>,
    /// The author of the `kind:31990` announcement, when one was published.
    announcer: Option<PublicKey>,
    /// The unlocked keys (the engine's backend), for keys loaded later.
    vault: Arc<Vault>,
}

/// The engine over the unlocked keys, and the relay pool it is served
/// through, with the signer announcement queued on it.
fn build_engine_and_pool(
    config: &Config,
    keys: &[StoredKey],
    mut vault: Vault,
    relays: &[RelayUrl],
    dashboard_addr: Option<SocketAddr>,
) -> Result<Serving> {
    let transport: Vec<TransportKey> = keys
        .iter()
        .filter_map(|k| {
            vault.take_signer(k.id).map(|signer| TransportKey {
                key_id: k.id,
                signer,
            })
        })
        .collect();
    let auth_keys = transport.first().map(|t| t.signer.clone());
    let announcement = match transport.first() {
        Some(first) if config.discovery.announce => {
            Some(signer_announcement(config, relays, &first.signer)?)
        }
        _ => None,
    };
    let vault = Arc::new(vault);
    let engine = Engine::new(
        config.engine(relays.to_vec(), dashboard_addr)?,
        vault.clone(),
        transport,
    );
    let pool_config = PoolConfig {
        // The engine verifies after its cheap checks; verifying twice costs ~20 µs a request.
        verify_events: false,
        auth_keys,
        max_message_size: PoolConfig::default()
            .max_message_size
            .max(config.limits().max_relay_message()),
        ..PoolConfig::default()
    };
    let (pool, events) = RelayPool::new(pool_config);
    for relay in relays {
        pool.add_relay(relay.as_str())?;
    }
    // Queued until each relay connects; a relay that refuses it only
    // costs discovery (logged by the service).
    if let Some(event) = &announcement
        && let Err(e) = pool.publish(event)
    {
        tracing::warn!(error = %e, "could not queue the signer announcement");
    }
    Ok(Serving {
        engine,
        pool,
        events,
        announcer: announcement.map(|e| e.pubkey),
        vault,
    })
}

/// The NIP-89 `kind:31990` announcement (NIP-46 appendix), signed by
/// `signer`: the signer key of the oldest user key. Why that key: clients
/// verify one author per signer against `nostr.json`'s `names._`, the
/// announcement is not tied to any one user's sessions (every key's
/// `bunker://` names its own signer key), and it needs no further secret
/// in the vault. Removing that key moves the announcement to the next one
/// at the next start.
fn signer_announcement(config: &Config, relays: &[RelayUrl], signer: &Keys) -> Result<Event> {
    let announcement = SignerAnnouncement {
        relays: relays.to_vec(),
        nostrconnect_url: config.discovery.nostrconnect_url()?,
        name: config.discovery.name.clone(),
        nip05: config.discovery.nip05()?,
    };
    let unsigned = announcement.unsigned_event(signer.public_key(), Timestamp::now());
    let aux = bunker::Randomness::bytes32(&mut bunker::OsRandomness::new());
    let event = envelope::sign(signer, unsigned, &aux)?;
    tracing::info!(
        author = %signer.public_key(),
        relays = relays.len(),
        "publishing the signer announcement (kind 31990)"
    );
    Ok(event)
}

/// What `/.well-known/nostr.json` serves: `None` without an announcement
/// (nothing to verify against).
fn discovery_document(
    config: &Config,
    keys: &[StoredKey],
    relays: &[RelayUrl],
    announcer: Option<PublicKey>,
) -> Result<Option<Nip05Document>> {
    let Some(announcer) = announcer else {
        return Ok(None);
    };
    let mut names = BTreeMap::new();
    for name in &config.discovery.names {
        // A key removed since the config was written is not a reason to
        // refuse to start.
        let Some(key) = keys.iter().find(|k| &k.name == name) else {
            tracing::warn!(%name, "[discovery] names lists a key that does not exist; not published");
            continue;
        };
        names.insert(name.to_ascii_lowercase(), key.signer_pubkey);
    }
    Ok(Some(Nip05Document {
        announcer,
        relays: relays.to_vec(),
        nostrconnect_url: config.discovery.nostrconnect_url()?,
        names,
    }))
}

/// Serve the dashboard until `stop` turns true; prints its login link.
async fn start_dashboard(
    config: &Config,
    listener: TcpListener,
    auth_url_base: Option<&AuthUrlBase>,
    relays: &[RelayUrl],
    discovery: Option<Nip05Document>,
    admin: AdminSender,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let addr = listener.local_addr()?;
    let settings = DashboardConfig {
        session_ttl: Duration::from_secs(config.dashboard.session_hours.clamp(1, 24 * 365) * 3600),
        replicated: matches!(config.database()?, crate::database::Database::Postgres(_)),
        relays: relays.to_vec(),
        default_grant: config.default_grant()?,
        allowed_origins: auth_url_base
            .iter()
            .map(|b| b.as_str().to_owned())
            .chain(
                config
                    .discovery
                    .public_url()?
                    .map(|u| u.as_str().trim_end_matches('/').to_owned()),
            )
            .collect(),
        discovery,
        start_link_ttl: config.start_links_ttl(),
        approval_timeout_secs: config.policy.approval_timeout_secs,
        sensitive_kinds: config.policy.sensitive_kinds.clone(),
    };
    let database = config.database()?;
    let own_store = blocking(move || database.open()).await?;
    let dash = Dashboard::new(settings, own_store, admin);
    let login = dash.start_link().await?;
    // Printed once, by design: the way in to the dashboard.
    eprintln!(
        "dashboard: http://{addr}/login?token={} (one-time login link)",
        login.expose()
    );
    if let Some(base) = auth_url_base {
        eprintln!("auth_url challenges point at {base}/approve/…");
    }
    let stopped = stopped(stop);
    Ok(tokio::spawn(async move {
        if let Err(e) = dashboard::serve(listener, dash, stopped).await {
            tracing::error!(error = %e, "the dashboard stopped");
        }
    }))
}

/// The dashboard's listener, when it is enabled.
async fn bind_dashboard(config: &Config) -> Result<Option<TcpListener>> {
    if !config.dashboard.enabled {
        return Ok(None);
    }
    let listen: SocketAddr = config.dashboard_listen()?;
    let listener = TcpListener::bind(listen).await.with_context(|| {
        format!(
            "could not start the dashboard on {listen}: set [dashboard] listen (or \
             RAMPART_DASHBOARD_LISTEN), or turn it off with RAMPART_DASHBOARD_ENABLED=false"
        )
    })?;
    Ok(Some(listener))
}

/// Print the `bunker://` lines (and QR codes, in a terminal) once the
/// service has a live subscription, or after a while without one.
async fn announce(admin: AdminSender, start: StartTokens) {
    let (reply, serving) = oneshot::channel();
    if admin
        .send(AdminCommand::WhenServing { reply })
        .await
        .is_ok()
        && tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .is_err()
    {
        tracing::warn!("no relay has confirmed the subscription yet; apps may have to retry");
    }
    let uris = match start {
        StartTokens::Each(uris) => uris,
        StartTokens::Summary(keys) => {
            eprintln!(
                "serving {keys} keys; for a single-use bunker:// token run \
                 `rampart uri --key NAME` (or mint one on the dashboard)"
            );
            return;
        }
    };
    for uri in uris {
        println!("{uri}");
        if std::io::stdout().is_terminal() {
            print_qr(&uri.to_string());
        }
    }
}

/// Whether a person is at this terminal (prompt on stdin, answer on stderr).
fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Prompt for held requests in this terminal.
async fn terminal_prompt(admin: AdminSender, keys: Vec<StoredKey>) {
    eprintln!("held requests are asked here: y allow once, a always allow, n deny, d always deny");
    let sink = Arc::new(Terminal);
    prompt::run(
        admin,
        keys,
        prompt::stdin_lines(),
        sink,
        Duration::from_millis(300),
    )
    .await;
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

fn print_qr(text: &str) {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => println!(
            "{}",
            code.render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build()
        ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use nip46::nostr::prelude::PublicKey;
    use store::NewKey;
    use store_sqlite::SqliteStore;

    fn store_with_keys(n: u8) -> (tempfile::TempDir, SqliteStore, Vec<StoredKey>) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("rampart.sqlite")).unwrap();
        for i in 0..n {
            store
                .add_key(&NewKey {
                    name: format!("k{i}"),
                    user_pubkey: PublicKey::from_byte_array([i + 1; 32]),
                    signer_pubkey: PublicKey::from_byte_array([i + 101; 32]),
                    user_secret: "ncryptsec1u".into(),
                    signer_secret: "ncryptsec1s".into(),
                    created_at: Timestamp::from_secs(1),
                })
                .unwrap();
        }
        let keys = store.keys().unwrap();
        (dir, store, keys)
    }

    fn relays() -> Vec<RelayUrl> {
        vec![RelayUrl::parse("ws://127.0.0.1:7447").unwrap()]
    }

    #[test]
    fn start_tokens_expire_and_replace_the_last_runs_unused_ones() {
        let (_dir, mut store, keys) = store_with_keys(2);
        let grant: PermissionSet = "write".parse().unwrap();
        let ttl = Duration::from_secs(15 * 60);
        let StartTokens::Each(first) =
            start_tokens(&mut store, &keys, &grant, &relays(), ttl, START_LABEL).unwrap()
        else {
            panic!("a token per key");
        };
        assert_eq!(first.len(), 2);
        let now = Timestamp::now().as_secs();
        for t in store.tokens().unwrap() {
            let expires = t.expires_at.expect("start tokens expire").as_secs();
            assert!(
                (now + 890..=now + 910).contains(&expires),
                "{expires} vs {now}"
            );
        }
        // The next start revokes those (still unused) and mints fresh ones.
        let StartTokens::Each(second) =
            start_tokens(&mut store, &keys, &grant, &relays(), ttl, START_LABEL).unwrap()
        else {
            panic!("a token per key");
        };
        assert_eq!(second.len(), 2);
        let now = Timestamp::now();
        let usable: Vec<_> = store
            .tokens()
            .unwrap()
            .into_iter()
            .filter(|t| t.is_usable(now))
            .collect();
        assert_eq!(usable.len(), 2, "only this run's tokens work");
        // A token minted by hand is never revoked by a start.
        token::mint(
            &mut store,
            &keys[0],
            grant.clone(),
            None,
            Some("by hand".into()),
            relays(),
        )
        .unwrap();
        start_tokens(&mut store, &keys, &grant, &relays(), ttl, START_LABEL).unwrap();
        let now = Timestamp::now();
        assert!(
            store
                .tokens()
                .unwrap()
                .iter()
                .any(|t| t.label.as_deref() == Some("by hand") && t.is_usable(now))
        );
    }

    #[test]
    fn many_keys_get_a_summary_instead_of_a_token_each() {
        let (_dir, mut store, keys) = store_with_keys(6);
        let grant: PermissionSet = "write".parse().unwrap();
        let start = start_tokens(
            &mut store,
            &keys,
            &grant,
            &relays(),
            Duration::from_secs(60),
            START_LABEL,
        )
        .unwrap();
        assert!(matches!(start, StartTokens::Summary(6)));
        assert!(
            store.tokens().unwrap().is_empty(),
            "nothing minted that nobody sees"
        );
    }
}
