//! `rampart bench --idle-sessions N`: what N sessions cost in memory.
//!
//! Two bunkers are started side by side on the same relay, from two fresh
//! data directories that differ only in N sessions (each with its own client
//! key, granted `read`) written into one store before `run`. The extra
//! resident memory (`VmRSS`) of the first over the second is what the
//! sessions cost once loaded. Then every one of those clients sends one
//! `ping` (their conversation keys and rate-limit buckets now exist too, and
//! the bunker has answered and audited N requests), and both are measured
//! again.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bunker::{OsRandomness, Randomness};
use nip46::envelope::{self, Entropy};
use nip46::nostr::prelude::{Filter, Keys, Kind, PublicKey, Timestamp};
use nip46::{Command, Conversation, Preset, Request, Response, Scheme};
use relay::{PoolConfig, PoolEvent, RelayPool};
use tokio::time::Instant;

use super::children::{self, BunkerSpec, ChildProcess};
use super::data_dir;
use super::procfs::{self, Machine};
use super::report::IdleReport;

/// Requests in flight while touching the sessions.
const WINDOW: usize = 256;

/// How long touching every session may take.
const TOUCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Time for a bunker to settle before its memory is read (and, after the
/// touch, for its session counters to be flushed: once a second).
const SETTLE: Duration = Duration::from_millis(1500);

/// A fresh store at `data_dir` with a key and a session for each client.
/// Returns the signer pubkey.
fn prepare(data_dir: &Path, passphrase: &str, clients: &[Keys]) -> Result<PublicKey> {
    let (mut store, key) = data_dir::create(data_dir, passphrase)?;
    let clients: Vec<PublicKey> = clients.iter().map(Keys::public_key).collect();
    data_dir::add_sessions(&mut store, &key, &clients, &Preset::Read.permissions())?;
    Ok(key.signer_pubkey)
}

/// Resident memory of both bunkers, read after they settled.
fn rss_pair(with: &ChildProcess, without: &ChildProcess) -> Result<(u64, u64)> {
    std::thread::sleep(SETTLE);
    Ok((
        procfs::rss_bytes(with.pid())?,
        procfs::rss_bytes(without.pid())?,
    ))
}

/// Measure; `relay_url` is a running relay.
pub fn run(exe: &Path, relay_url: &str, sessions: usize, touch: bool) -> Result<IdleReport> {
    let machine = Machine::now();
    let passphrase = format!("bench-{}", Keys::generate().public_key().to_hex());
    let clients: Vec<Keys> = (0..sessions).map(|_| Keys::generate()).collect();
    let with_dir = tempfile::tempdir().context("no temporary directory")?;
    let without_dir = tempfile::tempdir().context("no temporary directory")?;
    let signer = prepare(with_dir.path(), &passphrase, &clients)?;
    prepare(without_dir.path(), &passphrase, &[])?;
    let spec = |data_dir| BunkerSpec {
        exe,
        data_dir,
        relay_url,
        passphrase: &passphrase,
        grant: "read",
        shared: None,
    };
    let (with, _) = children::spawn_bunker(&spec(with_dir.path()))?;
    let (without, _) = children::spawn_bunker(&spec(without_dir.path()))?;
    let (rss_with, rss_without) = rss_pair(&with, &without)?;
    let mut report = IdleReport {
        sessions,
        rss_without_bytes: rss_without,
        rss_with_bytes: rss_with,
        extra_bytes: rss_with as i64 - rss_without as i64,
        touched_answers: None,
        rss_with_after_touch_bytes: None,
        rss_without_after_touch_bytes: None,
        extra_after_touch_bytes: None,
        machine,
    };
    if touch && sessions > 0 {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let answers = runtime.block_on(ping_all(relay_url, signer, &clients))?;
        let (rss_with, rss_without) = rss_pair(&with, &without)?;
        report.touched_answers = Some(answers);
        report.rss_with_after_touch_bytes = Some(rss_with);
        report.rss_without_after_touch_bytes = Some(rss_without);
        report.extra_after_touch_bytes = Some(rss_with as i64 - rss_without as i64);
    }
    Ok(report)
}

/// Send one `ping` from every client to `signer`, at most [`WINDOW`] in
/// flight; returns how many were answered `pong`.
async fn ping_all(relay_url: &str, signer: PublicKey, clients: &[Keys]) -> Result<usize> {
    let (pool, mut events) = RelayPool::new(PoolConfig::default());
    pool.add_relay(relay_url)?;
    let since = Timestamp::from_secs(Timestamp::now().as_secs().saturating_sub(10));
    pool.subscribe(vec![
        Filter::new()
            .kind(Kind::NostrConnect)
            .author(signer)
            .since(since),
    ])?;
    let deadline = Instant::now() + TOUCH_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(PoolEvent::EndOfStoredEvents { .. })) => break,
            Ok(Some(_)) => {}
            _ => bail!("no subscription on {relay_url}"),
        }
    }
    let mut rng = OsRandomness::new();
    let mut open: HashMap<PublicKey, (&Keys, Conversation)> = HashMap::new();
    let mut next = clients.iter();
    let mut answered = 0;
    let mut finished = 0;
    while finished < clients.len() {
        while open.len() < WINDOW {
            let Some(keys) = next.next() else { break };
            let mut conversation = Conversation::new(keys, signer)?;
            let request = Request {
                id: "1".into(),
                command: Command::Ping,
            }
            .to_json();
            let entropy = Entropy {
                nonce: rng.bytes32(),
                aux: rng.bytes32(),
            };
            let event = envelope::seal(
                keys,
                &mut conversation,
                Scheme::Nip44,
                &request,
                Timestamp::now(),
                &entropy,
            )?;
            pool.publish(&event)?;
            open.insert(keys.public_key(), (keys, conversation));
        }
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(PoolEvent::Event { event, .. })) => event,
            Ok(Some(_)) => continue,
            Ok(None) => bail!("the relay connection closed"),
            Err(_) => bail!(
                "only {finished} of {} pings answered in time",
                clients.len()
            ),
        };
        let Some(client) = event.tags.public_keys().next() else {
            continue;
        };
        let Some((keys, mut conversation)) = open.remove(&client) else {
            continue;
        };
        finished += 1;
        match envelope::open_response(keys, &mut conversation, &event) {
            Ok(opened) if opened.body == Response::ok("1", "pong") => answered += 1,
            Ok(opened) => {
                tracing::warn!(answer = ?opened.body.outcome, "a ping was not answered pong")
            }
            Err(e) => tracing::warn!(error = %e, "an answer could not be opened"),
        }
    }
    pool.shutdown().await;
    Ok(answered)
}
