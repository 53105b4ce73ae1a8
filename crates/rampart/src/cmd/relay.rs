//! `rampart relay`: run the embedded NIP-01 relay on its own.

use std::net::SocketAddr;

use anyhow::Result;
use relay::server::{self, ServerConfig};

/// `rampart relay`
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7447")]
    listen: SocketAddr,
    /// Require NIP-42 authentication.
    #[arg(long)]
    require_auth: bool,
}

/// Serve until SIGINT/SIGTERM.
pub async fn run(args: Args) -> Result<()> {
    let config = ServerConfig {
        require_auth: args.require_auth,
        ..ServerConfig::default()
    };
    eprintln!("relay listening on ws://{}", args.listen);
    server::run(args.listen, config).await?;
    Ok(())
}
