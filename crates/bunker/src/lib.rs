//! Rampart's bunker: the request engine and its policy, the key vault, and
//! the service that drives them from relays.
//!
//! - [`engine`]: sans-I/O request path (events in, store changes and signed
//!   responses out), with [`policy`], [`replay`] and [`rate_limit`].
//! - [`vault`]: NIP-49 encrypted user keys behind the [`keys::KeyBackend`] interface.

pub mod clock;
pub mod engine;
pub mod keys;
pub mod policy;
pub mod rate_limit;
pub mod replay;
pub mod service;
pub mod vault;

pub use clock::Millis;
pub use engine::{Engine, EngineConfig, Output, Outgoing, Randomness, Snapshot, TransportKey, UnlistedPolicy};
