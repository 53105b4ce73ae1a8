//! What can go wrong talking to a remote signer, told apart so a caller can
//! act on it.
//!
//! Users' main complaint about NIP-46 clients is a request that "just hangs".
//! Every request here ends in a value, and the value says which of the five
//! things happened: no answer in time ([`Error::Timeout`]), relays unreachable
//! ([`Error::Disconnected`]), a refusal ([`Error::Denied`]), another signer
//! error with its code parsed ([`Error::Signer`]), or an answer that does not
//! hold up ([`Error::BadResponse`]). The rest are local problems found before
//! anything is sent.

use std::time::Duration;

use nip46::nostr::prelude::PublicKey;
use nip46::{ErrorCode, Method, RpcError, UriError};

use crate::nip05::Nip05Error;
use crate::session::SessionError;

/// Why a request, or setting up a connection, failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The signer did not answer in time. The relays were reachable, so the
    /// signer is offline, not listening on these relays, or waiting for its
    /// user.
    #[error(
        "`{method}` got no answer within {}{}: the signer may be offline or not on these relays; check it runs, or retry with a longer timeout",
        humanize(*waited),
        if *challenged { " after its approval page was shown" } else { "" }
    )]
    Timeout {
        /// The method asked.
        method: Method,
        /// How long the request waited.
        waited: Duration,
        /// Whether the signer had answered with an `auth_url` challenge (the
        /// user never approved in time).
        challenged: bool,
    },
    /// The signer refused: its error code was `unauthorized` (not granted,
    /// denied by its user, session revoked, bad or used secret).
    #[error(
        "`{method}` was denied by the signer: {reason}; ask the signer's owner for this permission, or connect again with a new bunker:// token"
    )]
    Denied {
        /// The method asked.
        method: Method,
        /// The signer's reason.
        reason: String,
    },
    /// The signer answered with another error.
    #[error("the signer failed `{method}`: {error}")]
    Signer {
        /// The method asked.
        method: Method,
        /// The error as the signer wrote it, with its code when it used the
        /// `"<code>: <reason>"` format (`None` for signers that do not).
        error: RpcError,
    },
    /// No relay could be reached, or the client was shut down or logged out.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// The signer answered something unusable: a result that does not parse,
    /// a signed event that does not verify or is not the event asked for, a
    /// non-http(s) `auth_url`, an unexpected `connect` result.
    #[error(
        "bad response to `{method}` from the signer: {reason}; the signer may be buggy or not the one you meant"
    )]
    BadResponse {
        /// The method asked.
        method: Method,
        /// What was wrong.
        reason: String,
    },
    /// A restored session's signer now speaks for another user.
    #[error(
        "the signer now answers for {actual} but the saved session was for {expected}; connect again with a new token"
    )]
    SessionMismatch {
        /// The user pubkey saved in the session.
        expected: PublicKey,
        /// The user pubkey the signer returned.
        actual: PublicKey,
    },
    /// The request cannot be sent as asked (e.g. an event for another author,
    /// a text too large to encrypt).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request is larger than this client's limit
    /// ([`ClientOptions::limits`](crate::ClientOptions::limits)); nothing was sent.
    #[error(
        "`{method}` request of {size} bytes exceeds this client's limit of {limit} bytes; raise ClientOptions::limits if the signer and relays take more"
    )]
    TooLarge {
        /// The method asked.
        method: Method,
        /// The request's size (JSON, before encryption).
        size: usize,
        /// The client's limit.
        limit: usize,
    },
    /// Every relay refused the request event (`OK false`), e.g. because it
    /// is larger than the relay takes; nothing reached the signer.
    #[error(
        "`{method}` was refused by every relay: {relay} said \"{message}\"; use relays that take it (or a smaller request)"
    )]
    RelayRefused {
        /// The method asked.
        method: Method,
        /// The last relay that refused.
        relay: String,
        /// Its reason.
        message: String,
    },
    /// A connection token could not be read.
    #[error("invalid connection token: {0}")]
    Uri(#[from] UriError),
    /// A NIP-05 login failed.
    #[error(transparent)]
    Nip05(#[from] Nip05Error),
    /// A session could not be read or written.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The relay pool refused a relay URL.
    #[error("relay setup failed: {0}")]
    Relay(String),
    /// The operating system's random generator failed (keys and nonces
    /// cannot be made safely).
    #[error("the operating system's random generator failed: {0}")]
    Entropy(String),
}

impl Error {
    /// The signer's error code, when the signer sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Denied { .. } => Some(ErrorCode::Unauthorized),
            Error::Signer { error, .. } => error.code,
            _ => None,
        }
    }

    /// Whether the request timed out (worth retrying later).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// Build the error for a signer's error reply.
    pub(crate) fn from_rpc(method: Method, error: RpcError) -> Self {
        match error.code {
            Some(ErrorCode::Unauthorized) => Error::Denied {
                method,
                reason: if error.message.is_empty() {
                    "unauthorized".to_owned()
                } else {
                    error.message
                },
            },
            _ => Error::Signer { method, error },
        }
    }

    pub(crate) fn bad(method: Method, reason: impl Into<String>) -> Self {
        Error::BadResponse {
            method,
            reason: reason.into(),
        }
    }
}

/// `1.5s`, `30s`, `5m`: durations as people write them.
fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) && !ms.is_multiple_of(60_000) {
        format!("{} s", ms / 1000)
    } else if ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_is_denied_and_other_codes_are_signer_errors() {
        let e = Error::from_rpc(
            Method::SignEvent,
            RpcError::parse("unauthorized: sign_event:1 is not granted"),
        );
        assert!(
            matches!(e, Error::Denied { ref reason, .. } if reason == "sign_event:1 is not granted")
        );
        assert_eq!(e.code(), Some(ErrorCode::Unauthorized));

        let e = Error::from_rpc(Method::Ping, RpcError::parse("rate_limited: slow down"));
        assert_eq!(e.code(), Some(ErrorCode::RateLimited));
        assert!(matches!(e, Error::Signer { .. }));

        let e = Error::from_rpc(Method::Ping, RpcError::parse("Rejected"));
        assert_eq!(e.code(), None);
        assert!(e.to_string().contains("Rejected"));
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = Error::Timeout {
            method: Method::SignEvent,
            waited: Duration::from_secs(30),
            challenged: false,
        };
        assert_eq!(
            e.to_string(),
            "`sign_event` got no answer within 30 s: the signer may be offline or not on these relays; check it runs, or retry with a longer timeout"
        );
        assert!(e.is_timeout());
        assert_eq!(humanize(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(humanize(Duration::from_secs(300)), "5 min");
        assert_eq!(humanize(Duration::from_millis(250)), "250 ms");
    }
}
