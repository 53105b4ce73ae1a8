//! The async driver: moves events from the relay pool into the engine, and
//! the engine's output to the store, then (once committed) to the relays.
//!
//! It holds no protocol logic. One task owns the [`Engine`]; the store writer
//! thread commits each step's changes in a group commit and only then hands
//! the step's events to the pool, so a signature never leaves before its
//! audit row is durable. Outside edits to the store (the CLI) come back as
//! reloads. Shutdown is explicit: the caller passes a future.
//!
//! As one of several replicas ([`Replication`]), it also routes each
//! request through [`crate::replicas`] (handled here, or kept aside for the
//! replica that owns its client), commits every answer with its claim of
//! the request event, and acts on what its heartbeat thread reports:
//! takeovers, adoptions of held requests, fencing when the store is gone.
//!
//! A lone request on SQLite is committed right here, on the service task,
//! when the writer has nothing queued ([`StoreWriter::commit_now_or_queue`]):
//! at light load that saves the two thread hand-offs a commit otherwise
//! costs; under load, commits queue for the writer and share transactions.
//!
//! Requests that have already arrived when the task wakes up are handled
//! together (at most [`READY_BATCH`]) and their commits handed to the writer
//! as one batch: under load that saves a transaction per request — the
//! bunker's largest cost after the signatures — and it never waits for
//! anything that has not arrived yet.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nip46::nostr::prelude::{Event, Filter, Kind, SubscriptionId, Timestamp};
use relay::pool::{PoolEvent, RelayPool};
use store::writer::{CommitJob, StoreWriter};
use store::{
    ApprovalId, ApprovalStatus, AuditEntry, Change, HeldRequest, KeyId, PendingApproval, ReplicaId,
    SealedAnswer, Store, StoreError, StoredKey, Vote,
};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Millis;
use crate::engine::{
    AcceptError, DecideError, Engine, Output, Rollback, Snapshot, TransportKey, VoteOutcome,
};
use crate::metrics::Metrics;
use crate::randomness::{OsRandomness, Randomness};
use crate::replicas::{ReplicaConfig, Replicas, Route};
use crate::vault::Loader;

mod heartbeat;

/// Most requests handled in one wake-up of the service task before their
/// commits are handed over (bounds the wait of the first one's answer).
pub const READY_BATCH: usize = 16;

/// Requests from interfaces running in the same process (dashboard, admin API).
pub enum AdminCommand {
    /// List held requests.
    Pending {
        /// Where to answer.
        reply: oneshot::Sender<Vec<PendingApproval>>,
    },
    /// Count someone's answer to a held request (the owner's, from the
    /// terminal, or an operator's, from the dashboard).
    Decide {
        /// The held request.
        id: ApprovalId,
        /// Who answered what.
        vote: Vote,
        /// Where to answer: whether the request was settled or still waits
        /// for more allows.
        reply: oneshot::Sender<Result<VoteOutcome, DecideError>>,
    },
    /// Answer once the bunker is listening: its subscription is live on at
    /// least one relay (before that, a client's request would be lost:
    /// kind-24133 events are ephemeral, relays do not keep them).
    WhenServing {
        /// Where to answer.
        reply: oneshot::Sender<()>,
    },
    /// Accept a nostrconnect URI.
    AcceptNostrConnect {
        /// The user key.
        key_id: store::KeyId,
        /// The URI.
        uri: Box<nip46::NostrConnectUri>,
        /// What the session may do.
        grant: nip46::PermissionSet,
        /// Where to answer.
        reply: oneshot::Sender<Result<(), AcceptError>>,
    },
}

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store could not be read at start.
    #[error("could not read the store: {0}")]
    Store(#[from] StoreError),
    /// The relay pool refused the configuration.
    #[error("relay setup failed: {0}")]
    Relay(#[from] relay::pool::SubscribeError),
}

/// Settings of the driver itself.
pub struct ServiceConfig {
    /// How often the store is checked for outside edits.
    pub reload_poll: Duration,
    /// Serve as one of several replicas sharing the store (see
    /// [`crate::replicas`]); `None`: the only process serving it.
    pub replication: Option<Replication>,
    /// Where to count what happens (`/metrics`, `/healthz`).
    pub metrics: Option<Arc<Metrics>>,
    /// Opens keys added to the store (or given a new signer) while serving,
    /// so they are served from the next reload; `None`: only after a restart.
    pub key_loader: Option<Arc<Loader>>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            reload_poll: Duration::from_millis(200),
            replication: None,
            metrics: None,
            key_loader: None,
        }
    }
}

/// What serving as a replica takes.
pub struct Replication {
    /// Timing, bounds and this replica's name.
    pub config: ReplicaConfig,
    /// A second handle on the store, for heartbeats and claims: they must
    /// not wait behind the writer's commits.
    pub store: Box<dyn Store>,
    /// Claims and sealed answers older than this are pruned.
    pub keep_answers: Duration,
}

/// How often gauges (held requests, sessions, replicas) are refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(1);

/// Read the parts of the store the engine mirrors.
pub fn snapshot(store: &dyn Store) -> Result<Snapshot, StoreError> {
    Ok(snapshot_and_keys(store)?.0)
}

/// [`snapshot`], with the stored keys it was read from (sealed: for a
/// [`Loader`] to open the ones added since).
fn snapshot_and_keys(store: &dyn Store) -> Result<(Snapshot, Vec<StoredKey>), StoreError> {
    let keys = store.keys()?;
    let snapshot = Snapshot {
        locked: keys
            .iter()
            .filter(|k| k.locked_at.is_some())
            .map(|k| k.id)
            .collect(),
        sensitive: keys
            .iter()
            .filter_map(|k| k.sensitive_kinds.clone().map(|kinds| (k.id, kinds)))
            .collect(),
        quorums: keys
            .iter()
            .filter(|k| k.quorum > 1)
            .map(|k| (k.id, k.quorum))
            .collect(),
        keys: keys.iter().map(|k| k.id).collect(),
        operators: store.operators()?,
        tokens: store.tokens()?,
        sessions: store.sessions()?,
        approvals: store.approvals()?,
    };
    Ok((snapshot, keys))
}

/// Run the bunker until `shutdown` completes.
///
/// `pool` must already hold the relays to serve on; `events` is its
/// notification channel. The engine is expected to have been loaded with a
/// [`snapshot`] of `store` and seeded with recent request ids.
pub async fn run(
    config: ServiceConfig,
    mut engine: Engine,
    store: Box<dyn Store>,
    pool: RelayPool,
    mut events: mpsc::Receiver<PoolEvent>,
    mut admin: mpsc::Receiver<AdminCommand>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    // Stores are blocking (and PostgreSQL's client refuses to run on an
    // async thread): the first load runs on the blocking pool, the rest on
    // the writer's own thread — but for SQLite commits of lone requests,
    // made here when the writer is idle (see the module documentation).
    // A replica leaves held requests in the store: their holders (or this
    // replica's previous run) are adopted at the first heartbeat.
    let expire_held = config.replication.is_none();
    let loader = config.key_loader.clone();
    let (engine_back, store, rng, initial, unopened) = tokio::task::spawn_blocking(move || {
        let mut rng = OsRandomness::new();
        let mut store = store;
        let mut unopened = Unopened::new();
        let keys = loader.as_deref().map(|l| (l, &mut unopened));
        let initial = load(&mut engine, &mut *store, &mut rng, expire_held, keys);
        (engine, store, rng, initial, unopened)
    })
    .await
    .map_err(|e| ServiceError::Store(StoreError::Database(format!("the load task failed: {e}"))))?;
    engine = engine_back;
    let mut rng = rng;
    let (initial, seen) = initial?;
    let mut unopened = unopened;
    // What the writer thread reports, in the order it happens: a failed
    // commit's rollback first, then the store's state read after it.
    let (news_tx, mut news) = mpsc::unbounded_channel::<StoreNews>();
    let snapshots = news_tx.clone();
    let writer = StoreWriter::spawn_since(
        store,
        Box::new(
            move |store: &mut dyn Store| match snapshot_and_keys(store) {
                Ok((s, keys)) => {
                    let _ = snapshots.send(StoreNews::Snapshot(s, keys));
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not reload the store after an outside edit")
                }
            },
        ),
        config.reload_poll,
        seen,
    );
    let (mut replicas, mut replica_link) = match config.replication {
        Some(replication) => {
            let replicas = Replicas::new(replication.config.clone());
            let link = heartbeat::spawn(replication);
            (Some(replicas), Some(link))
        }
        None => (None, None),
    };
    let committer = Committer {
        writer,
        pool: pool.clone(),
        news: news_tx,
        replica: replicas.as_ref().map(|r| r.config().me.clone()),
        metrics: config.metrics.clone(),
    };
    let mut gauges = tokio::time::interval(GAUGE_EVERY);
    gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    sync_relays(&pool, &engine, Millis::now());
    committer.submit(initial);
    let filter = Filter::new()
        .kind(Kind::NostrConnect)
        .pubkeys(engine.signer_pubkeys())
        .since(Timestamp::from_secs(
            Millis::now().timestamp().as_secs().saturating_sub(10),
        ));
    let subscription = pool.subscribe(vec![filter])?;
    tracing::info!(
        relays = pool.relay_urls().len(),
        keys = engine.signer_pubkeys().len(),
        "bunker serving"
    );

    let mut readiness = Readiness::default();
    tokio::pin!(shutdown);
    loop {
        let timeout = engine.next_timeout();
        let sleep = async {
            match timeout {
                Some(at) => {
                    let wait = at.0.saturating_sub(Millis::now().0);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(news) = news.recv() => {
                let now = Millis::now();
                let out = match news {
                    StoreNews::Snapshot(snapshot, keys) => {
                        let mut out = Output::default();
                        if let Some(loader) = &config.key_loader {
                            let (answers, loaded) =
                                load_new_keys(&mut engine, loader, &keys, &mut unopened, now, &mut rng);
                            out.merge(answers);
                            if loaded {
                                resubscribe(&pool, &engine, &subscription);
                            }
                        }
                        out.merge(engine.reload(now, snapshot, &mut rng));
                        out
                    }
                    StoreNews::RolledBack(undo) => engine.roll_back(now, undo, &mut rng),
                    StoreNews::Unrecorded(events) => {
                        let ids: Vec<_> = events.iter().map(|e| e.id).collect();
                        engine.forget_requests(&ids);
                        if let Some(replicas) = replicas.as_mut() {
                            let at = replica_time();
                            fence(replicas, at, &"a commit failed");
                            replicas.defer_again(at, &events);
                        }
                        Output::default()
                    }
                };
                sync_relays(&pool, &engine, now);
                committer.submit(out);
            }
            Some(news) = recv_replica_news(&mut replica_link) => {
                if let (Some(replicas), Some(link)) = (replicas.as_mut(), replica_link.as_ref()) {
                    on_replica_news(&mut engine, replicas, link, &committer, &mut rng, news);
                }
            }
            Some(command) = admin.recv() => {
                handle_admin(&mut engine, &committer, &mut rng, &mut readiness, command);
            }
            () = sleep => {
                let out = engine.handle_timeout(Millis::now(), &mut rng);
                committer.submit(out);
            }
            _ = gauges.tick(), if config.metrics.is_some() => {
                if let Some(metrics) = &config.metrics {
                    update_gauges(metrics, &engine, replicas.as_ref());
                }
            }
            // Requests last: everything above is rare and small, and must not
            // wait behind a busy relay (a reload carries a revocation, a
            // heartbeat keeps this replica from fencing itself).
            Some(event) = events.recv() => {
                let mut jobs = Vec::new();
                let mut next = Some(event);
                let mut handled = 0;
                while let Some(event) = next.take() {
                    let received = Instant::now();
                    let step = on_pool_event(&mut engine, replicas.as_mut(), &mut readiness, &mut rng, event);
                    if let Some((out, request)) = step {
                        jobs.extend(committer.jobs_for(out, received, Some(request)));
                    }
                    handled += 1;
                    if handled < READY_BATCH {
                        next = events.try_recv().ok();
                    }
                }
                committer.writer.commit_now_or_queue(jobs);
            }
        }
    }
    tracing::info!("shutting down: flushing the store and closing relays");
    // Answer held requests, flush session counters, then wait for every
    // queued commit and its publishes.
    let out = if replicas.is_some() {
        engine.shutdown_leaving_held(Millis::now(), &mut rng)
    } else {
        engine.shutdown(Millis::now(), &mut rng)
    };
    committer.submit(out);
    let writer = committer.writer;
    tokio::task::spawn_blocking(move || writer.shutdown())
        .await
        .ok();
    // Retired only now, so the others take over once nothing is left here.
    if let Some(link) = replica_link.take() {
        tokio::task::spawn_blocking(move || link.retire())
            .await
            .ok();
    }
    drain(&pool, Duration::from_secs(2)).await;
    pool.shutdown().await;
    Ok(())
}

/// Bring the engine up to date with the store at start: approvals from a
/// previous run can no longer be answered (their requests died with it) —
/// unless replicas adopt them (`expire_held` false) —, and request ids
/// processed recently must not be processed again.
/// The first load: stale approvals expired, replay protection seeded, the
/// store's state mirrored — with the keys added since the process read them
/// (before unlocking) loaded too. Returns the store's external version as
/// read before the snapshot, for the writer to watch from (so an edit made
/// before it starts is not missed).
fn load(
    engine: &mut Engine,
    store: &mut dyn Store,
    rng: &mut OsRandomness,
    expire_held: bool,
    keys: Option<(&Loader, &mut Unopened)>,
) -> Result<(Output, Option<u64>), StoreError> {
    let now = Millis::now();
    let stale: Vec<Change> = store
        .approvals()?
        .into_iter()
        .filter(|_| expire_held)
        .filter(|a| {
            matches!(
                a.status,
                ApprovalStatus::Pending | ApprovalStatus::Decided(_)
            )
        })
        .map(|a| Change::SetApprovalStatus {
            id: a.id,
            status: ApprovalStatus::Expired,
        })
        .collect();
    if !stale.is_empty() {
        store.apply(&stale)?;
    }
    let since = Timestamp::from_secs(
        now.timestamp()
            .as_secs()
            .saturating_sub(engine.replay_window_secs()),
    );
    engine.seed_replay(now, store.audited_events(since)?);
    let seen = store.external_version().ok();
    let (snapshot, stored) = snapshot_and_keys(store)?;
    let mut out = Output::default();
    if let Some((loader, unopened)) = keys {
        out.merge(load_new_keys(engine, loader, &stored, unopened, now, rng).0);
    }
    out.merge(engine.reload(now, snapshot, rng));
    Ok((out, seen))
}

/// Whether the subscription is live yet, and who waits for it.
#[derive(Default)]
struct Readiness {
    serving: bool,
    waiting: Vec<oneshot::Sender<()>>,
}

impl Readiness {
    fn wait(&mut self, reply: oneshot::Sender<()>) {
        if self.serving {
            let _ = reply.send(());
        } else {
            self.waiting.push(reply);
        }
    }

    fn serving(&mut self) {
        self.serving = true;
        for reply in self.waiting.drain(..) {
            let _ = reply.send(());
        }
    }
}

fn handle_admin(
    engine: &mut Engine,
    committer: &Committer,
    rng: &mut OsRandomness,
    readiness: &mut Readiness,
    command: AdminCommand,
) {
    let now = Millis::now();
    match command {
        AdminCommand::WhenServing { reply } => readiness.wait(reply),
        AdminCommand::Pending { reply } => {
            let _ = reply.send(engine.pending().into_iter().cloned().collect());
        }
        AdminCommand::Decide { id, vote, reply } => {
            let result = engine.vote(now, &id, vote, rng).map(|out| {
                committer.submit(out);
                match engine.tally(&id) {
                    None => VoteOutcome::Settled,
                    Some((allowed, needed)) => VoteOutcome::Waiting { allowed, needed },
                }
            });
            let _ = reply.send(result);
        }
        AdminCommand::AcceptNostrConnect {
            key_id,
            uri,
            grant,
            reply,
        } => {
            let result = engine
                .accept_nostrconnect(now, key_id, &uri, &grant, rng)
                .map(|out| {
                    sync_relays(&committer.pool, engine, now);
                    committer.submit(out);
                });
            let _ = reply.send(result);
        }
    }
}

/// Wait (at most `limit`) until connected relays have taken every queued
/// event: the last answers (held requests refused at shutdown) must leave
/// before the pool closes, or those clients would wait in vain.
async fn drain(pool: &RelayPool, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline
        && pool.status().iter().any(|r| r.connected && r.queued > 0)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Hand an event from a relay to the engine and return its step (unless
/// another replica owns its client, or this one is fenced: then it is kept
/// aside), or note what else the pool reports.
fn on_pool_event(
    engine: &mut Engine,
    replicas: Option<&mut Replicas>,
    readiness: &mut Readiness,
    rng: &mut OsRandomness,
    event: PoolEvent,
) -> Option<(Output, Box<Event>)> {
    if let PoolEvent::Event { event, relay, .. } = event {
        if let Some(replicas) = replicas
            && replicas.route(replica_time(), &event) == Route::Deferred
        {
            return None;
        }
        let out = engine.handle_event(Millis::now(), &event, rng);
        if let Some(reason) = &out.dropped {
            tracing::debug!(relay = %relay, event = %event.id, %reason, "dropped an event");
        }
        return Some((out, event));
    }
    if matches!(event, PoolEvent::EndOfStoredEvents { .. }) {
        readiness.serving();
    }
    log_pool_event(&event);
    None
}

/// The next report of the heartbeat thread (never, without replication).
async fn recv_replica_news(link: &mut Option<heartbeat::Link>) -> Option<heartbeat::News> {
    match link {
        Some(link) => link.news.recv().await,
        None => std::future::pending().await,
    }
}

/// A heartbeat or a claim came back from the store.
fn on_replica_news(
    engine: &mut Engine,
    replicas: &mut Replicas,
    link: &heartbeat::Link,
    committer: &Committer,
    rng: &mut OsRandomness,
    news: heartbeat::News,
) {
    let now = Millis::now();
    // The replica protocol runs on a monotonic clock: a wall-clock step
    // must not delay fencing.
    let at = replica_time();
    match news {
        heartbeat::News::Beat { sent, beats } => {
            let sent = replica_time_of(sent);
            if let Some(metrics) = &committer.metrics {
                metrics.set_store_up(true);
            }
            let was_fenced = replicas.fenced(at);
            let beat = replicas.on_heartbeat(sent, at, &beats);
            if was_fenced {
                tracing::info!("heartbeat renewed: answering requests");
            }
            // Adoptions first: a held request's event may be among those
            // claimed next, and must not be handled as a new request.
            for from in beat.adopt_from {
                link.adopt(from);
            }
            if !beat.claim.is_empty() {
                link.claim(beat.claim);
            }
        }
        heartbeat::News::BeatFailed(StoreError::Duplicate(name)) => {
            // The store works; another live process has our name.
            let serving = !replicas.fenced(at);
            replicas.on_beat_failed(at);
            if serving || !replicas.warned_name_in_use() {
                tracing::error!(replica = %replicas.config().me, "not answering: {name} already exists");
            }
        }
        heartbeat::News::BeatFailed(error) => {
            if let Some(metrics) = &committer.metrics {
                metrics.set_store_up(false);
            }
            if !fence(replicas, at, &error) {
                tracing::warn!(%error, "heartbeat failed");
            }
            replicas.on_beat_failed(at);
        }
        heartbeat::News::Claimed(claims) => {
            let takeover = replicas.on_claims(claims);
            if let Some(metrics) = &committer.metrics {
                metrics.took_over(takeover.handle.len(), takeover.republish.len());
            }
            if !takeover.handle.is_empty() || !takeover.republish.is_empty() {
                tracing::info!(
                    handled = takeover.handle.len(),
                    republished = takeover.republish.len(),
                    left = takeover.left,
                    "took over requests of a replica that stopped"
                );
            }
            let mut jobs = Vec::new();
            for event in &takeover.handle {
                let out = engine.handle_event(now, event, rng);
                jobs.extend(committer.jobs_for(out, Instant::now(), Some(Box::new(event.clone()))));
            }
            committer.writer.submit_all(jobs);
            for answer in takeover.republish {
                match Event::from_json(&answer) {
                    Ok(event) => {
                        if let Err(e) = committer.pool.publish(&event) {
                            tracing::warn!(error = %e, "could not queue a republished answer");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "a sealed answer in the store is unreadable")
                    }
                }
            }
        }
        heartbeat::News::Adopted(adopted) => {
            let mut jobs = Vec::new();
            for (approval, json) in adopted {
                let event = match Event::from_json(&json) {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::warn!(error = %e, approval = %approval.id, "a held request's event is unreadable");
                        continue;
                    }
                };
                replicas.forget_deferred(&event.id);
                let out = engine.adopt(now, approval, &event, rng);
                jobs.extend(committer.jobs(out, Instant::now()));
            }
            committer.writer.submit_all(jobs);
        }
        heartbeat::News::ClaimFailed(events, error) => {
            tracing::warn!(%error, events = events.len(), "claiming requests failed; retried after the next heartbeat");
            replicas.on_claim_failed(&events);
        }
    }
}

/// Milliseconds on a monotonic clock (since the process's first call): the
/// replica protocol's time.
fn replica_time() -> Millis {
    replica_time_of(Instant::now())
}

fn replica_time_of(instant: Instant) -> Millis {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    Millis(u64::try_from(instant.saturating_duration_since(origin).as_millis()).unwrap_or(u64::MAX))
}

/// Stop handling requests until the store is back; says so once (returns
/// whether this replica was serving until now).
fn fence(replicas: &mut Replicas, now: Millis, why: &dyn std::fmt::Display) -> bool {
    let serving = !replicas.fenced(now);
    replicas.fence_now();
    if serving {
        tracing::error!(error = %why, "the store is unreachable: this replica stops answering until its heartbeat is renewed");
    }
    serving
}

/// What the writer thread tells the service loop.
enum StoreNews {
    /// The store's state (after an outside edit, or after a failed commit),
    /// with the stored keys it was read from.
    Snapshot(Snapshot, Vec<StoredKey>),
    /// A commit failed: what the engine must forget.
    RolledBack(Rollback),
    /// The store failed the commit of these requests' answers (replicas):
    /// handle them again once it is back.
    Unrecorded(Vec<Event>),
}

/// Open the stored keys the engine does not serve (added since the start,
/// or given a new signer) and hand them to it; whether any was.
/// Stored keys that would not open while running, by id and sealed texts
/// (a reseal or a new signer is tried again): said once each, not at every
/// reload.
type Unopened = HashSet<(KeyId, String, String)>;

/// Open the stored keys the engine does not serve (added since the start,
/// or given a new signer) and hand them to it: what that answers (a
/// re-keyed key's held requests refused), and whether any key was loaded.
fn load_new_keys(
    engine: &mut Engine,
    loader: &Loader,
    stored: &[StoredKey],
    unopened: &mut Unopened,
    now: Millis,
    rng: &mut dyn Randomness,
) -> (Output, bool) {
    let mut out = Output::default();
    let mut loaded = false;
    for key in stored {
        let sealed = (key.id, key.user_secret.clone(), key.signer_secret.clone());
        if engine.serves(key.id, &key.signer_pubkey) || unopened.contains(&sealed) {
            continue;
        }
        let rekeyed = engine.serves_key(key.id);
        match loader.load(key) {
            Ok(signer) => {
                let transport = TransportKey {
                    key_id: key.id,
                    signer,
                };
                if let Some(answers) = engine.add_signer(now, transport, rng) {
                    out.merge(answers);
                    loaded = true;
                    tracing::info!(key = %key.name, rekeyed, "serving a key added or re-keyed while running");
                }
            }
            Err(e) if rekeyed => {
                tracing::error!(key = %key.name, error = %e, "a key's new signer key does not open here: it keeps its old signer until a restart");
                unopened.insert(sealed);
            }
            Err(e) => {
                tracing::error!(key = %key.name, error = %e, "a key added while running does not open here; it is served after a restart");
                unopened.insert(sealed);
            }
        }
    }
    (out, loaded)
}

/// Subscribe again with every signer key the engine serves now (the same
/// subscription, its filter replaced on every relay).
fn resubscribe(pool: &RelayPool, engine: &Engine, subscription: &SubscriptionId) {
    let filter = Filter::new()
        .kind(Kind::NostrConnect)
        .pubkeys(engine.signer_pubkeys())
        .since(Timestamp::from_secs(
            Millis::now().timestamp().as_secs().saturating_sub(10),
        ));
    if let Err(e) = pool.subscribe_with_id(subscription.clone(), vec![filter]) {
        tracing::error!(error = %e, "could not subscribe for the keys loaded while running");
    }
}

/// Hands each engine step to the writer: its changes committed first, then
/// its events published; a failed commit's rollback reported back.
struct Committer {
    writer: StoreWriter,
    pool: RelayPool,
    news: mpsc::UnboundedSender<StoreNews>,
    /// This replica, when there are several: each answer is committed with
    /// its claim of the request event.
    replica: Option<ReplicaId>,
    metrics: Option<Arc<Metrics>>,
}

impl Committer {
    /// Commit a step's changes, then publish its events.
    fn submit(&self, out: Output) {
        self.writer
            .commit_now_or_queue(self.jobs(out, Instant::now()));
    }

    /// The writer jobs for one step: its changes, committed before its
    /// events are published; and, when the engine wants fresh store state,
    /// an empty job that wakes the writer (it checks for outside edits after
    /// every batch and reloads if there are any).
    fn jobs(&self, out: Output, received: Instant) -> Vec<CommitJob> {
        self.jobs_for(out, received, None)
    }

    /// The same, for the step that handled `request`: with replicas, a
    /// request whose answer the store failed to record is kept to be handled
    /// again once the store is back.
    fn jobs_for(
        &self,
        out: Output,
        received: Instant,
        request: Option<Box<Event>>,
    ) -> Vec<CommitJob> {
        let mut jobs = Vec::new();
        if out.wants_reload {
            jobs.push(CommitJob {
                changes: Vec::new(),
                on_commit: Box::new(|_| {}),
            });
        }
        if out.is_empty() {
            return jobs;
        }
        let pool = self.pool.clone();
        let news = self.news.clone();
        let undo = Rollback::of(&out.changes);
        let publish = out.publish;
        let mut changes = out.changes;
        if let (Some(replica), Some(request)) = (&self.replica, &request) {
            let holds: Vec<Change> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::PutApproval(a) => Some(Change::HoldRequest(HeldRequest {
                        approval: a.id.clone(),
                        holder: replica.clone(),
                        request_event: request.as_json(),
                        request_event_id: request.id,
                    })),
                    _ => None,
                })
                .collect();
            changes.extend(holds);
        }
        if let Some(replica) = &self.replica {
            let at = Millis::now().timestamp();
            changes.extend(publish.iter().filter_map(|outgoing| {
                Some(Change::Answer(SealedAnswer {
                    request: outgoing.answers?,
                    replica: replica.clone(),
                    answer: outgoing.event.as_json(),
                    at,
                }))
            }));
        }
        let metrics = self.metrics.clone();
        let audited: Vec<AuditEntry> = match &metrics {
            Some(_) => changes
                .iter()
                .filter_map(|c| match c {
                    Change::Audit(row) => Some(row.clone()),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        let submitted = Instant::now();
        let replicated = self.replica.is_some();
        let retry = if publish.is_empty() { None } else { request };
        jobs.push(CommitJob {
            changes,
            on_commit: Box::new(move |result| {
                if let Some(metrics) = &metrics {
                    match &result {
                        Ok(()) => {
                            metrics.set_store_up(true);
                            metrics.commit_took(submitted.elapsed());
                            for row in &audited {
                                metrics.answered(row);
                            }
                            if !publish.is_empty() {
                                metrics.request_took(received.elapsed());
                            }
                        }
                        Err(e) => {
                            if !e.is_about_the_job() {
                                metrics.set_store_up(false);
                            }
                        }
                    }
                }
                if let Err(e) = result {
                    if let Some(undo) = undo {
                        // A secret another process used first: the engine
                        // refuses the connect that lost the race.
                        let undo = match *e {
                            StoreError::AlreadyUsed(_) => undo.lost_race(),
                            _ => undo,
                        };
                        let _ = news.send(StoreNews::RolledBack(undo));
                    }
                    match (&*e, retry) {
                        (StoreError::Claimed(..), _) => {
                            tracing::info!(error = %e, "another replica answered first; answer withheld");
                        }
                        (e, Some(request)) if replicated && !e.is_about_the_job() => {
                            tracing::warn!(error = %e, "the store failed; the request waits for it");
                            let _ = news.send(StoreNews::Unrecorded(vec![*request]));
                        }
                        (e, _) => {
                            tracing::error!(error = %e, "store commit failed; responses withheld");
                        }
                    }
                    return;
                }
                for outgoing in publish {
                    for relay in &outgoing.extra_relays {
                        let _ = pool.add_relay(relay.as_str());
                    }
                    if let Err(e) = pool.publish(&outgoing.event) {
                        tracing::warn!(error = %e, "could not queue a response");
                    }
                }
            }),
        });
        jobs
    }
}

fn update_gauges(metrics: &Metrics, engine: &Engine, replicas: Option<&Replicas>) {
    let sessions: Vec<&store::Session> = engine.sessions().collect();
    metrics.set_engine(engine.pending().len(), sessions.len());
    if let Some(replicas) = replicas {
        let owned = replicas.owned(sessions.iter().map(|s| &s.client));
        metrics.set_replicas(&owned, replicas.deferred());
    }
}

fn sync_relays(pool: &RelayPool, engine: &Engine, now: Millis) {
    for relay in engine.wanted_relays(now) {
        if let Err(e) = pool.add_relay(relay.as_str()) {
            tracing::warn!(relay = %relay, error = %e, "could not add relay");
        }
    }
}

fn log_pool_event(event: &PoolEvent) {
    match event {
        PoolEvent::Connected { relay } => tracing::info!(%relay, "relay connected"),
        PoolEvent::Disconnected { relay, reason } => {
            tracing::warn!(%relay, %reason, "relay disconnected")
        }
        PoolEvent::Notice { relay, message } => tracing::info!(%relay, %message, "relay notice"),
        PoolEvent::Closed { relay, message, .. } => {
            tracing::warn!(%relay, %message, "subscription closed by relay")
        }
        PoolEvent::Rejected {
            relay,
            event_id,
            message,
        } => tracing::warn!(%relay, %event_id, %message, "relay refused an answer"),
        PoolEvent::AuthRejected { relay, message } => {
            tracing::warn!(%relay, %message, "relay refused our AUTH")
        }
        other => tracing::debug!(?other, "relay pool event"),
    }
}

/// Shared handle type for interfaces that only need to send admin commands.
pub type AdminSender = mpsc::Sender<AdminCommand>;
