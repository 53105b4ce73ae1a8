//! The heartbeat thread of a replica: renews its heartbeat in the store
//! every beat, runs takeover claims, prunes old claims, and reports each
//! result to the service loop. It has its own store handle, so a heartbeat
//! never waits behind the writer's commits (and PostgreSQL's blocking
//! client never runs on an async thread).

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nip46::nostr::prelude::{EventId, Timestamp};
use store::{ApprovalStatus, Claim, PendingApproval, ReplicaBeat, ReplicaId, Store, StoreError};
use tokio::sync::mpsc as async_mpsc;

use super::Replication;
use crate::clock::Millis;

/// Old claims are pruned every this many heartbeats.
const PRUNE_EVERY: u32 = 60;

/// What the thread reports.
pub(super) enum News {
    /// A heartbeat sent at `sent` committed; every replica's last one.
    Beat {
        sent: Instant,
        beats: Vec<ReplicaBeat>,
    },
    /// A heartbeat failed.
    BeatFailed(StoreError),
    /// A takeover's claims, per event.
    Claimed(Vec<(EventId, Claim)>),
    /// A takeover's claims failed; the events to claim again later.
    ClaimFailed(Vec<EventId>, StoreError),
    /// Held requests adopted from a replica that stopped, each with its
    /// request event (JSON).
    Adopted(Vec<(PendingApproval, String)>),
}

enum Command {
    Claim(Vec<EventId>),
    Adopt(ReplicaId),
}

/// The service's end of the thread.
pub(super) struct Link {
    commands: Option<Sender<Command>>,
    pub(super) news: async_mpsc::UnboundedReceiver<News>,
    thread: Option<JoinHandle<()>>,
}

impl Link {
    /// Claim these events (the answer comes as [`News::Claimed`]).
    pub(super) fn claim(&self, events: Vec<EventId>) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(Command::Claim(events));
        }
    }

    /// Adopt the held requests of `from` (the answer comes as
    /// [`News::Adopted`], before the answer to any later claim).
    pub(super) fn adopt(&self, from: ReplicaId) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(Command::Adopt(from));
        }
    }

    /// Stop the thread; it removes this replica's heartbeat, so the others
    /// take over at once. Blocking: call off the async threads.
    pub(super) fn retire(mut self) {
        drop(self.commands.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the heartbeat thread panicked");
        }
    }
}

/// Start the thread; its first heartbeat is at once.
pub(super) fn spawn(replication: Replication) -> Link {
    let (commands, receiver) = mpsc::channel();
    let (news_tx, news) = async_mpsc::unbounded_channel();
    let thread = std::thread::Builder::new()
        .name("rampart-heartbeat".to_owned())
        .spawn(move || run(replication, receiver, news_tx));
    let thread = match thread {
        Ok(thread) => Some(thread),
        Err(e) => {
            // Without heartbeats this replica stays fenced: it answers
            // nothing, which is safe, and says why.
            tracing::error!(error = %e, "cannot start the heartbeat thread");
            None
        }
    };
    Link {
        commands: Some(commands),
        news,
        thread,
    }
}

fn run(
    replication: Replication,
    commands: Receiver<Command>,
    news: async_mpsc::UnboundedSender<News>,
) {
    let Replication {
        config,
        mut store,
        keep_answers,
    } = replication;
    let me = config.me.clone();
    let every = Duration::from_millis(config.beat_ms.max(1));
    let incarnation = incarnation();
    let mut next_beat = Instant::now();
    let mut beats: u32 = 0;
    // Adoptions that failed (the store was down): tried again after each
    // heartbeat that works.
    let mut adopt_later: Vec<ReplicaId> = Vec::new();
    loop {
        let wait = next_beat.saturating_duration_since(Instant::now());
        match commands.recv_timeout(wait) {
            Ok(Command::Claim(events)) => {
                let report = match store.claim(&me, &events, Millis::now().timestamp()) {
                    Ok(claims) => News::Claimed(claims),
                    Err(e) => News::ClaimFailed(events, e),
                };
                if news.send(report).is_err() {
                    break;
                }
                continue;
            }
            Ok(Command::Adopt(from)) => {
                if !adopt_and_report(&mut *store, &me, from, &news, &mut adopt_later) {
                    break;
                }
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        next_beat = Instant::now() + every;
        let sent = Instant::now();
        let report = match store.beat(&me, &incarnation, config.lease_ms) {
            Ok(beats) => News::Beat { sent, beats },
            Err(e) => News::BeatFailed(e),
        };
        let beat_worked = matches!(report, News::Beat { .. });
        if news.send(report).is_err() {
            break;
        }
        if beat_worked {
            let mut alive = true;
            for from in std::mem::take(&mut adopt_later) {
                alive &= adopt_and_report(&mut *store, &me, from, &news, &mut adopt_later);
            }
            if !alive {
                break;
            }
        }
        beats = beats.wrapping_add(1);
        if beats % PRUNE_EVERY == 1 {
            prune(&mut *store, keep_answers);
        }
    }
    match store.retire(&me) {
        Ok(()) => tracing::info!(replica = %me, "heartbeat removed: the other replicas take over"),
        Err(e) => {
            tracing::warn!(error = %e, "could not remove this replica's heartbeat; the others take over after its lease")
        }
    }
}

/// Adopt `from`'s held requests and report them; a failure is kept to be
/// tried again. Returns false once the service is gone.
fn adopt_and_report(
    store: &mut dyn Store,
    me: &ReplicaId,
    from: ReplicaId,
    news: &async_mpsc::UnboundedSender<News>,
    later: &mut Vec<ReplicaId>,
) -> bool {
    match adopt(store, me, &from) {
        Ok(adopted) if adopted.is_empty() => true,
        Ok(adopted) => news.send(News::Adopted(adopted)).is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, replica = %from, "could not adopt the held requests of a stopped replica; trying again");
            if !later.contains(&from) {
                later.push(from);
            }
            true
        }
    }
}

/// Adopt `from`'s held requests and read their approvals (those still
/// waiting or decided; the rest are left to expire).
fn adopt(
    store: &mut dyn Store,
    me: &ReplicaId,
    from: &ReplicaId,
) -> Result<Vec<(PendingApproval, String)>, StoreError> {
    let adopted = store.adopt_held(me, from)?;
    if adopted.is_empty() {
        return Ok(Vec::new());
    }
    let mut approvals: std::collections::HashMap<_, _> = store
        .approvals()?
        .into_iter()
        .filter(|a| {
            matches!(
                a.status,
                ApprovalStatus::Pending | ApprovalStatus::Decided(_)
            )
        })
        .map(|a| (a.id.clone(), a))
        .collect();
    Ok(adopted
        .into_iter()
        .filter_map(|(id, event)| Some((approvals.remove(&id)?, event)))
        .collect())
}

/// This process's run of its replica: random, so another process under the
/// same name (or this replica's next run) is told apart.
fn incarnation() -> String {
    let mut bytes = [0u8; 8];
    crate::randomness::Randomness::fill(&mut crate::randomness::OsRandomness::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn prune(store: &mut dyn Store, keep: Duration) {
    let before = Timestamp::from_secs(Timestamp::now().as_secs().saturating_sub(keep.as_secs()));
    match store.prune_answers(before) {
        Ok(0) => {}
        Ok(n) => tracing::debug!(claims = n, "pruned old claims"),
        Err(e) => tracing::warn!(error = %e, "could not prune old claims"),
    }
}
