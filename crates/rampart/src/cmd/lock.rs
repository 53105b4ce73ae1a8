//! `rampart lock` and `rampart unlock`: the kill switch.
//!
//! A lock is a row in the store, so it reaches every bunker on it (every
//! replica) within its reload poll, and it survives restarts until lifted.

use anyhow::Result;
use bunker::admin;
use nip46::nostr::prelude::Timestamp;

use crate::config::Config;

/// Which key.
#[derive(clap::Args)]
pub struct Args {
    /// Only this key (by name); without it, every key.
    #[arg(long)]
    key: Option<String>,
}

/// Lock (`lock`) or unlock the key, or every key.
pub fn run(args: Args, lock: bool, config: &Config) -> Result<()> {
    let mut store = config.database()?.open()?;
    let applied = admin::set_lock(&mut *store, args.key.as_deref(), lock, Timestamp::now())?;
    let names = applied.names;
    let method = if lock { "key.lock" } else { "key.unlock" };
    admin::audit_owner_action(&mut *store, method, applied.key_id, None, &names.join(","))?;
    let what = match args.key {
        Some(_) => names.join(", "),
        None if names.is_empty() => "no keys (there are none)".to_owned(),
        None => format!("every key ({})", names.len()),
    };
    if lock {
        eprintln!("locked {what}: its requests are refused with `unauthorized: key locked`");
    } else {
        eprintln!("unlocked {what}");
    }
    Ok(())
}
