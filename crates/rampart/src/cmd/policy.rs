//! `rampart policy`: per-key signing policy beyond each app's rules — the
//! sensitive kinds that always ask the user, whatever an app was granted,
//! and the quorum: how many different people must allow each of those.
//!
//! Stored per key (a mirrored change: running bunkers, every replica, take
//! it at their next reload); a key without its own list uses
//! `[policy] sensitive_kinds`.

use anyhow::{Result, bail};
use bunker::admin;
use store::{Change, Store};

use crate::config::Config;

/// `rampart policy …`
#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Show or set the kinds a key always asks to sign (sign_event of
    /// these kinds is held for the user even under a `full` grant; a deny
    /// rule still refuses at once).
    Sensitive {
        /// The key (default: the first).
        #[arg(long)]
        key: Option<String>,
        /// The kinds, comma-separated (`0,3,5,10002`; `""`: none).
        #[arg(long, conflicts_with = "default")]
        kinds: Option<String>,
        /// Use the bunker's default set again (`[policy] sensitive_kinds`).
        #[arg(long)]
        default: bool,
    },
    /// Show or set how many different people (operators, or the owner)
    /// must allow a request for one of a key's sensitive kinds before it is
    /// signed; one deny refuses it. Without N: show it.
    Quorum {
        /// The key (default: every key).
        #[arg(long)]
        key: Option<String>,
        /// How many (1: one person's allow is enough).
        n: Option<u32>,
    },
}

/// Run a policy command.
pub fn run(command: PolicyCommand, config: &Config) -> Result<()> {
    let mut store = config.database()?.open()?;
    match command {
        PolicyCommand::Sensitive {
            key,
            kinds,
            default,
        } => {
            let stored = admin::pick_key(&*store, key.as_deref())?;
            let own = match (kinds, default) {
                (Some(text), _) => Some(
                    store::codec::kinds_from_text(&text)
                        .map_err(|e| anyhow::anyhow!("--kinds: {e}"))?,
                ),
                (None, true) => None,
                (None, false) => {
                    show(&stored, config);
                    return Ok(());
                }
            };
            if own.as_ref().is_some_and(|k| k.len() > 1024) {
                bail!("--kinds: at most 1024 kinds");
            }
            set(&mut *store, &stored, own.clone())?;
            let mut shown = stored;
            shown.sensitive_kinds = own;
            show(&shown, config);
        }
        PolicyCommand::Quorum { key, n } => {
            if let Some(n) = n {
                let applied = admin::set_quorum(&mut *store, key.as_deref(), n)?;
                let detail = format!("{n} {}", applied.names.join(","));
                admin::audit_owner_action(
                    &mut *store,
                    "key.quorum",
                    applied.key_id,
                    None,
                    &detail,
                )?;
                for k in store.keys()? {
                    if key.as_deref().is_some_and(|name| name != k.name) {
                        continue;
                    }
                    let deciders = deciders(&*store, k.id)?;
                    if n as usize > deciders {
                        eprintln!(
                            "warning: {deciders} people can answer for {} (the owner and the \
                             operators with the owner or approver role covering it); a quorum \
                             of {n} can never be met until there are more (`rampart operator \
                             add`)",
                            k.name
                        );
                    }
                }
            }
            for k in store.keys()? {
                if key.as_deref().is_none_or(|name| name == k.name) {
                    println!("{}\t{}", k.name, k.quorum);
                }
            }
        }
    }
    Ok(())
}

/// How many distinct people can answer `key`'s held requests: the owner,
/// and the operators who decide for it.
fn deciders(store: &dyn Store, key: store::KeyId) -> Result<usize> {
    let operators = store.operators()?;
    Ok(1 + operators
        .iter()
        .filter(|o| matches!(o.role, store::Role::Owner | store::Role::Approver) && o.covers(key))
        .count())
}

fn set(store: &mut dyn Store, key: &store::StoredKey, kinds: Option<Vec<u16>>) -> Result<()> {
    store.apply(&[Change::SetSensitiveKinds {
        key_id: key.id,
        kinds,
    }])?;
    Ok(())
}

fn show(key: &store::StoredKey, config: &Config) {
    let (kinds, whose) = match &key.sensitive_kinds {
        Some(own) => (own.clone(), "its own"),
        None => (config.policy.sensitive_kinds.clone(), "the default"),
    };
    let list = if kinds.is_empty() {
        "none".to_owned()
    } else {
        store::codec::kinds_to_text(&kinds)
    };
    println!("{}\t{list}\t({whose})", key.name);
}
