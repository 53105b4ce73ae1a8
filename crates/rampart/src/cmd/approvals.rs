//! `rampart approvals`: answer held requests from another shell.
//!
//! The decision is written to the store; the running bunker picks it up
//! (within ~200 ms) and answers the client with the original request id.
//! Listing, matching ids and the answers themselves are
//! [`bunker::admin`]'s, shared with the dashboard and the terminal prompt.

use std::time::Duration;

use anyhow::Result;
use bunker::admin::{self, Answer, ApprovalView};
use bunker::describe::{json_terminal_safe, terminal_safe};
use nip46::nostr::prelude::Timestamp;
use store::Store;

use crate::config::Config;

/// `rampart approvals …`
#[derive(clap::Subcommand)]
pub enum ApprovalsCommand {
    /// Requests waiting for a decision.
    List {
        /// Print JSON (one object per line).
        #[arg(long)]
        json: bool,
    },
    /// Print one request in full as JSON: for `sign_event`, the complete
    /// unsigned event that is signed if allowed, with its id.
    Show {
        /// The approval id (or a unique prefix).
        id: String,
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
    let mut store = config.database()?.open()?;
    match command {
        ApprovalsCommand::List { json } => list(&*store, json, &config.policy.sensitive_kinds),
        ApprovalsCommand::Show { id } => show(&*store, &id, &config.policy.sensitive_kinds),
        ApprovalsCommand::Allow(d) => decide(&mut *store, d, true),
        ApprovalsCommand::Deny(d) => decide(&mut *store, d, false),
    }
}

fn list(store: &dyn Store, json: bool, sensitive: &[u16]) -> Result<()> {
    let keys = store.keys()?;
    let pending = admin::pending_approvals(store, Timestamp::now())?;
    if pending.is_empty() && !json {
        eprintln!("nothing is waiting");
    }
    for approval in &pending {
        let view = ApprovalView::new(approval, &keys, sensitive);
        if json {
            println!("{}", json_terminal_safe(&serde_json::to_string(&view)?));
        } else {
            let votes = if view.allows_needed > 1 {
                format!(
                    "\t{} of {} allowed ({})",
                    view.allowed_by.len(),
                    view.allows_needed,
                    view.allowed_by.join(",")
                )
            } else {
                String::new()
            };
            println!(
                "{}\t{}\t{}\t{}{votes}",
                view.id,
                terminal_safe(&view.key),
                terminal_safe(&view.app),
                terminal_safe(&view.description)
            );
        }
    }
    Ok(())
}

fn show(store: &dyn Store, id: &str, sensitive: &[u16]) -> Result<()> {
    let approval = admin::find_pending(store, id, Timestamp::now())?;
    let view = ApprovalView::new(&approval, &store.keys()?, sensitive);
    let json = serde_json::to_string_pretty(&view)?;
    println!("{}", json_terminal_safe(&json));
    Ok(())
}

fn decide(store: &mut dyn Store, d: Decide, allow: bool) -> Result<()> {
    let now = Timestamp::now();
    let approval = admin::find_pending(store, &d.id, now)?;
    let answer = match (allow, d.always) {
        (true, false) => Answer::AllowOnce,
        (true, true) => Answer::AllowAlways,
        (false, false) => Answer::DenyOnce,
        (false, true) => Answer::DenyAlways,
    };
    let decision = answer.decision(admin::until(now, d.r#for));
    admin::record_decision(store, &approval.id, decision)?;
    admin::audit_owner_action(
        store,
        "approval.vote",
        approval.key_id,
        Some(approval.client),
        &format!("{} {}", answer.as_str(), approval.id),
    )?;
    eprintln!(
        "{}: answer recorded for {}; the running bunker applies it within a second \
         (a request that needs several people to allow it waits for the others)",
        answer.done(),
        approval.id
    );
    Ok(())
}
