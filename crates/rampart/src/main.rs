//! The `rampart` command line.

mod inspect;

use clap::{Parser, Subcommand};

/// Rampart: a NIP-46 remote signer, client and CLI.
#[derive(Parser)]
#[command(name = "rampart", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explain a bunker:// or nostrconnect:// URI, or a permission list.
    Inspect(inspect::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect(args) => inspect::run(args),
    }
}
