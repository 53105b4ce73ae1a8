//! The SQLite backend: the shared suite on a file and in memory, then what
//! only SQLite has (migrations, WAL, `data_version`, file permissions,
//! reading back damaged rows).

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use nip46::nostr::prelude::{EventId, PublicKey, Timestamp};
use nip46::{PermissionSet, Preset};
use rusqlite::Connection;
use store::{
    AuditDecision, AuditEntry, AuditQuery, Change, KeyId, NewKey, NewToken, SecretHash, Session,
    SessionOrigin, Store, StoreError,
};
use store_sqlite::{SCHEMA_VERSION, SqliteStore};
use tempfile::TempDir;

/// A store on a file in its own temporary directory (removed on drop).
struct FileStore {
    store: Box<dyn Store>,
    _dir: TempDir,
}

impl FileStore {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("rampart.db")).unwrap();
        FileStore {
            store: Box::new(store),
            _dir: dir,
        }
    }
}

impl Deref for FileStore {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl DerefMut for FileStore {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.store
    }
}

mod file {
    store::store_suite!(super::FileStore::new);
}

mod memory {
    store::store_suite!(
        || Box::new(store_sqlite::SqliteStore::open_in_memory().unwrap()) as Box<dyn store::Store>
    );
}

#[test]
fn tampering_with_each_audit_column_is_named_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let other = Connection::open(&path).unwrap();
    store::suite::tampering_with_each_column_is_named(&mut store, &mut |sql| {
        other.execute_batch(sql).unwrap();
    });
}

#[test]
fn run_all_passes_in_memory() {
    store::suite::run_all(&mut || Box::new(SqliteStore::open_in_memory().unwrap()));
}

// ---------------------------------------------------------------------------

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("data").join("rampart.db")
}

fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn pk(n: u8) -> PublicKey {
    PublicKey::from_byte_array([n; 32])
}

fn new_key(name: &str, n: u8) -> NewKey {
    NewKey {
        name: name.to_owned(),
        user_pubkey: pk(n),
        signer_pubkey: pk(n + 100),
        user_secret: format!("ncryptsec1user{n}"),
        signer_secret: format!("ncryptsec1signer{n}"),
        created_at: Timestamp::from_secs(1_700_000_000),
    }
}

fn audit_row(key_id: KeyId, n: u8) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at: Timestamp::from_secs(1_700_000_000 + u64::from(n)),
        key_id,
        client: Some(pk(50)),
        event_id: Some(EventId::from_byte_array([n; 32])),
        event_created_at: Timestamp::from_secs(1_700_000_000),
        events: 1,
        request_id: format!("r{n}"),
        method: "ping".to_owned(),
        kind: None,
        decision: AuditDecision::Allowed,
        outcome: "ok".to_owned(),
        signed_event_id: None,
        operator: None,
    }
}

fn session(key_id: KeyId, client: PublicKey) -> Session {
    Session::new(
        key_id,
        client,
        &PermissionSet::from(Preset::Write),
        SessionOrigin::Bunker,
        Timestamp::from_secs(1_700_000_000),
    )
}

#[test]
fn open_creates_a_private_directory_and_file_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("rampart.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let key = store.add_key(&new_key("alice", 1)).unwrap();
    store.apply(&[Change::Audit(audit_row(key, 1))]).unwrap();

    let conn = raw(&path);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(
        path.with_extension("db-wal").exists(),
        "a WAL file is in use"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&path.with_extension("db-wal")), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }
}

#[cfg(unix)]
#[test]
fn open_tightens_a_readable_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    SqliteStore::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn fresh_database_is_at_the_latest_schema_and_reopening_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let tables: Vec<String> = raw(&path)
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        tables,
        [
            "answers",
            "approvals",
            "audit",
            "audit_checkpoint",
            "dashboard_logins",
            "dashboard_sessions",
            "held_requests",
            "keys",
            "operator_keys",
            "operators",
            "replicas",
            "served_relays",
            "sessions",
            "tokens",
            "vault"
        ]
    );
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(SqliteStore::open(&path).unwrap());
    raw(&path)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, known } if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade Rampart"), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    std::fs::write(&path, vec![0x42; 8192]).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[test]
fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = SqliteStore::open(&path).unwrap();
    let key = store.add_key(&new_key("alice", 1)).unwrap();
    let token = store
        .add_token(&NewToken {
            key_id: key,
            secret_hash: SecretHash::of("s"),
            grant: PermissionSet::from(Preset::Full),
            expires_at: Some(Timestamp::from_secs(1_800_000_000)),
            created_at: Timestamp::from_secs(1_700_000_000),
            label: Some("laptop".to_owned()),
        })
        .unwrap();
    store
        .apply(&[
            Change::ConsumeToken {
                id: token,
                client: pk(50),
                at: Timestamp::from_secs(1_700_000_010),
            },
            Change::PutSession(session(key, pk(50))),
            Change::Audit(audit_row(key, 1)),
        ])
        .unwrap();
    let keys = store.keys().unwrap();
    let sessions = store.sessions().unwrap();
    let audit = store.audit(&AuditQuery::default()).unwrap();
    drop(store);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.keys().unwrap(), keys);
    assert_eq!(store.sessions().unwrap(), sessions);
    assert_eq!(store.audit(&AuditQuery::default()).unwrap(), audit);
    let tokens = store.tokens().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].used_by, Some(pk(50)));
    assert!(tokens[0].secret_hash.ct_matches(&SecretHash::of("s")));
}

#[test]
fn data_version_moves_only_for_other_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut bunker = SqliteStore::open(&path).unwrap();
    let mut cli = SqliteStore::open(&path).unwrap();

    let v0 = bunker.external_version().unwrap();
    let key = bunker.add_key(&new_key("alice", 1)).unwrap();
    bunker.apply(&[Change::Audit(audit_row(key, 1))]).unwrap();
    assert_eq!(
        bunker.external_version().unwrap(),
        v0,
        "own writes do not count"
    );

    cli.add_key(&new_key("bob", 2)).unwrap();
    let v1 = bunker.external_version().unwrap();
    assert_ne!(v1, v0, "the CLI's write is noticed");
    assert_eq!(bunker.external_version().unwrap(), v1);
    assert_eq!(bunker.keys().unwrap().len(), 2);

    cli.apply(&[Change::PutSession(session(key, pk(9)))])
        .unwrap();
    assert_ne!(bunker.external_version().unwrap(), v1);
}

#[test]
fn a_token_is_consumed_once_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut setup = SqliteStore::open(&path).unwrap();
    let key = setup.add_key(&new_key("alice", 1)).unwrap();
    let token = setup
        .add_token(&NewToken::new(
            key,
            &nip46::ConnectSecret::new("secret"),
            PermissionSet::from(Preset::Write),
            None,
            Timestamp::from_secs(1),
        ))
        .unwrap();
    drop(setup);

    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let racers: Vec<_> = (0..8u8)
        .map(|n| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut store = SqliteStore::open(&path).unwrap();
                barrier.wait();
                store.apply(&[
                    Change::ConsumeToken {
                        id: token,
                        client: pk(n),
                        at: Timestamp::from_secs(2),
                    },
                    Change::PutSession(session(key, pk(n))),
                ])
            })
        })
        .collect();
    let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(()) | Err(StoreError::AlreadyUsed(_)))),
        "{results:?}"
    );
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.sessions().unwrap().len(), 1);
    let used_by = store.tokens().unwrap()[0].used_by;
    assert_eq!(store.sessions().unwrap()[0].client, used_by.unwrap());
}

/// Damage one column with raw SQL and check the listing skips that row
/// (one bad row must not hide the others) and describes it cleanly.
fn corrupt_read<T: std::fmt::Debug>(
    damage: &str,
    read: impl Fn(&SqliteStore) -> Result<T, StoreError>,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = SqliteStore::open(&path).unwrap();
    let key = store.add_key(&new_key("alice", 1)).unwrap();
    store
        .add_token(&NewToken::new(
            key,
            &nip46::ConnectSecret::new("secret"),
            PermissionSet::from(Preset::Write),
            None,
            Timestamp::from_secs(1),
        ))
        .unwrap();
    store
        .apply(&[
            Change::PutSession(session(key, pk(50))),
            Change::Audit(audit_row(key, 1)),
        ])
        .unwrap();
    raw(&path).execute_batch(damage).unwrap();
    let listed = read(&store)
        .unwrap_or_else(|e| panic!("a damaged row failed the whole listing after `{damage}`: {e}"));
    let skipped = store.skipped_rows();
    assert_eq!(
        skipped.len(),
        1,
        "one row skipped after `{damage}`; listed {listed:?}"
    );
    skipped[0].clone()
}

#[test]
fn an_unreadable_row_does_not_hide_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = SqliteStore::open(&path).unwrap();
    let key = store.add_key(&new_key("alice", 1)).unwrap();
    store
        .apply(&[
            Change::PutSession(session(key, pk(50))),
            Change::PutSession(session(key, pk(51))),
        ])
        .unwrap();
    raw(&path)
        .execute(
            "UPDATE sessions SET rules = '{not json' WHERE client_pubkey = ?1",
            [pk(50).to_hex()],
        )
        .unwrap();
    let sessions = store.sessions().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].client, pk(51));
    assert_eq!(store.skipped_rows().len(), 1);
    // The next listing reports only what it skipped itself.
    store.keys().unwrap();
    assert!(store.skipped_rows().is_empty());
}

#[test]
fn damaged_values_are_reported_as_corrupt() {
    let m = corrupt_read("UPDATE keys SET user_pubkey = 'zz'", |s| s.keys());
    assert!(m.contains("keys") && m.contains("user_pubkey"), "{m}");
    assert!(!m.contains("ncryptsec1"), "no secret in messages: {m}");

    let m = corrupt_read("UPDATE keys SET created_at = -5", |s| s.keys());
    assert!(m.contains("created_at"), "{m}");

    let m = corrupt_read("UPDATE sessions SET rules = '{not json'", |s| s.sessions());
    assert!(
        m.contains("sessions") && m.contains("rules") && m.contains("JSON"),
        "{m}"
    );

    let m = corrupt_read(
        r#"UPDATE sessions SET rules = '[{"permission":"fly","effect":"allow","expires_at":null}]'"#,
        |s| s.sessions(),
    );
    assert!(m.contains("rules"), "{m}");

    let m = corrupt_read("UPDATE sessions SET relays = '[\"not a url\"]'", |s| {
        s.sessions()
    });
    assert!(m.contains("relays"), "{m}");

    let m = corrupt_read("UPDATE sessions SET requested_perms = 'bogus'", |s| {
        s.sessions()
    });
    assert!(m.contains("requested_perms"), "{m}");

    let m = corrupt_read("UPDATE tokens SET grant_perms = 'sign_event:x'", |s| {
        s.tokens().map(|t| t.len())
    });
    assert!(m.contains("grant_perms"), "{m}");

    let m = corrupt_read("UPDATE audit SET event_id = 'nothex'", |s| {
        s.audit(&AuditQuery::default())
    });
    assert!(m.contains("event_id"), "{m}");

    let m = corrupt_read("UPDATE audit SET decision = 'maybe'", |s| {
        s.audit(&AuditQuery::default())
    });
    assert!(m.contains("decision"), "{m}");

    let m = corrupt_read("UPDATE audit SET event_id = 'nothex'", |s| {
        s.audited_events(Timestamp::from_secs(0))
    });
    assert!(m.contains("event_id"), "{m}");

    let m = corrupt_read("UPDATE audit SET kind = 70000", |s| {
        s.audit(&AuditQuery::default())
    });
    assert!(m.contains("kind"), "{m}");
}

#[test]
fn damaged_approvals_are_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = SqliteStore::open(&path).unwrap();
    let key = store.add_key(&new_key("alice", 1)).unwrap();
    store
        .apply(&[Change::PutApproval(store::PendingApproval {
            id: store::ApprovalId("ab".to_owned()),
            key_id: key,
            client: pk(3),
            metadata: Default::default(),
            request_id: "1".to_owned(),
            method: nip46::Method::SignEvent,
            kind: Some(1),
            summary: store::RequestSummary::Other,
            event: None,
            created_at: Timestamp::from_secs(1),
            expires_at: Timestamp::from_secs(2),
            status: store::ApprovalStatus::Pending,
            votes: Vec::new(),
        })])
        .unwrap();
    for damage in [
        r#"UPDATE approvals SET status = '{"status":"sideways"}'"#,
        "UPDATE approvals SET method = 'teleport'",
        "UPDATE approvals SET metadata = '\"text\"'",
    ] {
        let conn = raw(&path);
        conn.execute_batch(damage).unwrap();
        // Skipped (and described), not fatal to the listing.
        assert!(store.approvals().expect(damage).is_empty());
        let skipped = store.skipped_rows();
        assert!(
            skipped.len() == 1 && skipped[0].contains("approvals row (ab)"),
            "{skipped:?}"
        );
        // Put the row back for the next damage.
        conn.execute_batch(
            r#"UPDATE approvals SET status = '{"status":"pending"}', method = 'sign_event', metadata = '{}'"#,
        )
        .unwrap();
        assert_eq!(store.approvals().unwrap().len(), 1);
    }
}

#[test]
fn audit_queries_use_the_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(SqliteStore::open(&path).unwrap());
    let conn = raw(&path);
    let plan = |sql: &str| -> String {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let newest =
        plan("SELECT * FROM audit WHERE 1 AND at >= 5 ORDER BY at DESC, seq DESC LIMIT 10");
    assert!(
        newest.contains("audit_at") && !newest.contains("TEMP B-TREE"),
        "{newest}"
    );
    // No index on event_id (it cost a random page per audit row): a request
    // event is found by its id within its time window.
    let by_event = plan("SELECT seq FROM audit WHERE at BETWEEN 100 AND 1000 AND event_id = 'x'");
    assert!(by_event.contains("audit_at"), "{by_event}");
}
