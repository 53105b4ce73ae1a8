//! `rampart audit`: read the audit log (the dashboard's Audit log page reads
//! the same rows, in the same JSON shape: [`AuditView`]).

use std::time::Duration;

use anyhow::Result;
use bunker::admin::AuditView;
use bunker::describe::{json_terminal_safe, terminal_safe};
use nip46::nostr::prelude::Timestamp;
use store::{AuditDecision, AuditQuery};

use crate::config::Config;

/// `rampart audit`
#[derive(clap::Args)]
pub struct Args {
    /// Only rows newer than this (e.g. 10m, 24h).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Only this method.
    #[arg(long)]
    method: Option<String>,
    /// Only this decision (allowed, approved, denied, pending, rate_limited, invalid).
    #[arg(long)]
    decision: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
}

/// Print matching rows, newest first.
pub fn run(args: Args, config: &Config) -> Result<()> {
    let store = config.database()?.open()?;
    let decision = match args.decision.as_deref() {
        None => None,
        Some(d) => {
            Some(AuditDecision::parse(d).ok_or_else(|| anyhow::anyhow!("unknown decision `{d}`"))?)
        }
    };
    let query = AuditQuery {
        since: args
            .since
            .map(|d| Timestamp::from_secs(Timestamp::now().as_secs().saturating_sub(d.as_secs()))),
        method: args.method,
        decision,
        limit: Some(args.limit),
        ..AuditQuery::default()
    };
    let keys = store.keys()?;
    let sessions = store.sessions()?;
    for row in store.audit(&query)? {
        let key = keys
            .iter()
            .find(|k| k.id == row.key_id)
            .map_or("?", |k| k.name.as_str());
        if args.json {
            let json = serde_json::to_string(&AuditView::new(&row, &keys, &sessions))?;
            println!("{}", json_terminal_safe(&json));
        } else {
            let kind = row.kind.map(|k| format!(":{k}")).unwrap_or_default();
            // A row standing for several refused events says how many.
            let events = if row.events == 1 {
                String::new()
            } else {
                format!("\t×{}", row.events)
            };
            println!(
                "{}\t{}\t{}…\t{}{}\t{}\t{}{events}",
                row.at.as_secs(),
                terminal_safe(key),
                &row.client.to_hex()[..12],
                terminal_safe(&row.method),
                kind,
                row.decision.as_str(),
                terminal_safe(&row.outcome)
            );
        }
    }
    Ok(())
}
