//! Opening one client websocket: TCP with `TCP_NODELAY`, then TLS if
//! `wss://`, then the websocket handshake.
//!
//! The TCP stream is connected here rather than by tokio-tungstenite so that
//! `TCP_NODELAY` is set before the first byte: Nagle's algorithm otherwise
//! delays a small frame sent right after another by the peer's delayed ACK
//! (~40 ms on Linux), which is most of a NIP-46 round trip.

use std::sync::{Arc, OnceLock};

use nostr::prelude::RelayUrl;
use tokio::net::TcpStream;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream, client_async_tls_with_config};

use super::error::AddRelayError;
use crate::websocket;

/// A connected client websocket.
pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where a relay lives, parsed once when it is added.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) url: Arc<RelayUrl>,
    host: String,
    port: u16,
    tls: bool,
}

/// Why one connection attempt failed; the task logs it and retries.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("TCP connect failed: {0}")]
    Tcp(std::io::Error),
    #[error("could not set TCP_NODELAY: {0}")]
    NoDelay(std::io::Error),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("websocket handshake failed: {0}")]
    Handshake(#[from] tokio_tungstenite::tungstenite::Error),
}

impl Target {
    /// Parses a `ws://` or `wss://` relay URL.
    pub(crate) fn parse(url: &str) -> Result<Self, AddRelayError> {
        let invalid = |reason: String| AddRelayError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let relay_url = RelayUrl::parse(url).map_err(|e| invalid(e.to_string()))?;
        let parsed = url::Url::parse(relay_url.as_str()).map_err(|e| invalid(e.to_string()))?;
        let tls = match parsed.scheme() {
            "wss" => true,
            "ws" => false,
            other => return Err(invalid(format!("unsupported scheme {other:?}"))),
        };
        let host = match parsed.host() {
            Some(url::Host::Domain(domain)) => domain.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(AddRelayError::NoHost(url.to_owned())),
        };
        let port = parsed
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        Ok(Self {
            url: Arc::new(relay_url),
            host,
            port,
            tls,
        })
    }

    /// Opens the websocket (settings: [`websocket::config`]).
    pub(crate) async fn connect(&self, max_message_size: usize) -> Result<WsStream, ConnectError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(ConnectError::Tcp)?;
        tcp.set_nodelay(true).map_err(ConnectError::NoDelay)?;
        let connector = if self.tls {
            Connector::Rustls(tls_config().map_err(ConnectError::Tls)?)
        } else {
            Connector::Plain
        };
        let config = websocket::config(max_message_size);
        let (ws, _response) =
            client_async_tls_with_config(self.url.as_str(), tcp, Some(config), Some(connector))
                .await?;
        Ok(ws)
    }
}

/// The process-wide rustls client configuration: Mozilla's roots (bundled,
/// so it works in minimal containers) and the ring provider, chosen
/// explicitly so no process-global default provider is needed.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
                })
                .map_err(|e| e.to_string())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn parses_hosts_ports_and_schemes() {
        let t = Target::parse("ws://127.0.0.1:7000").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("127.0.0.1", 7000, false));
        let t = Target::parse("wss://relay.example.com/path").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.tls),
            ("relay.example.com", 443, true)
        );
        let t = Target::parse("ws://[::1]:8080").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
        assert!(Target::parse("http://example.com").is_err());
        assert!(Target::parse("not a url").is_err());
    }

    #[test]
    fn builds_the_tls_config() {
        assert!(super::tls_config().is_ok());
    }
}
