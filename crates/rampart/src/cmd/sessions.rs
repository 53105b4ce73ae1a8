//! `rampart sessions`: list app sessions, change their rules, revoke them.
//!
//! Each action is one [`bunker::admin`] function, shared with the dashboard;
//! every edit bumps the session's revision so the running bunker takes it.

use std::time::Duration;

use anyhow::Result;
use bunker::admin::{self, SessionEdit, SessionView};
use bunker::describe::{json_terminal_safe, terminal_safe};
use nip46::nostr::prelude::Timestamp;
use store::{RuleEffect, Store};

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
    /// Revoke a session by client pubkey (hex or npub, or a unique prefix).
    Revoke {
        /// Client pubkey or prefix.
        client: String,
    },
    /// Always allow a permission (`sign_event:1`, `nip44_encrypt`) for an app.
    Allow(RuleArgs),
    /// Always deny a permission for an app.
    Deny(RuleArgs),
    /// Remove the rule for a permission: the app is asked again.
    Unset {
        /// Client pubkey or prefix.
        client: String,
        /// The permission.
        permission: String,
    },
}

/// An app and a permission, for a while.
#[derive(clap::Args)]
pub struct RuleArgs {
    /// Client pubkey or prefix.
    client: String,
    /// The permission (`sign_event:<kind>` or a method).
    permission: String,
    /// Only for this long (e.g. 1h, 7d). Default: until changed.
    #[arg(long, value_parser = humantime::parse_duration)]
    r#for: Option<Duration>,
}

/// Run a sessions command.
pub fn run(command: SessionsCommand, config: &Config) -> Result<()> {
    let mut store = config.database()?.open()?;
    let now = Timestamp::now();
    match command {
        SessionsCommand::List { all, json } => list(&*store, all, json),
        SessionsCommand::Revoke { client } => {
            let session = admin::find_session(&*store, &client, now)?;
            admin::revoke_session(&mut *store, session.key_id, &session.client, now)?;
            admin::audit_owner_action(
                &mut *store,
                "session.revoke",
                session.key_id,
                Some(session.client),
                "",
            )?;
            eprintln!("revoked {}", session.client.to_hex());
            Ok(())
        }
        SessionsCommand::Allow(args) => set_rule(&mut *store, args, RuleEffect::Allow, now),
        SessionsCommand::Deny(args) => set_rule(&mut *store, args, RuleEffect::Deny, now),
        SessionsCommand::Unset { client, permission } => {
            let session = admin::find_session(&*store, &client, now)?;
            let permission =
                admin::parse_rule(&permission, RuleEffect::Allow, None, now)?.permission;
            admin::edit_session(
                &mut *store,
                session.key_id,
                &session.client,
                SessionEdit::RemoveRule(permission.clone()),
                now,
            )?;
            eprintln!("removed the rule for {permission}: the app will be asked");
            Ok(())
        }
    }
}

fn set_rule(
    store: &mut dyn Store,
    args: RuleArgs,
    effect: RuleEffect,
    now: Timestamp,
) -> Result<()> {
    let session = admin::find_session(store, &args.client, now)?;
    let rule = admin::parse_rule(&args.permission, effect, args.r#for, now)?;
    let shown = rule.permission.to_string();
    admin::edit_session(
        store,
        session.key_id,
        &session.client,
        SessionEdit::SetRule(rule),
        now,
    )?;
    let verb = if effect == RuleEffect::Allow {
        "allowed"
    } else {
        "denied"
    };
    eprintln!("{shown} is {verb} for {}", session.client.to_hex());
    Ok(())
}

fn list(store: &dyn Store, all: bool, json: bool) -> Result<()> {
    let keys = store.keys()?;
    let now = Timestamp::now();
    let rows: Vec<SessionView> = store
        .sessions()?
        .iter()
        .filter(|s| all || s.is_active(now))
        .map(|s| SessionView::new(s, &keys, now))
        .collect();
    if json {
        println!("{}", json_terminal_safe(&serde_json::to_string(&rows)?));
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!("no sessions");
    }
    for r in rows {
        let denied = if r.denied.is_empty() {
            String::new()
        } else {
            format!("\tdenied: {}", r.denied.join(","))
        };
        println!(
            "{}\t{}\t{}\tallowed: {}{denied}\trequests: {}{}",
            terminal_safe(&r.key),
            r.client,
            terminal_safe(r.name.as_deref().unwrap_or("(unnamed app)")),
            terminal_safe(&r.allowed),
            r.requests,
            if r.active { "" } else { "\t(revoked)" },
        );
    }
    Ok(())
}
