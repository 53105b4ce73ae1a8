//! Rampart's relay transport: the one layer that opens sockets.
//!
//! Everything Rampart says travels over Nostr relays (NIP-01 websockets).
//! This crate holds the two ends of that wire and nothing about NIP-46:
//!
//! - [`pool`]: a [`RelayPool`] of client connections to several relays at
//!   once. It publishes to all of them without waiting for their `OK`,
//!   de-duplicates what they send back, reconnects with backoff, keeps
//!   subscriptions alive across reconnects and answers NIP-42 `AUTH`.
//! - [`server`]: a small in-memory NIP-01 relay, so Rampart runs offline and
//!   tests are fast. It is not meant to replace production relays.
//!
//! Both ends set `TCP_NODELAY` on every socket: without it, Nagle's algorithm
//! holds back a small frame that follows another until the peer's delayed
//! ACK, which added ~44 ms to every NIP-46 round trip when measured.

pub mod pool;
mod seen;
pub mod server;
mod websocket;

pub use pool::{
    AddRelayError, AuthState, PoolConfig, PoolEvent, PublishError, PublishReport, RelayPool,
    RelayStatus, SubscribeError,
};
pub use server::{RelayHandle, ServerConfig, ServerError};
