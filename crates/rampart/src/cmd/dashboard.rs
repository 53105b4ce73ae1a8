//! `rampart dashboard login`: a fresh one-time login link for the dashboard
//! of the running `rampart run` (the one printed at start works once).
//!
//! The token's digest goes into the store (never the token itself), so the
//! link works once on the dashboard of any replica sharing it.

use std::time::Duration;

use anyhow::Result;

use crate::config::Config;

/// How long an issued link stays usable.
const LINK_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// `rampart dashboard …`
#[derive(clap::Subcommand)]
pub enum DashboardCommand {
    /// Print a one-time login link (valid 15 minutes).
    Login,
}

/// Run a dashboard command.
pub fn run(command: DashboardCommand, config: &Config) -> Result<()> {
    match command {
        DashboardCommand::Login => {
            let mut store = config.database()?.open()?;
            print_login_link(&mut *store, config, store::DashboardUser::Owner)
        }
    }
}

/// Mint a one-time login link for `user` and print it (the link on
/// stdout, the rest on stderr).
pub fn print_login_link(
    store: &mut dyn store::Store,
    config: &Config,
    user: store::DashboardUser,
) -> Result<()> {
    let token = dashboard::auth::issue_login(store, LINK_LIFETIME, user)?;
    if !config.dashboard.enabled {
        eprintln!("note: the dashboard is disabled in the configuration");
    }
    println!(
        "http://{}/login?token={}",
        config.dashboard.listen,
        token.expose()
    );
    eprintln!("one-time login link, valid for 15 minutes");
    Ok(())
}
