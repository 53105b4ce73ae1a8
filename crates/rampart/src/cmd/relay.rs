//! `rampart relay`: run the embedded relay on its own (NIP-46 only unless
//! `--any-kind`).

use std::net::SocketAddr;

use anyhow::Result;
use nip46::nostr::prelude::PublicKey;
use relay::server::{self, KindPolicy, ServerConfig};

/// `rampart relay`
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7447")]
    listen: SocketAddr,
    /// Require NIP-42 authentication.
    #[arg(long)]
    require_auth: bool,
    /// A signer this relay serves (hex pubkey, repeatable): once it
    /// authenticates (NIP-42) its connection is never rate-limited.
    #[arg(long = "trust", value_name = "PUBKEY")]
    trusted: Vec<PublicKey>,
    /// Take every kind, not only NIP-46 traffic and signer announcements.
    #[arg(long)]
    any_kind: bool,
    /// Events one connection may publish per second (a signer not
    /// `--trust`ed answers on such a connection too).
    #[arg(long, default_value_t = ServerConfig::default().events_per_second)]
    events_per_second: u32,
}

/// Serve until SIGINT/SIGTERM.
pub async fn run(args: Args) -> Result<()> {
    let config = ServerConfig {
        require_auth: args.require_auth,
        trusted_authors: args.trusted,
        events_per_second: args.events_per_second,
        kinds: if args.any_kind {
            KindPolicy::Any
        } else {
            KindPolicy::Nip46
        },
        ..ServerConfig::default()
    };
    eprintln!("relay listening on ws://{}", args.listen);
    server::run(args.listen, config).await?;
    Ok(())
}
