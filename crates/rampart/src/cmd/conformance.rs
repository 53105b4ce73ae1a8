//! `rampart conformance`: run the NIP-46 conformance suite against any
//! signer reachable by a `bunker://` URI (Rampart or not).
//!
//! Exit status 0 iff every MUST passes (1 otherwise, 2 for bad arguments).
//! `--json` prints one JSON object on stdout and nothing else; progress
//! goes to stderr either way.

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use conformance::{CheckResult, SuiteConfig};
use nip46::BunkerUri;

/// `rampart conformance`
#[derive(clap::Args)]
pub struct Args {
    /// A bunker:// token of the signer under test; repeat with fresh tokens
    /// (single-use secrets) for the connect checks that need one each (5 in
    /// all). `-` reads them from stdin, one per line, keeping the secrets
    /// out of argv.
    #[arg(long = "uri", required = true, value_name = "URI")]
    uris: Vec<String>,
    /// How long each check waits for an answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Run the suite; the process exits 1 when a MUST fails.
pub fn run(args: Args) -> Result<()> {
    let uris = match read_uris(&args.uris) {
        Ok(uris) => uris,
        Err(e) => usage(&e),
    };
    let config = SuiteConfig {
        uris,
        timeout: args.timeout,
    };
    let mut progress = |c: &CheckResult| {
        eprintln!("{:<32} {:<7} {}", c.id, c.level.as_str(), c.result.as_str());
    };
    let report =
        match crate::runtime::multi_threaded()?.block_on(conformance::run(config, &mut progress)) {
            Ok(report) => report,
            Err(e) => usage(&e.into()),
        };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    if !report.conforms() {
        std::process::exit(1);
    }
    Ok(())
}

/// Bad arguments: one line on stderr, exit status 2 (1 means a MUST failed).
fn usage(e: &anyhow::Error) -> ! {
    eprintln!("rampart conformance: {e:#}");
    std::process::exit(2);
}

/// The tokens: given directly, or (`-`) one per line of stdin.
fn read_uris(values: &[String]) -> Result<Vec<BunkerUri>> {
    let mut texts = Vec::new();
    for value in values {
        if value != "-" {
            texts.push(zeroize::Zeroizing::new(value.clone()));
            continue;
        }
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("paste the bunker:// tokens, one per line, then an empty line:");
        }
        for line in stdin.lock().lines() {
            let line = zeroize::Zeroizing::new(line.context("could not read stdin")?);
            if line.trim().is_empty() {
                break;
            }
            texts.push(zeroize::Zeroizing::new(line.trim().to_owned()));
        }
    }
    if texts.is_empty() {
        bail!("no bunker:// URI given (stdin was empty)");
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.parse::<BunkerUri>()
                .with_context(|| format!("URI {} is not a bunker:// token", i + 1))
        })
        .collect()
}
