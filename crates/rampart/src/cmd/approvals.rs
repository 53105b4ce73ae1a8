//! `rampart approvals`: answer held requests from another shell.
//!
//! The decision is written to the store; the running bunker picks it up and
//! answers the client with the original request id.

use std::time::Duration;

use anyhow::{Result, bail};
use nip46::nostr::prelude::Timestamp;
use store::{ApprovalDecision, ApprovalId, ApprovalStatus, Change, DecisionScope, SqliteStore, Store};

use crate::config::Config;

/// `rampart approvals …`
#[derive(clap::Subcommand)]
pub enum ApprovalsCommand {
    /// Requests waiting for a decision.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Allow a request.
    Allow(Decide),
    /// Deny a request.
    Deny(Decide),
}

/// Which request, and for how long the answer holds.
#[derive(clap::Args)]
pub struct Decide {
    /// The approval id (or a unique prefix).
    id: String,
    /// Remember the answer for this method (and kind) for this app.
    #[arg(long)]
    always: bool,
    /// With --always: only for this long (e.g. 1h, 7d).
    #[arg(long, value_parser = humantime::parse_duration, requires = "always")]
    r#for: Option<Duration>,
}

/// Run an approvals command.
pub fn run(command: ApprovalsCommand, config: &Config) -> Result<()> {
    let mut store = SqliteStore::open(&config.database_path())?;
    match command {
        ApprovalsCommand::List { json } => list(&store, json),
        ApprovalsCommand::Allow(d) => decide(&mut store, d, true),
        ApprovalsCommand::Deny(d) => decide(&mut store, d, false),
    }
}

fn list(store: &dyn Store, json: bool) -> Result<()> {
    let now = Timestamp::now();
    let keys = store.keys()?;
    for a in store.approvals()?.into_iter().filter(|a| a.status == ApprovalStatus::Pending && a.expires_at > now) {
        let key = keys.iter().find(|k| k.id == a.key_id).map_or("?", |k| k.name.as_str());
        let app = a.metadata.name.clone().unwrap_or_else(|| a.client.to_hex()[..12].to_string());
        if json {
            println!(
                "{}",
                serde_json::json!({"id": a.id.0, "key": key, "app": app, "method": a.method.as_str(), "kind": a.kind, "summary": a.summary, "expires_at": a.expires_at.as_secs()})
            );
        } else {
            let kind = a.kind.map(|k| format!(":{k}")).unwrap_or_default();
            println!("{}\t{key}\t{app}\t{}{kind}\t{}", a.id, a.method, a.summary);
        }
    }
    Ok(())
}

fn decide(store: &mut SqliteStore, d: Decide, allow: bool) -> Result<()> {
    let now = Timestamp::now();
    let pending: Vec<_> = store
        .approvals()?
        .into_iter()
        .filter(|a| a.status == ApprovalStatus::Pending && a.expires_at > now && a.id.0.starts_with(&d.id))
        .collect();
    let id: ApprovalId = match pending.as_slice() {
        [] => bail!("no pending request `{}`; see `rampart approvals list`", d.id),
        [one] => one.id.clone(),
        _ => bail!("`{}` matches several requests; give more of the id", d.id),
    };
    let scope = if d.always {
        DecisionScope::Always { until: d.r#for.map(|f| Timestamp::from_secs(now.as_secs() + f.as_secs())) }
    } else {
        DecisionScope::Once
    };
    let decision = ApprovalDecision { allow, scope };
    store.apply(&[Change::SetApprovalStatus { id: id.clone(), status: ApprovalStatus::Decided(decision) }])?;
    eprintln!("{} {id}", if allow { "allowed" } else { "denied" });
    Ok(())
}
