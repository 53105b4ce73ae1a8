//! The SQLite backend of the [`Store`] trait: one database file in the data
//! directory, shared by the running bunker and the CLI.
//!
//! Durability choice: the file is in WAL mode with `synchronous=NORMAL`. A
//! commit is then in the operating system's hands as soon as `apply`
//! returns, so it survives the process being killed (`kill -9`, a panic, an
//! OOM kill) — the requirement for "no signature sent without its audit
//! row". It does not survive a power loss or kernel crash: the last
//! transactions before one may roll back. `synchronous=FULL` would add an
//! fsync per commit (hundreds of µs to ms) on the bunker's hot path for a
//! guarantee the bunker does not promise.
//!
//! The schema is built by numbered migrations (`migrations/NNNN_*.sql`),
//! applied in order inside one transaction; `PRAGMA user_version` records
//! how many ran. A file from a newer Rampart is refused instead of guessed at.

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use nip46::nostr::prelude::{PublicKey, Timestamp};
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};

use nip46::nostr::prelude::EventId;
use store::chain::{self, ChainPoint, ChainedRow, StoredChainRow};
use store::{
    ApprovalId, ApprovalStatus, AuditEntry, AuditQuery, AuditedEvent, Change, Claim,
    ConnectionToken, DashboardSecret, KeyId, NewKey, NewToken, PendingApproval, ReplicaBeat,
    ReplicaId, Rule, SealedAnswer, ServedRelays, Session, Store, StoreError, StoredKey, TokenId,
};
use store::{
    DashboardUser, KeyScope, NewOperator, Operator, OperatorId, ResealedKey, VaultParams, Vote,
};

/// The migration that adds the audit chain: the rows already there are
/// chained right after it.
const CHAIN_MIGRATION: i64 = 8;

/// The migrations, in order. Migration `i` (0-based) brings the schema to
/// version `i + 1`. Never edit a released one: add a new file. They run with
/// `foreign_keys=ON` inside one transaction, so a migration that rebuilds a
/// table must copy rows before dropping anything they reference.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_audit_rowid.sql"),
    include_str!("migrations/0003_tagged_summaries.sql"),
    include_str!("migrations/0004_hardening.sql"),
    include_str!("migrations/0005_served_relays.sql"),
    include_str!("migrations/0006_replicas.sql"),
    include_str!("migrations/0007_key_locks.sql"),
    include_str!("migrations/0008_audit_chain.sql"),
    include_str!("migrations/0009_vault_kek.sql"),
    include_str!("migrations/0010_sensitive_kinds.sql"),
    include_str!("migrations/0011_operators.sql"),
];

/// The newest schema version this binary knows (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Enough for every statement `apply` uses, so none is ever re-prepared.
const STATEMENT_CACHE: usize = 32;

/// A [`Store`] in one SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// What the last listing skipped (see [`SqliteStore::skipped_rows`]).
    skipped: RefCell<Vec<String>>,
}

impl SqliteStore {
    /// The rows the last listing skipped because they could not be read
    /// back, each described (table, row, column, problem; never a secret).
    pub fn skipped_rows(&self) -> Vec<String> {
        self.skipped.borrow().clone()
    }

    /// Open (or create) the database at `path`, creating its directory if
    /// missing, and bring its schema up to date.
    ///
    /// On unix the directory is created `0700` and the file is made `0600`:
    /// it holds the (encrypted) user keys. Fails with
    /// [`StoreError::SchemaTooNew`] for a file written by a newer Rampart.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        prepare_file(path)?;
        let conn = Connection::open(path)
            .map_err(|e| db_error(&format!("opening {}", path.display()), e))?;
        Self::init(conn, true)
    }

    /// A private database in memory, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().ctx("opening an in-memory database")?;
        Self::init(conn, false)
    }

    fn init(mut conn: Connection, file: bool) -> Result<Self, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)
            .ctx("setting the busy timeout")?;
        if file {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .ctx("switching to WAL mode")?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Database(format!(
                    "the database stayed in journal mode {mode:?} instead of WAL; \
                     put the data directory on a local filesystem"
                )));
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .ctx("setting synchronous=NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)
            .ctx("enabling foreign keys")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrate(&mut conn, MIGRATIONS)?;
        Ok(SqliteStore {
            conn,
            skipped: RefCell::new(Vec::new()),
        })
    }

    /// Write a consistent copy of the database to `dest` while it is in use
    /// (`VACUUM INTO`: one read transaction, so other processes keep
    /// writing; the copy is compact and has no WAL of its own). `dest` must
    /// not exist; it is made `0600` (it holds the sealed keys).
    pub fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        if dest.exists() {
            return Err(StoreError::Duplicate(format!(
                "{} exists already; choose a new file",
                dest.display()
            )));
        }
        let target = dest.to_str().ok_or_else(|| {
            StoreError::Database(format!("{} is not a UTF-8 path", dest.display()))
        })?;
        // An empty file, 0600 from the start (VACUUM INTO fills an empty one).
        prepare_file(dest)?;
        self.conn
            .execute("VACUUM INTO ?1", [target])
            .map_err(|e| db_error(&format!("backing up to {}", dest.display()), e))?;
        Ok(())
    }

    /// The schema version of the open database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .ctx("reading the schema version")
    }
}

/// Create the parent directory (private) and the file (private) if missing.
fn prepare_file(path: &Path) -> Result<(), StoreError> {
    let io = |what: &str, e: std::io::Error| {
        StoreError::Database(format!(
            "cannot {what} {}: {e}; check the data directory's path and permissions",
            path.display()
        ))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| io("create the directory of", e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(|e| io("create", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(|e| io("inspect", e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "database file was readable by others; making it 0600");
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io("restrict the permissions of", e))?;
        }
    }
    drop(file);
    Ok(())
}

/// Apply the migrations the database has not seen yet, all in one
/// transaction: a failure leaves the file as it was.
fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let known = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("starting the schema migration")?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .ctx("reading the schema version")?;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    let Ok(done) = usize::try_from(found) else {
        return Err(StoreError::Corrupt(format!(
            "the schema version is {found}; restore the database from a backup"
        )));
    };
    for (version, sql) in (1_i64..).zip(migrations).skip(done) {
        tx.execute_batch(sql)
            .map_err(|e| db_error(&format!("applying schema migration {version}"), e))?;
        if version == CHAIN_MIGRATION {
            chain_existing_audit_rows(&tx)?;
        }
        tx.pragma_update(None, "user_version", version)
            .ctx("recording the schema version")?;
        tracing::info!(version, "applied database migration");
    }
    tx.commit().ctx("committing the schema migration")
}

/// Chain the audit rows written before the chain existed, oldest first.
fn chain_existing_audit_rows(conn: &Connection) -> Result<(), StoreError> {
    let rows = {
        let mut stmt = conn
            .prepare(&format!("{SELECT_CHAIN_BEFORE_OPERATORS} ORDER BY seq"))
            .ctx("reading the audit log to chain it")?;
        let mapped = stmt
            .query_map([], |row| Ok(rows::chained(&SqlRow(row))))
            .ctx("reading the audit log to chain it")?;
        let mut out = Vec::new();
        for row in mapped {
            out.push(row.ctx("reading the audit log to chain it")??);
        }
        out
    };
    let mut previous = chain::GENESIS;
    let mut update = conn
        .prepare("UPDATE audit SET row_hash = ?1 WHERE seq = ?2")
        .ctx("chaining the audit log")?;
    for stored in &rows {
        previous = stored.row.hash(&previous);
        update
            .execute(params![&previous[..], stored.row.seq])
            .ctx("chaining the audit log")?;
    }
    if !rows.is_empty() {
        tracing::info!(rows = rows.len(), "chained the existing audit rows");
    }
    Ok(())
}

/// The columns of an audit row the chain covers, and its hash.
const SELECT_CHAIN: &str = "SELECT seq, at, key_id, client_pubkey, event_id, request_id, method, \
     kind, decision, outcome, signed_event_id, event_created_at, events, operator, row_hash \
     FROM audit";

/// [`SELECT_CHAIN`] as the chaining migration runs it (before the
/// `operator` column existed: no row has one).
const SELECT_CHAIN_BEFORE_OPERATORS: &str = "SELECT seq, at, key_id, client_pubkey, event_id, \
     request_id, method, kind, decision, outcome, signed_event_id, event_created_at, events, \
     NULL AS operator, row_hash FROM audit";

/// Where the next audit row chains on: the newest row, else the checkpoint,
/// else the start. A newest row without a hash (written outside Rampart)
/// is chained on as if its hash were zero: verification names it.
fn audit_tail(conn: &Connection) -> Result<ChainPoint, StoreError> {
    let newest: Option<(i64, Option<Vec<u8>>)> = conn
        .prepare_cached("SELECT seq, row_hash FROM audit ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .ctx("reading the audit log's newest row")?;
    if let Some((seq, hash)) = newest {
        let hash = hash
            .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
            .unwrap_or([0; 32]);
        return Ok(ChainPoint { seq, hash });
    }
    Ok(checkpoint(conn)?.unwrap_or(ChainPoint {
        seq: 0,
        hash: chain::GENESIS,
    }))
}

fn checkpoint(conn: &Connection) -> Result<Option<ChainPoint>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT seq, hash FROM audit_checkpoint WHERE id = 1")
        .ctx("reading the audit checkpoint")?;
    let mut rows = stmt.query([]).ctx("reading the audit checkpoint")?;
    match rows.next().ctx("reading the audit checkpoint")? {
        None => Ok(None),
        Some(row) => rows::chain_point(&SqlRow(row), "audit_checkpoint", "hash").map(Some),
    }
}

/// Retention: the prefix of the log older than `before` goes; the last row
/// of it becomes the checkpoint.
fn prune_audit(conn: &Connection, before: Timestamp) -> Result<(), StoreError> {
    let last: Option<(i64, Option<Vec<u8>>)> = conn
        .prepare_cached(
            "SELECT seq, row_hash FROM audit WHERE seq < coalesce(\
             (SELECT min(seq) FROM audit WHERE at >= ?1), 9223372036854775807) \
             ORDER BY seq DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row([ts(before)], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .ctx("finding the audit rows to prune")?;
    let Some((seq, Some(hash))) = last else {
        // Nothing to prune, or an unhashed row: keep it for verify to name.
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT INTO audit_checkpoint (id, seq, hash) VALUES (1, ?1, ?2) \
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )
    .and_then(|mut s| s.execute(params![seq, hash]))
    .ctx("moving the audit checkpoint")?;
    let pruned = conn
        .prepare_cached("DELETE FROM audit WHERE seq <= ?1")
        .and_then(|mut s| s.execute([seq]))
        .ctx("pruning the audit log")?;
    tracing::info!(rows = pruned, up_to = seq, "pruned the audit log");
    Ok(())
}

// ---------------------------------------------------------------------------
// Errors

/// A SQLite error, with what we were doing and, when there is one, what to do.
fn db_error(what: &str, e: rusqlite::Error) -> StoreError {
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "; another process held the database lock too long, retry"
        }
        Some(ErrorCode::DiskFull) => "; the disk is full, free some space",
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
            "; check the permissions of the data directory and the database file"
        }
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            return StoreError::Corrupt(format!(
                "{what}: {e}; the file is damaged or not a Rampart database, restore it from a backup"
            ));
        }
        _ => "",
    };
    StoreError::Database(format!("{what}: {e}{hint}"))
}

/// `.ctx("doing x")` on rusqlite results.
trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| db_error(what, e))
    }
}

fn has_extended_code(e: &rusqlite::Error, codes: &[std::ffi::c_int]) -> bool {
    e.sqlite_error()
        .is_some_and(|s| codes.contains(&s.extended_code))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
    has_extended_code(e, &[SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY])
}

fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    has_extended_code(e, &[rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY])
}

// ---------------------------------------------------------------------------
// Values in and out

/// Times are stored as SQLite integers; past `i64::MAX` seconds (about 292
/// billion years) they saturate, which keeps the meaning "never".
fn ts(t: Timestamp) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

fn opt_ts(t: Option<Timestamp>) -> Option<i64> {
    t.map(ts)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

use store::codec::{relays_to_json as relays_json, rules_to_json as rules_json, storable, to_json};
use store::rows::{self, RawRow};

/// A SQLite row, as the model's row readers ([`store::rows`]) see it.
struct SqlRow<'a, 'b>(&'a Row<'b>);

impl RawRow for SqlRow<'_, '_> {
    fn int(&self, column: &str) -> Result<Option<i64>, String> {
        self.0
            .get::<_, Option<i64>>(column)
            .map_err(|e| e.to_string())
    }

    fn text(&self, column: &str) -> Result<Option<String>, String> {
        self.0
            .get::<_, Option<String>>(column)
            .map_err(|e| e.to_string())
    }

    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, String> {
        self.0
            .get::<_, Option<Vec<u8>>>(column)
            .map_err(|e| e.to_string())
    }
}

/// Run a query and read every row with `read`. A row that cannot be read
/// back (damaged by hand, say) is skipped and logged, and noted in
/// `skipped`: one bad row must not hide every other, nor stop the running
/// bunker's reloads. A failing query is still an error.
fn collect<T>(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    what: &str,
    skipped: &RefCell<Vec<String>>,
    read: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    skipped.borrow_mut().clear();
    let mut rows = stmt.query(params).ctx(what)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ctx(what)? {
        match read(row) {
            Ok(value) => out.push(value),
            Err(StoreError::Corrupt(message)) => {
                tracing::warn!(%message, "{what}: skipped a row that cannot be read");
                skipped.borrow_mut().push(message);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Writes

const INSERT_AUDIT: &str = "INSERT INTO audit \
    (seq, at, key_id, client_pubkey, event_id, request_id, method, kind, decision, outcome, \
     signed_event_id, event_created_at, events, operator, row_hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

const UPSERT_SESSION: &str = "INSERT INTO sessions \
    (key_id, client_pubkey, rules, expires_at, created_at, last_used_at, request_count, \
     metadata, requested_perms, origin, relays, revoked_at, connect_reply, revision) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
    ON CONFLICT (key_id, client_pubkey) DO UPDATE SET \
     rules = excluded.rules, expires_at = excluded.expires_at, created_at = excluded.created_at, \
     last_used_at = excluded.last_used_at, request_count = excluded.request_count, \
     metadata = excluded.metadata, requested_perms = excluded.requested_perms, \
     origin = excluded.origin, relays = excluded.relays, revoked_at = excluded.revoked_at, \
     connect_reply = excluded.connect_reply, revision = excluded.revision";

/// One change; `tail` is where the transaction's next audit row chains on.
fn apply_change(
    conn: &Connection,
    change: &Change,
    tail: &mut Option<ChainPoint>,
) -> Result<(), StoreError> {
    match change {
        Change::Audit(entry) => insert_audit(conn, entry, tail),
        Change::PruneAudit { before } => {
            *tail = None;
            prune_audit(conn, *before)
        }
        Change::ConsumeToken { id, client, at } => consume_token(conn, *id, client, *at),
        Change::RevokeToken { id, at } => {
            conn.prepare_cached(
                "UPDATE tokens SET expires_at = min(coalesce(expires_at, ?1), ?1) \
                 WHERE id = ?2 AND used_at IS NULL",
            )
            .and_then(|mut s| s.execute(params![ts(*at), id.0]))
            .ctx("revoking a token")?;
            Ok(())
        }
        Change::PutSession(session) => put_session(conn, session),
        Change::NoteVote { id, vote } => add_vote(conn, id, vote).map(|_| ()),
        Change::SetQuorum { key_id, quorum } => {
            let changed = conn
                .prepare_cached("UPDATE keys SET quorum = ?1 WHERE ?2 IS NULL OR id = ?2")
                .and_then(|mut s| s.execute(params![i64::from(*quorum), key_id.map(|k| k.0)]))
                .ctx("setting a key's quorum")?;
            match key_id {
                Some(id) if changed == 0 => Err(StoreError::NotFound(format!("key {id}"))),
                _ => Ok(()),
            }
        }
        Change::SetSensitiveKinds { key_id, kinds } => {
            let text = kinds.as_deref().map(store::codec::kinds_to_text);
            let changed = conn
                .prepare_cached("UPDATE keys SET sensitive_kinds = ?1 WHERE id = ?2")
                .and_then(|mut s| s.execute(params![text, key_id.0]))
                .ctx("setting a key's sensitive kinds")?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("key {key_id}")));
            }
            Ok(())
        }
        Change::SetKeyLock { key_id, locked_at } => {
            // Locking keeps the first lock time; unlocking clears it.
            let changed = conn
                .prepare_cached(
                    "UPDATE keys SET locked_at = CASE WHEN ?1 IS NULL THEN NULL \
                     ELSE coalesce(locked_at, ?1) END WHERE ?2 IS NULL OR id = ?2",
                )
                .and_then(|mut s| s.execute(params![opt_ts(*locked_at), key_id.map(|k| k.0)]))
                .ctx("locking a key")?;
            match key_id {
                Some(id) if changed == 0 => Err(StoreError::NotFound(format!("key {id}"))),
                _ => Ok(()),
            }
        }
        Change::TouchSession {
            key_id,
            client,
            at,
            requests,
        } => {
            conn.prepare_cached(
                "UPDATE sessions SET last_used_at = max(coalesce(last_used_at, ?1), ?1), \
                 request_count = request_count + ?2 WHERE key_id = ?3 AND client_pubkey = ?4",
            )
            .and_then(|mut s| {
                s.execute(params![
                    ts(*at),
                    count(*requests),
                    key_id.0,
                    client.to_hex()
                ])
            })
            .ctx("recording session use")?;
            Ok(())
        }
        Change::RevokeSession { key_id, client, at } => {
            conn.prepare_cached(
                "UPDATE sessions SET revoked_at = coalesce(revoked_at, ?1), revision = revision + 1 \
                 WHERE key_id = ?2 AND client_pubkey = ?3",
            )
            .and_then(|mut s| s.execute(params![ts(*at), key_id.0, client.to_hex()]))
            .ctx("revoking a session")?;
            Ok(())
        }
        Change::AddRules {
            key_id,
            client,
            rules,
        } => edit_rules(conn, *key_id, client, |stored| {
            for rule in rules {
                stored.retain(|r| r.permission != rule.permission);
                stored.push(rule.clone());
            }
        }),
        Change::RemoveRules {
            key_id,
            client,
            permissions,
        } => edit_rules(conn, *key_id, client, |stored| {
            stored.retain(|r| !permissions.contains(&r.permission));
        }),
        Change::ClearConnectReply { key_id, client } => {
            conn.prepare_cached(
                "UPDATE sessions SET connect_reply = NULL, revision = revision + 1 \
                 WHERE key_id = ?1 AND client_pubkey = ?2",
            )
            .and_then(|mut s| s.execute(params![key_id.0, client.to_hex()]))
            .ctx("clearing a connect reply")?;
            Ok(())
        }
        Change::RecordServedRelays(served) => {
            let relays = relays_json(&served.relays)?;
            conn.prepare_cached(
                "INSERT INTO served_relays (id, relays, recorded_at) VALUES (1, ?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET relays = excluded.relays, \
                 recorded_at = excluded.recorded_at",
            )
            .and_then(|mut s| s.execute(params![relays, ts(served.recorded_at)]))
            .ctx("recording the served relays")?;
            Ok(())
        }
        Change::Answer(answer) => record_answer(conn, answer),
        Change::HoldRequest(held) => {
            // The holder claims the request event (unanswered yet), so no
            // other replica takes it for a new request.
            conn.prepare_cached(
                "INSERT INTO answers (request_event, replica, answer, at) \
                 VALUES (?1, ?2, NULL, ?3) ON CONFLICT (request_event) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    held.request_event_id.to_hex(),
                    held.holder.as_str(),
                    now_ms() / 1000
                ])
            })
            .ctx("claiming a held request")?;
            let result = conn
                .prepare_cached(
                    "INSERT INTO held_requests (approval_id, holder, request_event_id, request_event) \
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        held.approval.0,
                        held.holder.as_str(),
                        held.request_event_id.to_hex(),
                        held.request_event
                    ])
                });
            match result {
                Ok(_) => Ok(()),
                Err(e) if is_foreign_key_violation(&e) => {
                    Err(StoreError::NotFound(format!("approval {}", held.approval)))
                }
                Err(e) => Err(db_error("recording a held request", e)),
            }
        }
        Change::PutApproval(approval) => put_approval(conn, approval),
        Change::SetApprovalStatus { id, status } => {
            let ends_hold = !matches!(status, ApprovalStatus::Pending | ApprovalStatus::Decided(_));
            let status = to_json(status, "an approval status")?;
            conn.prepare_cached("UPDATE approvals SET status = ?1 WHERE id = ?2")
                .and_then(|mut s| s.execute(params![status, id.0]))
                .ctx("updating an approval")?;
            if ends_hold {
                conn.prepare_cached("DELETE FROM held_requests WHERE approval_id = ?1")
                    .and_then(|mut s| s.execute([&id.0]))
                    .ctx("ending a hold")?;
            }
            Ok(())
        }
        Change::DecideApproval { id, vote } => {
            if !add_vote(conn, id, vote)? {
                return Err(StoreError::NotFound(format!(
                    "a waiting request {} (it was answered or expired)",
                    id.0
                )));
            }
            Ok(())
        }
    }
}

/// Add a vote to a pending approval's votes, once per person and answer
/// (so an approval holds at most two votes a person: bounded by who may
/// vote); one statement, so two processes voting at once both count.
/// Whether the approval is waiting (the vote is on it, now or already).
fn add_vote(conn: &Connection, id: &ApprovalId, vote: &Vote) -> Result<bool, StoreError> {
    let json = to_json(vote, "a vote")?;
    let pending = to_json(&ApprovalStatus::Pending, "an approval status")?;
    let added = conn
        .prepare_cached(
            "UPDATE approvals SET votes = json_insert(votes, '$[#]', json(?1)) \
             WHERE id = ?2 AND status = ?3 AND NOT EXISTS (SELECT 1 FROM json_each(votes) \
             WHERE json_extract(value, '$.by') = ?4 \
             AND json_extract(value, '$.decision.allow') = ?5)",
        )
        .and_then(|mut s| s.execute(params![json, id.0, pending, vote.by, vote.decision.allow]))
        .ctx("recording a vote")?;
    if added > 0 {
        return Ok(true);
    }
    conn.prepare_cached("SELECT 1 FROM approvals WHERE id = ?1 AND status = ?2")
        .and_then(|mut s| s.exists(params![id.0, pending]))
        .ctx("recording a vote")
}

/// Append an audit row after `tail` (loaded on the transaction's first
/// row), its hash chained to the previous row's.
fn insert_audit(
    conn: &Connection,
    e: &AuditEntry,
    tail: &mut Option<ChainPoint>,
) -> Result<(), StoreError> {
    let previous = match *tail {
        Some(point) => point,
        None => audit_tail(conn)?,
    };
    let seq = previous
        .seq
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt("the audit log's seq is at its maximum".into()))?;
    let row = ChainedRow::of(seq, e);
    let hash = row.hash(&previous.hash);
    let mut stmt = conn
        .prepare_cached(INSERT_AUDIT)
        .ctx("preparing the audit insert")?;
    stmt.execute(params![
        row.seq,
        row.at,
        row.key_id,
        row.client_pubkey,
        row.event_id,
        row.request_id,
        row.method,
        row.kind,
        row.decision,
        row.outcome,
        row.signed_event_id,
        row.event_created_at,
        row.events,
        row.operator,
        &hash[..],
    ])
    .ctx("writing an audit row")?;
    *tail = Some(ChainPoint { seq: row.seq, hash });
    Ok(())
}

/// Exactly once across replicas: the request event's row is ours, or it
/// becomes ours now; another replica's row refuses the whole job.
fn record_answer(conn: &Connection, a: &SealedAnswer) -> Result<(), StoreError> {
    let request = a.request.to_hex();
    let changed = conn
        .prepare_cached(
            "INSERT INTO answers (request_event, replica, answer, at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (request_event) DO UPDATE SET answer = excluded.answer, at = excluded.at \
             WHERE answers.replica = excluded.replica",
        )
        .and_then(|mut s| s.execute(params![request, a.replica.as_str(), a.answer, ts(a.at)]))
        .ctx("recording an answer")?;
    if changed == 1 {
        return Ok(());
    }
    let holder: String = conn
        .prepare_cached("SELECT replica FROM answers WHERE request_event = ?1")
        .and_then(|mut s| s.query_row([&request], |r| r.get(0)))
        .ctx("looking up who answered a request")?;
    Err(StoreError::Claimed(
        format!("request event {request}"),
        holder,
    ))
}

/// A replica silent this long is forgotten.
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Milliseconds since the Unix epoch by this machine's clock (SQLite has no
/// server: every process sharing the file is on this machine).
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The single-use guarantee: the update only matches an unused token, so of
/// two processes racing for one secret exactly one commits.
fn consume_token(
    conn: &Connection,
    id: TokenId,
    client: &PublicKey,
    at: Timestamp,
) -> Result<(), StoreError> {
    let updated = conn
        .prepare_cached(
            "UPDATE tokens SET used_at = ?1, used_by = ?2 WHERE id = ?3 AND used_at IS NULL",
        )
        .and_then(|mut s| s.execute(params![ts(at), client.to_hex(), id.0]))
        .ctx("consuming a connection token")?;
    if updated == 1 {
        return Ok(());
    }
    let exists = conn
        .prepare_cached("SELECT 1 FROM tokens WHERE id = ?1")
        .and_then(|mut s| s.query_row([id.0], |_| Ok(())).optional())
        .ctx("looking up a connection token")?
        .is_some();
    let name = format!("connection token {}", id.0);
    Err(if exists {
        StoreError::AlreadyUsed(name)
    } else {
        StoreError::NotFound(name)
    })
}

/// Change a stored session's rules in place (inside the caller's
/// transaction), moving its revision on; a missing session is left alone.
fn edit_rules(
    conn: &Connection,
    key_id: KeyId,
    client: &PublicKey,
    edit: impl FnOnce(&mut Vec<Rule>),
) -> Result<(), StoreError> {
    let client_hex = client.to_hex();
    let stored = conn
        .prepare_cached(
            "SELECT rowid, rules FROM sessions WHERE key_id = ?1 AND client_pubkey = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![key_id.0, client_hex], |row| {
                let row = SqlRow(row);
                let r = rows::RowReader::new(&row, "sessions", &["rowid"]);
                Ok(r.rules("rules"))
            })
            .optional()
        })
        .ctx("reading a session's rules")?;
    let Some(stored) = stored else {
        return Ok(());
    };
    let mut session_rules = stored?;
    edit(&mut session_rules);
    let json = rules_json(&session_rules)?;
    conn.prepare_cached(
        "UPDATE sessions SET rules = ?1, revision = revision + 1 \
         WHERE key_id = ?2 AND client_pubkey = ?3",
    )
    .and_then(|mut s| s.execute(params![json, key_id.0, client_hex]))
    .ctx("adding session rules")?;
    Ok(())
}

fn put_session(conn: &Connection, s: &Session) -> Result<(), StoreError> {
    let metadata = to_json(&s.metadata, "client metadata")?;
    let rules = rules_json(&s.rules)?;
    let relays = relays_json(&s.relays)?;
    let result = conn.prepare_cached(UPSERT_SESSION).and_then(|mut stmt| {
        stmt.execute(params![
            s.key_id.0,
            s.client.to_hex(),
            rules,
            opt_ts(s.expires_at),
            ts(s.created_at),
            opt_ts(s.last_used_at),
            count(s.request_count),
            metadata,
            s.requested_perms.to_string(),
            s.origin.as_str(),
            relays,
            opt_ts(s.revoked_at),
            s.connect_reply,
            count(s.revision),
        ])
    });
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_foreign_key_violation(&e) => {
            Err(StoreError::NotFound(format!("key {}", s.key_id)))
        }
        Err(e) => Err(db_error("saving a session", e)),
    }
}

fn put_approval(conn: &Connection, a: &PendingApproval) -> Result<(), StoreError> {
    let metadata = to_json(&a.metadata, "client metadata")?;
    let status = to_json(&a.status, "an approval status")?;
    let summary = to_json(&a.summary, "a request summary")?;
    let votes = to_json(&a.votes, "votes")?;
    let event = a
        .event
        .as_ref()
        .map(|e| to_json(e, "an unsigned event"))
        .transpose()?;
    let result = conn
        .prepare_cached(
            "INSERT INTO approvals (id, key_id, client_pubkey, metadata, request_id, method, \
             kind, summary, created_at, expires_at, status, event, votes) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                a.id.0,
                a.key_id.0,
                a.client.to_hex(),
                metadata,
                storable(&a.request_id),
                a.method.as_str(),
                a.kind,
                summary,
                ts(a.created_at),
                ts(a.expires_at),
                status,
                event,
                votes,
            ])
        });
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => {
            Err(StoreError::Duplicate(format!("approval {}", a.id)))
        }
        Err(e) if is_foreign_key_violation(&e) => {
            Err(StoreError::NotFound(format!("key {}", a.key_id)))
        }
        Err(e) => Err(db_error("adding an approval", e)),
    }
}

// ---------------------------------------------------------------------------
// The trait

impl Store for SqliteStore {
    fn add_key(&mut self, key: &NewKey) -> Result<KeyId, StoreError> {
        let result = self
            .conn
            .prepare_cached(
                "INSERT INTO keys (name, user_pubkey, signer_pubkey, user_ncryptsec, \
                 signer_ncryptsec, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| {
                stmt.insert(params![
                    key.name,
                    key.user_pubkey.to_hex(),
                    key.signer_pubkey.to_hex(),
                    key.user_secret,
                    key.signer_secret,
                    ts(key.created_at),
                ])
            });
        match result {
            Ok(id) => Ok(KeyId(id)),
            Err(e) if is_unique_violation(&e) && e.to_string().contains("signer_pubkey") => {
                Err(StoreError::Duplicate(format!(
                    "a key with signer pubkey {}",
                    key.signer_pubkey.to_hex()
                )))
            }
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Duplicate(format!("a key named {:?}", key.name)))
            }
            Err(e) => Err(db_error("adding a key", e)),
        }
    }

    fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, name, user_pubkey, signer_pubkey, user_ncryptsec, signer_ncryptsec, \
                 created_at, locked_at, sensitive_kinds, quorum FROM keys ORDER BY id",
            )
            .ctx("listing keys")?;
        collect(&mut stmt, [], "listing keys", &self.skipped, |row| {
            rows::key(&SqlRow(row))
        })
    }

    fn remove_key(&mut self, name: &str) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting to remove a key")?;
        // Tokens, sessions and approvals go with the key (ON DELETE CASCADE);
        // audit rows have no foreign key and stay.
        let removed = tx
            .execute("DELETE FROM keys WHERE name = ?1", [name])
            .ctx("removing a key")?;
        if removed == 0 {
            return Err(StoreError::NotFound(format!("key {name:?}")));
        }
        tx.commit().ctx("committing the key removal")
    }

    fn vault_params(&self) -> Result<Option<VaultParams>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, salt, log_n, check_value FROM vault WHERE id = 1")
            .ctx("reading the vault parameters")?;
        let mut rows = stmt.query([]).ctx("reading the vault parameters")?;
        match rows.next().ctx("reading the vault parameters")? {
            None => Ok(None),
            Some(row) => rows::vault_params(&SqlRow(row)).map(Some),
        }
    }

    fn init_vault(&mut self, params: &VaultParams) -> Result<VaultParams, StoreError> {
        self.conn
            .execute(
                "INSERT INTO vault (id, salt, log_n, check_value) VALUES (1, ?1, ?2, ?3) \
                 ON CONFLICT (id) DO NOTHING",
                params![&params.salt[..], params.log_n, &params.check[..]],
            )
            .ctx("creating the vault")?;
        self.vault_params()?
            .ok_or_else(|| StoreError::Database("the vault row vanished".into()))
    }

    fn reseal_keys(
        &mut self,
        vault: Option<(&VaultParams, &VaultParams)>,
        keys: &[ResealedKey],
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting to reseal keys")?;
        if let Some((from, to)) = vault {
            let salt: Option<Vec<u8>> = tx
                .query_row("SELECT salt FROM vault WHERE id = 1", [], |r| r.get(0))
                .optional()
                .ctx("reading the vault parameters")?;
            if salt.as_deref() != Some(&from.salt[..]) {
                return Err(StoreError::Changed("the vault".into()));
            }
            let count: i64 = tx
                .query_row("SELECT count(*) FROM keys", [], |r| r.get(0))
                .ctx("counting keys")?;
            if usize::try_from(count).ok() != Some(keys.len()) {
                return Err(StoreError::Changed("the set of keys".into()));
            }
            tx.execute(
                "UPDATE vault SET salt = ?1, log_n = ?2, check_value = ?3 WHERE id = 1",
                params![&to.salt[..], to.log_n, &to.check[..]],
            )
            .ctx("replacing the vault parameters")?;
        }
        {
            let mut update = tx
                .prepare_cached(
                    "UPDATE keys SET user_ncryptsec = ?1, signer_ncryptsec = ?2 \
                     WHERE id = ?3 AND user_ncryptsec = ?4 AND signer_ncryptsec = ?5",
                )
                .ctx("resealing keys")?;
            let mut exists = tx
                .prepare_cached("SELECT 1 FROM keys WHERE id = ?1")
                .ctx("resealing keys")?;
            for k in keys {
                let changed = update
                    .execute(params![
                        k.user_secret,
                        k.signer_secret,
                        k.id.0,
                        k.replaces.0,
                        k.replaces.1
                    ])
                    .ctx("resealing a key")?;
                if changed == 0 && exists.exists([k.id.0]).ctx("resealing a key")? {
                    return Err(StoreError::Changed(format!("key {}", k.id)));
                }
            }
        }
        tx.commit().ctx("committing the resealed keys")
    }

    fn replace_signer(
        &mut self,
        key_id: KeyId,
        signer_pubkey: &PublicKey,
        signer_secret: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting to replace a signer key")?;
        let changed = match tx.execute(
            "UPDATE keys SET signer_pubkey = ?1, signer_ncryptsec = ?2 WHERE id = ?3",
            params![signer_pubkey.to_hex(), signer_secret, key_id.0],
        ) {
            Ok(n) => n,
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Duplicate(format!(
                    "a key with signer pubkey {}",
                    signer_pubkey.to_hex()
                )));
            }
            Err(e) => return Err(db_error("replacing a signer key", e)),
        };
        if changed == 0 {
            return Err(StoreError::NotFound(format!("key {key_id}")));
        }
        tx.execute(
            "UPDATE sessions SET revoked_at = coalesce(revoked_at, ?1), revision = revision + 1 \
             WHERE key_id = ?2",
            params![ts(at), key_id.0],
        )
        .ctx("revoking the key's sessions")?;
        tx.execute(
            "UPDATE tokens SET expires_at = min(coalesce(expires_at, ?1), ?1) \
             WHERE key_id = ?2 AND used_at IS NULL",
            params![ts(at), key_id.0],
        )
        .ctx("revoking the key's tokens")?;
        tx.commit().ctx("committing the new signer key")
    }

    fn add_token(&mut self, token: &NewToken) -> Result<TokenId, StoreError> {
        let result = self
            .conn
            .prepare_cached(
                "INSERT INTO tokens (key_id, secret_hash, grant_perms, expires_at, created_at, \
                 label) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| {
                stmt.insert(params![
                    token.key_id.0,
                    &token.secret_hash.0[..],
                    token.grant.to_string(),
                    opt_ts(token.expires_at),
                    ts(token.created_at),
                    token.label,
                ])
            });
        match result {
            Ok(id) => Ok(TokenId(id)),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Duplicate(
                "a connection token with this secret".to_owned(),
            )),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(StoreError::NotFound(format!("key {}", token.key_id)))
            }
            Err(e) => Err(db_error("adding a connection token", e)),
        }
    }

    fn tokens(&self) -> Result<Vec<ConnectionToken>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, key_id, secret_hash, grant_perms, expires_at, created_at, used_at, \
                 used_by, label FROM tokens ORDER BY id",
            )
            .ctx("listing connection tokens")?;
        collect(
            &mut stmt,
            [],
            "listing connection tokens",
            &self.skipped,
            |row| rows::token(&SqlRow(row)),
        )
    }

    fn sessions(&self) -> Result<Vec<Session>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key_id, client_pubkey, rules, expires_at, created_at, last_used_at, \
                 request_count, metadata, requested_perms, origin, relays, revoked_at, \
                 connect_reply, revision FROM sessions ORDER BY key_id, client_pubkey",
            )
            .ctx("listing sessions")?;
        collect(&mut stmt, [], "listing sessions", &self.skipped, |row| {
            rows::session(&SqlRow(row))
        })
    }

    fn approvals(&self) -> Result<Vec<PendingApproval>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, key_id, client_pubkey, metadata, request_id, method, kind, summary, \
                 created_at, expires_at, status, event, votes FROM approvals \
                 ORDER BY created_at DESC, rowid DESC",
            )
            .ctx("listing approvals")?;
        collect(&mut stmt, [], "listing approvals", &self.skipped, |row| {
            rows::approval(&SqlRow(row))
        })
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut sql = String::from(
            "SELECT seq, at, key_id, client_pubkey, event_id, request_id, method, kind, \
             decision, outcome, signed_event_id, event_created_at, events, operator FROM audit \
             WHERE 1",
        );
        let mut args: Vec<Value> = Vec::new();
        let mut filter = |clause: &str, value: Value| {
            sql.push_str(" AND ");
            sql.push_str(clause);
            args.push(value);
        };
        if let Some(since) = query.since {
            filter("at >= ?", Value::Integer(ts(since)));
        }
        if let Some(until) = query.until {
            filter("at < ?", Value::Integer(ts(until)));
        }
        if let Some(key_id) = query.key_id {
            filter("key_id = ?", Value::Integer(key_id.0));
        }
        if let Some(client) = &query.client {
            filter("client_pubkey = ?", Value::Text(client.to_hex()));
        }
        if let Some(method) = &query.method {
            filter("method = ?", Value::Text(method.clone()));
        }
        if let Some(ids) = &query.key_ids {
            let list: Vec<i64> = ids.iter().map(|k| k.0).collect();
            filter(
                "key_id IN (SELECT value FROM json_each(?))",
                Value::Text(to_json(&list, "key ids")?),
            );
        }
        if let Some(decision) = query.decision {
            filter("decision = ?", Value::Text(decision.as_str().to_owned()));
        }
        sql.push_str(" ORDER BY at DESC, seq DESC");
        if let Some(limit) = query.limit {
            sql.push_str(" LIMIT ?");
            args.push(Value::Integer(i64::from(limit)));
        }
        let mut stmt = self.conn.prepare(&sql).ctx("querying the audit log")?;
        collect(
            &mut stmt,
            rusqlite::params_from_iter(args),
            "querying the audit log",
            &self.skipped,
            |row| rows::audit(&SqlRow(row)),
        )
    }

    fn audited_events(&self, since: Timestamp) -> Result<Vec<AuditedEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, at, event_id, client_pubkey, event_created_at FROM audit \
                 WHERE at >= ?1 AND event_id <> '' ORDER BY at, seq",
            )
            .ctx("listing audited events")?;
        collect(
            &mut stmt,
            [ts(since)],
            "listing audited events",
            &self.skipped,
            |row| rows::audited_event(&SqlRow(row)),
        )
    }

    fn audit_chain(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredChainRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "{SELECT_CHAIN} WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))
            .ctx("reading the audit chain")?;
        let mapped = stmt
            .query_map(params![after_seq, limit], |row| {
                Ok(rows::chained(&SqlRow(row)))
            })
            .ctx("reading the audit chain")?;
        let mut out = Vec::new();
        for row in mapped {
            out.push(row.ctx("reading the audit chain")??);
        }
        Ok(out)
    }

    fn audit_checkpoint(&self) -> Result<Option<ChainPoint>, StoreError> {
        checkpoint(&self.conn)
    }

    fn audit_head(&self) -> Result<Option<ChainPoint>, StoreError> {
        let tail = audit_tail(&self.conn)?;
        Ok((tail.seq != 0).then_some(tail))
    }

    fn served_relays(&self) -> Result<Option<ServedRelays>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, relays, recorded_at FROM served_relays WHERE id = 1")
            .ctx("reading the served relays")?;
        let rows = collect(
            &mut stmt,
            [],
            "reading the served relays",
            &self.skipped,
            |row| rows::served_relays(&SqlRow(row)),
        )?;
        Ok(rows.into_iter().next())
    }

    fn beat(
        &mut self,
        replica: &ReplicaId,
        incarnation: &str,
        lease_ms: u64,
    ) -> Result<Vec<ReplicaBeat>, StoreError> {
        let now = now_ms();
        let lease = i64::try_from(lease_ms).unwrap_or(i64::MAX);
        // Our own run beats again; another run's row is taken over only
        // once it is past its lease (that process stopped).
        let changed = self
            .conn
            .prepare_cached(
                "INSERT INTO replicas (replica, incarnation, started_at, beat_ms) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (replica) DO UPDATE SET beat_ms = excluded.beat_ms, \
                 started_at = CASE WHEN replicas.incarnation = excluded.incarnation \
                   THEN replicas.started_at ELSE excluded.started_at END, \
                 incarnation = excluded.incarnation \
                 WHERE replicas.incarnation = excluded.incarnation \
                    OR replicas.beat_ms < excluded.beat_ms - ?5",
            )
            .and_then(|mut s| {
                s.execute(params![
                    replica.as_str(),
                    incarnation,
                    now / 1000,
                    now,
                    lease
                ])
            })
            .ctx("recording a heartbeat")?;
        if changed == 0 {
            return Err(rows::name_in_use(replica));
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT replica, started_at, beat_ms, incarnation FROM replicas ORDER BY replica",
            )
            .ctx("listing replicas")?;
        let found = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .ctx("listing replicas")?;
        Ok(rows::replica_beats(found, now))
    }

    fn retire(&mut self, replica: &ReplicaId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM replicas WHERE replica = ?1")
            .and_then(|mut s| s.execute([replica.as_str()]))
            .ctx("removing a heartbeat")?;
        Ok(())
    }

    fn claim(
        &mut self,
        replica: &ReplicaId,
        events: &[EventId],
        at: Timestamp,
    ) -> Result<Vec<(EventId, Claim)>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a claim")?;
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let hex = event.to_hex();
            tx.prepare_cached(
                "INSERT INTO answers (request_event, replica, answer, at) VALUES (?1, ?2, NULL, ?3) \
                 ON CONFLICT (request_event) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![hex, replica.as_str(), ts(at)]))
            .ctx("claiming a request")?;
            let (holder, answer): (String, Option<String>) = tx
                .prepare_cached("SELECT replica, answer FROM answers WHERE request_event = ?1")
                .and_then(|mut s| s.query_row([&hex], |r| Ok((r.get(0)?, r.get(1)?))))
                .ctx("reading a claim")?;
            out.push((*event, rows::claim(replica, &holder, answer)));
        }
        tx.commit().ctx("committing a claim")?;
        Ok(out)
    }

    fn adopt_held(
        &mut self,
        replica: &ReplicaId,
        from: &ReplicaId,
    ) -> Result<Vec<(ApprovalId, String)>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting an adoption")?;
        let adopted: Vec<(String, String, String)> = tx
            .prepare_cached(
                "UPDATE held_requests SET holder = ?1 WHERE holder = ?2 \
                 RETURNING approval_id, request_event_id, request_event",
            )
            .and_then(|mut s| {
                s.query_map(params![replica.as_str(), from.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
            })
            .ctx("adopting held requests")?;
        for (_, event_id, _) in &adopted {
            tx.prepare_cached(
                "UPDATE answers SET replica = ?1 WHERE request_event = ?2 AND replica = ?3",
            )
            .and_then(|mut s| s.execute(params![replica.as_str(), event_id, from.as_str()]))
            .ctx("adopting a held request's claim")?;
        }
        tx.commit().ctx("committing an adoption")?;
        Ok(adopted
            .into_iter()
            .map(|(id, _, event)| (ApprovalId(id), event))
            .collect())
    }

    fn prune_answers(&mut self, before: Timestamp) -> Result<u64, StoreError> {
        let removed = self
            .conn
            .prepare_cached("DELETE FROM answers WHERE at < ?1")
            .and_then(|mut s| s.execute([ts(before)]))
            .ctx("pruning answers")?;
        self.conn
            .prepare_cached("DELETE FROM replicas WHERE beat_ms < ?1")
            .and_then(|mut s| s.execute([now_ms().saturating_sub(DAY_MS)]))
            .ctx("pruning silent replicas")?;
        Ok(removed as u64)
    }

    fn put_dashboard_secret(
        &mut self,
        kind: DashboardSecret,
        digest: &[u8; 32],
        expires_at: Timestamp,
        user: DashboardUser,
    ) -> Result<(), StoreError> {
        let table = kind.table();
        let tx = self.conn.transaction().ctx("keeping a dashboard secret")?;
        tx.execute(
            &format!("DELETE FROM {table} WHERE expires_at <= ?1"),
            [ts(Timestamp::now())],
        )
        .ctx("dropping expired dashboard secrets")?;
        let kept = tx.execute(
            &format!(
                "INSERT OR REPLACE INTO {table} (digest, expires_at, operator_id) VALUES (?1, ?2, ?3)"
            ),
            params![digest.as_slice(), ts(expires_at), user.operator_id()],
        );
        match kept {
            Ok(_) => {}
            Err(e) if is_foreign_key_violation(&e) => {
                return Err(StoreError::NotFound("that operator".into()));
            }
            Err(e) => return Err(db_error("keeping a dashboard secret", e)),
        }
        tx.commit().ctx("keeping a dashboard secret")
    }

    fn check_dashboard_secret(
        &mut self,
        kind: DashboardSecret,
        digest: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<DashboardUser>, StoreError> {
        let table = kind.table();
        let found: Option<Option<i64>> = match kind {
            // Deleting is the check: of two replicas redeeming one link at
            // once, one deletes the row.
            DashboardSecret::Login => self
                .conn
                .query_row(
                    &format!(
                        "DELETE FROM {table} WHERE digest = ?1 AND expires_at > ?2 \
                         RETURNING operator_id"
                    ),
                    params![digest.as_slice(), ts(now)],
                    |r| r.get(0),
                )
                .optional()
                .ctx("redeeming a dashboard login")?,
            DashboardSecret::Session => self
                .conn
                .query_row(
                    &format!(
                        "SELECT operator_id FROM {table} WHERE digest = ?1 AND expires_at > ?2"
                    ),
                    params![digest.as_slice(), ts(now)],
                    |r| r.get(0),
                )
                .optional()
                .ctx("looking up a dashboard session")?,
        };
        Ok(found.map(DashboardUser::from_operator_id))
    }

    fn remove_dashboard_secret(
        &mut self,
        kind: DashboardSecret,
        digest: &[u8; 32],
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!("DELETE FROM {} WHERE digest = ?1", kind.table()),
                [digest.as_slice()],
            )
            .ctx("removing a dashboard secret")?;
        Ok(())
    }

    fn add_operator(&mut self, operator: &NewOperator) -> Result<OperatorId, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting to add an operator")?;
        let all = matches!(operator.keys, KeyScope::All);
        let inserted = tx.execute(
            "INSERT INTO operators (name, role, all_keys, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                operator.name,
                operator.role.as_str(),
                i64::from(all),
                ts(operator.created_at)
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Duplicate(format!(
                    "an operator named {:?}",
                    operator.name
                )));
            }
            Err(e) => return Err(db_error("adding an operator", e)),
        }
        let id = tx.last_insert_rowid();
        if let KeyScope::Keys(keys) = &operator.keys {
            for key in keys {
                match tx.execute(
                    "INSERT OR IGNORE INTO operator_keys (operator_id, key_id) VALUES (?1, ?2)",
                    params![id, key.0],
                ) {
                    Ok(_) => {}
                    Err(e) if is_foreign_key_violation(&e) => {
                        return Err(StoreError::NotFound(format!("key {key}")));
                    }
                    Err(e) => return Err(db_error("adding an operator's keys", e)),
                }
            }
        }
        tx.commit().ctx("committing the new operator")?;
        Ok(OperatorId(id))
    }

    fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        let mut keys: std::collections::BTreeMap<i64, Vec<KeyId>> = Default::default();
        {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT operator_id, key_id FROM operator_keys ORDER BY key_id")
                .ctx("listing operators' keys")?;
            let mapped = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .ctx("listing operators' keys")?;
            for pair in mapped {
                let (operator, key) = pair.ctx("listing operators' keys")?;
                keys.entry(operator).or_default().push(KeyId(key));
            }
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, name, role, all_keys, created_at FROM operators ORDER BY id",
            )
            .ctx("listing operators")?;
        collect(&mut stmt, [], "listing operators", &self.skipped, |row| {
            let id: i64 = row.get(0).unwrap_or_default();
            rows::operator(&SqlRow(row), keys.get(&id).cloned().unwrap_or_default())
        })
    }

    fn remove_operator(&mut self, name: &str) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting to remove an operator")?;
        // Its answers to requests still waiting are withdrawn.
        let pending = to_json(&ApprovalStatus::Pending, "an approval status")?;
        tx.execute(
            "UPDATE approvals SET votes = (SELECT json_group_array(json(value)) \
             FROM json_each(approvals.votes) WHERE json_extract(value, '$.by') <> ?1) \
             WHERE status = ?2",
            params![name, pending],
        )
        .ctx("withdrawing an operator's votes")?;
        // Its keys, login links and sessions go with it (ON DELETE CASCADE);
        // deleted explicitly too, so the same holds whatever the pragma.
        for table in ["dashboard_logins", "dashboard_sessions", "operator_keys"] {
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE operator_id = (SELECT id FROM operators WHERE name = ?1)"
                ),
                [name],
            )
            .ctx("removing an operator's logins")?;
        }
        let removed = tx
            .execute("DELETE FROM operators WHERE name = ?1", [name])
            .ctx("removing an operator")?;
        if removed == 0 {
            return Err(StoreError::NotFound(format!("operator {name:?}")));
        }
        tx.commit().ctx("committing the operator removal")
    }

    fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        // IMMEDIATE takes the write lock up front: a deferred transaction
        // that has to upgrade can fail at once instead of waiting.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a write transaction")?;
        let mut tail = None;
        for change in changes {
            apply_change(&tx, change, &mut tail)?;
        }
        tx.commit().ctx("committing changes")
    }

    fn commits_inline(&self) -> bool {
        true
    }

    fn apply_without_waiting(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(Duration::ZERO)
            .ctx("setting the busy timeout")?;
        let result = self.apply(changes);
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .ctx("setting the busy timeout")?;
        result
    }

    fn external_version(&mut self) -> Result<u64, StoreError> {
        // Asked after every batch the writer commits: prepared once.
        let version: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
            .ctx("reading the data version")?;
        Ok(version.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::RequestSummary;

    const FIRST: &str = "CREATE TABLE a (x INTEGER);";
    const SECOND: &str = "INSERT INTO a VALUES (1);";
    const THIRD: &str = "INSERT INTO a VALUES (2);";
    const BROKEN: &str = "INSERT INTO a VALUES (3); THIS IS NOT SQL;";

    fn version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    fn rows(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT x FROM a ORDER BY rowid").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn migrations_apply_in_order_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &[FIRST, SECOND]).unwrap();
        assert_eq!(version(&conn), 2);
        assert_eq!(rows(&conn), [1]);

        // Re-running applies nothing; a longer list applies only the new one.
        migrate(&mut conn, &[FIRST, SECOND]).unwrap();
        migrate(&mut conn, &[FIRST, SECOND, THIRD]).unwrap();
        assert_eq!(version(&conn), 3);
        assert_eq!(rows(&conn), [1, 2]);
    }

    #[test]
    fn failed_migration_leaves_the_database_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &[FIRST]).unwrap();
        let err = migrate(&mut conn, &[FIRST, SECOND, BROKEN]).unwrap_err();
        assert!(
            matches!(err, StoreError::Database(ref m) if m.contains("migration 3")),
            "{err}"
        );
        assert_eq!(version(&conn), 1);
        assert!(rows(&conn).is_empty());
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &[FIRST, SECOND]).unwrap();
        let err = migrate(&mut conn, &[FIRST]).unwrap_err();
        assert!(matches!(
            err,
            StoreError::SchemaTooNew { found: 2, known: 1 }
        ));
    }

    #[test]
    fn audit_rows_survive_the_audit_rebuild() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &MIGRATIONS[..1]).unwrap();
        let insert = "INSERT INTO audit (at, key_id, client_pubkey, event_id, request_id, \
                      method, decision, outcome) VALUES (?1, 1, 'c', ?2, '1', 'ping', 'allowed', 'ok')";
        conn.execute(insert, params![5, "e1"]).unwrap();
        conn.execute(insert, params![6, "e2"]).unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        conn.execute(insert, params![7, "e3"]).unwrap();
        let rows: Vec<(i64, String)> = conn
            .prepare("SELECT seq, event_id FROM audit ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let expected = [(1, "e1"), (2, "e2"), (3, "e3")].map(|(seq, id)| (seq, id.to_owned()));
        assert_eq!(rows, expected);
        let sequences: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_sequence WHERE name = 'audit'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            sequences, 0,
            "audit inserts no longer touch sqlite_sequence"
        );
    }

    #[test]
    fn untagged_summaries_get_the_tag_their_shape_implies() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &MIGRATIONS[..2]).unwrap();
        conn.execute(
            "INSERT INTO keys (id, name, user_pubkey, signer_pubkey, user_ncryptsec, \
             signer_ncryptsec, created_at) VALUES (1, 'k', 'u', 's', 'x', 'y', 0)",
            [],
        )
        .unwrap();
        let peer = "ab".repeat(32);
        let legacy = [
            (
                "a1",
                r#"{"kind":1,"content":"gm","tags":[["t","x"]],"created_at":null}"#.to_owned(),
            ),
            ("a2", format!(r#"{{"peer":"{peer}","plaintext":"hi"}}"#)),
            ("a3", format!(r#"{{"peer":"{peer}","ciphertext_len":8}}"#)),
            ("a4", r#"{"method":"ping"}"#.to_owned()),
            ("a5", "not json".to_owned()),
            ("a6", "[1, 2]".to_owned()),
        ];
        for (id, summary) in &legacy {
            conn.execute(
                "INSERT INTO approvals (id, key_id, client_pubkey, metadata, request_id, method, \
                 kind, summary, created_at, expires_at, status) \
                 VALUES (?1, 1, 'c', '{}', 'r', 'sign_event', 1, ?2, 0, 60, '{\"status\":\"pending\"}')",
                params![id, summary],
            )
            .unwrap();
        }
        migrate(&mut conn, MIGRATIONS).unwrap();
        let read = |id: &str| -> RequestSummary {
            let text: String = conn
                .query_row("SELECT summary FROM approvals WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .unwrap();
            serde_json::from_str(&text).unwrap()
        };
        assert_eq!(
            read("a1"),
            RequestSummary::SignEvent {
                kind: 1,
                content: "gm".into(),
                content_hidden: 0,
                tags: vec![vec!["t".into(), "x".into()]],
                tags_hidden: 0,
                created_at: None,
            }
        );
        assert!(
            matches!(read("a2"), RequestSummary::Encrypt { plaintext, .. } if plaintext == "hi")
        );
        assert!(matches!(
            read("a3"),
            RequestSummary::Decrypt {
                ciphertext_len: 8,
                ..
            }
        ));
        assert_eq!(read("a4"), RequestSummary::Other);
        assert_eq!(read("a5"), RequestSummary::Other);
        assert_eq!(read("a6"), RequestSummary::Other);
    }

    #[test]
    fn audit_rows_from_before_the_chain_are_chained_by_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rampart.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate(&mut conn, &MIGRATIONS[..(CHAIN_MIGRATION - 1) as usize]).unwrap();
            for (seq, created) in [(1, Some(5)), (2, None), (4, Some(9))] {
                conn.execute(
                    "INSERT INTO audit (seq, at, key_id, client_pubkey, event_id, request_id, \
                     method, kind, decision, outcome, signed_event_id, event_created_at, events) \
                     VALUES (?1, 10, 1, 'c', 'e', 'r', 'ping', NULL, 'allowed', 'ok', NULL, ?2, 1)",
                    params![seq, created],
                )
                .unwrap();
            }
        }
        let mut store = SqliteStore::open(&path).unwrap();
        let verified = store::verify_store(&store, None).unwrap();
        assert_eq!(verified.rows, 3);
        assert_eq!(verified.head.map(|h| h.seq), Some(4));
        // New rows chain on after them.
        store
            .apply(&[Change::Audit(AuditEntry {
                seq: 0,
                at: Timestamp::from_secs(20),
                key_id: KeyId(1),
                client: Some(PublicKey::from_byte_array([2; 32])),
                event_id: Some(EventId::from_byte_array([3; 32])),
                event_created_at: Timestamp::from_secs(20),
                events: 1,
                request_id: "new".into(),
                method: "ping".into(),
                kind: None,
                decision: store::AuditDecision::Allowed,
                outcome: "ok".into(),
                signed_event_id: None,
                operator: None,
            })])
            .unwrap();
        let verified = store::verify_store(&store, verified.head).unwrap();
        assert_eq!((verified.rows, verified.head.map(|h| h.seq)), (4, Some(5)));
    }

    #[test]
    fn timestamps_saturate_instead_of_wrapping() {
        assert_eq!(ts(Timestamp::from_secs(u64::MAX)), i64::MAX);
        assert_eq!(ts(Timestamp::from_secs(7)), 7);
    }
}
