//! `rampart connect`: accept a client's `nostrconnect://` URI.
//!
//! The session is written to the store with the URI's secret; the running
//! bunker notices it and sends the `connect` response to the client's relays.

use anyhow::Result;
use bunker::engine::nostrconnect_session;
use nip46::NostrConnectUri;
use nip46::nostr::prelude::Timestamp;
use store::{Change, SqliteStore, Store};

use crate::cmd::token::pick_key;
use crate::config::{Config, parse_grant};

/// `rampart connect`
#[derive(clap::Args)]
pub struct Args {
    /// The `nostrconnect://…` URI the app shows.
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
    let uri: NostrConnectUri = args.uri.parse()?;
    let mut store = SqliteStore::open(&config.database_path())?;
    let key = pick_key(&store, args.key.as_deref())?;
    let grant = match &args.grant {
        Some(g) => parse_grant(g)?,
        None => config.default_grant()?,
    };
    let mut session = nostrconnect_session(key.id, &uri, &grant, Timestamp::now());
    let previous = store.sessions()?.into_iter().find(|s| s.key_id == key.id && s.client == uri.client);
    session.revision = previous.map_or(1, |p| p.revision + 1);
    store.apply(&[Change::PutSession(session)])?;
    let app = uri.name.as_deref().unwrap_or("the app");
    eprintln!(
        "session for {app} ({}) saved with grant `{grant}`; the running bunker sends the connect response",
        uri.client.to_hex()
    );
    Ok(())
}
