//! A NIP-46 conformance suite any remote signer reachable by a `bunker://`
//! URI can be run against (`rampart conformance`).
//!
//! Whether a signer works with a given app is otherwise found out by hand,
//! app by app. The suite settles it: each check names the sentence of the
//! current NIP-46 text it tests and its level (MUST, SHOULD, or interop: a
//! quirk real clients depend on), and reports pass, fail or skip with its
//! evidence (what was sent, what came back, how long it took).
//!
//! - [`catalogue`]: the checks, their levels and spec sentences;
//! - [`probe`]: one client key on the signer's relays, believing nothing;
//! - [`suite`]: the run, which never branches on the signer it tests;
//! - [`report`]: the results, as a table or one JSON object.

pub mod catalogue;
pub mod probe;
pub mod report;
pub mod suite;

pub use catalogue::{CHECKS, CheckInfo, Level};
pub use report::{CheckResult, Latency, Report, Verdict};
pub use suite::{SuiteConfig, SuiteError, run};
