//! Configuration, layered in one place: defaults → file → `RAMPART_*`
//! environment → command-line flags, each layer overriding the one before.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bunker::auth_url::AuthUrlBase;
use bunker::engine::{EngineConfig, UnlistedPolicy};
use bunker::rate_limit::RateLimit;
use nip46::PermissionSet;
use nip46::nostr::prelude::RelayUrl;
use serde::{Deserialize, Serialize};

use crate::database::Database;
use crate::env::Env;

/// Everything `rampart` can be configured with (the passphrase excepted: it
/// comes from a prompt or `RAMPART_PASSPHRASE`, never from a file or flag).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// Relays to serve on. Empty: start the embedded relay and use it.
    pub relays: Vec<String>,
    /// Address of the embedded relay (when `relays` is empty).
    pub embedded_relay: SocketAddr,
    /// Grant of the tokens `rampart run` prints at start.
    pub default_grant: String,
    /// Minutes the `bunker://` tokens and the dashboard login link that
    /// `rampart run` prints at start work (each once).
    pub start_links_minutes: u64,
    /// Request policy.
    pub policy: PolicyConfig,
    /// Key encryption.
    pub vault: VaultConfig,
    /// The web dashboard.
    pub dashboard: DashboardConfig,
    /// The embedded relay (when `relays` is empty).
    pub relay: EmbeddedRelayConfig,
    /// How the bunker announces itself (NIP-89 and NIP-05).
    pub discovery: DiscoveryConfig,
    /// The store: `postgres://…`, `sqlite://PATH` or a path (env
    /// `RAMPART_DATABASE`, flag `--database`). Default: the SQLite file in
    /// the data directory. Not printed by `config show` (it may hold a
    /// password).
    #[serde(skip_serializing)]
    pub database: Option<String>,
    /// The largest request taken, in bytes of JSON before encryption (1 MiB:
    /// a 512 KiB event fits). Larger ones are answered `invalid_params` with
    /// this limit; the embedded relay and the relay pool take frames sized
    /// for it and for the answers it implies.
    pub max_message_bytes: usize,
    /// Serving as one of several replicas (PostgreSQL only).
    pub replica: ReplicaSettings,
    /// `/metrics` and `/healthz`.
    pub metrics: MetricsConfig,
    /// The audit log's retention.
    pub audit: AuditConfig,
}

/// `[audit]`: how long audit rows are kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Days an audit row is kept (env `RAMPART_AUDIT_KEEP_DAYS`); older rows
    /// are pruned from the start of the log by `rampart run` (at start, then
    /// hourly) and the chain verifies from the last one pruned. Unset: kept
    /// for ever. At least 1 (replay protection reads the last minutes).
    pub keep_days: Option<u32>,
}

/// `[replica]`: how this process shares a PostgreSQL store with other
/// `rampart run` processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicaSettings {
    /// This replica's name, unique among those sharing the database (env
    /// `RAMPART_REPLICA`). Default: the host name and a digest of the data
    /// directory, so it is stable across restarts.
    pub name: Option<String>,
    /// Milliseconds after its last heartbeat at which a replica counts as
    /// dead and the others take over its clients (default 5000, at least
    /// 1000; heartbeats are sent every fifth of it).
    pub lease_ms: Option<u64>,
}

/// `[metrics]`: where `/metrics` (Prometheus text) and `/healthz` are served.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// HOST:PORT to serve on (env `RAMPART_METRICS_LISTEN`). Unset: not
    /// served, so replicas on one host do not collide.
    pub listen: Option<SocketAddr>,
}

/// `[relay]`: the embedded relay `rampart run` starts when no relay is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedRelayConfig {
    /// Events one connection may publish per second (the bunker's own
    /// connection is never limited).
    pub events_per_second: u32,
    /// Take every kind, not only NIP-46 traffic and signer announcements.
    pub any_kind: bool,
    /// When not empty, browsers may only connect from these origins. Empty
    /// by default: web apps on other origins use a local bunker legitimately.
    pub allowed_origins: Vec<String>,
}

impl Default for EmbeddedRelayConfig {
    fn default() -> Self {
        let defaults = relay::server::ServerConfig::default();
        EmbeddedRelayConfig {
            events_per_second: defaults.events_per_second,
            any_kind: false,
            allowed_origins: Vec::new(),
        }
    }
}

/// `[discovery]`: the NIP-89 announcement and the NIP-05 document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Publish a `kind:31990` announcement on the relays served, at start.
    pub announce: bool,
    /// The name clients that list signers show.
    pub name: String,
    /// The dashboard's public address (`https://signer.example`, behind a
    /// TLS proxy). When set, the announcement carries `nostrconnect_url`
    /// (its pairing page) and `nip05` = `_@<host>`. Empty: neither (a
    /// loopback address would help no one else).
    pub public_url: String,
    /// Key names published in `/.well-known/nostr.json` (each as its signer
    /// pubkey, what a NIP-05 login connects to).
    pub names: Vec<String>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            announce: true,
            name: "Rampart".into(),
            public_url: String::new(),
            names: Vec::new(),
        }
    }
}

impl DiscoveryConfig {
    /// The public address, checked: `https://host[:port]`, or `http://` on
    /// loopback; no path, query or fragment.
    pub fn public_url(&self) -> Result<Option<url::Url>> {
        let raw = self.public_url.trim().trim_end_matches('/');
        if raw.is_empty() {
            return Ok(None);
        }
        let url = url::Url::parse(raw)
            .with_context(|| format!("[discovery] public_url `{raw}` is not a URL"))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => bail!("[discovery] public_url `{raw}` has no host"),
        };
        let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
        if !scheme_ok || url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            bail!(
                "[discovery] public_url must be https://host[:port] (http only on loopback), without a path"
            );
        }
        Ok(Some(url))
    }

    /// The `nostrconnect_url` template: the pairing page, which takes the
    /// `nostrconnect://` string as its `uri` parameter.
    pub fn nostrconnect_url(&self) -> Result<Option<String>> {
        Ok(self.public_url()?.map(|url| {
            format!(
                "{}/pair?uri={}",
                url.as_str().trim_end_matches('/'),
                nip46::discovery::NOSTRCONNECT_PLACEHOLDER
            )
        }))
    }

    /// `_@<host>` of the public address.
    pub fn nip05(&self) -> Result<Option<String>> {
        Ok(self
            .public_url()?
            .and_then(|url| url.host_str().map(|h| format!("_@{h}"))))
    }
}

/// `[policy]`: how requests are decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// What happens to requests no rule covers: `ask` (hold for the user) or `deny`.
    pub unlisted: UnlistedPolicy,
    /// Seconds a held request waits for the user.
    pub approval_timeout_secs: u64,
    /// Answer held requests with an `auth_url` challenge (a link to the
    /// request's approval page) before the real answer.
    pub auth_url: bool,
    /// Base URL of those links (https, or http on loopback). Empty: the
    /// dashboard's own address. Setting it turns `auth_url` on.
    pub auth_url_base: String,
    /// Requests created longer ago than this are dropped.
    pub past_window_secs: u64,
    /// Requests created further ahead than this are dropped.
    pub future_window_secs: u64,
    /// Per-session burst.
    pub rate_burst: u32,
    /// Per-session sustained requests per second.
    pub rate_per_second: f64,
    /// Requests of one app waiting for the user, at most (more are refused
    /// `rate_limited`).
    pub held_per_session: usize,
    /// Requests of all apps waiting for the user, at most.
    pub held_total: usize,
    /// Event kinds every key always asks to sign, whatever an app was
    /// granted (env `RAMPART_SENSITIVE_KINDS`, e.g. `0,3,5,10002`; empty:
    /// none); `rampart policy sensitive --key` sets a key's own.
    pub sensitive_kinds: Vec<u16>,
}

/// `[dashboard]`: the web dashboard `rampart run` serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// Serve it.
    pub enabled: bool,
    /// Where (plain HTTP): loopback unless `allow_remote`.
    pub listen: SocketAddr,
    /// Allow a non-loopback `listen` address (only behind a TLS proxy:
    /// the login link and cookies would otherwise cross the network in clear).
    pub allow_remote: bool,
    /// Hours a dashboard login lasts.
    pub session_hours: u64,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 7448)),
            allow_remote: false,
            session_hours: 12,
        }
    }
}

/// `[vault]`: key encryption.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultConfig {
    /// NIP-49 scrypt cost (log2 of rounds) for newly encrypted keys.
    pub log_n: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            relays: Vec::new(),
            embedded_relay: SocketAddr::from(([127, 0, 0, 1], 7447)),
            default_grant: "write".into(),
            start_links_minutes: 15,
            policy: PolicyConfig::default(),
            vault: VaultConfig::default(),
            dashboard: DashboardConfig::default(),
            relay: EmbeddedRelayConfig::default(),
            discovery: DiscoveryConfig::default(),
            database: None,
            max_message_bytes: nip46::limits::DEFAULT_MAX_MESSAGE,
            replica: ReplicaSettings::default(),
            metrics: MetricsConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let engine = EngineConfig::default();
        let rate = RateLimit::default();
        PolicyConfig {
            unlisted: engine.unlisted,
            approval_timeout_secs: engine.approval_timeout_secs,
            auth_url: false,
            auth_url_base: String::new(),
            past_window_secs: engine.past_window_secs,
            future_window_secs: engine.future_window_secs,
            rate_burst: rate.burst,
            rate_per_second: rate.per_second,
            held_per_session: engine.max_held_per_session,
            held_total: engine.max_held_total,
            sensitive_kinds: engine.sensitive_kinds,
        }
    }
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            log_n: bunker::vault::DEFAULT_LOG_N,
        }
    }
}

fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("rampart");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/rampart"),
        None => PathBuf::from("rampart-data"),
    }
}

/// Flags that override the configuration (the last layer).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Configuration file (default: `<data-dir>/rampart.toml` if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (database, config).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The store: postgres://… (no password here: use RAMPART_DATABASE, the
    /// config file or PGPASSFILE), sqlite://PATH or a path. Default: the
    /// SQLite file in the data directory.
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
}

impl Config {
    /// Build the configuration from every layer.
    pub fn load(overrides: &Overrides, env: &Env) -> Result<Config> {
        let mut config = Config::default();
        // The data dir decides where the default config file is, so resolve it first.
        let data_dir = overrides
            .data_dir
            .clone()
            .or_else(|| env.get("RAMPART_DATA_DIR").map(PathBuf::from));
        let file = overrides
            .config
            .clone()
            .or_else(|| env.get("RAMPART_CONFIG").map(PathBuf::from));
        let file = match file {
            Some(f) => Some(f),
            None => {
                let dir = data_dir.clone().unwrap_or_else(|| config.data_dir.clone());
                let candidate = dir.join("rampart.toml");
                candidate.exists().then_some(candidate)
            }
        };
        if let Some(path) = file {
            config = Config::from_file(&path)?;
        }
        config.apply_env(env)?;
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(flag) = &overrides.database {
            Database::refuse_password_in_argv(flag)?;
            config.database = Some(flag.clone());
        }
        config.validate()?;
        Ok(config)
    }

    /// Refuse values that would break something later, saying which.
    fn validate(&self) -> Result<()> {
        let max_log_n = bunker::vault::MAX_LOG_N;
        if !(1..=max_log_n).contains(&self.vault.log_n) {
            bail!(
                "[vault] log_n must be 1 to {max_log_n} (a key encrypted above {max_log_n} could never be opened)"
            );
        }
        let day = 24 * 3600;
        if self.policy.past_window_secs > day || self.policy.future_window_secs > day {
            bail!("[policy] past_window_secs and future_window_secs must be at most {day}");
        }
        if self.policy.approval_timeout_secs == 0 || self.policy.approval_timeout_secs > day {
            bail!("[policy] approval_timeout_secs must be 1 to {day}");
        }
        let week = 7 * 24 * 60;
        if self.start_links_minutes == 0 || self.start_links_minutes > week {
            bail!("start_links_minutes must be 1 to {week}");
        }
        self.discovery.public_url()?;
        self.database()?;
        for name in &self.discovery.names {
            let local_part = !name.is_empty()
                && name != "_"
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
            if !local_part {
                bail!(
                    "[discovery] names: `{name}` is not a NIP-05 name (a-z, 0-9, '.', '_', '-'; `_` is the announcer's)"
                );
            }
        }
        // 8 MiB: relay frames of ~23 MiB each (an answer is NIP-44 of the
        // encryption of the request), the most a connection should buffer.
        let (min, max) = (nip46::limits::MIN_MAX_MESSAGE, 8 * 1024 * 1024);
        if !(min..=max).contains(&self.max_message_bytes) {
            bail!("max_message_bytes must be {min} to {max}");
        }
        let rate = self.policy.rate_per_second;
        if !rate.is_finite() || rate < 0.0 {
            bail!("[policy] rate_per_second must be a number of at least 0");
        }
        if self.audit.keep_days == Some(0) {
            bail!("[audit] keep_days must be at least 1 (or unset: keep every row)");
        }
        Ok(())
    }

    fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    fn apply_env(&mut self, env: &Env) -> Result<()> {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty());
        if let Some(v) = get("RAMPART_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("RAMPART_RELAYS") {
            self.relays = v
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = get("RAMPART_EMBEDDED_RELAY") {
            self.embedded_relay = v
                .parse()
                .context("RAMPART_EMBEDDED_RELAY must be HOST:PORT")?;
        }
        if let Some(v) = get("RAMPART_DEFAULT_GRANT") {
            self.default_grant = v.to_string();
        }
        if let Some(v) = get("RAMPART_UNLISTED") {
            self.policy.unlisted = match v.as_str() {
                "ask" => UnlistedPolicy::Ask,
                "deny" => UnlistedPolicy::Deny,
                _ => bail!("RAMPART_UNLISTED must be `ask` or `deny`"),
            };
        }
        if let Some(v) = get("RAMPART_AUTH_URL") {
            self.policy.auth_url = parse_switch("RAMPART_AUTH_URL", v)?;
        }
        if let Some(v) = get("RAMPART_DASHBOARD_ENABLED") {
            self.dashboard.enabled = parse_switch("RAMPART_DASHBOARD_ENABLED", v)?;
        }
        if let Some(v) = get("RAMPART_DASHBOARD_LISTEN") {
            self.dashboard.listen = v
                .parse()
                .context("RAMPART_DASHBOARD_LISTEN must be HOST:PORT")?;
        }
        if let Some(v) = get("RAMPART_AUTH_URL_BASE") {
            self.policy.auth_url_base = v.to_string();
        }
        if let Some(v) = get("RAMPART_APPROVAL_TIMEOUT_SECS") {
            self.policy.approval_timeout_secs = v
                .parse()
                .context("RAMPART_APPROVAL_TIMEOUT_SECS must be a number")?;
        }
        if let Some(v) = get("RAMPART_RATE_BURST") {
            self.policy.rate_burst = v.parse().context("RAMPART_RATE_BURST must be a number")?;
        }
        if let Some(v) = get("RAMPART_RATE_PER_SECOND") {
            self.policy.rate_per_second = v
                .parse()
                .context("RAMPART_RATE_PER_SECOND must be a number")?;
        }
        if let Some(v) = get("RAMPART_DATABASE") {
            self.database = Some(v.to_string());
        }
        if let Some(v) = get("RAMPART_REPLICA") {
            self.replica.name = Some(v.to_string());
        }
        if let Some(v) = get("RAMPART_METRICS_LISTEN") {
            self.metrics.listen = Some(
                v.parse()
                    .context("RAMPART_METRICS_LISTEN must be HOST:PORT")?,
            );
        }
        // Empty is a value here: no kind always asks.
        if let Some(v) = env.get("RAMPART_SENSITIVE_KINDS") {
            self.policy.sensitive_kinds = store::codec::kinds_from_text(v)
                .map_err(|e| anyhow::anyhow!("RAMPART_SENSITIVE_KINDS: {e}"))?;
        }
        if let Some(v) = get("RAMPART_AUDIT_KEEP_DAYS") {
            let days: u32 = v
                .parse()
                .context("RAMPART_AUDIT_KEEP_DAYS must be a number of days")?;
            self.audit.keep_days = Some(days);
        }
        if let Some(v) = get("RAMPART_ANNOUNCE") {
            self.discovery.announce = parse_switch("RAMPART_ANNOUNCE", v)?;
        }
        if let Some(v) = get("RAMPART_PUBLIC_URL") {
            self.discovery.public_url = v.to_string();
        }
        if let Some(v) = get("RAMPART_MAX_MESSAGE_BYTES") {
            self.max_message_bytes = v
                .parse()
                .context("RAMPART_MAX_MESSAGE_BYTES must be a number")?;
        }
        if let Some(v) = get("RAMPART_RELAY_EVENTS_PER_SECOND") {
            self.relay.events_per_second = v
                .parse()
                .context("RAMPART_RELAY_EVENTS_PER_SECOND must be a number")?;
        }
        if let Some(v) = get("RAMPART_START_LINKS_MINUTES") {
            self.start_links_minutes = v
                .parse()
                .context("RAMPART_START_LINKS_MINUTES must be a number")?;
        }
        if let Some(v) = get("RAMPART_VAULT_LOG_N") {
            self.vault.log_n = v.parse().context("RAMPART_VAULT_LOG_N must be a number")?;
        }
        Ok(())
    }

    /// This replica's protocol settings.
    pub fn replica_config(&self) -> Result<bunker::replicas::ReplicaConfig> {
        let name = match &self.replica.name {
            Some(name) => name.clone(),
            None => default_replica_name(&self.data_dir),
        };
        let me =
            store::ReplicaId::parse(&name).with_context(|| format!("[replica] name `{name}`"))?;
        let mut config = bunker::replicas::ReplicaConfig::new(me);
        if let Some(lease) = self.replica.lease_ms {
            if lease < 1_000 {
                bail!("[replica] lease_ms must be at least 1000");
            }
            config.lease_ms = lease;
            config.beat_ms = lease / 5;
        }
        Ok(config)
    }

    /// The selected store.
    pub fn database(&self) -> Result<Database> {
        Database::select(self.database.as_deref(), &self.data_dir)
    }

    /// The configured relays, parsed.
    pub fn relay_urls(&self) -> Result<Vec<RelayUrl>> {
        self.relays
            .iter()
            .map(|r| {
                RelayUrl::parse(r)
                    .with_context(|| format!("`{r}` is not a ws:// or wss:// relay URL"))
            })
            .collect()
    }

    /// The default grant, parsed.
    pub fn default_grant(&self) -> Result<PermissionSet> {
        parse_grant(&self.default_grant)
    }

    /// The engine settings for serving on `relays`, with the dashboard (if
    /// it runs) bound to `dashboard`.
    pub fn engine(
        &self,
        relays: Vec<RelayUrl>,
        dashboard: Option<SocketAddr>,
    ) -> Result<EngineConfig> {
        let auth_url_base = self.auth_url_base(dashboard)?;
        Ok(EngineConfig {
            relays,
            past_window_secs: self.policy.past_window_secs,
            future_window_secs: self.policy.future_window_secs,
            rate_limit: RateLimit {
                burst: self.policy.rate_burst,
                per_second: self.policy.rate_per_second,
            },
            unlisted: self.policy.unlisted,
            approval_timeout_secs: self.policy.approval_timeout_secs,
            auth_url_base,
            max_held_per_session: self.policy.held_per_session.max(1),
            max_held_total: self.policy.held_total.max(1),
            limits: self.limits(),
            sensitive_kinds: self.policy.sensitive_kinds.clone(),
            ..EngineConfig::default()
        })
    }
}

impl Config {
    /// The size bounds of requests and of everything derived from them.
    pub fn limits(&self) -> nip46::Limits {
        nip46::Limits::new(self.max_message_bytes)
    }

    /// How long the links `rampart run` prints at start work.
    pub fn start_links_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.start_links_minutes.max(1).saturating_mul(60))
    }
}

/// A grant: a preset name or a permission list.
pub fn parse_grant(text: &str) -> Result<PermissionSet> {
    text.parse::<PermissionSet>().with_context(|| {
        format!("`{text}` is not a preset (read, write, encrypt, full) or permission list")
    })
}

impl Config {
    /// Where `auth_url` challenges point, or `None` when they are off: the
    /// configured base (which turns them on), else, with `auth_url = true`,
    /// the dashboard bound at `dashboard`. Only `https:` or loopback `http:`
    /// bases pass ([`AuthUrlBase`]).
    pub fn auth_url_base(&self, dashboard: Option<SocketAddr>) -> Result<Option<AuthUrlBase>> {
        let configured = self.policy.auth_url_base.trim();
        if !configured.is_empty() {
            let base = AuthUrlBase::parse(configured).context("invalid [policy] auth_url_base")?;
            return Ok(Some(base));
        }
        if !self.policy.auth_url {
            return Ok(None);
        }
        let Some(addr) = dashboard else {
            bail!(
                "[policy] auth_url = true points apps at the dashboard's approval pages: \
                 enable the dashboard, or set auth_url_base"
            );
        };
        let base = AuthUrlBase::parse(&format!("http://{addr}")).context(
            "the dashboard is not on a loopback address, so its plain-HTTP URL cannot be an \
             auth_url: set [policy] auth_url_base to the https:// URL a proxy serves it at",
        )?;
        Ok(Some(base))
    }

    /// The dashboard's listen address, checked: loopback unless `allow_remote`.
    pub fn dashboard_listen(&self) -> Result<SocketAddr> {
        let listen = self.dashboard.listen;
        if !listen.ip().is_loopback() && !self.dashboard.allow_remote {
            bail!(
                "the dashboard would listen on {listen}, which is not a loopback address; it \
                 serves plain HTTP, so put it behind a TLS proxy and set [dashboard] \
                 allow_remote = true, or listen on 127.0.0.1"
            );
        }
        Ok(listen)
    }
}

/// `true`/`false` (also `1`/`0`, `on`/`off`, `yes`/`no`) from an environment variable.
fn parse_switch(name: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => bail!("{name} must be true or false"),
    }
}

/// The annotated example printed by `rampart config default`.
pub fn example() -> String {
    let defaults = Config::default();
    format!(
        r#"# Rampart configuration. Precedence: defaults < this file < RAMPART_* env < flags.
# The vault passphrase is never read from here: use a prompt or RAMPART_PASSPHRASE.

# Database and config directory (env RAMPART_DATA_DIR, flag --data-dir).
data_dir = "{data_dir}"

# Relays to serve on (env RAMPART_RELAYS, comma-separated; flag --relay).
# Empty: start the embedded relay on `embedded_relay` and use it.
relays = []
embedded_relay = "{embedded}"

# Grant of the bunker:// tokens `rampart run` prints (preset or permission list).
default_grant = "{grant}"
# Minutes those tokens and the dashboard login link printed at start work
# (each once; env RAMPART_START_LINKS_MINUTES). Each start revokes the
# unused ones earlier starts printed.
start_links_minutes = {start_links}

# The largest request taken, in bytes of JSON before encryption (env
# RAMPART_MAX_MESSAGE_BYTES). Larger ones are answered invalid_params with the
# limit. The embedded relay's frame limit follows; relays you serve on must take
# the events too (a 1 MiB request is ~1.4 MiB of NIP-44 content).
max_message_bytes = {max_message}

[policy]
# Requests no rule covers: "ask" (hold for the user) or "deny".
unlisted = "ask"
approval_timeout_secs = {timeout}
# auth_url challenges (env RAMPART_AUTH_URL): answer a held request at once with a
# link to its approval page, then with the real answer (same request id). Off by
# default: a loopback link only opens on this machine, and not every app shows it.
auth_url = false
# Base of those links (env RAMPART_AUTH_URL_BASE): https://, or http:// on loopback.
# Empty: the dashboard's address. Setting it (e.g. behind a reverse proxy) turns auth_url on.
auth_url_base = ""
past_window_secs = {past}
future_window_secs = {future}
rate_burst = {burst}
rate_per_second = {rate}
# Requests waiting for you, at most per app and in all (more: rate_limited).
held_per_session = {held_per_session}
held_total = {held_total}
# Kinds that always ask, whatever an app was granted (env RAMPART_SENSITIVE_KINDS):
# 0 profile, 3 follow list, 5 deletion, 10002 relay list. A key's own list:
# `rampart policy sensitive --key NAME --kinds …`.
sensitive_kinds = [0, 3, 5, 10002]

[vault]
# NIP-49 scrypt cost for newly encrypted keys (16 = 64 MiB, ~0.1-0.2 s).
log_n = {log_n}

[dashboard]
# The web dashboard `rampart run` serves: pending requests, connections, pairing,
# the audit log (env RAMPART_DASHBOARD_ENABLED, RAMPART_DASHBOARD_LISTEN). A one-time
# login link is printed on stderr at start; `rampart dashboard login` prints a new one.
enabled = true
listen = "{dashboard}"
# Plain HTTP: a non-loopback `listen` is refused unless this is true (put TLS in front).
allow_remote = false
session_hours = {session_hours}

[relay]
# The embedded relay (used when `relays` is empty). It serves NIP-46 only
# (kind 24133, and kind 31990 signer announcements) unless any_kind is true.
any_kind = false
# Events one connection may publish per second (env RAMPART_RELAY_EVENTS_PER_SECOND);
# the bunker's own connection is never limited.
events_per_second = {relay_rate}
# Browsers may connect only from these origins when set. Empty by default:
# web apps served from other origins legitimately use a local bunker.
allowed_origins = []

[discovery]
# At start, publish a NIP-89 kind:31990 announcement (k = 24133) on the relays
# served, authored by the signer key of the oldest user key; the dashboard serves
# /.well-known/nostr.json with that pubkey as names._ (NIP-05, NIP-46 appendix).
# Env RAMPART_ANNOUNCE.
announce = true
name = "Rampart"
# The dashboard's public https:// address (behind a TLS proxy; env
# RAMPART_PUBLIC_URL). When set, the announcement names its pairing page
# (nostrconnect_url) and _@<host> (nip05).
public_url = ""
# Key names also published in nostr.json (each as its signer pubkey).
names = []

[audit]
# Days audit rows are kept (env RAMPART_AUDIT_KEEP_DAYS); older ones are pruned
# hourly and the hash chain verifies from the last one pruned. Unset: kept for ever.
# keep_days = 365
"#,
        data_dir = defaults.data_dir.display(),
        embedded = defaults.embedded_relay,
        grant = defaults.default_grant,
        timeout = defaults.policy.approval_timeout_secs,
        past = defaults.policy.past_window_secs,
        future = defaults.policy.future_window_secs,
        burst = defaults.policy.rate_burst,
        rate = defaults.policy.rate_per_second,
        log_n = defaults.vault.log_n,
        dashboard = defaults.dashboard.listen,
        session_hours = defaults.dashboard.session_hours,
        start_links = defaults.start_links_minutes,
        max_message = defaults.max_message_bytes,
        held_per_session = defaults.policy.held_per_session,
        held_total = defaults.policy.held_total,
        relay_rate = defaults.relay.events_per_second,
    )
}

/// The host name and 8 hex digits of the data directory's path: stable
/// across restarts, distinct for two data directories on one host.
fn default_replica_name(data_dir: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rampart".to_owned());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(40)
        .collect();
    let path = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}:{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), zeroize::Zeroizing::new(v.to_string())))
            .collect()
    }

    #[test]
    fn example_parses_to_defaults() {
        let parsed: Config = toml::from_str(&example()).unwrap();
        assert_eq!(parsed.default_grant, "write");
        assert_eq!(parsed.policy.approval_timeout_secs, 60);
        assert_eq!(parsed.max_message_bytes, 1024 * 1024);
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rampart.toml");
        std::fs::write(&file, "default_grant = \"read\"\nrelays = [\"wss://file.example\"]\n[policy]\nunlisted = \"deny\"\n").unwrap();
        let flags = Overrides {
            config: None,
            data_dir: Some(dir.path().to_path_buf()),
            database: None,
        };
        // File over defaults.
        let c = Config::load(&flags, &env(&[])).unwrap();
        assert_eq!(c.default_grant, "read");
        assert_eq!(c.policy.unlisted, UnlistedPolicy::Deny);
        assert_eq!(c.relays, vec!["wss://file.example"]);
        // Env over file.
        let c = Config::load(
            &flags,
            &env(&[
                ("RAMPART_DEFAULT_GRANT", "full"),
                ("RAMPART_RELAYS", "wss://a.example, wss://b.example"),
            ]),
        )
        .unwrap();
        assert_eq!(c.default_grant, "full");
        assert_eq!(c.relays.len(), 2);
        // Flag over env.
        let c = Config::load(&flags, &env(&[("RAMPART_DATA_DIR", "/elsewhere")])).unwrap();
        assert_eq!(c.data_dir, dir.path());
    }

    #[test]
    fn auth_url_defaults_to_the_dashboard_only_when_asked() {
        let loopback: SocketAddr = "127.0.0.1:7448".parse().unwrap();
        let off = Config::default();
        assert_eq!(
            off.auth_url_base(Some(loopback)).unwrap(),
            None,
            "off by default"
        );
        let on =
            Config::load(&Overrides::default(), &env(&[("RAMPART_AUTH_URL", "true")])).unwrap();
        let base = on.auth_url_base(Some(loopback)).unwrap().unwrap();
        assert_eq!(base.as_str(), "http://127.0.0.1:7448");
        assert!(
            on.auth_url_base(None).is_err(),
            "no dashboard, no base: refused at start"
        );
        let remote: SocketAddr = "0.0.0.0:7448".parse().unwrap();
        assert!(
            on.auth_url_base(Some(remote)).is_err(),
            "never a plain-HTTP non-loopback URL"
        );
        let proxied = Config::load(
            &Overrides::default(),
            &env(&[("RAMPART_AUTH_URL_BASE", "https://signer.example/")]),
        )
        .unwrap();
        let base = proxied.auth_url_base(None).unwrap().unwrap();
        assert_eq!(
            base.as_str(),
            "https://signer.example",
            "a base turns auth_url on"
        );
    }

    #[test]
    fn dashboard_listens_on_loopback_unless_allowed() {
        let c = Config::load(&Overrides::default(), &env(&[])).unwrap();
        assert!(c.dashboard.enabled);
        assert_eq!(
            c.dashboard_listen().unwrap(),
            "127.0.0.1:7448".parse().unwrap()
        );
        let mut c = Config::load(
            &Overrides::default(),
            &env(&[
                ("RAMPART_DASHBOARD_LISTEN", "0.0.0.0:80"),
                ("RAMPART_DASHBOARD_ENABLED", "off"),
            ]),
        )
        .unwrap();
        assert!(!c.dashboard.enabled);
        assert!(c.dashboard_listen().is_err());
        c.dashboard.allow_remote = true;
        assert!(c.dashboard_listen().is_ok());
        assert!(
            Config::load(
                &Overrides::default(),
                &env(&[("RAMPART_AUTH_URL", "perhaps")])
            )
            .is_err()
        );
    }

    #[test]
    fn bad_values_are_reported() {
        let flags = Overrides::default();
        assert!(Config::load(&flags, &env(&[("RAMPART_UNLISTED", "maybe")])).is_err());
        let c = Config {
            policy: PolicyConfig {
                auth_url_base: "http://example.com".into(),
                ..PolicyConfig::default()
            },
            ..Config::default()
        };
        assert!(c.engine(vec![], None).is_err());
        let c = Config {
            policy: PolicyConfig {
                auth_url_base: "http://127.0.0.1:8080".into(),
                ..PolicyConfig::default()
            },
            ..Config::default()
        };
        assert!(c.engine(vec![], None).is_ok());
        assert!(parse_grant("everything").is_err());
    }

    #[test]
    fn values_that_would_break_later_are_refused() {
        let o = Overrides::default();
        for (k, v) in [
            ("RAMPART_VAULT_LOG_N", "21"),
            ("RAMPART_VAULT_LOG_N", "0"),
            ("RAMPART_APPROVAL_TIMEOUT_SECS", "0"),
            ("RAMPART_RATE_PER_SECOND", "NaN"),
            ("RAMPART_RATE_PER_SECOND", "-1"),
            ("RAMPART_START_LINKS_MINUTES", "99999999999"),
            ("RAMPART_START_LINKS_MINUTES", "0"),
        ] {
            let e = env(&[(k, v), ("RAMPART_DATA_DIR", "/nonexistent-rampart")]);
            assert!(Config::load(&o, &e).is_err(), "{k}={v} accepted");
        }
        let e = env(&[
            ("RAMPART_VAULT_LOG_N", "20"),
            ("RAMPART_DATA_DIR", "/nonexistent-rampart"),
        ]);
        assert_eq!(Config::load(&o, &e).unwrap().vault.log_n, 20);
    }
}
