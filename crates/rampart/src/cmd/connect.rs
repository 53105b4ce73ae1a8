//! `rampart connect`: accept a client's `nostrconnect://` URI.
//!
//! The session is written to the store with the URI's secret; the running
//! bunker notices it and sends the `connect` response to the client's relays.
//! The dashboard accepts through the same function
//! ([`bunker::admin::accept_nostrconnect`]).

use anyhow::Result;
use bunker::admin;
use nip46::NostrConnectUri;
use nip46::nostr::prelude::Timestamp;

use crate::config::{Config, parse_grant};

/// `rampart connect`
#[derive(clap::Args)]
pub struct Args {
    /// The `nostrconnect://…` URI the app shows, or `-` to read it from
    /// stdin (recommended: it carries the app's secret).
    uri: String,
    /// Key name (default: the first key).
    #[arg(long)]
    key: Option<String>,
    /// What the app may do (default: the config's default grant).
    #[arg(long)]
    grant: Option<String>,
}

/// Record the session.
pub fn run(args: Args, config: &Config) -> Result<()> {
    let uri: NostrConnectUri = crate::arg::or_stdin(&args.uri)?.parse()?;
    let mut store = config.database()?.open()?;
    let key = admin::pick_key(&*store, args.key.as_deref())?;
    let grant = match &args.grant {
        Some(g) => parse_grant(g)?,
        None => config.default_grant()?,
    };
    admin::accept_nostrconnect(&mut *store, key.id, &uri, &grant, Timestamp::now())?;
    let app =
        bunker::describe::terminal_safe(uri.name.as_deref().unwrap_or("the app")).into_owned();
    eprintln!(
        "session for {app} ({}) saved with grant `{grant}`; the running bunker sends the connect response",
        uri.client.to_hex()
    );
    Ok(())
}
