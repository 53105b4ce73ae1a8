//! Rough timings of the hot path (audit rows), on a real file. Ignored by
//! default; run with
//! `cargo test -p rampart-store-sqlite --release --test perf -- --ignored --nocapture`.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nip46::nostr::prelude::{EventId, PublicKey, Timestamp};
use store::{AuditDecision, AuditEntry, Change, CommitJob, KeyId, NewKey, Store, StoreWriter};
use store_sqlite::SqliteStore;

fn audit(key: KeyId, n: u64) -> Change {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    Change::Audit(AuditEntry {
        seq: 0,
        at: Timestamp::from_secs(1_700_000_000 + n / 1000),
        key_id: key,
        client: Some(PublicKey::from_byte_array([7; 32])),
        event_id: Some(EventId::from_byte_array(id)),
        event_created_at: Timestamp::from_secs(1_700_000_000),
        events: 1,
        request_id: n.to_string(),
        method: "sign_event".to_owned(),
        kind: Some(1),
        decision: AuditDecision::Allowed,
        outcome: "ok".to_owned(),
        signed_event_id: Some(EventId::from_byte_array([9; 32])),
        operator: None,
    })
}

/// CPU time this thread has used (Linux), to see past a busy machine.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn setup(dir: &tempfile::TempDir) -> (SqliteStore, KeyId) {
    let mut store = SqliteStore::open(&dir.path().join("rampart.db")).unwrap();
    let key = store
        .add_key(&NewKey {
            name: "alice".to_owned(),
            user_pubkey: PublicKey::from_byte_array([1; 32]),
            signer_pubkey: PublicKey::from_byte_array([2; 32]),
            user_secret: "ncryptsec1u".to_owned(),
            signer_secret: "ncryptsec1s".to_owned(),
            created_at: Timestamp::from_secs(1),
        })
        .unwrap();
    (store, key)
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn apply_cost_per_audit_row() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, key) = setup(&dir);
    let mut n = 0;
    for batch_size in [1u64, 10, 100, 1000] {
        let rounds = 20_000 / batch_size;
        let batches: Vec<Vec<Change>> = (0..rounds)
            .map(|_| {
                (0..batch_size)
                    .map(|_| {
                        n += 1;
                        audit(key, n)
                    })
                    .collect()
            })
            .collect();
        let cpu_start = thread_cpu();
        let start = Instant::now();
        for batch in &batches {
            store.apply(batch).unwrap();
        }
        let elapsed = start.elapsed();
        let cpu = cpu_start.zip(thread_cpu()).map(|(a, b)| b - a);
        let rows = (rounds * batch_size) as f64;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "apply of {batch_size:>4} audit rows: wall {:>8.1} µs per batch, {:.2} µs per row; \
             cpu {:.2} µs per row",
            us(elapsed) / rounds as f64,
            us(elapsed) / rows,
            cpu.map_or(f64::NAN, |c| us(c) / rows),
        );
    }
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn writer_latency_and_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = setup(&dir);
    let writer = Arc::new(StoreWriter::spawn(
        Box::new(store),
        Box::new(|_| {}),
        Duration::from_millis(100),
    ));

    // Latency of a lone job: submit to on_commit.
    let mut latencies = Vec::new();
    for n in 0..2000 {
        let (done, wait) = mpsc::channel();
        let start = Instant::now();
        writer.submit(CommitJob::new(vec![audit(key, n)], move |r| {
            let _ = done.send(r);
        }));
        wait.recv().unwrap().unwrap();
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let pct = |p: usize| latencies[latencies.len() * p / 100].as_secs_f64() * 1e6;
    println!(
        "lone job, submit to on_commit: p50 {:.0} µs, p99 {:.0} µs",
        pct(50),
        pct(99)
    );

    // Throughput and latency under load: 8 submitters, each waiting for its
    // commit before the next request (like clients waiting for replies).
    let per_thread = 5_000u64;
    let start = Instant::now();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                let mut worst = Duration::ZERO;
                for i in 0..per_thread {
                    let (done, wait) = mpsc::channel();
                    let sent = Instant::now();
                    writer.submit(CommitJob::new(
                        vec![audit(key, 1_000_000 + t * per_thread + i)],
                        move |r| {
                            let _ = done.send(r);
                        },
                    ));
                    wait.recv().unwrap().unwrap();
                    worst = worst.max(sent.elapsed());
                }
                worst
            })
        })
        .collect();
    let worst = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .max()
        .unwrap();
    let elapsed = start.elapsed();
    println!(
        "8 waiting submitters: {:.0} jobs/s, worst latency {:.0} µs",
        (8 * per_thread) as f64 / elapsed.as_secs_f64(),
        worst.as_secs_f64() * 1e6
    );

    // Burst: 50k jobs submitted at once.
    let (done, wait) = mpsc::channel();
    let start = Instant::now();
    for n in 0..50_000u64 {
        let done = done.clone();
        writer.submit(CommitJob::new(vec![audit(key, 2_000_000 + n)], move |r| {
            let _ = done.send(r);
        }));
    }
    for _ in 0..50_000 {
        wait.recv().unwrap().unwrap();
    }
    println!(
        "burst of 50000 jobs: {:.0} jobs/s",
        50_000.0 / start.elapsed().as_secs_f64()
    );
    Arc::try_unwrap(writer).unwrap().shutdown();
}
