//! Rampart's bunker: the request engine and its policy, the key vault, and
//! the service that drives them from relays.
//!
//! - [`engine`]: sans-I/O request path (events in, store changes and signed
//!   responses out), with [`policy`], [`replay`] and [`rate_limit`].
//! - [`vault`]: NIP-49 encrypted user keys behind the [`keys::KeyBackend`] interface.
//! - [`service`]: the async driver, with an [`service::AdminCommand`] channel
//!   for in-process interfaces (dashboard, terminal prompt).
//! - [`clock`] and [`randomness`]: time and randomness, passed in.
//! - [`admin`]: the operations the CLI and the dashboard share (decisions,
//!   session edits, tokens), and [`describe`]: requests rendered for people.

pub mod admin;
pub mod auth_url;
pub mod clock;
pub mod describe;
pub mod engine;
pub mod keys;
pub mod metrics;
pub mod policy;
pub mod randomness;
pub mod rate_limit;
pub mod replay;
pub mod replicas;
pub mod service;
pub mod strangers;
pub mod vault;

pub use clock::Millis;
pub use engine::{Engine, EngineConfig, Outgoing, Output, Snapshot, TransportKey, UnlistedPolicy};
pub use randomness::{OsRandomness, Randomness};
