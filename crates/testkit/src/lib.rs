//! Test support shared by the workspace's end-to-end tests: free loopback
//! ports, real relays (the embedded one and nostr-rs-relay) and `rampart`
//! processes, and a raw NIP-46 client that can send anything, including
//! what a well-behaved client never would; and the app side of the client
//! library's tests ([`app`]).
//!
//! Nothing here is a mock: every helper starts or talks to the real thing.

pub mod app;
pub mod dashboard;
pub mod peers;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod raw_client;
pub mod scripted_signer;

pub use dashboard::DashboardClient;
pub use peers::Peer;
pub use process::{NostrRsRelay, RampartProcess, ci, free_port, skipped, wait_for_port};
pub use proxy::{ProxyMode, TcpProxy};
pub use raw_client::RawClient;
pub use scripted_signer::{Faults, ScriptedSigner};
