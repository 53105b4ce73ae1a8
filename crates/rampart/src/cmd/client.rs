//! `rampart client`: use a remote signer from the shell, in the spirit of
//! `nak`. `connect` saves a session file; the other commands restore it,
//! do one thing, and print the result on stdout.
//!
//! Scripts can rely on the exit code and on stderr being one line per
//! message (`rampart client: …`):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | local failure (session file unreadable or unwritable) |
//! | 2 | usage: bad arguments or input, no session (run `connect` first) |
//! | 3 | timeout: the signer did not answer in time |
//! | 4 | denied: the signer refused (`unauthorized`) |
//! | 5 | other signer error |
//! | 6 | connection: no relay reachable, NIP-05 server unreachable |
//! | 7 | bad response: an answer that does not verify, or a changed user |

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use client::nip05::Nip05Error;
use client::{Client, ClientOptions, Error, Session};
use nip46::nostr::prelude::{Event, Kind, PublicKey, RelayUrl, Tag, Tags, Timestamp};
use nip46::{EventTemplate, PermissionSet};

use crate::config::Config;

const AFTER_HELP: &str = "Exit codes: 0 ok, 1 local failure, 2 usage or no session, 3 timeout, \
4 denied, 5 signer error, 6 connection, 7 bad response.";

/// `rampart client …`
#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Session file [default: <data-dir>/client-session.json].
    #[arg(long, global = true, value_name = "FILE")]
    session: Option<PathBuf>,
    /// How long to wait for each answer (e.g. 10s, 1m).
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "30s")]
    timeout: Duration,
    /// How long to wait once the signer asks for approval on a web page.
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "5m")]
    auth_timeout: Duration,
    #[command(subcommand)]
    command: ClientCommand,
}

/// The client commands.
#[derive(clap::Subcommand)]
pub enum ClientCommand {
    /// Connect to a signer and save the session. Give a bunker:// token or a
    /// name@domain address; or no token and --relay to print a
    /// nostrconnect:// URI for the signer and wait for it.
    Connect(ConnectArgs),
    /// Print the user's public key (hex).
    Pubkey,
    /// Sign an event: a template as JSON on stdin, or --kind/--content/--tag.
    /// Prints the signed event as JSON.
    Sign(SignArgs),
    /// Encrypt stdin for --to (NIP-44; --nip04 for legacy). One trailing
    /// newline is dropped.
    Encrypt(EncryptArgs),
    /// Decrypt stdin from --from (NIP-44; --nip04 for legacy).
    Decrypt(DecryptArgs),
    /// Check the signer answers; prints `pong`.
    Ping,
    /// End the session: tell the signer, and delete the session file.
    Logout,
}

/// `rampart client connect`
#[derive(clap::Args)]
pub struct ConnectArgs {
    /// bunker://… token or name@domain; `-` reads it from stdin
    /// (recommended: a token carries a secret).
    token: Option<String>,
    /// With no token: a relay to listen on for the signer (repeatable).
    #[arg(long = "relay", value_name = "URL")]
    relays: Vec<String>,
    /// Permissions to ask for (e.g. `sign_event:1,nip44_encrypt`).
    #[arg(long)]
    perms: Option<String>,
    /// Application name shown by the signer.
    #[arg(long, default_value = "rampart client")]
    name: String,
    /// Application URL shown by the signer.
    #[arg(long)]
    url: Option<String>,
}

/// `rampart client sign`
#[derive(clap::Args)]
pub struct SignArgs {
    /// Event kind (instead of a template on stdin).
    #[arg(long)]
    kind: Option<u16>,
    /// Content.
    #[arg(long, default_value = "", requires = "kind")]
    content: String,
    /// A tag as NAME=VALUE[;VALUE…] (repeatable), e.g. `t=nostr`, `e=<id>;wss://r`.
    #[arg(long = "tag", value_name = "TAG", requires = "kind")]
    tags: Vec<String>,
    /// Creation time, Unix seconds [default: now].
    #[arg(long, requires = "kind")]
    created_at: Option<u64>,
}

/// `rampart client encrypt`
#[derive(clap::Args)]
pub struct EncryptArgs {
    /// The recipient (hex or npub).
    #[arg(long, value_name = "PUBKEY")]
    to: String,
    /// Use NIP-04 instead of NIP-44.
    #[arg(long)]
    nip04: bool,
}

/// `rampart client decrypt`
#[derive(clap::Args)]
pub struct DecryptArgs {
    /// The sender (hex or npub).
    #[arg(long, value_name = "PUBKEY")]
    from: String,
    /// Use NIP-04 instead of NIP-44.
    #[arg(long)]
    nip04: bool,
}

/// A failure with its exit code and one-line message.
struct Failure {
    code: i32,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Timeout { .. } => 3,
            Error::Denied { .. } => 4,
            Error::Signer { .. } => 5,
            Error::Disconnected(_) | Error::Relay(_) | Error::RelayRefused { .. } => 6,
            Error::BadResponse { .. } | Error::SessionMismatch { .. } => 7,
            Error::InvalidRequest(_) | Error::Uri(_) | Error::TooLarge { .. } => 2,
            Error::Nip05(Nip05Error::InvalidAddress(_)) => 2,
            Error::Nip05(Nip05Error::Http { .. } | Nip05Error::Status { .. }) => 6,
            Error::Nip05(_) => 7,
            Error::Session(_) | Error::Entropy(_) => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

/// Run a client command; on failure print one line and exit with its code.
pub fn run(args: Args, config: &Config) -> Result<()> {
    let path = args
        .session
        .clone()
        .unwrap_or_else(|| config.data_dir.join("client-session.json"));
    let outcome = crate::runtime::multi_threaded()?.block_on(execute(args, &path));
    if let Err(failure) = outcome {
        eprintln!("rampart client: {}", failure.message);
        std::process::exit(failure.code);
    }
    Ok(())
}

fn options(args: &Args) -> ClientOptions {
    ClientOptions::new()
        .request_timeout(args.timeout)
        .auth_timeout(args.auth_timeout)
        .on_auth_url(|challenge| {
            eprintln!(
                "rampart client: the signer asks you to approve `{}` at {}",
                challenge.method, challenge.url
            );
        })
}

async fn execute(args: Args, path: &Path) -> Result<(), Failure> {
    let options = options(&args);
    match args.command {
        ClientCommand::Connect(c) => connect(c, options, path, args.auth_timeout).await,
        ClientCommand::Logout => logout(options, path).await,
        command => {
            let session = load(path)?;
            let client = Client::restore(session.clone(), options).await?;
            let result = one(&client, command).await;
            if client.relays() != session.relays {
                // The signer moved: keep following it next time.
                client.session().save(path).map_err(Error::from)?;
            }
            client.shutdown().await;
            result
        }
    }
}

fn load(path: &Path) -> Result<Session, Failure> {
    if !path.exists() {
        return Err(Failure::usage(format!(
            "no session at {}; run `rampart client connect <bunker://…>` first",
            path.display()
        )));
    }
    Session::load(path).map_err(|e| Failure::from(Error::from(e)))
}

async fn connect(
    args: ConnectArgs,
    mut options: ClientOptions,
    path: &Path,
    wait: Duration,
) -> Result<(), Failure> {
    options = options.name(args.name);
    if let Some(url) = args.url {
        options = options.url(url);
    }
    if let Some(perms) = &args.perms {
        let perms: PermissionSet = perms
            .parse()
            .map_err(|e| Failure::usage(format!("--perms: {e}")))?;
        options = options.perms(perms);
    }
    let client = match args.token {
        Some(token) => {
            let token =
                crate::arg::or_stdin(&token).map_err(|e| Failure::usage(format!("{e:#}")))?;
            Client::connect(&token, options).await?
        }
        None => {
            if args.relays.is_empty() {
                return Err(Failure::usage(
                    "give a bunker:// token or name@domain, or --relay to make a nostrconnect:// URI",
                ));
            }
            let relays = args
                .relays
                .iter()
                .map(|r| {
                    RelayUrl::parse(r)
                        .map_err(|_| Failure::usage(format!("`{r}` is not a ws:// or wss:// URL")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let pending = Client::nostrconnect(relays, options).await?;
            println!("{}", pending.uri());
            let _ = std::io::stdout().flush();
            pending.wait(wait).await?
        }
    };
    let saved = client.session().save(path).map_err(Error::from);
    client.shutdown().await;
    saved?;
    eprintln!(
        "rampart client: connected as {}; session saved to {}",
        client.user_pubkey().to_hex(),
        path.display()
    );
    Ok(())
}

async fn logout(options: ClientOptions, path: &Path) -> Result<(), Failure> {
    let session = load(path)?;
    // No `get_public_key` check first: the signer may have ended the session.
    let client = Client::restore_unchecked(session, options)?;
    let result = client.logout().await;
    // The client key is forgotten whatever the signer says (NIP-46).
    Session::delete(path).map_err(Error::from)?;
    result.map_err(|e| {
        let mut failure = Failure::from(e);
        failure.message = format!(
            "session deleted, but the signer did not confirm: {}",
            failure.message
        );
        failure
    })
}

async fn one(client: &Client, command: ClientCommand) -> Result<(), Failure> {
    match command {
        ClientCommand::Pubkey => println!("{}", client.user_pubkey().to_hex()),
        ClientCommand::Ping => {
            client.ping().await?;
            println!("pong");
        }
        ClientCommand::Sign(args) => {
            let event = sign(client, args).await?;
            println!("{}", event.as_json());
        }
        ClientCommand::Encrypt(args) => {
            let peer = pubkey(&args.to)?;
            let mut text = stdin()?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            let out = if args.nip04 {
                client.nip04_encrypt(&peer, &text).await?
            } else {
                client.nip44_encrypt(&peer, &text).await?
            };
            println!("{out}");
        }
        ClientCommand::Decrypt(args) => {
            let peer = pubkey(&args.from)?;
            let text = stdin()?;
            let text = text.trim();
            let out = if args.nip04 {
                client.nip04_decrypt(&peer, text).await?
            } else {
                client.nip44_decrypt(&peer, text).await?
            };
            println!("{out}");
        }
        ClientCommand::Connect(_) | ClientCommand::Logout => {}
    }
    Ok(())
}

async fn sign(client: &Client, args: SignArgs) -> Result<Event, Failure> {
    let template = match args.kind {
        Some(kind) => {
            let tags = args
                .tags
                .iter()
                .map(|t| parse_tag(t))
                .collect::<Result<Vec<_>, _>>()?;
            EventTemplate {
                kind: Kind::from_u16(kind),
                content: args.content,
                tags: Tags::from_list(tags),
                created_at: args.created_at.map(Timestamp::from_secs),
                pubkey: None,
            }
        }
        None => {
            if std::io::stdin().is_terminal() {
                return Err(Failure::usage(
                    "pipe an event template as JSON on stdin, or give --kind (and --content, --tag)",
                ));
            }
            EventTemplate::parse(&stdin()?).map_err(|e| Failure::usage(format!("stdin: {e}")))?
        }
    };
    Ok(client.sign_template(template).await?)
}

/// `NAME=VALUE[;VALUE…]`, as nak writes tags.
fn parse_tag(text: &str) -> Result<Tag, Failure> {
    let bad = || Failure::usage(format!("--tag `{text}`: expected NAME=VALUE[;VALUE…]"));
    let (name, values) = text.split_once('=').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    let mut parts = vec![name.to_owned()];
    parts.extend(values.split(';').map(str::to_owned));
    Tag::parse(parts).map_err(|_| bad())
}

fn pubkey(text: &str) -> Result<PublicKey, Failure> {
    PublicKey::parse(text.trim())
        .map_err(|_| Failure::usage(format!("`{text}` is not a public key (hex or npub)")))
}

fn stdin() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure {
            code: 1,
            message: format!("cannot read stdin: {e}"),
        })?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_in_nak_form() {
        let tag = parse_tag("e=abc;wss://r.example").ok().unwrap();
        assert_eq!(tag.as_slice(), ["e", "abc", "wss://r.example"]);
        assert_eq!(
            parse_tag("t=nostr").ok().unwrap().as_slice(),
            ["t", "nostr"]
        );
        assert!(parse_tag("novalue").is_err());
        assert!(parse_tag("=x").is_err());
    }

    #[test]
    fn every_error_has_a_documented_code() {
        let method = nip46::Method::Ping;
        let cases = [
            (
                Error::Timeout {
                    method,
                    waited: Duration::from_secs(1),
                    challenged: false,
                },
                3,
            ),
            (
                Error::Denied {
                    method,
                    reason: "no".into(),
                },
                4,
            ),
            (
                Error::Signer {
                    method,
                    error: nip46::RpcError::parse("boom"),
                },
                5,
            ),
            (Error::Disconnected("down".into()), 6),
            (
                Error::BadResponse {
                    method,
                    reason: "bad".into(),
                },
                7,
            ),
            (Error::InvalidRequest("x".into()), 2),
        ];
        for (error, code) in cases {
            let failure = Failure::from(error);
            assert_eq!(failure.code, code);
            assert!(!failure.message.contains('\n'));
        }
    }
}
