//! `rampart operator`: the named people who use the dashboard, each with a
//! role (`owner`, `approver`, `auditor`) and the keys it covers.
//!
//! Adding one prints its one-time login link, of the same form as
//! `rampart dashboard login` (which stays the store owner's); removing one
//! ends its dashboard sessions at once. Each change is audited as the
//! owner's.

use anyhow::Result;
use bunker::admin;
use nip46::nostr::prelude::Timestamp;
use store::{DashboardUser, KeyId, KeyScope, Operator, Role, Store};

use crate::cmd::dashboard::print_login_link;
use crate::config::Config;
use bunker::describe::terminal_safe;

/// `rampart operator …`
#[derive(clap::Subcommand)]
pub enum OperatorCommand {
    /// Add an operator and print its one-time login link (valid 15 minutes).
    Add {
        /// Its name (letters, digits, `.`, `_`, `-`).
        name: String,
        /// owner (everything), approver (answer requests, manage sessions
        /// and mint tokens for its keys) or auditor (read the audit log and
        /// the sessions of its keys).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The keys it covers, by name, comma-separated.
        #[arg(long, value_delimiter = ',', conflicts_with = "all_keys")]
        keys: Vec<String>,
        /// Every key, those added later included.
        #[arg(long)]
        all_keys: bool,
    },
    /// List the operators.
    List,
    /// Remove an operator; its dashboard sessions end at once.
    Remove {
        /// Its name.
        name: String,
    },
    /// Print a fresh one-time login link for an operator.
    Login {
        /// Its name.
        name: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text.trim()).ok_or_else(|| "a role is owner, approver or auditor".to_owned())
}

/// Run an operator command.
pub fn run(command: OperatorCommand, config: &Config) -> Result<()> {
    let mut store = config.database()?.open()?;
    let now = Timestamp::now();
    match command {
        OperatorCommand::Add {
            name,
            role,
            keys,
            all_keys,
        } => {
            let operator = admin::add_operator(&mut *store, &name, role, &keys, all_keys, now)?;
            let described = describe(&*store, &operator)?;
            audit(&mut *store, "operator.add", &described.replace('\t', " "))?;
            eprintln!("added {described}");
            print_login_link(&mut *store, config, DashboardUser::Operator(operator.id))
        }
        OperatorCommand::List => {
            for operator in store.operators()? {
                println!("{}", describe(&*store, &operator)?);
            }
            Ok(())
        }
        OperatorCommand::Remove { name } => {
            store.remove_operator(name.trim())?;
            audit(&mut *store, "operator.remove", name.trim())?;
            eprintln!(
                "removed operator {}; its dashboard sessions have ended",
                terminal_safe(name.trim())
            );
            Ok(())
        }
        OperatorCommand::Login { name } => {
            let operator = admin::find_operator(&*store, &name)?;
            audit(&mut *store, "operator.login", &operator.name)?;
            print_login_link(&mut *store, config, DashboardUser::Operator(operator.id))
        }
    }
}

/// `name  role  keys`, as listed.
fn describe(store: &dyn Store, operator: &Operator) -> Result<String> {
    let keys = match (&operator.keys, operator.role) {
        (_, Role::Owner) | (KeyScope::All, _) => "all keys".to_owned(),
        (KeyScope::Keys(ids), _) => {
            let stored = store.keys()?;
            let names: Vec<String> = ids.iter().map(|id| admin::key_name(&stored, *id)).collect();
            names.join(",")
        }
    };
    Ok(format!(
        "{}\t{}\t{}",
        operator.name,
        operator.role,
        terminal_safe(&keys)
    ))
}

fn audit(store: &mut dyn Store, method: &str, detail: &str) -> Result<()> {
    admin::audit_owner_action(store, method, KeyId(0), None, detail)?;
    Ok(())
}
