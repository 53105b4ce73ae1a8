//! `peer-signer`: a third-party NIP-46 remote signer to test and measure
//! Rampart's client against — rust-nostr's `NostrConnectRemoteSigner`
//! (nostr-connect 0.44), approving every request.
//!
//! ```text
//! peer-signer --relay ws://127.0.0.1:7447 [--relay …] [--secret S]
//!             [--signer-key HEX] [--user-key HEX] [--nostrconnect URI]
//! ```
//!
//! It prints its `bunker://` URI on stdout once it is serving — checked by
//! asking itself for a `ping` through the relays, so a client started after
//! that line cannot send its `connect` into the void — then serves until
//! killed. The signer key and the user key differ unless given equal, so
//! clients must call `get_public_key`. With `--nostrconnect`, it answers a
//! client's `nostrconnect://` URI instead (nostr-connect 0.44 cannot parse
//! the current URI format, so it is read here).
//!
//! Exit codes: 0 after a signal, 1 on a failure (one line on stderr), 2 on
//! bad arguments.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nostr_connect::prelude::{
    Keys, NostrConnect, NostrConnectKeys, NostrConnectMetadata, NostrConnectRemoteSigner,
    NostrConnectRequest, NostrConnectSignerActions, NostrConnectURI, NostrSigner, PublicKey,
    RelayUrl, Url,
};

/// How long the self-check may take in all.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Approves everything: this peer exists to be talked to.
struct AutoApprove;

impl NostrConnectSignerActions for AutoApprove {
    fn approve(&self, _client: &PublicKey, _request: &NostrConnectRequest) -> bool {
        true
    }
}

/// The command line.
#[derive(Default)]
struct Args {
    relays: Vec<String>,
    secret: Option<String>,
    signer_key: Option<String>,
    user_key: Option<String>,
    nostrconnect: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--relay" => args.relays.push(value()?),
            "--secret" => args.secret = Some(value()?),
            "--signer-key" => args.signer_key = Some(value()?),
            "--user-key" => args.user_key = Some(value()?),
            "--nostrconnect" => args.nostrconnect = Some(value()?),
            "-h" | "--help" => {
                return Err("usage: peer-signer --relay URL [--relay URL…] [--secret S] [--signer-key HEX] [--user-key HEX] [--nostrconnect URI]".into());
            }
            other => return Err(format!("unknown argument `{other}`; see --help")),
        }
    }
    if args.relays.is_empty() && args.nostrconnect.is_none() {
        return Err("give at least one --relay (or --nostrconnect URI)".into());
    }
    Ok(args)
}

fn keys(hex: Option<&str>, what: &str) -> Result<Keys, String> {
    match hex {
        Some(hex) => Keys::parse(hex).map_err(|e| format!("{what}: {e}")),
        None => Ok(Keys::generate()),
    }
}

/// Read a `nostrconnect://<client>?relay=…&secret=…` URI (the current NIP-46
/// form, which nostr-connect 0.44 cannot parse: it expects `metadata=`).
fn client_uri(text: &str) -> Result<(NostrConnectURI, String), String> {
    let url = Url::parse(text).map_err(|e| format!("--nostrconnect: {e}"))?;
    if url.scheme() != "nostrconnect" {
        return Err("--nostrconnect: not a nostrconnect:// URI".into());
    }
    let client = PublicKey::from_hex(url.host_str().unwrap_or_default())
        .map_err(|e| format!("--nostrconnect: client pubkey: {e}"))?;
    let mut relays = Vec::new();
    let mut secret = None;
    let mut name = "client".to_owned();
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "relay" => relays.push(RelayUrl::parse(&value).map_err(|e| format!("relay: {e}"))?),
            "secret" => secret = Some(value.into_owned()),
            "name" => name = value.into_owned(),
            _ => {}
        }
    }
    let secret = secret.ok_or("--nostrconnect: the URI has no secret")?;
    let uri = NostrConnectURI::Client {
        public_key: client,
        relays,
        metadata: NostrConnectMetadata::new(name),
    };
    Ok((uri, secret))
}

/// Ask ourselves for `get_public_key` through the relays until it works:
/// then the signer's subscription is live.
async fn wait_until_serving(uri: &NostrConnectURI, user: PublicKey) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < READY_WITHIN {
        let probe = NostrConnect::new(uri.clone(), Keys::generate(), Duration::from_secs(2), None)
            .map_err(|e| e.to_string())?;
        let answer = probe.get_public_key().await;
        probe.shutdown().await;
        match answer {
            Ok(pk) if pk == user => return Ok(()),
            Ok(pk) => return Err(format!("self-check answered {pk}, expected {user}")),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("not serving after {READY_WITHIN:?}: {last}"))
}

async fn run(args: Args) -> Result<(), String> {
    let signer = keys(args.signer_key.as_deref(), "--signer-key")?;
    let user = keys(args.user_key.as_deref(), "--user-key")?;
    let user_pk = user.public_key();
    let pair = NostrConnectKeys { signer, user };
    let remote = match &args.nostrconnect {
        Some(text) => {
            let (uri, secret) = client_uri(text)?;
            NostrConnectRemoteSigner::from_uri(uri, pair, Some(secret), None)
        }
        None => NostrConnectRemoteSigner::new(pair, args.relays.clone(), args.secret.clone(), None),
    }
    .map_err(|e| e.to_string())?;
    let bunker = remote.bunker_uri();
    let mut serving = {
        let remote = remote.clone();
        tokio::spawn(async move { remote.serve(AutoApprove).await })
    };
    if args.nostrconnect.is_none() {
        tokio::select! {
            ready = wait_until_serving(&bunker, user_pk) => ready?,
            ended = &mut serving => return Err(format!("stopped serving: {ended:?}")),
        }
    }
    println!("{bunker}");
    eprintln!("peer-signer: serving user {}", user_pk.to_hex());
    let signal = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::select! {
        () = signal => Ok(()),
        ended = serving => Err(format!("stopped serving: {ended:?}")),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("peer-signer: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("peer-signer: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("peer-signer: {message}");
            ExitCode::FAILURE
        }
    }
}
