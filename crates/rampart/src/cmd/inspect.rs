//! `rampart inspect`: read a connection token or permission list and say
//! what it means, without connecting anywhere. Secrets are never printed.

use anyhow::{Context, Result};
use nip46::{BunkerUri, NostrConnectUri, PermissionSet};
use serde_json::json;

/// Arguments of `rampart inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// A `bunker://…` or `nostrconnect://…` URI, or a permission list such
    /// as `write,nip44_encrypt`; `-` reads it from stdin.
    input: String,
}

/// Print what the input is, as JSON on stdout.
pub fn run(args: Args) -> Result<()> {
    let input = crate::arg::or_stdin(&args.input)?;
    let input = input.trim();
    let report = if input.starts_with("bunker://") {
        let uri: BunkerUri = input.parse().context("invalid bunker:// URI")?;
        json!({
            "type": "bunker",
            "signer_pubkey": uri.signer.to_hex(),
            "relays": uri.relays.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "has_secret": uri.secret.is_some(),
        })
    } else if input.starts_with("nostrconnect://") {
        let uri: NostrConnectUri = input.parse().context("invalid nostrconnect:// URI")?;
        json!({
            "type": "nostrconnect",
            "client_pubkey": uri.client.to_hex(),
            "relays": uri.relays.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "perms": uri.perms.map(|p| p.to_string()),
            "name": uri.name,
            "url": uri.url,
            "image": uri.image,
        })
    } else {
        let perms: PermissionSet = input.parse().context("invalid permission list")?;
        json!({
            "type": "permissions",
            "permissions": perms.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    };
    println!("{report:#}");
    Ok(())
}
