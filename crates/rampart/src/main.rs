//! The `rampart` command line: the bunker daemon, its admin commands, the
//! embedded relay, and tools.

mod arg;
mod cmd;
mod config;
mod database;
mod env;
mod keeper;
mod ops;
mod passphrase;
mod runtime;
mod terminal;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides};

/// Rampart: a NIP-46 remote signer, client and CLI.
#[derive(Parser)]
#[command(name = "rampart", version, about)]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve NIP-46 requests (starts the embedded relay when no relay is configured).
    Run(cmd::run::Args),
    /// Manage user keys.
    #[command(subcommand)]
    Key(cmd::key::KeyCommand),
    /// The vault the keys are sealed in (change its passphrase).
    #[command(subcommand)]
    Vault(cmd::vault::VaultCommand),
    /// Mint a single-use bunker:// token.
    Uri(cmd::token::Args),
    /// Accept a client's nostrconnect:// URI.
    Connect(cmd::connect::Args),
    /// List or revoke app sessions.
    #[command(subcommand)]
    Sessions(cmd::sessions::SessionsCommand),
    /// Answer requests waiting for approval.
    #[command(subcommand)]
    Approvals(cmd::approvals::ApprovalsCommand),
    /// The web dashboard of `rampart run` (a fresh login link).
    #[command(subcommand)]
    Dashboard(cmd::dashboard::DashboardCommand),
    /// Read the audit log.
    Audit(cmd::audit::Args),
    /// Write a consistent copy of the (SQLite) store while the bunker runs.
    Backup(cmd::backup::BackupArgs),
    /// Put a backup in place of the store (stop the bunker first).
    Restore(cmd::backup::RestoreArgs),
    /// Per-key signing policy: the sensitive kinds that always ask.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Operators: the named people who use the dashboard, with a role and keys.
    #[command(subcommand)]
    Operator(cmd::operator::OperatorCommand),
    /// Kill switch: refuse every request for a key (or every key) at once.
    Lock(cmd::lock::Args),
    /// Lift `rampart lock`.
    Unlock(cmd::lock::Args),
    /// Run the embedded relay on its own.
    Relay(cmd::relay::Args),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Explain a bunker:// or nostrconnect:// URI, or a permission list.
    Inspect(cmd::inspect::Args),
    /// Use a remote signer: connect, sign, encrypt, decrypt, ping, logout.
    Client(cmd::client::Args),
    /// Load-test a NIP-46 signer (or measure idle sessions' memory).
    Bench(bench::Args),
    /// Run the NIP-46 conformance suite against a signer (any, by its bunker:// URIs).
    Conformance(cmd::conformance::Args),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print an annotated example configuration.
    Default,
    /// Print the effective configuration (all layers applied).
    Show,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(default_log_level(&cli.command))
            }),
        )
        // Log lines and the approval prompt share stderr (see terminal::console).
        .with_writer(terminal::console::Console)
        .init();
    let env = env::from_process();
    let config = || Config::load(&cli.overrides, &env);
    match cli.command {
        Command::Run(args) => {
            let config = config()?;
            runtime::single_threaded()?.block_on(cmd::run::run(args, config, env))
        }
        Command::Key(c) => cmd::key::run(c, &config()?, &env),
        Command::Vault(c) => cmd::vault::run(c, &config()?, &env),
        Command::Uri(args) => cmd::token::run(args, &config()?),
        Command::Connect(args) => cmd::connect::run(args, &config()?),
        Command::Sessions(c) => cmd::sessions::run(c, &config()?),
        Command::Approvals(c) => cmd::approvals::run(c, &config()?),
        Command::Dashboard(c) => cmd::dashboard::run(c, &config()?),
        Command::Audit(args) => cmd::audit::run(args, &config()?),
        Command::Backup(args) => cmd::backup::backup(args, &config()?),
        Command::Restore(args) => cmd::backup::restore(args, &config()?),
        Command::Policy(c) => cmd::policy::run(c, &config()?),
        Command::Operator(c) => cmd::operator::run(c, &config()?),
        Command::Lock(args) => cmd::lock::run(args, true, &config()?),
        Command::Unlock(args) => cmd::lock::run(args, false, &config()?),
        Command::Relay(args) => runtime::single_threaded()?.block_on(cmd::relay::run(args)),
        Command::Config(ConfigCommand::Default) => {
            print!("{}", config::example());
            Ok(())
        }
        Command::Config(ConfigCommand::Show) => {
            println!("{}", toml::to_string_pretty(&config()?)?);
            Ok(())
        }
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Client(args) => cmd::client::run(args, &config()?),
        Command::Conformance(args) => cmd::conformance::run(args),
        Command::Bench(args) => {
            let config = config()?;
            let env = bench::Environment {
                open_store: {
                    let database = config.database()?;
                    Box::new(move || database.open())
                },
                database_url: match config.database()? {
                    crate::database::Database::Postgres(url) => Some(url),
                    crate::database::Database::Sqlite(_) => None,
                },
                data_dir: config.data_dir.clone(),
                advertised_relays: Box::new(move |store| {
                    cmd::token::advertised_relays(&config, store)
                }),
            };
            bench::run(args, &env)
        }
    }
}

/// Client commands print one line per message on stderr (scripts read it):
/// only errors are logged unless RUST_LOG says otherwise.
fn default_log_level(command: &Command) -> &'static str {
    match command {
        Command::Client(_) | Command::Bench(_) | Command::Conformance(_) => "error",
        _ => "info",
    }
}
