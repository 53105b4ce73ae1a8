//! Logging in with a NIP-05 address (`name@domain`) instead of a token.
//!
//! The domain's `/.well-known/nostr.json?name=<name>` names the remote
//! signer's pubkey (`names`) and the relays it listens on (`nip46.relays`, or
//! the older `nip46: {<pubkey>: [relays]}` form). The result is a
//! [`BunkerUri`] without a secret: signers that admit clients by secret only
//! will refuse the `connect` that follows.
//!
//! Fetching is HTTPS through reqwest (rustls with the ring provider and
//! Mozilla's roots, like the relay transport). Loopback domains
//! (`127.0.0.1:8080`, `localhost`) are fetched over plain HTTP so tests and
//! local setups need no certificate. Redirects are refused, as NIP-05
//! requires, and responses are size-limited.

use core::fmt;
use core::str::FromStr;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nip46::nostr::prelude::{PublicKey, RelayUrl};
use nip46::{BunkerUri, MAX_URI_RELAYS};
use serde_json::Value;
use url::Url;

/// Largest `nostr.json` read, in bytes.
pub const MAX_DOCUMENT_LEN: usize = 256 * 1024;

/// Why a NIP-05 login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Nip05Error {
    /// Not `name@domain` (or a bare domain).
    #[error(
        "`{0}` is not a NIP-05 address: expected name@domain, the name made of a-z, 0-9, '-', '_' and '.'"
    )]
    InvalidAddress(String),
    /// The server could not be reached or did not answer in time.
    #[error("could not fetch {url}: {reason}")]
    Http {
        /// The URL fetched.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server answered with another status (redirects included: NIP-05
    /// forbids following them).
    #[error("{url} answered HTTP {status}; expected 200 without redirects")]
    Status {
        /// The URL fetched.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The document is not JSON or too large.
    #[error("{url} is not a nostr.json document: {reason}")]
    Document {
        /// The URL fetched.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The name is not in `names`.
    #[error("`{name}` is not listed in {domain}'s nostr.json")]
    UnknownName {
        /// The name.
        name: String,
        /// The domain.
        domain: String,
    },
    /// `names[name]` is not a hex pubkey.
    #[error("{domain}'s nostr.json maps `{name}` to something that is not a hex public key")]
    BadPubkey {
        /// The name.
        name: String,
        /// The domain.
        domain: String,
    },
    /// No usable NIP-46 relay list.
    #[error(
        "{domain}'s nostr.json lists no NIP-46 relays for `{name}` (expected `nip46.relays`); use a bunker:// token instead"
    )]
    NoRelays {
        /// The name.
        name: String,
        /// The domain.
        domain: String,
    },
}

/// A NIP-05 address, `name@domain` (a bare `domain` means `_@domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nip05Address {
    /// The local part, lower-cased.
    pub name: String,
    /// The domain, optionally with a port.
    pub domain: String,
}

impl FromStr for Nip05Address {
    type Err = Nip05Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || Nip05Error::InvalidAddress(s.chars().take(80).collect());
        let s = s.trim();
        let (name, domain) = s.split_once('@').unwrap_or(("_", s));
        let name = name.to_ascii_lowercase();
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !name_ok || domain.is_empty() || domain.contains(['/', '?', '#', '@', ' ']) {
            return Err(invalid());
        }
        // The domain must make a URL host (and optional port) on its own.
        let probe = Url::parse(&format!("https://{domain}/")).map_err(|_| invalid())?;
        if probe.host_str().is_none() || probe.path() != "/" {
            return Err(invalid());
        }
        Ok(Nip05Address {
            name,
            domain: domain.to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for Nip05Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.domain)
    }
}

impl Nip05Address {
    /// Whether the domain is a loopback host (fetched over plain HTTP).
    pub fn is_loopback(&self) -> bool {
        let Ok(url) = Url::parse(&format!("http://{}/", self.domain)) else {
            return false;
        };
        match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            None => false,
        }
    }

    /// `https://<domain>/.well-known/nostr.json?name=<name>` (`http` on loopback).
    pub fn well_known_url(&self) -> Result<Url, Nip05Error> {
        let scheme = if self.is_loopback() { "http" } else { "https" };
        let mut url = Url::parse(&format!(
            "{scheme}://{}/.well-known/nostr.json",
            self.domain
        ))
        .map_err(|_| Nip05Error::InvalidAddress(self.to_string()))?;
        url.query_pairs_mut().append_pair("name", &self.name);
        Ok(url)
    }

    /// Read the signer's pubkey and relays from the bytes of a `nostr.json`
    /// document fetched from `url` (named in errors).
    pub fn read_body(&self, body: &[u8], url: &str) -> Result<BunkerUri, Nip05Error> {
        let document: Value = serde_json::from_slice(body).map_err(|e| Nip05Error::Document {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        self.read_document(&document)
    }

    /// Read the signer's pubkey and relays from a `nostr.json` document.
    pub fn read_document(&self, document: &Value) -> Result<BunkerUri, Nip05Error> {
        let (name, domain) = (self.name.clone(), self.domain.clone());
        let pubkey = document
            .get("names")
            .and_then(|n| n.get(&self.name))
            .ok_or_else(|| Nip05Error::UnknownName {
                name: name.clone(),
                domain: domain.clone(),
            })?;
        let signer = pubkey
            .as_str()
            .filter(|s| s.len() == 64)
            .and_then(|s| PublicKey::from_hex(s).ok())
            .ok_or_else(|| Nip05Error::BadPubkey {
                name: name.clone(),
                domain: domain.clone(),
            })?;
        let nip46 = document.get("nip46");
        let list = nip46
            .and_then(|n| n.get("relays"))
            .or_else(|| nip46.and_then(|n| n.get(signer.to_hex())))
            .and_then(Value::as_array);
        let mut relays: Vec<RelayUrl> = Vec::new();
        for relay in list.into_iter().flatten().filter_map(Value::as_str) {
            if let Ok(url) = RelayUrl::parse(relay)
                && !relays.contains(&url)
                && relays.len() < MAX_URI_RELAYS
            {
                relays.push(url);
            }
        }
        if relays.is_empty() {
            return Err(Nip05Error::NoRelays { name, domain });
        }
        Ok(BunkerUri {
            signer,
            relays,
            secret: None,
        })
    }
}

/// Look up a NIP-05 address and return the `bunker://` equivalent.
pub async fn resolve(address: &Nip05Address, timeout: Duration) -> Result<BunkerUri, Nip05Error> {
    let url = address.well_known_url()?;
    let shown = url.to_string();
    let http = |reason: String| Nip05Error::Http {
        url: shown.clone(),
        reason,
    };
    let client = http_client(timeout).map_err(http)?;
    let fetch = async {
        let mut response = client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| http(e.to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(Nip05Error::Status {
                url: shown.clone(),
                status,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| http(e.to_string()))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_LEN {
                return Err(Nip05Error::Document {
                    url: shown.clone(),
                    reason: format!("larger than {MAX_DOCUMENT_LEN} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| http(format!("no answer within {timeout:?}")))??;
    address.read_body(&body, &shown)
}

/// The HTTP client: rustls with the ring provider and Mozilla's roots (the
/// TLS configuration is built once), no redirects, bounded by `timeout`.
fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    static TLS: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    let tls = TLS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .map_err(|e| format!("TLS setup failed: {e}"))
    });
    let tls = tls.clone()?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("rampart/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PK: &str = "fa984bd7dbb282f07e16e7ae87b26a2a7b9b90b7246a44771f0cf5ae58018f52";

    fn addr(s: &str) -> Nip05Address {
        s.parse().unwrap()
    }

    #[test]
    fn addresses() {
        let a = addr("Bob@Example.com");
        assert_eq!((a.name.as_str(), a.domain.as_str()), ("bob", "example.com"));
        assert_eq!(
            a.well_known_url().unwrap().as_str(),
            "https://example.com/.well-known/nostr.json?name=bob"
        );
        assert_eq!(addr("example.com").name, "_");
        let local = addr("alice@127.0.0.1:8080");
        assert!(local.is_loopback());
        assert_eq!(
            local.well_known_url().unwrap().as_str(),
            "http://127.0.0.1:8080/.well-known/nostr.json?name=alice"
        );
        assert!(addr("a@localhost").is_loopback());
        assert!(!addr("a@127.example.com").is_loopback());
        for bad in [
            "",
            "@example.com",
            "bo b@example.com",
            "bob@",
            "bob@ex/ample",
            "b!@x.com",
            "a@b@c",
        ] {
            assert!(bad.parse::<Nip05Address>().is_err(), "{bad}");
        }
    }

    #[test]
    fn documents() {
        let a = addr("bob@example.com");
        let doc = json!({"names": {"bob": PK}, "nip46": {"relays": ["wss://r1.example", "wss://r1.example", "bad"]}});
        let uri = a.read_document(&doc).unwrap();
        assert_eq!(uri.signer.to_hex(), PK);
        assert_eq!(uri.relays.len(), 1);
        assert!(uri.secret.is_none());

        // The older per-pubkey form.
        let doc = json!({"names": {"bob": PK}, "nip46": {PK: ["wss://r2.example"]}});
        assert_eq!(
            a.read_document(&doc).unwrap().relays[0].as_str(),
            "wss://r2.example"
        );

        let doc = json!({"names": {"alice": PK}, "nip46": {"relays": ["wss://r.example"]}});
        assert!(matches!(
            a.read_document(&doc),
            Err(Nip05Error::UnknownName { .. })
        ));
        let doc = json!({"names": {"bob": "npub1xyz"}, "nip46": {"relays": ["wss://r.example"]}});
        assert!(matches!(
            a.read_document(&doc),
            Err(Nip05Error::BadPubkey { .. })
        ));
        let doc = json!({"names": {"bob": PK}, "relays": {PK: ["wss://user.example"]}});
        assert!(matches!(
            a.read_document(&doc),
            Err(Nip05Error::NoRelays { .. })
        ));
    }
}
