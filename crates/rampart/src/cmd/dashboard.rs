//! `rampart dashboard login`: a fresh one-time login link for the dashboard
//! of the running `rampart run` (the one printed at start works once).
//!
//! The token goes to the running dashboard through a file in the data
//! directory ([`dashboard::login_drop`]); only its hash is written there.

use std::time::Duration;

use anyhow::Result;
use dashboard::login_drop;
use nip46::nostr::prelude::Timestamp;

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
            std::fs::create_dir_all(&config.data_dir)?;
            let path = config.data_dir.join(login_drop::FILE_NAME);
            let token = login_drop::issue(&path, LINK_LIFETIME, Timestamp::now().as_secs())?;
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
    }
}
