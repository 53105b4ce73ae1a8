//! Beside the running bunker, the audit log's upkeep: the chain's head is
//! recorded in the data dir (outside the database, so deleting the newest
//! rows there shows at the next `rampart audit verify`), and with
//! `[audit] keep_days` old rows are pruned at start and hourly.
//!
//! A thread of its own with its own store handle: store calls block, and
//! this must never wait behind the writer's commits nor hold them up.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nip46::nostr::prelude::Timestamp;
use store::{ChainPoint, Change, Store};

use crate::cmd::audit::head_file;

/// How often the head is looked at (one indexed query; written when moved).
const HEAD_EVERY: Duration = Duration::from_secs(1);
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The running upkeep; [`AuditKeeper::stop`] records the final head.
pub struct AuditKeeper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AuditKeeper {
    /// Start on `store` (a handle of its own), recording into `data_dir`.
    pub fn start(store: Box<dyn Store>, data_dir: PathBuf, keep_days: Option<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("audit-keeper".into())
            .spawn(move || keep(store, &data_dir, keep_days, &flag))
            .map_err(|e| tracing::warn!(error = %e, "could not start the audit keeper"))
            .ok();
        AuditKeeper { stop, thread }
    }

    /// Stop, after recording the head once more.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn keep(
    mut store: Box<dyn Store>,
    data_dir: &std::path::Path,
    keep_days: Option<u32>,
    stop: &AtomicBool,
) {
    let mut recorded: Option<ChainPoint> = head_file::read(data_dir).ok().flatten();
    // Set when the newest rows are not the ones recorded: from then on the
    // record stays as it was (for `rampart audit verify` to report) until
    // someone records a head again (a verify that passes).
    let mut diverged = false;
    let mut next_prune = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if let Some(days) = keep_days
            && Instant::now() >= next_prune
        {
            prune(&mut *store, days);
            next_prune = Instant::now() + PRUNE_EVERY;
        }
        if diverged {
            let on_disk = head_file::read(data_dir).ok().flatten();
            if on_disk != recorded {
                recorded = on_disk;
                diverged = false;
            }
        }
        match store.audit_head() {
            Ok(Some(head)) if !diverged && Some(head) != recorded => {
                // Only forward, and only from a head still in the chain.
                let forward = recorded.is_none_or(|r| head.seq > r.seq && still_there(&*store, r));
                if forward {
                    match head_file::write(data_dir, head) {
                        Ok(()) => recorded = Some(head),
                        Err(e) => tracing::warn!(error = %e, "could not record the audit head"),
                    }
                } else {
                    diverged = true;
                    tracing::error!(
                        recorded = recorded.map(|r| r.seq),
                        newest = head.seq,
                        "the audit log's newest rows are not the ones recorded: the record is \
                         kept as it was; run `rampart audit verify`"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "could not read the audit head"),
        }
        if stopping {
            return;
        }
        std::thread::park_timeout(HEAD_EVERY);
    }
}

/// Whether `point` is still a row of the chain with its hash (or was
/// pruned by retention since).
fn still_there(store: &dyn Store, point: ChainPoint) -> bool {
    if let Ok(Some(checkpoint)) = store.audit_checkpoint()
        && (point.seq < checkpoint.seq || point == checkpoint)
    {
        return true;
    }
    match store.audit_chain(point.seq - 1, 1) {
        Ok(rows) => rows
            .first()
            .is_some_and(|r| r.row.seq == point.seq && r.hash == Some(point.hash)),
        // Unknown: do not move the record on a guess.
        Err(_) => false,
    }
}

fn prune(store: &mut dyn Store, days: u32) {
    let before = Timestamp::now()
        .as_secs()
        .saturating_sub(u64::from(days) * 86_400);
    let change = Change::PruneAudit {
        before: Timestamp::from_secs(before),
    };
    if let Err(e) = store.apply(&[change]) {
        tracing::warn!(error = %e, "could not prune the audit log");
    }
}
