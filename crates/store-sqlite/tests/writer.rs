//! Group commit on a real SQLite file: every job is reported once, after its
//! commit, in commit order; a bad job fails alone; shutdown loses nothing;
//! another process's writes are noticed.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nip46::nostr::prelude::{EventId, PublicKey, Timestamp};
use nip46::{ConnectSecret, PermissionSet, Preset};
use store::writer::CommitResult;
use store::{
    AuditDecision, AuditEntry, AuditQuery, Change, CommitJob, KeyId, NewKey, NewToken, Store,
    StoreError, StoreWriter, TokenId,
};
use store_sqlite::SqliteStore;
use tempfile::TempDir;

const POLL: Duration = Duration::from_millis(20);
const WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    _dir: TempDir,
    path: PathBuf,
    key: KeyId,
    token: TokenId,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let key = store
        .add_key(&NewKey {
            name: "alice".to_owned(),
            user_pubkey: pk(1),
            signer_pubkey: pk(2),
            user_secret: "ncryptsec1u".to_owned(),
            signer_secret: "ncryptsec1s".to_owned(),
            created_at: Timestamp::from_secs(1),
        })
        .unwrap();
    let token = store
        .add_token(&NewToken::new(
            key,
            &ConnectSecret::new("secret"),
            PermissionSet::from(Preset::Write),
            None,
            Timestamp::from_secs(1),
        ))
        .unwrap();
    Fixture {
        _dir: dir,
        path,
        key,
        token,
    }
}

fn pk(n: u8) -> PublicKey {
    PublicKey::from_byte_array([n; 32])
}

fn event(n: u32) -> EventId {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    EventId::from_byte_array(bytes)
}

fn audit(key: KeyId, n: u32) -> Change {
    Change::Audit(AuditEntry {
        seq: 0,
        at: Timestamp::from_secs(1_700_000_000),
        key_id: key,
        client: Some(pk(9)),
        event_id: Some(event(n)),
        event_created_at: Timestamp::from_secs(1_700_000_000),
        events: 1,
        request_id: n.to_string(),
        method: "sign_event".to_owned(),
        kind: Some(1),
        decision: AuditDecision::Allowed,
        outcome: "ok".to_owned(),
        signed_event_id: Some(event(n + 1_000_000)),
        operator: None,
    })
}

fn consume(token: TokenId, n: u8) -> Change {
    Change::ConsumeToken {
        id: token,
        client: pk(n),
        at: Timestamp::from_secs(2),
    }
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap()
}

fn spawn(path: &Path) -> StoreWriter {
    StoreWriter::spawn(Box::new(open(path)), Box::new(|_| {}), POLL)
}

fn audited(path: &Path) -> usize {
    open(path).audit(&AuditQuery::default()).unwrap().len()
}

/// A job whose result is sent, with its number, to `done`.
fn job(changes: Vec<Change>, n: usize, done: &mpsc::Sender<(usize, CommitResult)>) -> CommitJob {
    let done = done.clone();
    CommitJob::new(changes, move |result| {
        let _ = done.send((n, result));
    })
}

#[test]
fn many_jobs_from_many_threads_commit_and_report_once() {
    let f = fixture();
    let writer = Arc::new(spawn(&f.path));
    let calls: Arc<Vec<AtomicUsize>> = Arc::new((0..4000).map(|_| AtomicUsize::new(0)).collect());
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let writer = writer.clone();
            let calls = calls.clone();
            let key = f.key;
            std::thread::spawn(move || {
                for i in 0..500u32 {
                    let n = t * 500 + i;
                    let calls = calls.clone();
                    writer.submit(CommitJob::new(vec![audit(key, n)], move |result| {
                        assert!(result.is_ok(), "{result:?}");
                        calls[n as usize].fetch_add(1, Ordering::SeqCst);
                    }));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(writer).unwrap().shutdown();
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    assert_eq!(audited(&f.path), 4000);
}

#[test]
fn each_job_is_reported_after_its_commit_and_in_order() {
    let f = fixture();
    let writer = spawn(&f.path);
    // A second connection, as after a crash: what on_commit confirmed must
    // be visible there already.
    let reader = Arc::new(Mutex::new(open(&f.path)));
    let order = Arc::new(Mutex::new(Vec::new()));
    for n in 0..300u32 {
        let reader = reader.clone();
        let order = order.clone();
        writer.submit(CommitJob::new(vec![audit(f.key, n)], move |result| {
            assert!(result.is_ok(), "{result:?}");
            let visible = reader
                .lock()
                .unwrap()
                .audit(&AuditQuery {
                    limit: Some(1000),
                    ..AuditQuery::default()
                })
                .unwrap()
                .iter()
                .any(|e| e.event_id == Some(event(n)));
            assert!(visible, "job {n} reported before its row was committed");
            order.lock().unwrap().push(n);
        }));
    }
    writer.shutdown();
    assert_eq!(*order.lock().unwrap(), (0..300).collect::<Vec<_>>());
}

#[test]
fn a_failing_job_does_not_sink_its_batch() {
    let f = fixture();
    let writer = spawn(&f.path);
    let (done, results) = mpsc::channel();

    // Hold the writer inside a callback so the next jobs queue up and are
    // committed as one batch.
    let (release, hold) = mpsc::channel::<()>();
    writer.submit(CommitJob::new(vec![audit(f.key, 0)], move |_| {
        hold.recv_timeout(WAIT).unwrap();
    }));
    writer.submit(job(vec![audit(f.key, 1), consume(f.token, 1)], 1, &done));
    writer.submit(job(vec![audit(f.key, 2)], 2, &done));
    writer.submit(job(vec![audit(f.key, 3), consume(f.token, 3)], 3, &done));
    writer.submit(job(vec![audit(f.key, 4)], 4, &done));
    release.send(()).unwrap();

    let got: Vec<(usize, CommitResult)> = (0..4)
        .map(|_| results.recv_timeout(WAIT).unwrap())
        .collect();
    assert_eq!(
        got.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(
        got[0].1.is_ok() && got[1].1.is_ok() && got[3].1.is_ok(),
        "{got:?}"
    );
    let err = got[2].1.as_ref().unwrap_err();
    assert!(matches!(**err, StoreError::AlreadyUsed(_)), "{err}");
    writer.shutdown();

    let store = open(&f.path);
    let rows: Vec<String> = store
        .audit(&AuditQuery::default())
        .unwrap()
        .into_iter()
        .map(|e| e.request_id)
        .collect();
    assert_eq!(rows.len(), 4);
    assert!(
        !rows.contains(&"3".to_owned()),
        "the failed job's audit row was rolled back"
    );
    assert_eq!(store.tokens().unwrap()[0].used_by, Some(pk(1)));
}

#[test]
fn jobs_handed_over_together_share_a_commit_and_fail_alone() {
    let f = fixture();
    let writer = spawn(&f.path);

    // When the first job hears of its commit, the later ones are already in
    // the file: the writer was idle, yet they shared the transaction.
    let (first_done, first_result) = mpsc::channel();
    let path = f.path.clone();
    let first = CommitJob::new(vec![audit(f.key, 1)], move |result| {
        let _ = first_done.send(result.map(|()| audited(&path)));
    });
    let (done, results) = mpsc::channel();
    writer.submit_all(vec![
        first,
        job(vec![audit(f.key, 2)], 2, &done),
        job(vec![audit(f.key, 3)], 3, &done),
    ]);
    let rows = first_result.recv_timeout(WAIT).unwrap().unwrap();
    assert_eq!(rows, 3, "the three jobs committed together");

    // A refused job in such a batch fails alone.
    writer.submit_all(vec![
        job(vec![audit(f.key, 4), consume(f.token, 4)], 4, &done),
        job(vec![audit(f.key, 5), consume(f.token, 5)], 5, &done),
        job(vec![audit(f.key, 6)], 6, &done),
    ]);
    let got: Vec<(usize, CommitResult)> = (0..5)
        .map(|_| results.recv_timeout(WAIT).unwrap())
        .collect();
    assert_eq!(
        got.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6]
    );
    assert!(got.iter().all(|(n, r)| *n == 5 || r.is_ok()), "{got:?}");
    let err = got[3].1.as_ref().unwrap_err();
    assert!(matches!(**err, StoreError::AlreadyUsed(_)), "{err}");
    writer.submit_all(Vec::new());
    writer.shutdown();
    assert_eq!(audited(&f.path), 5);
}

#[test]
fn shutdown_commits_everything_queued() {
    let f = fixture();
    let writer = spawn(&f.path);
    let calls = Arc::new(AtomicUsize::new(0));
    // Hold the writer so the jobs below are still queued at shutdown.
    let (release, hold) = mpsc::channel::<()>();
    writer.submit(CommitJob::new(vec![audit(f.key, 0)], move |_| {
        hold.recv_timeout(WAIT).unwrap();
    }));
    for n in 1..=2000 {
        let calls = calls.clone();
        writer.submit(CommitJob::new(vec![audit(f.key, n)], move |result| {
            assert!(result.is_ok());
            calls.fetch_add(1, Ordering::SeqCst);
        }));
    }
    release.send(()).unwrap();
    writer.shutdown();
    assert_eq!(calls.load(Ordering::SeqCst), 2000);
    assert_eq!(audited(&f.path), 2001);
}

#[test]
fn dropping_the_writer_also_drains() {
    let f = fixture();
    let writer = spawn(&f.path);
    for n in 0..100 {
        writer.submit(CommitJob::new(vec![audit(f.key, n)], |_| {}));
    }
    drop(writer);
    assert_eq!(audited(&f.path), 100);
}

#[test]
fn another_process_writing_triggers_the_callback() {
    let f = fixture();
    let (changed, notices) = mpsc::channel();
    let writer = StoreWriter::spawn(
        Box::new(open(&f.path)),
        Box::new(move |store: &mut dyn Store| {
            let names: Vec<String> = store.keys().unwrap().into_iter().map(|k| k.name).collect();
            let _ = changed.send(names);
        }),
        POLL,
    );

    // The writer's own commits are not "external".
    let (done, results) = mpsc::channel();
    for n in 0..50 {
        writer.submit(job(vec![audit(f.key, n)], n as usize, &done));
    }
    for _ in 0..50 {
        results.recv_timeout(WAIT).unwrap().1.unwrap();
    }
    assert!(
        notices.recv_timeout(POLL * 5).is_err(),
        "own writes reported as external"
    );

    // The CLI adds a key while the writer idles.
    let mut cli = open(&f.path);
    cli.add_key(&NewKey {
        name: "bob".to_owned(),
        user_pubkey: pk(3),
        signer_pubkey: pk(4),
        user_secret: "ncryptsec1u".to_owned(),
        signer_secret: "ncryptsec1s".to_owned(),
        created_at: Timestamp::from_secs(1),
    })
    .unwrap();
    assert_eq!(notices.recv_timeout(WAIT).unwrap(), ["alice", "bob"]);

    // And once more while it is busy: noticed between batches.
    cli.remove_key("bob").unwrap();
    writer.submit(job(vec![audit(f.key, 99)], 99, &done));
    assert_eq!(notices.recv_timeout(WAIT).unwrap(), ["alice"]);
    writer.shutdown();
}

#[test]
fn panicking_callbacks_do_not_stop_the_writer() {
    let f = fixture();
    let writer = spawn(&f.path);
    writer.submit(CommitJob::new(vec![audit(f.key, 0)], |_| {
        panic!("callback bug")
    }));
    let (done, results) = mpsc::channel();
    writer.submit(job(vec![audit(f.key, 1)], 1, &done));
    assert!(results.recv_timeout(WAIT).unwrap().1.is_ok());
    writer.shutdown();
    assert_eq!(audited(&f.path), 2);
}

#[test]
fn jobs_without_changes_are_reported_too() {
    let f = fixture();
    let writer = spawn(&f.path);
    let (done, results) = mpsc::channel();
    writer.submit(job(Vec::new(), 7, &done));
    let (n, result) = results.recv_timeout(WAIT).unwrap();
    assert_eq!(n, 7);
    assert!(result.is_ok());
    writer.shutdown();
}

#[test]
fn a_failed_job_is_followed_by_a_reread_of_the_store() {
    let f = fixture();
    let (changed, notices) = mpsc::channel();
    let writer = StoreWriter::spawn(
        Box::new(open(&f.path)),
        Box::new(move |store: &mut dyn Store| {
            let used = store.tokens().unwrap()[0].used_by;
            let _ = changed.send(used);
        }),
        POLL,
    );
    let (done, results) = mpsc::channel();
    // Commits that succeed are not followed by a re-read…
    writer.submit(job(vec![consume(f.token, 1)], 1, &done));
    results.recv_timeout(WAIT).unwrap().1.unwrap();
    assert!(notices.recv_timeout(POLL * 5).is_err());
    // …one that fails is, after its callback: the caller learns what the
    // store holds (here: the token used by the first consumer, not us).
    writer.submit(job(vec![consume(f.token, 2)], 2, &done));
    assert!(results.recv_timeout(WAIT).unwrap().1.is_err());
    assert_eq!(notices.recv_timeout(WAIT).unwrap(), Some(pk(1)));
    writer.shutdown();
}

#[test]
fn an_idle_writer_commits_on_the_callers_thread_and_hands_it_what_fails() {
    let f = fixture();
    let (changed, rereads) = mpsc::channel();
    let writer = StoreWriter::spawn(
        Box::new(open(&f.path)),
        Box::new(move |_: &mut dyn Store| {
            let _ = changed.send(());
        }),
        POLL,
    );
    // Idle: committed here, the callback run before the call returns, on
    // this thread. (The thread takes the store briefly every poll: then the
    // job goes to it instead, so a few are tried.)
    let caller = std::thread::current().id();
    let here = Arc::new(AtomicUsize::new(0));
    for n in 0..20 {
        let here = Arc::clone(&here);
        let (done, result) = mpsc::channel();
        writer.commit_now_or_queue(vec![CommitJob::new(vec![audit(f.key, n)], move |r| {
            if std::thread::current().id() == caller {
                here.fetch_add(1, Ordering::SeqCst);
            }
            let _ = done.send(r.is_ok());
        })]);
        assert!(result.recv_timeout(WAIT).unwrap());
    }
    assert!(
        here.load(Ordering::SeqCst) > 0,
        "never committed on the caller's thread"
    );
    assert_eq!(audited(&f.path), 20);

    // A job the store refuses goes to the thread: it fails there, and the
    // thread re-reads the store for it.
    let (done, results) = mpsc::channel();
    let missing = Change::ConsumeToken {
        id: TokenId(999),
        client: pk(9),
        at: Timestamp::from_secs(1),
    };
    writer.commit_now_or_queue(vec![job(vec![missing], 0, &done)]);
    assert!(results.recv_timeout(WAIT).unwrap().1.is_err());
    rereads
        .recv_timeout(WAIT)
        .expect("a re-read after the failed commit");

    // Something queued for the thread: a later job waits behind it.
    for round in 0..20 {
        let first = 1000 + 2 * round;
        writer.submit(job(vec![audit(f.key, first as u32)], first, &done));
        writer.commit_now_or_queue(vec![job(
            vec![audit(f.key, first as u32 + 1)],
            first + 1,
            &done,
        )]);
        let order = [
            results.recv_timeout(WAIT).unwrap().0,
            results.recv_timeout(WAIT).unwrap().0,
        ];
        assert_eq!(order, [first, first + 1], "a later job committed first");
    }
    writer.shutdown();
    assert_eq!(audited(&f.path), 60);
}
