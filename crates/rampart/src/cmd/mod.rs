//! One module per subcommand.

pub mod approvals;
pub mod audit;
pub mod backup;
pub mod client;
pub mod conformance;
pub mod connect;
pub mod dashboard;
pub mod inspect;
pub mod key;
pub mod lock;
pub mod operator;
pub mod policy;
pub mod relay;
pub mod run;
pub mod sessions;
pub mod token;
pub mod vault;
