//! Errors of starting the embedded relay.
//!
//! Once it is listening the relay has no failure to report: bad clients are
//! answered and dropped, accept errors are logged and retried.

use std::net::SocketAddr;

/// Why the embedded relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("could not listen on {addr}: {source}; choose another address or free that port")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The bound socket has no local address (should not happen).
    #[error("could not read the listening address: {0}")]
    LocalAddr(std::io::Error),
    /// The relay's own runtime could not be started ([`spawn_dedicated`](super::spawn_dedicated)).
    #[error("could not start the relay's runtime: {0}")]
    Runtime(std::io::Error),
}
