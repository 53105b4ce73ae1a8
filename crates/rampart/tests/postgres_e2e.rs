//! `rampart` on PostgreSQL, end to end: `rampart run` with `RAMPART_DATABASE`
//! pointing at a throwaway cluster serves, `rampart uri` and `rampart
//! sessions` on the same database see and mint what it uses, nothing is
//! written to the data directory's SQLite file, and a password in
//! `--database` on the command line is refused.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use client::Client;
use testkit::RampartProcess;
use testkit::app::{client_options, note, within};
use testkit::postgres::PostgresCluster;

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

#[tokio::test(flavor = "multi_thread")]
async fn rampart_serves_from_postgres() {
    let Some(cluster) = PostgresCluster::start() else {
        return;
    };
    let url = cluster.fresh_database();
    let bunker = RampartProcess::start(
        Path::new(BIN),
        None,
        &[("RAMPART_DATABASE", &url)],
        &["--grant", "full"],
    );
    let options = || client_options("postgres e2e", Duration::from_secs(10));
    let first = within("connect", Client::connect(bunker.uri(), options()))
        .await
        .unwrap();
    let event = first
        .sign_event(note(&first, "stored in PostgreSQL"))
        .await
        .unwrap();
    event.verify().unwrap();

    // Another process on the same database mints a token the bunker honours.
    let minted = bunker.mint("full", &[]);
    let second = within("connect", Client::connect(&minted, options()))
        .await
        .unwrap();
    second.ping().await.unwrap();

    let out = bunker.cli(&["sessions", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sessions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 2, "{sessions}");
    let out = bunker.cli(&["audit", "--json"]);
    let rows = String::from_utf8_lossy(&out.stdout);
    assert!(
        rows.contains(&event.id.to_hex()),
        "the signature's audit row is in PostgreSQL"
    );
    assert!(
        !bunker.data_dir().join("rampart.sqlite").exists(),
        "nothing went to the SQLite file"
    );
    first.shutdown().await;
    second.shutdown().await;
}

#[test]
fn a_password_in_the_database_flag_is_refused() {
    let out = Command::new(BIN)
        .args([
            "--database",
            "postgres://rampart:hunter2@127.0.0.1:1/rampart",
            "key",
            "list",
        ])
        .env_remove("RAMPART_DATABASE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RAMPART_DATABASE") && err.contains("PGPASSFILE"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
