//! The tamper-evident audit log end to end: a real `rampart run` writes the
//! rows, `rampart audit verify` checks them, and the SQLite file is edited
//! behind its back (as someone with the file would) to show that an edit
//! and a truncation are both named. Also `--format csv`.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use nip46::{Outcome, Response};
use testkit::{RampartProcess, RawClient};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_an_edited_row_and_catches_a_truncation() {
    let mut bunker =
        RampartProcess::start(Path::new(BIN), None, &[], &["--grant", "sign_event:1,ping"]);
    let uri = bunker.uri().to_string();
    let mut c = RawClient::connected(&uri).await;
    for i in 0..6 {
        let template = serde_json::json!({"kind": 1, "content": format!("n{i}"), "tags": []});
        let r = c
            .call(
                &format!("s{i}"),
                "sign_event",
                serde_json::json!([template.to_string()]),
            )
            .await;
        assert!(matches!(r.outcome, Outcome::Result(_)), "{r:?}");
    }
    // A request id a spreadsheet would run as a formula.
    let ev = c.request("=cmd()", "ping", serde_json::json!([]));
    c.publish(&ev);
    let r = c
        .response_to("=cmd()", std::time::Duration::from_secs(5))
        .await;
    let r = r.expect("an answer to the ping");
    assert_eq!(r, Response::ok("=cmd()", "pong"));
    c.close().await;
    // A graceful stop records the final head in the data dir.
    assert!(bunker.stop(), "graceful shutdown");
    let head_file = bunker.data_dir().join("audit-head");
    let recorded = std::fs::read_to_string(&head_file).expect("the head is recorded");
    let out = bunker.cli(&["audit", "head"]);
    assert_eq!(text(&out.stdout).trim(), recorded.trim());
    let (seq, _) = recorded.trim().split_once(':').unwrap();
    let newest: i64 = seq.parse().unwrap();
    assert_eq!(newest, 8, "connect, six signatures and a ping: {recorded}");

    let out = bunker.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("8 rows"),
        "{}",
        text(&out.stderr)
    );

    // CSV: a header, a line per row, the formula defused.
    let out = bunker.cli(&["audit", "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("seq,at,key,client,app,event_id,request_id")
    );
    assert_eq!(lines.count(), 8);
    assert!(csv.contains(",'=cmd(),ping,"), "{csv}");

    // An edit of one column of row 4, behind the bunker's back.
    let db = rusqlite::Connection::open(bunker.data_dir().join("rampart.sqlite")).unwrap();
    db.execute("UPDATE audit SET kind = 7 WHERE seq = 4", [])
        .unwrap();
    let out = bunker.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("audit row 4 does not match its hash"),
        "{}",
        text(&out.stderr)
    );
    db.execute("UPDATE audit SET kind = 1 WHERE seq = 4", [])
        .unwrap();
    let out = bunker.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The newest two rows deleted: the chain itself is consistent, the
    // head kept outside the database is not there any more.
    db.execute("DELETE FROM audit WHERE seq > 6", []).unwrap();
    let out = bunker.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("the audit head recorded earlier (row 8) is missing"),
        "{}",
        text(&out.stderr)
    );
    // An exported head is checked too (here: an older one, still there).
    let old = db
        .query_row("SELECT row_hash FROM audit WHERE seq = 3", [], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .unwrap();
    let hex: String = old.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::remove_file(&head_file).unwrap();
    let out = bunker.cli(&["audit", "verify", "--head", &format!("3:{hex}")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = bunker.cli(&[
        "audit",
        "verify",
        "--head",
        &format!("3:{}", "00".repeat(32)),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("row 3) is different"),
        "{}",
        text(&out.stderr)
    );

    // Every row deleted, and a retention checkpoint forged at the newest:
    // not believed without retention, nor with it for a head this young.
    let newest: Vec<u8> = db
        .query_row("SELECT row_hash FROM audit WHERE seq = 6", [], |r| r.get(0))
        .unwrap();
    db.execute("DELETE FROM audit", []).unwrap();
    db.execute(
        "INSERT INTO audit_checkpoint (id, seq, hash) VALUES (1, 6, ?1)",
        [newest],
    )
    .unwrap();
    let out = bunker.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("keep_days is not set"),
        "{}",
        text(&out.stderr)
    );
    let config = bunker.data_dir().join("retention.toml");
    std::fs::write(&config, "[audit]\nkeep_days = 1\n").unwrap();
    let out = bunker.cli(&["--config", config.to_str().unwrap(), "audit", "verify"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("younger than [audit] keep_days = 1"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_with_its_chain_and_sessions() {
    let args = ["--grant", "sign_event:1"];
    let mut bunker = RampartProcess::start(Path::new(BIN), None, &[], &args);
    let uri = bunker.uri().to_string();
    let mut c = RawClient::connected(&uri).await;
    let sign = |i: usize| {
        let template = serde_json::json!({"kind": 1, "content": format!("n{i}"), "tags": []});
        serde_json::json!([template.to_string()])
    };
    for i in 0..3 {
        let r = c.call(&format!("s{i}"), "sign_event", sign(i)).await;
        assert!(matches!(r.outcome, Outcome::Result(_)), "{r:?}");
    }
    // Backed up while the bunker runs.
    let backup = bunker.data_dir().join("backup.sqlite");
    let out = bunker.cli(&["backup", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = bunker.cli(&["backup", backup.to_str().unwrap()]);
    assert!(
        !again.status.success(),
        "an existing file is not overwritten"
    );
    for i in 3..5 {
        let r = c.call(&format!("s{i}"), "sign_event", sign(i)).await;
        assert!(matches!(r.outcome, Outcome::Result(_)), "{r:?}");
    }
    // Not under a running bunker.
    let out = bunker.cli(&["restore", backup.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("stop `rampart run`"),
        "{}",
        text(&out.stderr)
    );
    assert!(bunker.stop(), "graceful shutdown");
    let out = bunker.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A damaged backup is refused, and nothing is replaced.
    let damaged = bunker.data_dir().join("damaged.sqlite");
    std::fs::copy(&backup, &damaged).unwrap();
    rusqlite::Connection::open(&damaged)
        .unwrap()
        .execute("UPDATE audit SET outcome = 'forged' WHERE seq = 2", [])
        .unwrap();
    let out = bunker.cli(&["restore", damaged.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("audit row 2 does not match"),
        "{}",
        text(&out.stderr)
    );
    let out = bunker.cli(&["audit", "--format", "csv"]);
    assert_eq!(
        text(&out.stdout).lines().count(),
        1 + 6,
        "still the live log"
    );

    let out = bunker.cli(&["restore", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("2 audit rows written after it are gone"),
        "{}",
        text(&out.stderr)
    );
    let out = bunker.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = bunker.cli(&["audit", "--format", "csv"]);
    assert_eq!(
        text(&out.stdout).lines().count(),
        1 + 4,
        "the backup's rows"
    );

    // The session in the backup serves again.
    bunker.restart(&args);
    let r = c.call("after", "sign_event", sign(9)).await;
    assert!(matches!(r.outcome, Outcome::Result(_)), "{r:?}");
    c.close().await;
}
