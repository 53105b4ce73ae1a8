//! `rampart bench`: a NIP-46 load generator, and the memory of idle sessions.
//! The `rampart` binary parses its flags ([`Args`]) and calls [`run`]; it is
//! a crate of its own so the CLI stays the CLI.
//!
//! C clients (each its own key pair and relay connection) connect to a
//! signer with `bunker://` URIs, then send R requests each with at most K in
//! flight, closed loop or at a fixed total rate, checking every result. The
//! report gives throughput, latency percentiles, the relay's own round trip
//! measured in the same run (and so the signer's share of the latency), and
//! the CPU time per request of the signer, the relay and the generator,
//! read from `/proc` — the figure that survives a noisy machine — also
//! divided by the cryptographic floor measured during the run ([`floor`]).
//!
//! The signer is anyone's: `--uri` (one per client for single-use secrets,
//! or one for all), `--mint` (tokens minted in the store of `--data-dir`,
//! one per client, for a running `rampart run`), or `--spawn` (a relay and a
//! bunker started here, in a temporary data directory: one command, nothing
//! to set up). `--idle-sessions N` measures memory instead (see
//! [`idle_sessions`]); `--compare OURS THEIRS` prints two saved reports side
//! by side ([`compare`]).

mod children;
mod clients;
mod compare;
mod data_dir;
mod floor;
mod idle_sessions;
mod latency;
mod load;
mod pacing;
mod procfs;
mod relay_baseline;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bunker::{OsRandomness, admin};
use client::Client;
use nip46::nostr::prelude::{Keys, RelayUrl, Timestamp};
use nip46::{BunkerUri, PermissionSet};
use store::Store;
use tokio::sync::watch;
use tokio::task::JoinSet;

use children::{BunkerSpec, ChildProcess};
use latency::Percentiles;
use load::{Plan, Workload};
use pacing::Schedule;
use procfs::{CpuTicks, Machine};
use relay_baseline::RelayProbe;
use report::{CpuUse, IdleUse, LoadReport};

/// `rampart bench`
#[derive(clap::Args)]
pub struct Args {
    /// Start a relay (`rampart relay`) and a bunker (`rampart run`, fresh
    /// temporary data dir) for this run, and stop them after.
    #[arg(long, conflicts_with_all = ["uris", "mint"])]
    spawn: bool,
    /// Connect with this bunker:// URI (repeatable; client i uses the
    /// (i mod n)-th: one per client for single-use secrets, or one for all);
    /// `-` reads them from stdin, one per line.
    #[arg(long = "uri", value_name = "URI", conflicts_with = "mint")]
    uris: Vec<String>,
    /// Mint one single-use token per client in the store of --data-dir,
    /// whose `rampart run` must be running.
    #[arg(long)]
    mint: bool,
    /// With --spawn: use this running relay instead of starting one. With
    /// --mint: the relay to put in the tokens.
    #[arg(long)]
    #[arg(value_parser = relay_url)]
    relay: Option<String>,
    /// With --mint: the key to mint tokens for (default: the first).
    #[arg(long)]
    key: Option<String>,
    /// What minted tokens grant (a preset or a permission list).
    #[arg(long, default_value = "full")]
    grant: PermissionSet,
    /// With --spawn: start this many `rampart run` replicas on the store the
    /// configuration selects (`--database`, `RAMPART_DATABASE`: an empty
    /// PostgreSQL database) instead of one on a fresh SQLite file; their CPU
    /// is added up.
    #[arg(long, requires = "spawn")]
    replicas: Option<usize>,
    /// The signer's process id, for its CPU time (known with --spawn).
    /// Repeat it for replicas: their CPU is added up.
    #[arg(long)]
    bunker_pid: Vec<u32>,
    /// The relay's process id, for its CPU time (known with --spawn).
    #[arg(long)]
    relay_pid: Option<u32>,
    /// Clients (C), each with its own key pair and relay connection.
    #[arg(short = 'c', long, default_value_t = 10)]
    clients: usize,
    /// Requests per client (R).
    #[arg(short = 'r', long, default_value_t = 1000)]
    requests: usize,
    /// Requests in flight per client, at most (K).
    #[arg(short = 'k', long, default_value_t = 10)]
    in_flight: usize,
    /// The method to send.
    #[arg(long, value_enum, default_value_t = Workload::SignEvent)]
    method: Workload,
    /// Open loop: send this many requests per second, all clients together
    /// (default: closed loop, as fast as answers come).
    #[arg(long)]
    rate: Option<f64>,
    /// Requests per client before measuring (not counted).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Relay round-trip probes per second during the run (0: none).
    #[arg(long, default_value_t = 100.0)]
    probe_rate: f64,
    /// After the load, measure the idle bunker (clients connected, nothing
    /// asked) for this many seconds: CPU and wake-ups per idle second.
    #[arg(long, value_name = "SECS")]
    idle_secs: Option<u64>,
    /// How long a request may wait for its answer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Threads of the load generator. One (the default) suits a machine
    /// it shares with the signer and the relay; on a bigger one, more keep
    /// the generator from being what limits the throughput.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The signer's name in the report.
    #[arg(long)]
    label: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Measure the memory of this many idle sessions instead of a load
    /// (two bunkers, with and without them; a relay is started unless
    /// --relay is given).
    #[arg(long, value_name = "N", conflicts_with_all = ["uris", "mint"])]
    idle_sessions: Option<usize>,
    /// With --idle-sessions: do not send the one request per session.
    #[arg(long, requires = "idle_sessions")]
    no_touch: bool,
    /// Print two `--json` reports side by side, with the ratios of the bars
    /// (CPU per request ≤ 1/3, throughput ≥ 2×); nothing is run.
    #[arg(long, num_args = 2, value_names = ["OURS", "THEIRS"])]
    compare: Option<Vec<PathBuf>>,
}

/// Processes and files that live as long as the run.
#[derive(Default)]
struct Setup {
    children: Vec<ChildProcess>,
    temp: Option<tempfile::TempDir>,
    uris: Vec<String>,
    relay_url: Option<String>,
    bunker_pids: Vec<u32>,
    relay_pid: Option<u32>,
}

/// What the bench takes from the CLI's configuration (`--data-dir` and the
/// layered config), for `--mint`.
pub struct Environment {
    /// The data directory, for messages.
    pub data_dir: PathBuf,
    /// Opens the store the CLI's configuration selects (`--database`).
    pub open_store: Box<StoreOpener>,
    /// The configured PostgreSQL URL, if that is the store (for replicas
    /// spawned on it; passed to them in their environment).
    pub database_url: Option<String>,
    /// The relays a token names when `--relay` is not given (asked only
    /// for `--mint`, so a config the bench does not need cannot fail it).
    pub advertised_relays: Box<RelaysOf>,
}

/// Opens the configured store.
pub type StoreOpener = dyn Fn() -> Result<Box<dyn Store>>;

/// Where the relays a minted token names come from, given the store.
pub type RelaysOf = dyn Fn(&dyn Store) -> Result<Vec<RelayUrl>>;

/// `--relay` is checked when the flags are parsed, kept as text.
fn relay_url(text: &str) -> Result<String, nip46::nostr::error::Error> {
    RelayUrl::parse(text).map(|_| text.to_owned())
}

/// Run the benchmark and print its report.
pub fn run(args: Args, env: &Environment) -> Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if let Some([ours, theirs]) = args.compare.as_deref() {
        let comparison = compare::Comparison {
            ours: compare::read(ours)?,
            theirs: compare::read(theirs)?,
        };
        print!("{comparison}");
        return Ok(());
    }
    let exe = std::env::current_exe().context("cannot find the rampart executable")?;
    if let Some(sessions) = args.idle_sessions {
        return run_idle(&args, &exe, sessions);
    }
    let mut setup = Setup {
        bunker_pids: args.bunker_pid.clone(),
        relay_pid: args.relay_pid,
        ..Setup::default()
    };
    if let (true, Some(replicas)) = (args.spawn, args.replicas) {
        spawn_replicas(&args, env, &exe, replicas, &mut setup)?;
    } else if args.spawn {
        spawn(&args, &exe, &mut setup)?;
    } else if args.mint {
        let mut store = (env.open_store)()
            .with_context(|| format!("cannot open the store of {}", env.data_dir.display()))?;
        let relays = match &args.relay {
            Some(relay) => vec![RelayUrl::parse(relay)?],
            None => (env.advertised_relays)(&*store)?,
        };
        setup.uris = mint(&mut *store, &args, args.clients, relays)?;
    } else if args.uris.is_empty() {
        bail!("say which signer to load: --spawn, --uri bunker://… or --mint (see --help)");
    } else if args.uris.iter().any(|u| u == "-") {
        // `--uri -`: the URIs (they carry secrets) one per line on stdin.
        setup.uris = std::io::stdin()
            .lines()
            .map_while(Result::ok)
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        if setup.uris.is_empty() {
            bail!("--uri - reads the URIs from stdin, one per line, but stdin was empty");
        }
    } else {
        setup.uris = args.uris.clone();
    }
    if setup.relay_url.is_none() {
        let uri: BunkerUri = setup.uris[0].parse().context("not a bunker:// URI")?;
        setup.relay_url = uri.relays.first().map(ToString::to_string);
    }
    // One thread by default, like the bunker's: the clients' work is mostly
    // their signatures, and hand-offs between threads cost more than the
    // parallelism is worth on a machine shared with the signer.
    let runtime = match args.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    let report = runtime.block_on(measure(&args, &setup))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    drop(setup);
    Ok(())
}

fn run_idle(args: &Args, exe: &std::path::Path, sessions: usize) -> Result<()> {
    let logs = tempfile::tempdir().context("no temporary directory")?;
    let mut relay_child = None;
    let relay_url = match &args.relay {
        Some(url) => url.clone(),
        None => {
            let (child, url) = children::spawn_relay(exe, logs.path(), &[])?;
            relay_child = Some(child);
            url
        }
    };
    let report = idle_sessions::run(exe, &relay_url, sessions, !args.no_touch)?;
    drop(relay_child);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// Start the relay (unless given) and `count` replicas on the configured
/// PostgreSQL store; mint a token per client there.
fn spawn_replicas(
    args: &Args,
    env: &Environment,
    exe: &std::path::Path,
    count: usize,
    setup: &mut Setup,
) -> Result<()> {
    let Some(url) = env.database_url.as_deref() else {
        bail!("--replicas needs a PostgreSQL store: set RAMPART_DATABASE=postgres://…");
    };
    if count == 0 {
        bail!("--replicas must be at least 1");
    }
    let temp = tempfile::tempdir().context("no temporary directory")?;
    let passphrase = format!("bench-{}", Keys::generate().public_key().to_hex());
    let mut store = (env.open_store)()?;
    if !store.keys()?.is_empty() {
        bail!("--replicas wants an empty database (this one has keys)");
    }
    let key = data_dir::add_key(&mut *store, &passphrase)?;
    let relay_url = relay_for(args, exe, temp.path(), &key, setup)?;
    let relays = vec![RelayUrl::parse(&relay_url)?];
    setup.uris = mint(&mut *store, args, args.clients, relays)?;
    drop(store);
    for n in 0..count {
        let data_dir = temp.path().join(format!("replica-{n}"));
        let name = format!("bench-{n}");
        let (bunker, _) = children::spawn_bunker(&BunkerSpec {
            exe,
            data_dir: &data_dir,
            relay_url: &relay_url,
            passphrase: &passphrase,
            grant: &args.grant.to_string(),
            shared: Some((url, &name)),
        })?;
        setup.bunker_pids.push(bunker.pid());
        setup.children.push(bunker);
    }
    // Every replica's heartbeat seen by every other, and warmed up: the
    // load then measures the steady state, not a membership change.
    std::thread::sleep(Duration::from_secs(3));
    setup.relay_url = Some(relay_url);
    setup.temp = Some(temp);
    Ok(())
}

/// `--relay`, or an embedded relay started for the run, trusting `key`'s
/// signer (never rate-limited there).
fn relay_for(
    args: &Args,
    exe: &std::path::Path,
    logs: &std::path::Path,
    key: &store::StoredKey,
    setup: &mut Setup,
) -> Result<String> {
    if let Some(url) = &args.relay {
        return Ok(url.clone());
    }
    let (relay, url) = children::spawn_relay(exe, logs, &[key.signer_pubkey])?;
    setup.relay_pid = Some(relay.pid());
    setup.children.push(relay);
    Ok(url)
}

/// Start the relay (unless given) and the bunker; mint a token per client.
fn spawn(args: &Args, exe: &std::path::Path, setup: &mut Setup) -> Result<()> {
    let temp = tempfile::tempdir().context("no temporary directory")?;
    // Tokens are in the store before the bunker starts, so it knows them
    // from the first request on.
    let data_dir: PathBuf = temp.path().join("data");
    let passphrase = format!("bench-{}", Keys::generate().public_key().to_hex());
    let (mut store, key) = data_dir::create(&data_dir, &passphrase)?;
    let relay_url = relay_for(args, exe, temp.path(), &key, setup)?;
    let relays = vec![RelayUrl::parse(&relay_url)?];
    setup.uris = mint(&mut store, args, args.clients, relays)?;
    drop(store);
    let (bunker, _) = children::spawn_bunker(&BunkerSpec {
        exe,
        data_dir: &data_dir,
        relay_url: &relay_url,
        passphrase: &passphrase,
        grant: &args.grant.to_string(),
        shared: None,
    })?;
    setup.bunker_pids = vec![bunker.pid()];
    setup.children.push(bunker);
    setup.relay_url = Some(relay_url);
    setup.temp = Some(temp);
    Ok(())
}

/// Mint `count` single-use tokens.
fn mint(
    store: &mut dyn Store,
    args: &Args,
    count: usize,
    relays: Vec<RelayUrl>,
) -> Result<Vec<String>> {
    let key = admin::pick_key(store, args.key.as_deref())?;
    let grant = &args.grant;
    let mut rng = OsRandomness::new();
    (0..count)
        .map(|i| {
            let uri = admin::mint_token(
                store,
                &key,
                grant.clone(),
                None,
                Some(format!("rampart bench client {i}")),
                relays.clone(),
                &mut rng,
                Timestamp::now(),
            )?;
            Ok(uri.to_string())
        })
        .collect()
}

/// Send `count` requests from every client, one after the other per client.
async fn warm_up(clients: &[Client], workload: Workload, count: usize) -> Result<()> {
    let peer = Keys::generate();
    let mut warming = JoinSet::new();
    for (index, client) in clients.iter().enumerate() {
        let client = client.clone();
        let peer = peer.clone();
        warming.spawn(async move {
            for j in 0..count {
                let seq = u64::MAX / 2 + (index * count + j) as u64;
                load::request(&client, workload, seq, &peer)
                    .await
                    .map_err(|(_, message)| anyhow::anyhow!("warm-up failed: {message}"))?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(joined) = warming.join_next().await {
        joined??;
    }
    Ok(())
}

/// CPU counters of the processes that are measured.
struct Counters {
    bunker: Option<(u32, CpuTicks)>,
    /// Context switches of the bunker's threads (replicas added up).
    bunker_switches: Option<u64>,
    relay: Option<(u32, CpuTicks)>,
    generator: (u32, CpuTicks),
}

impl Counters {
    fn read(setup: &Setup) -> Result<Counters> {
        let read = |pid: Option<u32>| -> Result<Option<(u32, CpuTicks)>> {
            pid.map(|pid| Ok((pid, procfs::cpu_ticks(pid)?)))
                .transpose()
        };
        let me = std::process::id();
        // Replicas count as one signer: their ticks are added up (the
        // report names the first).
        let mut bunker: Option<(u32, CpuTicks)> = None;
        for pid in &setup.bunker_pids {
            let ticks = procfs::cpu_ticks(*pid)?;
            bunker = Some(match bunker {
                None => (*pid, ticks),
                Some((first, sum)) => (
                    first,
                    CpuTicks {
                        user: sum.user + ticks.user,
                        system: sum.system + ticks.system,
                    },
                ),
            });
        }
        let mut switches = None;
        for pid in &setup.bunker_pids {
            *switches.get_or_insert(0) += procfs::context_switches(*pid)?;
        }
        Ok(Counters {
            bunker,
            bunker_switches: switches,
            relay: read(setup.relay_pid)?,
            generator: (me, procfs::cpu_ticks(me)?),
        })
    }
}

fn cpu_use(
    before: Option<(u32, CpuTicks)>,
    after: Option<(u32, CpuTicks)>,
    requests: u64,
    elapsed: Duration,
    ticks_per_second: u64,
) -> Option<CpuUse> {
    let ((pid, before), (_, after)) = (before?, after?);
    let cpu = procfs::ticks_to_duration(after.since(before), ticks_per_second).as_secs_f64();
    Some(CpuUse {
        pid,
        cpu_secs: cpu,
        us_per_request: cpu * 1e6 / requests.max(1) as f64,
        cores: cpu / elapsed.as_secs_f64().max(1e-9),
        resolution_secs: 1.0 / ticks_per_second as f64,
    })
}

/// Connect, warm up, and measure the load phase.
async fn measure(args: &Args, setup: &Setup) -> Result<LoadReport> {
    let machine = Machine::now();
    let ticks_per_second = procfs::ticks_per_second();
    let clients = clients::connect(&setup.uris, args.clients, args.timeout).await?;
    warm_up(&clients, args.method, args.warmup).await?;
    let probe = match (&setup.relay_url, args.probe_rate > 0.0) {
        (Some(url), true) => Some(RelayProbe::connect(url).await?),
        _ => None,
    };
    let plan = Plan {
        requests: args.requests,
        in_flight: args.in_flight,
        workload: args.method,
        schedule: args.rate.and_then(|rate| Schedule::new(rate, args.clients)),
    };
    if args.rate.is_some() && plan.schedule.is_none() {
        bail!("--rate must be a positive number of requests per second");
    }

    let sampler = floor::FloorSampler::start()?;
    let before = Counters::read(setup)?;
    let (stop_probe, stopped) = watch::channel(false);
    let probing = probe.map(|p| tokio::spawn(p.sample(args.probe_rate, stopped)));
    let outcome = load::run(&clients, &plan).await;
    let after = Counters::read(setup)?;
    let floor = sampler.finish()?;
    let _ = stop_probe.send(true);
    let baseline = match probing {
        Some(task) => Percentiles::of(task.await.context("the probe task failed")??),
        None => None,
    };
    // The idle bunker: clients connected, nothing asked.
    let idle = match args.idle_secs {
        Some(secs) if secs > 0 => {
            Some(measure_idle(setup, Duration::from_secs(secs), ticks_per_second).await?)
        }
        _ => None,
    };
    for client in &clients {
        client.shutdown().await;
    }

    let cpu = |b, a| cpu_use(b, a, outcome.ok, outcome.elapsed, ticks_per_second);
    let bunker_wakeups_per_request = before
        .bunker_switches
        .zip(after.bunker_switches)
        .map(|(b, a)| a.saturating_sub(b) as f64 / outcome.ok.max(1) as f64);
    let latency = Percentiles::of(outcome.latencies);
    let bunker_added = latency
        .as_ref()
        .zip(baseline.as_ref())
        .map(|(l, b)| l.minus(b));
    let bunker_cpu = cpu(before.bunker, after.bunker);
    Ok(LoadReport {
        label: args.label.clone().unwrap_or_else(|| "signer".to_owned()),
        method: args.method.as_str().to_owned(),
        clients: args.clients,
        requests_per_client: args.requests,
        in_flight: args.in_flight,
        offered_rate: plan.schedule.map(|s| s.rate),
        ok: outcome.ok,
        errors: outcome.errors,
        elapsed_secs: outcome.elapsed.as_secs_f64(),
        throughput: outcome.ok as f64 / outcome.elapsed.as_secs_f64().max(1e-9),
        latency,
        schedule_lag: Percentiles::of(outcome.lags),
        relay_round_trip: baseline,
        bunker_added,
        bunker_cpu_floors: bunker_cpu
            .as_ref()
            .map(|c| c.us_per_request / floor.request_us),
        bunker_cpu,
        floor,
        relay_cpu: cpu(before.relay, after.relay),
        generator_cpu: cpu(Some(before.generator), Some(after.generator)),
        machine,
        load_average_after: Machine::now().load_average[0],
        bunker_wakeups_per_request,
        idle,
    })
}

/// The bunker's CPU and context switches over `span` with nothing asked.
async fn measure_idle(setup: &Setup, span: Duration, ticks_per_second: u64) -> Result<IdleUse> {
    let before = Counters::read(setup)?;
    tokio::time::sleep(span).await;
    let after = Counters::read(setup)?;
    let secs = span.as_secs_f64().max(1e-9);
    let cpu = before.bunker.zip(after.bunker).map(|((_, b), (_, a))| {
        procfs::ticks_to_duration(a.since(b), ticks_per_second).as_secs_f64()
    });
    Ok(IdleUse {
        secs,
        cpu_ms_per_second: cpu.map(|c| c * 1e3 / secs),
        wakeups_per_second: before
            .bunker_switches
            .zip(after.bunker_switches)
            .map(|(b, a)| a.saturating_sub(b) as f64 / secs),
    })
}
