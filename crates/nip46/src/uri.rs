//! `bunker://` and `nostrconnect://` connection tokens.
//!
//! `bunker://<signer-pubkey>?relay=…&secret=…` is minted by the signer and
//! pasted into a client; `nostrconnect://<client-pubkey>?relay=…&secret=…`
//! is minted by the client and pasted into the signer. Both parse from and
//! display to text, and `parse(display(uri)) == uri`.

use core::fmt;
use core::str::FromStr;

use nostr::prelude::{PublicKey, RelayUrl};
use url::Url;
use url::form_urlencoded;

use crate::method::truncate_for_display;
use crate::permission::PermissionSet;
use crate::secret::ConnectSecret;

/// More relays than this in one token is refused: each one is a connection the
/// reader of the token will open.
pub const MAX_URI_RELAYS: usize = 16;
/// Longest accepted `secret`, `name`, `url` or `image` value, in bytes.
pub const MAX_URI_FIELD_LEN: usize = 2048;

/// Why a connection token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// The text is not a URI at all.
    #[error("not a URI: {0}")]
    Malformed(String),
    /// The URI has another scheme.
    #[error("expected a `{expected}://` URI, found `{found}://`")]
    WrongScheme {
        /// The scheme this type reads.
        expected: &'static str,
        /// The scheme the text had.
        found: String,
    },
    /// The part after `://` is not a public key.
    #[error("`{0}` is not a public key: expected 64 hex characters (or an npub)")]
    InvalidPubkey(String),
    /// The token names no relay.
    #[error("the URI has no `relay` parameter; at least one ws:// or wss:// relay is required")]
    MissingRelay,
    /// A relay is not a `ws://` or `wss://` URL.
    #[error("relay `{0}` is not a ws:// or wss:// URL")]
    InvalidRelay(String),
    /// Too many relays.
    #[error("the URI lists more than {MAX_URI_RELAYS} relays")]
    TooManyRelays,
    /// `nostrconnect://` requires a secret (NIP-46: it prevents connection spoofing).
    #[error("the nostrconnect:// URI has no `secret` parameter, which NIP-46 requires")]
    MissingSecret,
    /// A parameter that may appear once appeared twice.
    #[error("parameter `{0}` appears more than once")]
    DuplicateParam(&'static str),
    /// A parameter is empty or longer than [`MAX_URI_FIELD_LEN`].
    #[error("parameter `{0}` is empty or longer than {MAX_URI_FIELD_LEN} bytes")]
    BadField(&'static str),
}

/// A `bunker://` token: how a client reaches a signer.
pub struct BunkerUri {
    /// The remote signer's pubkey (not necessarily the user's).
    pub signer: PublicKey,
    /// Relays the signer listens on.
    pub relays: Vec<RelayUrl>,
    /// Optional single-use connection secret.
    pub secret: Option<ConnectSecret>,
}

/// A `nostrconnect://` token: a client asking a signer to connect to it.
pub struct NostrConnectUri {
    /// The client's pubkey.
    pub client: PublicKey,
    /// Relays the client listens on for the signer's response.
    pub relays: Vec<RelayUrl>,
    /// The secret the signer must return as the `connect` result.
    pub secret: ConnectSecret,
    /// Permissions the client asks for.
    pub perms: Option<PermissionSet>,
    /// Client name (an unverified display hint).
    pub name: Option<String>,
    /// Client URL (an unverified display hint).
    pub url: Option<String>,
    /// Client image URL (an unverified display hint).
    pub image: Option<String>,
}

/// The query parameters both URI kinds share, gathered once.
#[derive(Default)]
struct Query {
    relays: Vec<RelayUrl>,
    secret: Option<ConnectSecret>,
    perms: Option<PermissionSet>,
    name: Option<String>,
    url: Option<String>,
    image: Option<String>,
}

fn parse_common(s: &str, expected: &'static str) -> Result<(PublicKey, Query), UriError> {
    let url = Url::parse(s.trim()).map_err(|e| UriError::Malformed(e.to_string()))?;
    if url.scheme() != expected {
        return Err(UriError::WrongScheme {
            expected,
            found: truncate_for_display(url.scheme()),
        });
    }
    let host = url.host_str().unwrap_or_default();
    let pubkey = parse_pubkey(host)?;
    let mut query = Query::default();
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "relay" => {
                if query.relays.len() == MAX_URI_RELAYS {
                    return Err(UriError::TooManyRelays);
                }
                let relay = RelayUrl::parse(&value)
                    .map_err(|_| UriError::InvalidRelay(truncate_for_display(&value)))?;
                if !query.relays.contains(&relay) {
                    query.relays.push(relay);
                }
            }
            "secret" => set_once(&mut query.secret, "secret", &value, |v| {
                ConnectSecret::new(v)
            })?,
            "perms" => set_once(&mut query.perms, "perms", &value, |v| {
                PermissionSet::parse_lenient(v).0
            })?,
            "name" => set_once(&mut query.name, "name", &value, str::to_owned)?,
            "url" => set_once(&mut query.url, "url", &value, str::to_owned)?,
            "image" => set_once(&mut query.image, "image", &value, str::to_owned)?,
            // Unknown parameters are someone else's extension; ignore them.
            _ => {}
        }
    }
    if query.relays.is_empty() {
        return Err(UriError::MissingRelay);
    }
    Ok((pubkey, query))
}

fn set_once<T>(
    slot: &mut Option<T>,
    name: &'static str,
    value: &str,
    make: impl FnOnce(&str) -> T,
) -> Result<(), UriError> {
    if slot.is_some() {
        return Err(UriError::DuplicateParam(name));
    }
    if value.len() > MAX_URI_FIELD_LEN || (name == "secret" && value.is_empty()) {
        return Err(UriError::BadField(name));
    }
    *slot = Some(make(value));
    Ok(())
}

/// Accept hex (the NIP's form) and, liberally, an npub.
fn parse_pubkey(s: &str) -> Result<PublicKey, UriError> {
    let parsed = if s.len() == 64 {
        PublicKey::from_hex(s)
    } else if s.starts_with("npub1") {
        PublicKey::parse(s)
    } else {
        return Err(UriError::InvalidPubkey(truncate_for_display(s)));
    };
    parsed.map_err(|_| UriError::InvalidPubkey(truncate_for_display(s)))
}

fn write_query(f: &mut fmt::Formatter<'_>, pairs: &[(&str, &str)]) -> fmt::Result {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    f.write_str(&ser.finish())
}

fn relay_pairs(relays: &[RelayUrl]) -> Vec<(&'static str, &str)> {
    relays.iter().map(|r| ("relay", r.as_str())).collect()
}

impl FromStr for BunkerUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (signer, query) = parse_common(s, "bunker")?;
        Ok(BunkerUri {
            signer,
            relays: query.relays,
            secret: query.secret,
        })
    }
}

impl fmt::Display for BunkerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bunker://{}?", self.signer.to_hex())?;
        let mut pairs = relay_pairs(&self.relays);
        if let Some(secret) = &self.secret {
            pairs.push(("secret", secret.expose()));
        }
        write_query(f, &pairs)
    }
}

impl fmt::Debug for BunkerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BunkerUri")
            .field("signer", &self.signer)
            .field("relays", &self.relays)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl PartialEq for BunkerUri {
    fn eq(&self, other: &Self) -> bool {
        self.signer == other.signer && self.relays == other.relays && self.secret == other.secret
    }
}

impl FromStr for NostrConnectUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (client, query) = parse_common(s, "nostrconnect")?;
        Ok(NostrConnectUri {
            client,
            relays: query.relays,
            secret: query.secret.ok_or(UriError::MissingSecret)?,
            perms: query.perms,
            name: query.name,
            url: query.url,
            image: query.image,
        })
    }
}

impl fmt::Display for NostrConnectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nostrconnect://{}?", self.client.to_hex())?;
        let perms = self.perms.as_ref().map(ToString::to_string);
        let mut pairs = relay_pairs(&self.relays);
        pairs.push(("secret", self.secret.expose()));
        let optional = [
            ("perms", perms.as_deref()),
            ("name", self.name.as_deref()),
            ("url", self.url.as_deref()),
            ("image", self.image.as_deref()),
        ];
        pairs.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
        write_query(f, &pairs)
    }
}

impl fmt::Debug for NostrConnectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NostrConnectUri")
            .field("client", &self.client)
            .field("relays", &self.relays)
            .field("secret", &"<redacted>")
            .field("perms", &self.perms)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("image", &self.image)
            .finish()
    }
}

impl PartialEq for NostrConnectUri {
    fn eq(&self, other: &Self) -> bool {
        self.client == other.client
            && self.relays == other.relays
            && self.secret == other.secret
            && self.perms == other.perms
            && self.name == other.name
            && self.url == other.url
            && self.image == other.image
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::Method;

    const SPEC_NOSTRCONNECT: &str = "nostrconnect://83f3b2ae6aa368e8275397b9c26cf550101d63ebaab900d19dd4a4429f5ad8f5?relay=wss%3A%2F%2Frelay1.example.com&perms=nip44_encrypt%2Cnip44_decrypt%2Csign_event%3A13%2Csign_event%3A14%2Csign_event%3A1059&name=My+Client&secret=0s8j2djs&relay=wss%3A%2F%2Frelay2.example2.com";

    #[test]
    fn parses_the_spec_nostrconnect_example() {
        let uri: NostrConnectUri = SPEC_NOSTRCONNECT.parse().unwrap();
        assert_eq!(
            uri.client.to_hex(),
            "83f3b2ae6aa368e8275397b9c26cf550101d63ebaab900d19dd4a4429f5ad8f5"
        );
        assert_eq!(uri.relays.len(), 2);
        assert_eq!(uri.relays[0].as_str(), "wss://relay1.example.com");
        assert_eq!(uri.relays[1].as_str(), "wss://relay2.example2.com");
        assert!(uri.secret.matches("0s8j2djs"));
        assert_eq!(uri.name.as_deref(), Some("My Client"));
        let perms = uri.perms.as_ref().unwrap();
        assert!(perms.allows(Method::SignEvent, Some(1059)));
        assert!(!perms.allows(Method::SignEvent, Some(1)));
        let again: NostrConnectUri = uri.to_string().parse().unwrap();
        assert_eq!(again, uri);
    }

    #[test]
    fn bunker_round_trip_and_unencoded_relays() {
        let s = "bunker://fa984bd7dbb282f07e16e7ae87b26a2a7b9b90b7246a44771f0cf5ae58018f52?relay=wss://relay.example.com&relay=ws://127.0.0.1:7777&secret=abc";
        let uri: BunkerUri = s.parse().unwrap();
        assert_eq!(uri.relays.len(), 2);
        assert!(uri.secret.as_ref().unwrap().matches("abc"));
        let shown = uri.to_string();
        assert!(shown.starts_with("bunker://fa984bd7"));
        assert!(shown.contains("relay=wss%3A%2F%2Frelay.example.com"));
        assert_eq!(shown.parse::<BunkerUri>().unwrap(), uri);
        assert!(!format!("{uri:?}").contains("abc"));
    }

    #[test]
    fn bunker_without_secret_is_fine() {
        let uri: BunkerUri =
            "bunker://fa984bd7dbb282f07e16e7ae87b26a2a7b9b90b7246a44771f0cf5ae58018f52?relay=wss%3A%2F%2Fr.example"
                .parse()
                .unwrap();
        assert!(uri.secret.is_none());
    }

    #[test]
    fn precise_errors() {
        let pk = "fa984bd7dbb282f07e16e7ae87b26a2a7b9b90b7246a44771f0cf5ae58018f52";
        assert!(matches!(
            "not a uri".parse::<BunkerUri>(),
            Err(UriError::Malformed(_))
        ));
        assert!(matches!(
            format!("nostrconnect://{pk}?relay=wss://r.example&secret=x").parse::<BunkerUri>(),
            Err(UriError::WrongScheme {
                expected: "bunker",
                ..
            })
        ));
        assert_eq!(
            "bunker://abc?relay=wss://r.example".parse::<BunkerUri>(),
            Err(UriError::InvalidPubkey("abc".into()))
        );
        assert_eq!(
            format!("bunker://{pk}").parse::<BunkerUri>(),
            Err(UriError::MissingRelay)
        );
        assert_eq!(
            format!("bunker://{pk}?relay=https://r.example").parse::<BunkerUri>(),
            Err(UriError::InvalidRelay("https://r.example".into()))
        );
        assert_eq!(
            format!("nostrconnect://{pk}?relay=wss://r.example").parse::<NostrConnectUri>(),
            Err(UriError::MissingSecret)
        );
        assert_eq!(
            format!("bunker://{pk}?relay=wss://r.example&secret=a&secret=b").parse::<BunkerUri>(),
            Err(UriError::DuplicateParam("secret"))
        );
        let many: String = (0..17)
            .map(|i| format!("&relay=wss://r{i}.example"))
            .collect();
        assert_eq!(
            format!("bunker://{pk}?x=1{many}").parse::<BunkerUri>(),
            Err(UriError::TooManyRelays)
        );
    }
}
