//! Configuration, layered in one place: defaults → file → `RAMPART_*`
//! environment → command-line flags, each layer overriding the one before.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bunker::engine::{EngineConfig, UnlistedPolicy};
use bunker::rate_limit::RateLimit;
use nip46::PermissionSet;
use nip46::nostr::prelude::RelayUrl;
use serde::{Deserialize, Serialize};

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
    /// Request policy.
    pub policy: PolicyConfig,
    /// Key encryption.
    pub vault: VaultConfig,
}

/// `[policy]`: how requests are decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// What happens to requests no rule covers: `ask` (hold for the user) or `deny`.
    pub unlisted: UnlistedPolicy,
    /// Seconds a held request waits for the user.
    pub approval_timeout_secs: u64,
    /// Base URL for `auth_url` challenges (https, or http on loopback). Empty: none.
    pub auth_url_base: String,
    /// Requests created longer ago than this are dropped.
    pub past_window_secs: u64,
    /// Requests created further ahead than this are dropped.
    pub future_window_secs: u64,
    /// Per-session burst.
    pub rate_burst: u32,
    /// Per-session sustained requests per second.
    pub rate_per_second: f64,
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
            policy: PolicyConfig::default(),
            vault: VaultConfig::default(),
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
            auth_url_base: String::new(),
            past_window_secs: engine.past_window_secs,
            future_window_secs: engine.future_window_secs,
            rate_burst: rate.burst,
            rate_per_second: rate.per_second,
        }
    }
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig { log_n: bunker::vault::DEFAULT_LOG_N }
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
}

impl Config {
    /// Build the configuration from every layer.
    pub fn load(overrides: &Overrides, env: &HashMap<String, String>) -> Result<Config> {
        let mut config = Config::default();
        // The data dir decides where the default config file is, so resolve it first.
        let data_dir = overrides
            .data_dir
            .clone()
            .or_else(|| env.get("RAMPART_DATA_DIR").map(PathBuf::from));
        let file = overrides.config.clone().or_else(|| env.get("RAMPART_CONFIG").map(PathBuf::from));
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
        Ok(config)
    }

    fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<()> {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty());
        if let Some(v) = get("RAMPART_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("RAMPART_RELAYS") {
            self.relays = v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        }
        if let Some(v) = get("RAMPART_EMBEDDED_RELAY") {
            self.embedded_relay = v.parse().context("RAMPART_EMBEDDED_RELAY must be HOST:PORT")?;
        }
        if let Some(v) = get("RAMPART_DEFAULT_GRANT") {
            self.default_grant = v.clone();
        }
        if let Some(v) = get("RAMPART_UNLISTED") {
            self.policy.unlisted = match v.as_str() {
                "ask" => UnlistedPolicy::Ask,
                "deny" => UnlistedPolicy::Deny,
                _ => bail!("RAMPART_UNLISTED must be `ask` or `deny`"),
            };
        }
        if let Some(v) = get("RAMPART_AUTH_URL_BASE") {
            self.policy.auth_url_base = v.clone();
        }
        if let Some(v) = get("RAMPART_APPROVAL_TIMEOUT_SECS") {
            self.policy.approval_timeout_secs = v.parse().context("RAMPART_APPROVAL_TIMEOUT_SECS must be a number")?;
        }
        if let Some(v) = get("RAMPART_RATE_BURST") {
            self.policy.rate_burst = v.parse().context("RAMPART_RATE_BURST must be a number")?;
        }
        if let Some(v) = get("RAMPART_RATE_PER_SECOND") {
            self.policy.rate_per_second = v.parse().context("RAMPART_RATE_PER_SECOND must be a number")?;
        }
        if let Some(v) = get("RAMPART_VAULT_LOG_N") {
            self.vault.log_n = v.parse().context("RAMPART_VAULT_LOG_N must be a number")?;
        }
        Ok(())
    }

    /// The SQLite file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("rampart.sqlite")
    }

    /// The configured relays, parsed.
    pub fn relay_urls(&self) -> Result<Vec<RelayUrl>> {
        self.relays
            .iter()
            .map(|r| RelayUrl::parse(r).with_context(|| format!("`{r}` is not a ws:// or wss:// relay URL")))
            .collect()
    }

    /// The default grant, parsed.
    pub fn default_grant(&self) -> Result<PermissionSet> {
        parse_grant(&self.default_grant)
    }

    /// The engine settings for serving on `relays`.
    pub fn engine(&self, relays: Vec<RelayUrl>) -> Result<EngineConfig> {
        let auth_url_base = match self.policy.auth_url_base.trim() {
            "" => None,
            base => Some(check_auth_url_base(base)?),
        };
        Ok(EngineConfig {
            relays,
            past_window_secs: self.policy.past_window_secs,
            future_window_secs: self.policy.future_window_secs,
            rate_limit: RateLimit { burst: self.policy.rate_burst, per_second: self.policy.rate_per_second },
            unlisted: self.policy.unlisted,
            approval_timeout_secs: self.policy.approval_timeout_secs,
            auth_url_base,
            ..EngineConfig::default()
        })
    }
}

/// A grant: a preset name or a permission list.
pub fn parse_grant(text: &str) -> Result<PermissionSet> {
    text.parse::<PermissionSet>()
        .with_context(|| format!("`{text}` is not a preset (read, write, encrypt, full) or permission list"))
}

/// `auth_url`s are only ever `https:` or loopback `http:`.
fn check_auth_url_base(base: &str) -> Result<String> {
    let url = url::Url::parse(base).with_context(|| format!("auth_url_base `{base}` is not a URL"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => Ok(base.to_owned()),
        "http" if loopback => Ok(base.to_owned()),
        _ => bail!("auth_url_base must be https://, or http:// on a loopback address"),
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

[policy]
# Requests no rule covers: "ask" (hold for the user) or "deny".
unlisted = "ask"
approval_timeout_secs = {timeout}
# When set, held requests get an auth_url challenge at <base>/approve/<id>.
auth_url_base = ""
past_window_secs = {past}
future_window_secs = {future}
rate_burst = {burst}
rate_per_second = {rate}

[vault]
# NIP-49 scrypt cost for newly encrypted keys (16 = 64 MiB, ~0.1-0.2 s).
log_n = {log_n}
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
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn example_parses_to_defaults() {
        let parsed: Config = toml::from_str(&example()).unwrap();
        assert_eq!(parsed.default_grant, "write");
        assert_eq!(parsed.policy.approval_timeout_secs, 60);
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rampart.toml");
        std::fs::write(&file, "default_grant = \"read\"\nrelays = [\"wss://file.example\"]\n[policy]\nunlisted = \"deny\"\n").unwrap();
        let flags = Overrides { config: None, data_dir: Some(dir.path().to_path_buf()) };
        // File over defaults.
        let c = Config::load(&flags, &env(&[])).unwrap();
        assert_eq!(c.default_grant, "read");
        assert_eq!(c.policy.unlisted, UnlistedPolicy::Deny);
        assert_eq!(c.relays, vec!["wss://file.example"]);
        // Env over file.
        let c = Config::load(&flags, &env(&[("RAMPART_DEFAULT_GRANT", "full"), ("RAMPART_RELAYS", "wss://a.example, wss://b.example")])).unwrap();
        assert_eq!(c.default_grant, "full");
        assert_eq!(c.relays.len(), 2);
        // Flag over env.
        let c = Config::load(&flags, &env(&[("RAMPART_DATA_DIR", "/elsewhere")])).unwrap();
        assert_eq!(c.data_dir, dir.path());
    }

    #[test]
    fn bad_values_are_reported() {
        let flags = Overrides::default();
        assert!(Config::load(&flags, &env(&[("RAMPART_UNLISTED", "maybe")])).is_err());
        let c = Config { policy: PolicyConfig { auth_url_base: "http://example.com".into(), ..PolicyConfig::default() }, ..Config::default() };
        assert!(c.engine(vec![]).is_err());
        let c = Config { policy: PolicyConfig { auth_url_base: "http://127.0.0.1:8080".into(), ..PolicyConfig::default() }, ..Config::default() };
        assert!(c.engine(vec![]).is_ok());
        assert!(parse_grant("everything").is_err());
    }
}
