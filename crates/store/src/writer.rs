//! Group commit: the one thread that writes the running bunker's changes.
//!
//! The bunker sends a signature only after the request's audit row is
//! committed, so every write is on the request path. Committing each request
//! in its own transaction would cap throughput at one commit per request;
//! instead a [`StoreWriter`] thread takes whatever jobs are queued when it is
//! free, commits them in one transaction and then reports to each job. There
//! is no fixed delay: a lone request is committed at once, and under load the
//! jobs that arrive while one transaction commits form the next batch. A
//! caller that has several jobs ready at once hands them over together
//! ([`StoreWriter::submit_all`]), so they share a transaction even when the
//! writer was idle.
//!
//! Between batches, and every `poll` when idle, the writer asks the store
//! whether another process (the CLI) wrote to it, and lets the bunker reload.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::Store;
use crate::change::Change;
use crate::error::StoreError;

/// Queued jobs are added to a batch while it holds fewer than this many.
pub const MAX_BATCH: usize = 1024;

/// The shortest idle poll interval; shorter ones are raised to it.
const MIN_POLL: Duration = Duration::from_millis(1);

/// What a job learns once its changes are committed (or not).
pub type CommitResult = Result<(), Arc<StoreError>>;

/// A job's callback.
pub type OnCommit = Box<dyn FnOnce(CommitResult) + Send>;

/// A job in a batch: where its changes are in the batch's list, and its callback.
type Pending = (Range<usize>, OnCommit);

/// Changes to commit together, and what to do once they are.
pub struct CommitJob {
    /// The changes, applied all or nothing.
    pub changes: Vec<Change>,
    /// Called exactly once after the transaction that holds `changes`
    /// committed (`Ok`) or after they failed (`Err`): on the writer thread,
    /// or on the caller's for a commit made there
    /// ([`StoreWriter::commit_now_or_queue`]). Keep it
    /// short (send on a channel): the next batch waits for it.
    pub on_commit: OnCommit,
}

impl CommitJob {
    /// A job from its changes and callback.
    pub fn new(
        changes: Vec<Change>,
        on_commit: impl FnOnce(CommitResult) + Send + 'static,
    ) -> Self {
        CommitJob {
            changes,
            on_commit: Box::new(on_commit),
        }
    }
}

impl std::fmt::Debug for CommitJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitJob")
            .field("changes", &self.changes.len())
            .finish_non_exhaustive()
    }
}

/// Callback for writes made by another process.
pub type ExternalChange = Box<dyn FnMut(&mut dyn Store) + Send>;

/// Owns a [`Store`] on a dedicated thread and commits submitted jobs in
/// batches. Dropping it behaves like [`StoreWriter::shutdown`].
pub struct StoreWriter {
    sender: Option<Sender<Vec<CommitJob>>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// What the writer thread and [`StoreWriter::commit_now_or_queue`] share.
struct Shared {
    /// Locked by whoever commits: the thread per batch, or the caller.
    store: Mutex<Box<dyn Store>>,
    /// Jobs handed to the thread and not reported yet.
    queued: AtomicUsize,
    /// [`Store::commits_inline`], asked once.
    inline: bool,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl StoreWriter {
    /// Start the writer thread.
    ///
    /// `on_external_change` runs on that thread, with the store, whenever
    /// [`Store::external_version`] changed (another process committed);
    /// it is checked after every batch and every `poll` while idle. It also
    /// runs after every batch in which a job failed (after those jobs'
    /// callbacks), so the caller can bring what it expected back in line
    /// with what the store holds.
    pub fn spawn(
        store: Box<dyn Store>,
        on_external_change: ExternalChange,
        poll: Duration,
    ) -> Self {
        Self::spawn_since(store, on_external_change, poll, None)
    }

    /// [`StoreWriter::spawn`], for a caller that read the store at
    /// [`Store::external_version`] `seen` before handing it over: a change
    /// another process made since then is reported at the first check, not
    /// missed.
    pub fn spawn_since(
        store: Box<dyn Store>,
        on_external_change: ExternalChange,
        poll: Duration,
        seen: Option<u64>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel();
        let poll = poll.max(MIN_POLL);
        let shared = Arc::new(Shared {
            inline: store.commits_inline(),
            store: Mutex::new(store),
            queued: AtomicUsize::new(0),
        });
        let for_thread = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("rampart-store-writer".to_owned())
            .spawn(move || run(&for_thread, receiver, on_external_change, poll, seen));
        match spawned {
            Ok(thread) => StoreWriter {
                sender: Some(sender),
                thread: Some(thread),
                shared,
            },
            Err(e) => {
                // The receiver went down with the closure: every submit will
                // report the failure through its job.
                tracing::error!(error = %e, "cannot start the store writer thread");
                StoreWriter {
                    sender: None,
                    thread: None,
                    shared,
                }
            }
        }
    }

    /// Queue a job. Never blocks; if the writer is gone, `on_commit` is
    /// called at once, on the caller's thread, with an error.
    pub fn submit(&self, job: CommitJob) {
        self.submit_all(vec![job]);
    }

    /// Queue several jobs to be committed in the same batch (each is still
    /// applied all or nothing on its own: one job's refused change does not
    /// fail the others). Never blocks; if the writer is gone, every
    /// `on_commit` is called at once, on the caller's thread, with an error.
    pub fn submit_all(&self, jobs: Vec<CommitJob>) {
        if jobs.is_empty() {
            return;
        }
        let count = jobs.len();
        self.shared.queued.fetch_add(count, Ordering::SeqCst);
        let jobs = match &self.sender {
            Some(sender) => match sender.send(jobs) {
                Ok(()) => return,
                Err(mpsc::SendError(jobs)) => jobs,
            },
            None => jobs,
        };
        self.shared.queued.fetch_sub(count, Ordering::SeqCst);
        let err = Arc::new(StoreError::Database(
            "the store writer has stopped (see the log); restart Rampart".to_owned(),
        ));
        for job in jobs {
            notify(job.on_commit, Err(Arc::clone(&err)));
        }
    }

    /// Commit `jobs` on the caller's thread when that is cheap and keeps
    /// the order — a store that commits inline ([`Store::commits_inline`]:
    /// SQLite), nothing queued for the thread, the store not busy — and
    /// otherwise hand them to the thread ([`StoreWriter::submit_all`]).
    ///
    /// A lone request then costs no hand-off to the writer thread and back
    /// (two thread wake-ups); under load, jobs queue and share the thread's
    /// transactions as before. Callbacks of a commit made here run here.
    /// The attempt never waits for another process's lock (the thread does).
    pub fn commit_now_or_queue(&self, jobs: Vec<CommitJob>) {
        // An empty job asks the thread to look for outside edits: only the
        // thread does that.
        let wants_thread = jobs.iter().any(|j| j.changes.is_empty());
        if jobs.is_empty()
            || wants_thread
            || !self.shared.inline
            || self.sender.is_none()
            || self.shared.queued.load(Ordering::SeqCst) != 0
        {
            return self.submit_all(jobs);
        }
        let Ok(mut store) = self.shared.store.try_lock() else {
            return self.submit_all(jobs);
        };
        let (mut changes, callbacks) = flatten(jobs);
        // One attempt that never waits for another process's lock; any
        // failure (busy, a refused job) goes to the thread, which waits,
        // isolates the refused jobs and re-reads the store as usual.
        let attempt = catch_unwind(AssertUnwindSafe(|| store.apply_without_waiting(&changes)));
        drop(store);
        match attempt {
            Ok(Ok(())) => {
                for (_, on_commit) in callbacks {
                    notify(on_commit, Ok(()));
                }
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "inline commit not made; handed to the writer thread");
            }
            Err(_) => tracing::error!("the store panicked while writing"),
        }
        // The jobs again, in order, each with its own changes.
        let mut jobs = Vec::with_capacity(callbacks.len());
        for (range, on_commit) in callbacks.into_iter().rev() {
            jobs.push(CommitJob {
                changes: changes.split_off(range.start),
                on_commit,
            });
        }
        jobs.reverse();
        self.submit_all(jobs);
    }

    /// Stop accepting jobs, commit every queued one, and join the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Closing the channel ends the loop once the queue is drained.
        drop(self.sender.take());
        let Some(thread) = self.thread.take() else {
            return;
        };
        if thread.join().is_err() {
            tracing::error!("the store writer thread panicked");
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    shared: &Shared,
    receiver: Receiver<Vec<CommitJob>>,
    mut on_external_change: ExternalChange,
    poll: Duration,
    seen: Option<u64>,
) {
    // A panic while the lock was held cannot leave a transaction half
    // written (each is all or nothing): a poisoned lock is still usable.
    let lock = || shared.store.lock().unwrap_or_else(|p| p.into_inner());
    let mut watcher = Watcher::new(&mut **lock(), seen);
    loop {
        let mut batch = match receiver.recv_timeout(poll) {
            Ok(jobs) => jobs,
            Err(RecvTimeoutError::Timeout) => {
                watcher.check(&mut **lock(), &mut on_external_change, false);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        while batch.len() < MAX_BATCH {
            let Ok(jobs) = receiver.try_recv() else {
                break;
            };
            batch.extend(jobs);
        }
        let count = batch.len();
        let mut store = lock();
        let failed = commit(&mut **store, batch);
        shared.queued.fetch_sub(count, Ordering::SeqCst);
        // After a failure the caller's view may be ahead of the store (what
        // it expected to be written was not): it gets the store's state, so
        // it can roll back, as if another process had written.
        watcher.check(&mut **store, &mut on_external_change, failed);
    }
    tracing::debug!("store writer stopped");
}

/// Commit a batch in one transaction; if that fails because of one job's
/// data, commit the jobs one by one so only the bad ones fail. Returns
/// whether any job failed.
fn commit(store: &mut dyn Store, batch: Vec<CommitJob>) -> bool {
    if batch.is_empty() {
        return false;
    }
    let (changes, callbacks) = flatten(batch);
    let err = match guarded_apply(store, &changes) {
        Ok(()) => {
            for (_, on_commit) in callbacks {
                notify(on_commit, Ok(()));
            }
            return false;
        }
        Err(err) => err,
    };
    if !err.is_about_the_job() {
        tracing::error!(jobs = callbacks.len(), error = %err, "store write failed");
        fail_all(callbacks, Arc::new(err));
        return true;
    }
    if callbacks.len() == 1 {
        tracing::debug!(error = %err, "store write refused");
        fail_all(callbacks, Arc::new(err));
        return true;
    }

    tracing::debug!(jobs = callbacks.len(), error = %err, "batch refused; committing its jobs one by one");
    let mut callbacks = callbacks.into_iter();
    while let Some((range, on_commit)) = callbacks.next() {
        match guarded_apply(store, &changes[range]) {
            Ok(()) => notify(on_commit, Ok(())),
            Err(err) if err.is_about_the_job() => {
                tracing::debug!(error = %err, "store write refused");
                notify(on_commit, Err(Arc::new(err)));
            }
            Err(err) => {
                // The store itself fails: retrying the rest would only wait
                // out the same failure once per job.
                tracing::error!(error = %err, "store write failed");
                let err = Arc::new(err);
                notify(on_commit, Err(Arc::clone(&err)));
                fail_all(callbacks.collect(), err);
                return true;
            }
        }
    }
    true
}

/// A batch's changes in one list, and each job's callback with where its
/// changes are in it.
fn flatten(jobs: Vec<CommitJob>) -> (Vec<Change>, Vec<Pending>) {
    let mut changes = Vec::new();
    let mut callbacks: Vec<Pending> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let start = changes.len();
        changes.extend(job.changes);
        callbacks.push((start..changes.len(), job.on_commit));
    }
    (changes, callbacks)
}

fn fail_all(callbacks: Vec<Pending>, err: Arc<StoreError>) {
    for (_, on_commit) in callbacks {
        notify(on_commit, Err(Arc::clone(&err)));
    }
}

/// `store.apply`, with a panic turned into an error so the thread survives.
fn guarded_apply(store: &mut dyn Store, changes: &[Change]) -> Result<(), StoreError> {
    match catch_unwind(AssertUnwindSafe(|| store.apply(changes))) {
        Ok(result) => result,
        Err(_) => {
            tracing::error!("the store panicked while writing");
            Err(StoreError::Database(
                "the store panicked while writing (see the log)".to_owned(),
            ))
        }
    }
}

/// Run a job's callback; a panicking callback must not stop the writer.
fn notify(on_commit: OnCommit, result: CommitResult) {
    if catch_unwind(AssertUnwindSafe(|| on_commit(result))).is_err() {
        tracing::error!("a store commit callback panicked");
    }
}

/// Tracks [`Store::external_version`] and reports changes.
struct Watcher {
    last: Option<u64>,
}

impl Watcher {
    /// Watching from version `seen` (when the caller read it), else from now.
    fn new(store: &mut dyn Store, seen: Option<u64>) -> Self {
        if seen.is_some() {
            return Watcher { last: seen };
        }
        let last = match store.external_version() {
            Ok(version) => Some(version),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store's external version");
                None
            }
        };
        Watcher { last }
    }

    /// Report a change of the external version, or (`force`) report anyway.
    fn check(
        &mut self,
        store: &mut dyn Store,
        on_external_change: &mut ExternalChange,
        force: bool,
    ) {
        let version = match store.external_version() {
            Ok(version) => version,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store's external version");
                return;
            }
        };
        let changed = self.last.is_some_and(|last| last != version);
        self.last = Some(version);
        if !changed && !force {
            return;
        }
        tracing::debug!(force, "the store is read again");
        if catch_unwind(AssertUnwindSafe(|| on_external_change(store))).is_err() {
            tracing::error!("the external-change callback panicked");
        }
    }
}
