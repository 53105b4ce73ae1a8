//! `rampart sessions`: list and revoke app sessions.

use anyhow::{Result, bail};
use nip46::nostr::prelude::Timestamp;
use store::{Change, RuleEffect, Session, SqliteStore, Store};

use crate::config::Config;

/// `rampart sessions …`
#[derive(clap::Subcommand)]
pub enum SessionsCommand {
    /// List sessions.
    List {
        /// Include revoked sessions.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a session by client pubkey (hex, or a unique prefix).
    Revoke {
        /// Client pubkey or prefix.
        client: String,
    },
}

/// Run a sessions command.
pub fn run(command: SessionsCommand, config: &Config) -> Result<()> {
    let mut store = SqliteStore::open(&config.database_path())?;
    match command {
        SessionsCommand::List { all, json } => list(&store, all, json),
        SessionsCommand::Revoke { client } => revoke(&mut store, &client),
    }
}

fn describe(s: &Session, key_name: &str) -> serde_json::Value {
    let now = Timestamp::now();
    serde_json::json!({
        "key": key_name,
        "client": s.client.to_hex(),
        "name": s.metadata.name,
        "url": s.metadata.url,
        "origin": s.origin.as_str(),
        "allowed": s.allowed(now).to_string(),
        "denied": s.rules.iter().filter(|r| r.effect == RuleEffect::Deny).map(|r| r.permission.to_string()).collect::<Vec<_>>(),
        "requested": s.requested_perms.to_string(),
        "created_at": s.created_at.as_secs(),
        "last_used_at": s.last_used_at.map(|t| t.as_secs()),
        "requests": s.request_count,
        "active": s.is_active(now),
    })
}

fn list(store: &dyn Store, all: bool, json: bool) -> Result<()> {
    let keys = store.keys()?;
    let now = Timestamp::now();
    let rows: Vec<serde_json::Value> = store
        .sessions()?
        .iter()
        .filter(|s| all || s.is_active(now))
        .map(|s| {
            let name = keys.iter().find(|k| k.id == s.key_id).map_or("?", |k| k.name.as_str());
            describe(s, name)
        })
        .collect();
    if json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!("no sessions");
    }
    for r in rows {
        println!(
            "{}\t{}\t{}\tallowed: {}\trequests: {}{}",
            r["key"].as_str().unwrap_or_default(),
            r["client"].as_str().unwrap_or_default(),
            r["name"].as_str().unwrap_or("(unnamed app)"),
            r["allowed"].as_str().unwrap_or_default(),
            r["requests"],
            if r["active"] == true { "" } else { "\t(revoked)" },
        );
    }
    Ok(())
}

fn revoke(store: &mut SqliteStore, client: &str) -> Result<()> {
    let now = Timestamp::now();
    let matches: Vec<Session> = store
        .sessions()?
        .into_iter()
        .filter(|s| s.is_active(now) && s.client.to_hex().starts_with(&client.to_lowercase()))
        .collect();
    match matches.as_slice() {
        [] => bail!("no active session for a client starting with `{client}`"),
        [one] => {
            let mut session = one.clone();
            session.revoked_at = Some(now);
            session.revision += 1;
            store.apply(&[Change::PutSession(session)])?;
            eprintln!("revoked {}", one.client.to_hex());
            Ok(())
        }
        _ => bail!("`{client}` matches {} sessions; give more of the pubkey", matches.len()),
    }
}
