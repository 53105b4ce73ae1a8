//! The PostgreSQL backend: the shared suite, each check on a fresh database
//! of a throwaway cluster, then what only this backend has (migrations
//! under a lock, a newer schema refused, other connections' writes seen).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use store::{Change, Store, StoreError};
use store_postgres::{PostgresStore, SCHEMA_VERSION};
use testkit::postgres::PostgresCluster;

/// Every check of this backend, on one throwaway cluster, in one test: a
/// cluster started for the whole binary could not be stopped (statics are
/// never dropped), and one per test would cost an `initdb` each.
#[test]
fn the_postgres_backend() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    the_shared_suite_passes(&cluster);
    tampering_with_each_audit_column_is_named_by_verify(&cluster);
    a_fresh_database_is_at_the_latest_schema_and_reconnecting_keeps_it(&cluster);
    a_database_from_a_newer_rampart_is_refused(&cluster);
    replicas_starting_together_migrate_once(&cluster);
    its_own_writes_leave_the_external_version(&cluster);
    a_second_process_sees_the_first_ones_writes(&cluster);
    drop(cluster);
}

fn the_shared_suite_passes(cluster: &PostgresCluster) {
    store::suite::run_all(&mut || {
        Box::new(PostgresStore::connect(&cluster.fresh_database()).unwrap()) as Box<dyn Store>
    });
}

fn tampering_with_each_audit_column_is_named_by_verify(cluster: &PostgresCluster) {
    let url = cluster.fresh_database();
    let mut store = PostgresStore::connect(&url).unwrap();
    let mut other = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    store::suite::tampering_with_each_column_is_named(&mut store, &mut |sql| {
        other.batch_execute(sql).unwrap();
    });
}

fn a_fresh_database_is_at_the_latest_schema_and_reconnecting_keeps_it(cluster: &PostgresCluster) {
    let url = cluster.fresh_database();
    let store = PostgresStore::connect(&url).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    drop(store);
    let store = PostgresStore::connect(&url).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

fn a_database_from_a_newer_rampart_is_refused(cluster: &PostgresCluster) {
    let url = cluster.fresh_database();
    drop(PostgresStore::connect(&url).unwrap());
    let mut raw = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    raw.execute(
        "UPDATE rampart_schema SET version = $1",
        &[&(SCHEMA_VERSION + 1)],
    )
    .unwrap();
    match PostgresStore::connect(&url) {
        Err(StoreError::SchemaTooNew { found, known }) => {
            assert_eq!((found, known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

fn replicas_starting_together_migrate_once(cluster: &PostgresCluster) {
    let url = cluster.fresh_database();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStore::connect(&url).map(|_| ()))
        })
        .collect();
    for start in starts {
        start.join().unwrap().unwrap();
    }
    let store = PostgresStore::connect(&url).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

fn its_own_writes_leave_the_external_version(cluster: &PostgresCluster) {
    let mut a = PostgresStore::connect(&cluster.fresh_database()).unwrap();
    let first = a.external_version().unwrap();
    // Its own writes do not count.
    a.apply(&[Change::RecordServedRelays(store::ServedRelays {
        relays: vec![],
        recorded_at: nip46::nostr::prelude::Timestamp::from_secs(1),
    })])
    .unwrap();
    assert_eq!(a.external_version().unwrap(), first);
}

fn a_second_process_sees_the_first_ones_writes(cluster: &PostgresCluster) {
    let url = cluster.fresh_database();
    let mut a = PostgresStore::connect(&url).unwrap();
    let mut b = PostgresStore::connect(&url).unwrap();
    let before = b.external_version().unwrap();
    a.apply(&[Change::RecordServedRelays(store::ServedRelays {
        relays: vec![],
        recorded_at: nip46::nostr::prelude::Timestamp::from_secs(1),
    })])
    .unwrap();
    assert_ne!(b.external_version().unwrap(), before);
    assert!(b.served_relays().unwrap().is_some());
    // And nothing new since: stable.
    let now = b.external_version().unwrap();
    assert_eq!(b.external_version().unwrap(), now);
    let _ = a.external_version().unwrap();
}

#[test]
fn a_server_that_is_not_there_is_an_error_without_the_url() {
    let url = "postgres://rampart:hunter2@127.0.0.1:1/rampart";
    match PostgresStore::connect(url) {
        Err(StoreError::Database(message)) => {
            assert!(!message.contains("hunter2"), "{message}");
            assert!(message.contains("connecting to PostgreSQL"), "{message}");
        }
        other => panic!("expected a database error, got {other:?}"),
    }
}

/// With a server that takes TLS only: `sslmode=require` and the CA in
/// `sslrootcert` connect; without the CA the certificate is refused (it is
/// always verified); without TLS the server refuses.
#[test]
fn tls_to_the_database_is_verified() {
    let Some(cluster) = PostgresCluster::start_with_tls() else {
        return;
    };
    let url = cluster.fresh_database();
    let ca = cluster.ca_certificate();
    let with_ca = format!("{url}?sslmode=require&sslrootcert={}", ca.display());
    let mut store = PostgresStore::connect(&with_ca).unwrap();
    assert!(store.keys().unwrap().is_empty());
    assert_eq!(store.external_version().unwrap(), 0);

    let unverified = PostgresStore::connect(&format!("{url}?sslmode=require"));
    assert!(
        unverified.is_err(),
        "a certificate from an unknown CA was accepted"
    );
    let plain = PostgresStore::connect(&format!("{url}?sslmode=disable"));
    assert!(plain.is_err(), "the server took a connection without TLS");
}
