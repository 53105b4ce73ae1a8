//! Rampart's NIP-46 protocol core.
//!
//! Everything a remote signer and its clients say to each other, with no I/O:
//! no sockets, no clock, no OS randomness, no database. Time and randomness
//! are parameters. The async layers above only move bytes.
//!
//! - [`Request`] / [`Command`] / [`Response`]: the JSON-RPC-like messages,
//!   parameters parsed into typed values at the boundary.
//! - [`BunkerUri`] / [`NostrConnectUri`]: connection tokens.
//! - [`PermissionSet`]: the `method[:param]` grammar and its presets.
//! - [`envelope`]: kind-24133 events, NIP-44 with NIP-04 detected and
//!   answered in kind, per-peer cached keys.
//!
//! Error replies use the format `"<code>: <reason>"` with the codes of
//! [`ErrorCode`].

pub mod discovery;
pub mod envelope;
pub mod limits;
mod method;
mod permission;
mod request;
mod response;
mod secret;
mod uri;

pub use envelope::{Conversation, Entropy, EnvelopeError, Scheme};
pub use limits::Limits;
pub use method::{Method, UnknownMethod};
pub use permission::{Permission, PermissionError, PermissionSet, Preset};
pub use request::{
    ClientMetadata, Command, ConnectParams, EventTemplate, MAX_ID_LEN, ParamsError, Request,
    RequestError,
};
pub use response::{
    ErrorCode, Outcome, Response, ResponseError, RpcError, parse_relay_list, relay_list_json,
    relay_map_json,
};
pub use secret::ConnectSecret;
pub use uri::{BunkerUri, MAX_URI_FIELD_LEN, MAX_URI_RELAYS, NostrConnectUri, UriError};

/// Re-exported so callers name the same `nostr` types the core uses.
pub use nostr;
