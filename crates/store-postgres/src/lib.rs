//! The PostgreSQL backend of the [`Store`] trait: one database shared by any
//! number of Rampart processes (replicas, the CLI, dashboards), held to the
//! same shared suite as the SQLite backend.
//!
//! Driver: `postgres` (rust-postgres, the synchronous face of
//! `tokio-postgres`): well kept, no ORM, and synchronous like the trait,
//! which is used from one thread at a time (the bunker's writer thread,
//! a CLI command). It must not be called from inside an async task: the
//! client runs its own small runtime.
//!
//! The schema is built by numbered migrations (`migrations/NNNN_*.sql`),
//! applied in order inside one transaction under an advisory lock, so
//! replicas starting together migrate once; `rampart_schema` records how
//! many ran, and a database from a newer Rampart is refused.
//!
//! TLS: see [`tls`] (`sslmode=require`, and `sslrootcert=PATH` for a private
//! CA; the server certificate is always verified).
//!
//! Other processes' writes are noticed through `store_version`, a counter
//! every write transaction moves on (the role SQLite's `data_version` plays).

use std::cell::{RefCell, RefMut};
use std::time::{Duration, Instant};

use nip46::nostr::prelude::{EventId, PublicKey, Timestamp};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row};

mod tls;

use store::chain::{self, ChainPoint, ChainedRow, StoredChainRow};
use store::codec::{relays_to_json, rules_to_json, storable, to_json};
use store::rows::{self, RawRow};
use store::{
    ApprovalId, ApprovalStatus, AuditEntry, AuditQuery, AuditedEvent, Change, Claim,
    ConnectionToken, DashboardSecret, KeyId, NewKey, NewToken, PendingApproval, ReplicaBeat,
    ReplicaId, Rule, SealedAnswer, ServedRelays, Session, Store, StoreError, StoredKey, TokenId,
};
use store::{
    DashboardUser, KeyScope, NewOperator, Operator, OperatorId, ResealedKey, VaultParams, Vote,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The migration that adds the audit chain: the rows already there are
/// chained right after it.
const CHAIN_MIGRATION: i64 = 4;

/// The migrations, in order. Never edit a released one: add a new file.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_replicas.sql"),
    include_str!("migrations/0003_key_locks.sql"),
    include_str!("migrations/0004_audit_chain.sql"),
    include_str!("migrations/0005_vault_kek.sql"),
    include_str!("migrations/0006_sensitive_kinds.sql"),
    include_str!("migrations/0007_operators.sql"),
];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock migrations hold (any fixed number of our own).
const MIGRATION_LOCK: i64 = 0x0072_616d_7061_7274; // "rampart"

/// How long connecting may take, and how long unacknowledged data may wait
/// on a connection before it counts as broken (unless the URL sets them):
/// a replica cut off from the database must learn it in seconds, not after
/// the kernel's TCP retransmission timeout (minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);

/// After a failed reconnection, the next waits at least this long (doubling
/// up to [`MAX_RECONNECT_WAIT`]).
const FIRST_RECONNECT_WAIT: Duration = Duration::from_millis(250);
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(2);

/// How to reach the database again after the connection broke.
struct Connector {
    config: postgres::Config,
    tls: MakeRustlsConnect,
    /// No attempt before this (backoff after a failed one).
    not_before: Option<Instant>,
    wait: Duration,
}

impl Connector {
    fn new(url: &str) -> Result<Self, StoreError> {
        let (url, tls) = tls::connector(url)?;
        let mut config: postgres::Config = url.parse().map_err(|_| {
            StoreError::Database(
                "the database URL is not a valid PostgreSQL connection string".to_owned(),
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        config.keepalives(true);
        config.keepalives_idle(KEEPALIVE_IDLE);
        Ok(Connector {
            config,
            tls,
            not_before: None,
            wait: FIRST_RECONNECT_WAIT,
        })
    }

    fn connect(&self) -> Result<Client, StoreError> {
        self.config.connect(self.tls.clone()).map_err(|e| {
            db_error(
                "connecting to PostgreSQL (check the server runs and the URL's host, port, user and database)",
                e,
            )
        })
    }

    /// A fresh client, unless the last failure was too recent.
    fn reconnect(&mut self) -> Result<Client, StoreError> {
        let now = Instant::now();
        if self.not_before.is_some_and(|t| now < t) {
            return Err(StoreError::Database(
                "PostgreSQL is unreachable; reconnecting with backoff".to_owned(),
            ));
        }
        match self.connect() {
            Ok(client) => {
                tracing::info!("reconnected to PostgreSQL");
                self.not_before = None;
                self.wait = FIRST_RECONNECT_WAIT;
                Ok(client)
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = self.wait.as_millis() as u64, "PostgreSQL reconnection failed");
                self.not_before = Some(now + self.wait);
                self.wait = (self.wait * 2).min(MAX_RECONNECT_WAIT);
                Err(e)
            }
        }
    }
}

/// A [`Store`] in one PostgreSQL database.
///
/// A broken connection (server restart, network cut) is replaced on the
/// next call, with backoff; the call that found it broken fails.
pub struct PostgresStore {
    client: RefCell<Client>,
    connector: RefCell<Connector>,
    /// What the last listing skipped (see [`PostgresStore::skipped_rows`]).
    skipped: RefCell<Vec<String>>,
    /// `store_version` as this store last saw it.
    seen: i64,
    /// What [`Store::external_version`] reports.
    external: u64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connect to `url` (`postgres://…`) and bring the schema up to date.
    /// Fails with [`StoreError::SchemaTooNew`] for a database a newer
    /// Rampart wrote. The error never includes the URL (it may hold a
    /// password).
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let connector = Connector::new(url)?;
        let mut client = connector.connect()?;
        migrate(&mut client)?;
        let seen = current_version(&mut client)?;
        Ok(PostgresStore {
            client: RefCell::new(client),
            connector: RefCell::new(connector),
            skipped: RefCell::new(Vec::new()),
            seen,
            external: 0,
        })
    }

    /// The client, reconnected first if its connection broke.
    fn conn(&self) -> Result<RefMut<'_, Client>, StoreError> {
        let mut client = self.client.borrow_mut();
        if client.is_closed() {
            *client = self.connector.borrow_mut().reconnect()?;
        }
        Ok(client)
    }

    /// The rows the last listing skipped because they could not be read
    /// back, each described (table, row, column, problem; never a secret).
    pub fn skipped_rows(&self) -> Vec<String> {
        self.skipped.borrow().clone()
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let row = self
            .conn()?
            .query_one("SELECT version FROM rampart_schema", &[])
            .ctx("reading the schema version")?;
        row.try_get(0).ctx("reading the schema version")
    }

    /// Rows of `sql`, each read with `read`; unreadable rows are skipped and
    /// noted (as the SQLite backend does).
    fn collect<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &str,
        read: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.skipped.borrow_mut().clear();
        let rows = self.conn()?.query(sql, params).ctx(what)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            match read(row) {
                Ok(value) => out.push(value),
                Err(StoreError::Corrupt(message)) => {
                    tracing::warn!(%message, "{what}: skipped a row that cannot be read");
                    self.skipped.borrow_mut().push(message);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Run `work` in one transaction that also moves `store_version` on.
    fn write<T>(
        &mut self,
        what: &str,
        work: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_if(what, true, work)
    }

    /// Run `work` in one transaction, moving `store_version` on when what it
    /// writes is `mirrored` by running bunkers (they reload when it moves).
    fn write_if<T>(
        &mut self,
        what: &str,
        mirrored: bool,
        work: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.conn()?;
        let mut tx = client.transaction().ctx(what)?;
        let value = work(&mut tx)?;
        if !mirrored {
            tx.commit().ctx(what)?;
            return Ok(value);
        }
        let row = tx
            .query_one(
                "UPDATE store_version SET version = version + 1 WHERE id = 1 RETURNING version",
                &[],
            )
            .ctx("moving the store version on")?;
        let version: i64 = row.try_get(0).ctx("moving the store version on")?;
        tx.commit().ctx(what)?;
        drop(client);
        // Our own write alone moves it by one; more means others wrote too,
        // which the next `external_version` must report.
        if version == self.seen + 1 {
            self.seen = version;
        }
        Ok(value)
    }
}

fn current_version(client: &mut Client) -> Result<i64, StoreError> {
    let row = client
        .query_one("SELECT version FROM store_version WHERE id = 1", &[])
        .ctx("reading the store version")?;
    row.try_get(0).ctx("reading the store version")
}

/// Apply the migrations the database has not seen yet, in one transaction,
/// under an advisory lock (replicas starting together migrate once).
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let known = SCHEMA_VERSION;
    let mut tx = client.transaction().ctx("starting the schema migration")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .ctx("taking the migration lock")?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS rampart_schema (version BIGINT NOT NULL)")
        .ctx("creating the schema table")?;
    let found: i64 = match tx
        .query_opt("SELECT version FROM rampart_schema", &[])
        .ctx("reading the schema version")?
    {
        Some(row) => row.try_get(0).ctx("reading the schema version")?,
        None => {
            tx.execute("INSERT INTO rampart_schema (version) VALUES (0)", &[])
                .ctx("recording the schema version")?;
            0
        }
    };
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    let Ok(done) = usize::try_from(found) else {
        return Err(StoreError::Corrupt(format!(
            "the schema version is {found}; restore the database from a backup"
        )));
    };
    for (version, sql) in (1_i64..).zip(MIGRATIONS).skip(done) {
        tx.batch_execute(sql)
            .map_err(|e| db_error(&format!("applying schema migration {version}"), e))?;
        if version == CHAIN_MIGRATION {
            chain_existing_audit_rows(&mut tx)?;
        }
        tx.execute("UPDATE rampart_schema SET version = $1", &[&version])
            .ctx("recording the schema version")?;
        tracing::info!(version, "applied database migration");
    }
    tx.commit().ctx("committing the schema migration")
}

/// Chain the audit rows written before the chain existed, oldest first,
/// and set the head after the newest.
fn chain_existing_audit_rows(tx: &mut postgres::Transaction<'_>) -> Result<(), StoreError> {
    let what = "chaining the audit log";
    let rows = tx
        .query(
            &format!("{SELECT_CHAIN_BEFORE_OPERATORS} ORDER BY seq"),
            &[],
        )
        .ctx(what)?;
    let mut head = ChainPoint {
        seq: 0,
        hash: chain::GENESIS,
    };
    let update = tx
        .prepare("UPDATE audit SET row_hash = $1 WHERE seq = $2")
        .ctx(what)?;
    for row in &rows {
        let stored = rows::chained(&PgRow(row))?;
        head = ChainPoint {
            seq: stored.row.seq,
            hash: stored.row.hash(&head.hash),
        };
        tx.execute(&update, &[&head.hash.as_slice(), &head.seq])
            .ctx(what)?;
    }
    tx.execute(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2)",
        &[&head.seq, &head.hash.as_slice()],
    )
    .ctx(what)?;
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
     NULL::TEXT AS operator, row_hash FROM audit";

/// Lock the chain's head for this transaction and read it: replicas append
/// one transaction after another. Taken before anything else the
/// transaction locks, so two of them never wait on each other in a cycle.
fn lock_audit_head(tx: &mut impl GenericClient) -> Result<ChainPoint, StoreError> {
    let row = tx
        .query_one(
            "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .ctx("locking the audit head")?;
    rows::chain_point(&PgRow(&row), "audit_head", "hash")
}

fn save_audit_head(tx: &mut impl GenericClient, head: ChainPoint) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        &[&head.seq, &head.hash.as_slice()],
    )
    .ctx("moving the audit head")?;
    Ok(())
}

fn insert_audit(
    tx: &mut impl GenericClient,
    e: &AuditEntry,
    tail: &mut ChainPoint,
) -> Result<(), StoreError> {
    let seq = tail
        .seq
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt("the audit log's seq is at its maximum".into()))?;
    let row = ChainedRow::of(seq, e);
    let hash = row.hash(&tail.hash);
    tx.execute(
        "INSERT INTO audit (seq, at, key_id, client_pubkey, event_id, request_id, method, \
         kind, decision, outcome, signed_event_id, event_created_at, events, operator, row_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            &row.seq,
            &row.at,
            &row.key_id,
            &row.client_pubkey,
            &row.event_id,
            &row.request_id,
            &row.method,
            &row.kind.and_then(|k| i32::try_from(k).ok()),
            &row.decision,
            &row.outcome,
            &row.signed_event_id,
            &row.event_created_at,
            &row.events,
            &row.operator,
            &hash.as_slice(),
        ],
    )
    .ctx("writing an audit row")?;
    *tail = ChainPoint { seq: row.seq, hash };
    Ok(())
}

fn checkpoint(client: &mut impl GenericClient) -> Result<Option<ChainPoint>, StoreError> {
    let row = client
        .query_opt("SELECT seq, hash FROM audit_checkpoint WHERE id = 1", &[])
        .ctx("reading the audit checkpoint")?;
    row.map(|r| rows::chain_point(&PgRow(&r), "audit_checkpoint", "hash"))
        .transpose()
}

/// Retention: the prefix of the log older than `before` goes; the last row
/// of it becomes the checkpoint.
fn prune_audit(tx: &mut impl GenericClient, before: Timestamp) -> Result<(), StoreError> {
    // Replicas prune too: one at a time, and after the appends before it.
    lock_audit_head(tx)?;
    let last = tx
        .query_opt(
            "SELECT seq, row_hash FROM audit WHERE seq < COALESCE(\
             (SELECT min(seq) FROM audit WHERE at >= $1), 9223372036854775807) \
             ORDER BY seq DESC LIMIT 1",
            &[&ts(before)],
        )
        .ctx("finding the audit rows to prune")?;
    let Some(last) = last else {
        return Ok(());
    };
    let seq: i64 = last.try_get(0).ctx("finding the audit rows to prune")?;
    let hash: Option<Vec<u8>> = last.try_get(1).ctx("finding the audit rows to prune")?;
    let Some(hash) = hash else {
        // An unhashed row: kept for verify to name.
        return Ok(());
    };
    tx.execute(
        "INSERT INTO audit_checkpoint (id, seq, hash) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash \
         WHERE audit_checkpoint.seq < excluded.seq",
        &[&seq, &hash],
    )
    .ctx("moving the audit checkpoint")?;
    let pruned = tx
        .execute("DELETE FROM audit WHERE seq <= $1", &[&seq])
        .ctx("pruning the audit log")?;
    tracing::info!(rows = pruned, up_to = seq, "pruned the audit log");
    Ok(())
}

// ---------------------------------------------------------------------------
// Errors

/// A PostgreSQL error, with what we were doing.
fn db_error(what: &str, e: postgres::Error) -> StoreError {
    // `Display` of a server error is its message; a connection error says
    // which part failed. Neither carries the connection string.
    let detail = match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    };
    // Class 22, "data exception": this job's values, not the database.
    if e.code().is_some_and(|c| c.code().starts_with("22")) {
        return StoreError::Refused(format!("{what}: {detail}"));
    }
    StoreError::Database(format!("{what}: {detail}"))
}

trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, postgres::Error> {
    fn ctx(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| db_error(what, e))
    }
}

fn state(e: &postgres::Error) -> Option<&SqlState> {
    e.code()
}

fn is_unique_violation(e: &postgres::Error) -> bool {
    state(e) == Some(&SqlState::UNIQUE_VIOLATION)
}

fn is_foreign_key_violation(e: &postgres::Error) -> bool {
    state(e) == Some(&SqlState::FOREIGN_KEY_VIOLATION)
}

// ---------------------------------------------------------------------------
// Values in and out

/// Times are BIGINT seconds; past `i64::MAX` they saturate ("never").
fn ts(t: Timestamp) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

fn opt_ts(t: Option<Timestamp>) -> Option<i64> {
    t.map(ts)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A PostgreSQL row, as the model's row readers ([`store::rows`]) see it.
struct PgRow<'a>(&'a Row);

impl RawRow for PgRow<'_> {
    fn int(&self, column: &str) -> Result<Option<i64>, String> {
        // BIGINT columns, and the few INTEGER ones (kinds, fixed ids).
        match self.0.try_get::<_, Option<i64>>(column) {
            Ok(v) => Ok(v),
            Err(_) => self
                .0
                .try_get::<_, Option<i32>>(column)
                .map(|v| v.map(i64::from))
                .map_err(|e| e.to_string()),
        }
    }

    fn text(&self, column: &str) -> Result<Option<String>, String> {
        self.0
            .try_get::<_, Option<String>>(column)
            .map_err(|e| e.to_string())
    }

    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, String> {
        self.0
            .try_get::<_, Option<Vec<u8>>>(column)
            .map_err(|e| e.to_string())
    }
}

// ---------------------------------------------------------------------------
// Writes

/// One change; `tail` is the locked audit head (the transaction holds it
/// whenever it appends audit rows).
fn apply_change(
    tx: &mut impl GenericClient,
    change: &Change,
    tail: &mut Option<ChainPoint>,
) -> Result<(), StoreError> {
    match change {
        Change::Audit(e) => {
            let head = match tail {
                Some(head) => head,
                None => tail.insert(lock_audit_head(tx)?),
            };
            insert_audit(tx, e, head)
        }
        Change::PruneAudit { before } => prune_audit(tx, *before),
        Change::ConsumeToken { id, client, at } => {
            let updated = tx
                .execute(
                    "UPDATE tokens SET used_at = $1, used_by = $2 WHERE id = $3 AND used_at IS NULL",
                    &[&ts(*at), &client.to_hex(), &id.0],
                )
                .ctx("consuming a connection token")?;
            if updated == 1 {
                return Ok(());
            }
            let exists = tx
                .query_opt("SELECT 1 FROM tokens WHERE id = $1", &[&id.0])
                .ctx("looking up a connection token")?
                .is_some();
            let name = format!("connection token {}", id.0);
            Err(if exists {
                StoreError::AlreadyUsed(name)
            } else {
                StoreError::NotFound(name)
            })
        }
        Change::RevokeToken { id, at } => {
            tx.execute(
                "UPDATE tokens SET expires_at = LEAST(COALESCE(expires_at, $1), $1) \
                 WHERE id = $2 AND used_at IS NULL",
                &[&ts(*at), &id.0],
            )
            .ctx("revoking a token")?;
            Ok(())
        }
        Change::PutSession(s) => put_session(tx, s),
        Change::NoteVote { id, vote } => add_vote(tx, id, vote).map(|_| ()),
        Change::SetQuorum { key_id, quorum } => {
            let quorum = i32::try_from(*quorum).unwrap_or(i32::MAX);
            let key = key_id.map(|k| k.0);
            let changed = tx
                .execute(
                    "UPDATE keys SET quorum = $1 WHERE $2::BIGINT IS NULL OR id = $2",
                    &[&quorum, &key],
                )
                .ctx("setting a key's quorum")?;
            match key_id {
                Some(id) if changed == 0 => Err(StoreError::NotFound(format!("key {id}"))),
                _ => Ok(()),
            }
        }
        Change::SetSensitiveKinds { key_id, kinds } => {
            let text = kinds.as_deref().map(store::codec::kinds_to_text);
            let changed = tx
                .execute(
                    "UPDATE keys SET sensitive_kinds = $1 WHERE id = $2",
                    &[&text, &key_id.0],
                )
                .ctx("setting a key's sensitive kinds")?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("key {key_id}")));
            }
            Ok(())
        }
        Change::SetKeyLock { key_id, locked_at } => {
            // Locking keeps the first lock time; unlocking clears it.
            let locked_at = locked_at.map(ts);
            let key_id = key_id.map(|k| k.0);
            let changed = tx
                .execute(
                    "UPDATE keys SET locked_at = CASE WHEN $1::BIGINT IS NULL THEN NULL \
                     ELSE COALESCE(locked_at, $1) END WHERE $2::BIGINT IS NULL OR id = $2",
                    &[&locked_at, &key_id],
                )
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
            tx.execute(
                "UPDATE sessions SET last_used_at = GREATEST(COALESCE(last_used_at, $1), $1), \
                 request_count = request_count + $2 WHERE key_id = $3 AND client_pubkey = $4",
                &[&ts(*at), &count(*requests), &key_id.0, &client.to_hex()],
            )
            .ctx("recording session use")?;
            Ok(())
        }
        Change::RevokeSession { key_id, client, at } => {
            tx.execute(
                "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $1), revision = revision + 1 \
                 WHERE key_id = $2 AND client_pubkey = $3",
                &[&ts(*at), &key_id.0, &client.to_hex()],
            )
            .ctx("revoking a session")?;
            Ok(())
        }
        Change::AddRules {
            key_id,
            client,
            rules,
        } => edit_rules(tx, *key_id, client, |stored| {
            for rule in rules {
                stored.retain(|r| r.permission != rule.permission);
                stored.push(rule.clone());
            }
        }),
        Change::RemoveRules {
            key_id,
            client,
            permissions,
        } => edit_rules(tx, *key_id, client, |stored| {
            stored.retain(|r| !permissions.contains(&r.permission));
        }),
        Change::ClearConnectReply { key_id, client } => {
            tx.execute(
                "UPDATE sessions SET connect_reply = NULL, revision = revision + 1 \
                 WHERE key_id = $1 AND client_pubkey = $2",
                &[&key_id.0, &client.to_hex()],
            )
            .ctx("clearing a connect reply")?;
            Ok(())
        }
        Change::PutApproval(a) => put_approval(tx, a),
        Change::SetApprovalStatus { id, status } => {
            let ends_hold = !matches!(status, ApprovalStatus::Pending | ApprovalStatus::Decided(_));
            let status = to_json(status, "an approval status")?;
            tx.execute(
                "UPDATE approvals SET status = $1 WHERE id = $2",
                &[&status, &id.0],
            )
            .ctx("updating an approval")?;
            if ends_hold {
                tx.execute("DELETE FROM held_requests WHERE approval_id = $1", &[&id.0])
                    .ctx("ending a hold")?;
            }
            Ok(())
        }
        Change::DecideApproval { id, vote } => {
            if !add_vote(tx, id, vote)? {
                return Err(StoreError::NotFound(format!(
                    "a waiting request {} (it was answered or expired)",
                    id.0
                )));
            }
            Ok(())
        }
        Change::Answer(answer) => record_answer(tx, answer),
        Change::HoldRequest(held) => {
            // The holder claims the request event (unanswered yet), so no
            // other replica takes it for a new request.
            tx.execute(
                "INSERT INTO answers (request_event, replica, answer, at) \
                 VALUES ($1, $2, NULL, (extract(epoch FROM now()))::BIGINT) \
                 ON CONFLICT (request_event) DO NOTHING",
                &[&held.request_event_id.to_hex(), &held.holder.as_str()],
            )
            .ctx("claiming a held request")?;
            let result = tx.execute(
                "INSERT INTO held_requests (approval_id, holder, request_event_id, request_event) \
                 VALUES ($1, $2, $3, $4)",
                &[
                    &held.approval.0,
                    &held.holder.as_str(),
                    &held.request_event_id.to_hex(),
                    &held.request_event,
                ],
            );
            match result {
                Ok(_) => Ok(()),
                Err(e) if is_foreign_key_violation(&e) => {
                    Err(StoreError::NotFound(format!("approval {}", held.approval)))
                }
                Err(e) => Err(db_error("recording a held request", e)),
            }
        }
        Change::RecordServedRelays(served) => {
            let relays = relays_to_json(&served.relays)?;
            tx.execute(
                "INSERT INTO served_relays (id, relays, recorded_at) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET relays = excluded.relays, \
                 recorded_at = excluded.recorded_at",
                &[&relays, &ts(served.recorded_at)],
            )
            .ctx("recording the served relays")?;
            Ok(())
        }
    }
}

/// Exactly once across replicas: the request event's row is ours, or it
/// becomes ours now; another replica's row refuses the whole job.
fn record_answer(tx: &mut impl GenericClient, a: &SealedAnswer) -> Result<(), StoreError> {
    let request = a.request.to_hex();
    let changed = tx
        .execute(
            "INSERT INTO answers (request_event, replica, answer, at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (request_event) DO UPDATE SET answer = excluded.answer, at = excluded.at \
             WHERE answers.replica = excluded.replica",
            &[&request, &a.replica.as_str(), &a.answer, &ts(a.at)],
        )
        .ctx("recording an answer")?;
    if changed == 1 {
        return Ok(());
    }
    let row = tx
        .query_one(
            "SELECT replica FROM answers WHERE request_event = $1",
            &[&request],
        )
        .ctx("looking up who answered a request")?;
    let holder: String = row.try_get(0).ctx("looking up who answered a request")?;
    Err(StoreError::Claimed(
        format!("request event {request}"),
        holder,
    ))
}

/// Milliseconds since the Unix epoch by the server's clock, in SQL: every
/// replica judges heartbeats by this one clock.
const SERVER_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

/// Change a stored session's rules in place (the row locked for the
/// transaction), moving its revision on; a missing session is left alone.
fn edit_rules(
    tx: &mut impl GenericClient,
    key_id: KeyId,
    client: &PublicKey,
    edit: impl FnOnce(&mut Vec<Rule>),
) -> Result<(), StoreError> {
    let client_hex = client.to_hex();
    let Some(row) = tx
        .query_opt(
            "SELECT key_id, client_pubkey, rules FROM sessions \
             WHERE key_id = $1 AND client_pubkey = $2 FOR UPDATE",
            &[&key_id.0, &client_hex],
        )
        .ctx("reading a session's rules")?
    else {
        return Ok(());
    };
    let row = PgRow(&row);
    let mut session_rules =
        rows::RowReader::new(&row, "sessions", &["key_id", "client_pubkey"]).rules("rules")?;
    edit(&mut session_rules);
    let json = rules_to_json(&session_rules)?;
    tx.execute(
        "UPDATE sessions SET rules = $1, revision = revision + 1 \
         WHERE key_id = $2 AND client_pubkey = $3",
        &[&json, &key_id.0, &client_hex],
    )
    .ctx("adding session rules")?;
    Ok(())
}

fn put_session(tx: &mut impl GenericClient, s: &Session) -> Result<(), StoreError> {
    let metadata = to_json(&s.metadata, "client metadata")?;
    let rules = rules_to_json(&s.rules)?;
    let relays = relays_to_json(&s.relays)?;
    let result = tx.execute(
        "INSERT INTO sessions (key_id, client_pubkey, rules, expires_at, created_at, \
         last_used_at, request_count, metadata, requested_perms, origin, relays, revoked_at, \
         connect_reply, revision) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (key_id, client_pubkey) DO UPDATE SET \
         rules = excluded.rules, expires_at = excluded.expires_at, \
         created_at = excluded.created_at, last_used_at = excluded.last_used_at, \
         request_count = excluded.request_count, metadata = excluded.metadata, \
         requested_perms = excluded.requested_perms, origin = excluded.origin, \
         relays = excluded.relays, revoked_at = excluded.revoked_at, \
         connect_reply = excluded.connect_reply, revision = excluded.revision",
        &[
            &s.key_id.0,
            &s.client.to_hex(),
            &rules,
            &opt_ts(s.expires_at),
            &ts(s.created_at),
            &opt_ts(s.last_used_at),
            &count(s.request_count),
            &metadata,
            &s.requested_perms.to_string(),
            &s.origin.as_str(),
            &relays,
            &opt_ts(s.revoked_at),
            &s.connect_reply,
            &count(s.revision),
        ],
    );
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_foreign_key_violation(&e) => {
            Err(StoreError::NotFound(format!("key {}", s.key_id)))
        }
        Err(e) => Err(db_error("saving a session", e)),
    }
}

/// Add a vote to a pending approval's votes, once per person and answer
/// (so an approval holds at most two votes a person: bounded by who may
/// vote); one statement, under the row's lock, so two replicas voting at
/// once both count. Whether the approval is waiting (the vote is on it, now
/// or already).
fn add_vote(tx: &mut impl GenericClient, id: &ApprovalId, vote: &Vote) -> Result<bool, StoreError> {
    let json = to_json(vote, "a vote")?;
    let pending = to_json(&ApprovalStatus::Pending, "an approval status")?;
    let added = tx
        .execute(
            "UPDATE approvals SET votes = (votes::jsonb || jsonb_build_array($1::text::jsonb))::text \
             WHERE id = $2 AND status = $3 AND NOT EXISTS (SELECT 1 FROM \
             jsonb_array_elements(votes::jsonb) AS v WHERE v->>'by' = $4 \
             AND (v->'decision'->>'allow')::boolean = $5)",
            &[&json, &id.0, &pending, &vote.by, &vote.decision.allow],
        )
        .ctx("recording a vote")?;
    if added > 0 {
        return Ok(true);
    }
    let waiting = tx
        .query_opt(
            "SELECT 1 FROM approvals WHERE id = $1 AND status = $2",
            &[&id.0, &pending],
        )
        .ctx("recording a vote")?;
    Ok(waiting.is_some())
}

fn put_approval(tx: &mut impl GenericClient, a: &PendingApproval) -> Result<(), StoreError> {
    let metadata = to_json(&a.metadata, "client metadata")?;
    let votes = to_json(&a.votes, "votes")?;
    let status = to_json(&a.status, "an approval status")?;
    let summary = to_json(&a.summary, "a request summary")?;
    let event = a
        .event
        .as_ref()
        .map(|e| to_json(e, "an unsigned event"))
        .transpose()?;
    let result = tx.execute(
        "INSERT INTO approvals (id, key_id, client_pubkey, metadata, request_id, method, \
         kind, summary, created_at, expires_at, status, event, votes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            &a.id.0,
            &a.key_id.0,
            &a.client.to_hex(),
            &metadata,
            &storable(&a.request_id),
            &a.method.as_str(),
            &a.kind.map(i32::from),
            &summary,
            &ts(a.created_at),
            &ts(a.expires_at),
            &status,
            &event,
            &votes,
        ],
    );
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

impl Store for PostgresStore {
    fn add_key(&mut self, key: &NewKey) -> Result<KeyId, StoreError> {
        self.write("adding a key", |tx| {
            let result = tx.query_one(
                "INSERT INTO keys (name, user_pubkey, signer_pubkey, user_ncryptsec, \
                 signer_ncryptsec, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &key.name,
                    &key.user_pubkey.to_hex(),
                    &key.signer_pubkey.to_hex(),
                    &key.user_secret,
                    &key.signer_secret,
                    &ts(key.created_at),
                ],
            );
            match result {
                Ok(row) => Ok(KeyId(row.try_get(0).ctx("adding a key")?)),
                Err(e) if is_unique_violation(&e) && constraint(&e).contains("signer_pubkey") => {
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
        })
    }

    fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.collect(
            "SELECT id, name, user_pubkey, signer_pubkey, user_ncryptsec, signer_ncryptsec, \
             created_at, locked_at, sensitive_kinds, quorum FROM keys ORDER BY id",
            &[],
            "listing keys",
            |row| rows::key(&PgRow(row)),
        )
    }

    fn remove_key(&mut self, name: &str) -> Result<(), StoreError> {
        self.write("removing a key", |tx| {
            // Tokens, sessions and approvals go with the key (ON DELETE
            // CASCADE); audit rows have no foreign key and stay.
            let removed = tx
                .execute("DELETE FROM keys WHERE name = $1", &[&name])
                .ctx("removing a key")?;
            if removed == 0 {
                return Err(StoreError::NotFound(format!("key {name:?}")));
            }
            Ok(())
        })
    }

    fn replace_signer(
        &mut self,
        key_id: KeyId,
        signer_pubkey: &PublicKey,
        signer_secret: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.write("replacing a signer key", |tx| {
            let changed = match tx.execute(
                "UPDATE keys SET signer_pubkey = $1, signer_ncryptsec = $2 WHERE id = $3",
                &[&signer_pubkey.to_hex(), &signer_secret, &key_id.0],
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
                "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $1), \
                 revision = revision + 1 WHERE key_id = $2",
                &[&ts(at), &key_id.0],
            )
            .ctx("revoking the key's sessions")?;
            tx.execute(
                "UPDATE tokens SET expires_at = LEAST(COALESCE(expires_at, $1), $1) \
                 WHERE key_id = $2 AND used_at IS NULL",
                &[&ts(at), &key_id.0],
            )
            .ctx("revoking the key's tokens")?;
            Ok(())
        })
    }

    fn vault_params(&self) -> Result<Option<VaultParams>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT id, salt, log_n, check_value FROM vault WHERE id = 1",
                &[],
            )
            .ctx("reading the vault parameters")?;
        row.map(|r| rows::vault_params(&PgRow(&r))).transpose()
    }

    fn init_vault(&mut self, params: &VaultParams) -> Result<VaultParams, StoreError> {
        self.write("creating the vault", |tx| {
            tx.execute(
                "INSERT INTO vault (id, salt, log_n, check_value) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &params.salt.as_slice(),
                    &i32::from(params.log_n),
                    &params.check,
                ],
            )
            .ctx("creating the vault")?;
            Ok(())
        })?;
        self.vault_params()?
            .ok_or_else(|| StoreError::Database("the vault row vanished".into()))
    }

    fn reseal_keys(
        &mut self,
        vault: Option<(&VaultParams, &VaultParams)>,
        keys: &[ResealedKey],
    ) -> Result<(), StoreError> {
        self.write("resealing keys", |tx| {
            if let Some((from, to)) = vault {
                let row = tx
                    .query_opt("SELECT salt FROM vault WHERE id = 1 FOR UPDATE", &[])
                    .ctx("reading the vault parameters")?;
                let salt: Option<Vec<u8>> = match row {
                    Some(r) => Some(r.try_get(0).ctx("reading the vault parameters")?),
                    None => None,
                };
                if salt.as_deref() != Some(&from.salt[..]) {
                    return Err(StoreError::Changed("the vault".into()));
                }
                // Keys added meanwhile wait for this lock, then see the new vault.
                tx.batch_execute("LOCK TABLE keys IN SHARE ROW EXCLUSIVE MODE")
                    .ctx("locking the keys")?;
                let count: i64 = tx
                    .query_one("SELECT count(*) FROM keys", &[])
                    .and_then(|r| r.try_get(0))
                    .ctx("counting keys")?;
                if usize::try_from(count).ok() != Some(keys.len()) {
                    return Err(StoreError::Changed("the set of keys".into()));
                }
                tx.execute(
                    "UPDATE vault SET salt = $1, log_n = $2, check_value = $3 WHERE id = 1",
                    &[&to.salt.as_slice(), &i32::from(to.log_n), &to.check],
                )
                .ctx("replacing the vault parameters")?;
            }
            let update = tx
                .prepare(
                    "UPDATE keys SET user_ncryptsec = $1, signer_ncryptsec = $2 \
                     WHERE id = $3 AND user_ncryptsec = $4 AND signer_ncryptsec = $5",
                )
                .ctx("resealing keys")?;
            for k in keys {
                let changed = tx
                    .execute(
                        &update,
                        &[
                            &k.user_secret,
                            &k.signer_secret,
                            &k.id.0,
                            &k.replaces.0,
                            &k.replaces.1,
                        ],
                    )
                    .ctx("resealing a key")?;
                let exists = changed == 0
                    && tx
                        .query_opt("SELECT 1 FROM keys WHERE id = $1", &[&k.id.0])
                        .ctx("resealing a key")?
                        .is_some();
                if exists {
                    return Err(StoreError::Changed(format!("key {}", k.id)));
                }
            }
            Ok(())
        })
    }

    fn add_token(&mut self, token: &NewToken) -> Result<TokenId, StoreError> {
        self.write("adding a connection token", |tx| {
            let result = tx.query_one(
                "INSERT INTO tokens (key_id, secret_hash, grant_perms, expires_at, created_at, \
                 label) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &token.key_id.0,
                    &token.secret_hash.0.as_slice(),
                    &token.grant.to_string(),
                    &opt_ts(token.expires_at),
                    &ts(token.created_at),
                    &token.label,
                ],
            );
            match result {
                Ok(row) => Ok(TokenId(row.try_get(0).ctx("adding a connection token")?)),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Duplicate(
                    "a connection token with this secret".to_owned(),
                )),
                Err(e) if is_foreign_key_violation(&e) => {
                    Err(StoreError::NotFound(format!("key {}", token.key_id)))
                }
                Err(e) => Err(db_error("adding a connection token", e)),
            }
        })
    }

    fn tokens(&self) -> Result<Vec<ConnectionToken>, StoreError> {
        self.collect(
            "SELECT id, key_id, secret_hash, grant_perms, expires_at, created_at, used_at, \
             used_by, label FROM tokens ORDER BY id",
            &[],
            "listing connection tokens",
            |row| rows::token(&PgRow(row)),
        )
    }

    fn sessions(&self) -> Result<Vec<Session>, StoreError> {
        self.collect(
            "SELECT key_id, client_pubkey, rules, expires_at, created_at, last_used_at, \
             request_count, metadata, requested_perms, origin, relays, revoked_at, \
             connect_reply, revision FROM sessions ORDER BY key_id, client_pubkey",
            &[],
            "listing sessions",
            |row| rows::session(&PgRow(row)),
        )
    }

    fn approvals(&self) -> Result<Vec<PendingApproval>, StoreError> {
        self.collect(
            "SELECT id, key_id, client_pubkey, metadata, request_id, method, kind, summary, \
             created_at, expires_at, status, event, votes FROM approvals \
             ORDER BY created_at DESC, seq DESC",
            &[],
            "listing approvals",
            |row| rows::approval(&PgRow(row)),
        )
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut sql = String::from(
            "SELECT seq, at, key_id, client_pubkey, event_id, request_id, method, kind, \
             decision, outcome, signed_event_id, event_created_at, events, operator FROM audit \
             WHERE TRUE",
        );
        let since = query.since.map(ts);
        let until = query.until.map(ts);
        let key_id = query.key_id.map(|k| k.0);
        let client = query.client.map(|c| c.to_hex());
        let decision = query.decision.map(|d| d.as_str().to_owned());
        let limit = query.limit.map(i64::from);
        let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
        // Each filter given adds its clause with the next placeholder.
        let conditions: [(&str, Option<&(dyn ToSql + Sync)>); 6] = [
            ("at >=", since.as_ref().map(|v| v as &(dyn ToSql + Sync))),
            ("at <", until.as_ref().map(|v| v as &(dyn ToSql + Sync))),
            (
                "key_id =",
                key_id.as_ref().map(|v| v as &(dyn ToSql + Sync)),
            ),
            (
                "client_pubkey =",
                client.as_ref().map(|v| v as &(dyn ToSql + Sync)),
            ),
            (
                "method =",
                query.method.as_ref().map(|v| v as &(dyn ToSql + Sync)),
            ),
            (
                "decision =",
                decision.as_ref().map(|v| v as &(dyn ToSql + Sync)),
            ),
        ];
        for (condition, value) in conditions {
            if let Some(value) = value {
                args.push(value);
                sql.push_str(&format!(" AND {condition} ${}", args.len()));
            }
        }
        let key_ids: Option<Vec<i64>> = query
            .key_ids
            .as_ref()
            .map(|ids| ids.iter().map(|k| k.0).collect());
        if let Some(ids) = &key_ids {
            args.push(ids);
            sql.push_str(&format!(" AND key_id = ANY(${})", args.len()));
        }
        sql.push_str(" ORDER BY at DESC, seq DESC");
        if let Some(v) = &limit {
            args.push(v);
            sql.push_str(&format!(" LIMIT ${}", args.len()));
        }
        self.collect(&sql, &args, "querying the audit log", |row| {
            rows::audit(&PgRow(row))
        })
    }

    fn audited_events(&self, since: Timestamp) -> Result<Vec<AuditedEvent>, StoreError> {
        self.collect(
            "SELECT seq, at, event_id, client_pubkey, event_created_at FROM audit \
             WHERE at >= $1 AND event_id <> '' ORDER BY at, seq",
            &[&ts(since)],
            "listing audited events",
            |row| rows::audited_event(&PgRow(row)),
        )
    }

    fn audit_chain(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredChainRow>, StoreError> {
        let rows = self
            .conn()?
            .query(
                &format!("{SELECT_CHAIN} WHERE seq > $1 ORDER BY seq LIMIT $2"),
                &[&after_seq, &i64::from(limit)],
            )
            .ctx("reading the audit chain")?;
        rows.iter().map(|row| rows::chained(&PgRow(row))).collect()
    }

    fn audit_checkpoint(&self) -> Result<Option<ChainPoint>, StoreError> {
        checkpoint(&mut *self.conn()?)
    }

    fn audit_head(&self) -> Result<Option<ChainPoint>, StoreError> {
        let newest = self
            .conn()?
            .query_opt(
                "SELECT seq, row_hash FROM audit ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .ctx("reading the audit log's newest row")?;
        match newest {
            Some(row) => rows::chain_point(&PgRow(&row), "audit", "row_hash").map(Some),
            None => self.audit_checkpoint(),
        }
    }

    fn served_relays(&self) -> Result<Option<ServedRelays>, StoreError> {
        let rows = self.collect(
            "SELECT id, relays, recorded_at FROM served_relays WHERE id = 1",
            &[],
            "reading the served relays",
            |row| rows::served_relays(&PgRow(row)),
        )?;
        Ok(rows.into_iter().next())
    }

    fn beat(
        &mut self,
        replica: &ReplicaId,
        incarnation: &str,
        lease_ms: u64,
    ) -> Result<Vec<ReplicaBeat>, StoreError> {
        let lease = i64::try_from(lease_ms).unwrap_or(i64::MAX);
        let mut client = self.conn()?;
        // Our own run beats again; another run's row is taken over only
        // once it is past its lease (that process stopped).
        let changed = client
            .execute(
                &format!(
                    "INSERT INTO replicas (replica, incarnation, started_at, beat_ms) \
                     VALUES ($1, $2, {SERVER_NOW_MS} / 1000, {SERVER_NOW_MS}) \
                     ON CONFLICT (replica) DO UPDATE SET beat_ms = excluded.beat_ms, \
                     started_at = CASE WHEN replicas.incarnation = excluded.incarnation \
                       THEN replicas.started_at ELSE excluded.started_at END, \
                     incarnation = excluded.incarnation \
                     WHERE replicas.incarnation = excluded.incarnation \
                        OR replicas.beat_ms < excluded.beat_ms - $3"
                ),
                &[&replica.as_str(), &incarnation, &lease],
            )
            .ctx("recording a heartbeat")?;
        if changed == 0 {
            return Err(rows::name_in_use(replica));
        }
        let listed = client
            .query(
                &format!(
                    "SELECT replica, started_at, beat_ms, incarnation, {SERVER_NOW_MS} \
                     FROM replicas ORDER BY replica"
                ),
                &[],
            )
            .ctx("listing replicas")?;
        let mut found = Vec::with_capacity(listed.len());
        let mut now = 0;
        for row in &listed {
            let name: String = row.try_get(0).ctx("listing replicas")?;
            let started: i64 = row.try_get(1).ctx("listing replicas")?;
            let beat: i64 = row.try_get(2).ctx("listing replicas")?;
            let incarnation: String = row.try_get(3).ctx("listing replicas")?;
            now = row.try_get(4).ctx("listing replicas")?;
            found.push((name, started, beat, incarnation));
        }
        Ok(rows::replica_beats(found, now))
    }

    fn retire(&mut self, replica: &ReplicaId) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "DELETE FROM replicas WHERE replica = $1",
                &[&replica.as_str()],
            )
            .ctx("removing a heartbeat")?;
        Ok(())
    }

    fn claim(
        &mut self,
        replica: &ReplicaId,
        events: &[EventId],
        at: Timestamp,
    ) -> Result<Vec<(EventId, Claim)>, StoreError> {
        // Two statements whatever the count: a takeover may claim thousands.
        let hexes: Vec<String> = events.iter().map(EventId::to_hex).collect();
        self.write_if("claiming requests", false, |tx| {
            tx.execute(
                "INSERT INTO answers (request_event, replica, answer, at) \
                 SELECT e, $2, NULL, $3 FROM unnest($1::TEXT[]) AS e \
                 ON CONFLICT (request_event) DO NOTHING",
                &[&hexes, &replica.as_str(), &ts(at)],
            )
            .ctx("claiming requests")?;
            let found = tx
                .query(
                    "SELECT request_event, replica, answer FROM answers \
                     WHERE request_event = ANY($1::TEXT[])",
                    &[&hexes],
                )
                .ctx("reading claims")?;
            let mut holders = std::collections::HashMap::with_capacity(found.len());
            for row in &found {
                let event: String = row.try_get(0).ctx("reading claims")?;
                let holder: String = row.try_get(1).ctx("reading claims")?;
                let answer: Option<String> = row.try_get(2).ctx("reading claims")?;
                holders.insert(event, (holder, answer));
            }
            events
                .iter()
                .zip(&hexes)
                .map(|(event, hex)| match holders.remove(hex) {
                    Some((holder, answer)) => Ok((*event, rows::claim(replica, &holder, answer))),
                    None => Err(StoreError::Database(format!(
                        "the claim of request event {hex} vanished inside its transaction"
                    ))),
                })
                .collect()
        })
    }

    fn adopt_held(
        &mut self,
        replica: &ReplicaId,
        from: &ReplicaId,
    ) -> Result<Vec<(ApprovalId, String)>, StoreError> {
        self.write_if("adopting held requests", false, |tx| {
            let adopted = tx
                .query(
                    "UPDATE held_requests SET holder = $1 WHERE holder = $2 \
                     RETURNING approval_id, request_event_id, request_event",
                    &[&replica.as_str(), &from.as_str()],
                )
                .ctx("adopting held requests")?;
            let mut out = Vec::with_capacity(adopted.len());
            for row in &adopted {
                let id: String = row.try_get(0).ctx("adopting held requests")?;
                let event_id: String = row.try_get(1).ctx("adopting held requests")?;
                let event: String = row.try_get(2).ctx("adopting held requests")?;
                tx.execute(
                    "UPDATE answers SET replica = $1 WHERE request_event = $2 AND replica = $3",
                    &[&replica.as_str(), &event_id, &from.as_str()],
                )
                .ctx("adopting a held request's claim")?;
                out.push((ApprovalId(id), event));
            }
            Ok(out)
        })
    }

    fn prune_answers(&mut self, before: Timestamp) -> Result<u64, StoreError> {
        let mut client = self.conn()?;
        let pruned = client
            .execute("DELETE FROM answers WHERE at < $1", &[&ts(before)])
            .ctx("pruning answers")?;
        client
            .execute(
                &format!("DELETE FROM replicas WHERE beat_ms < {SERVER_NOW_MS} - 86400000"),
                &[],
            )
            .ctx("pruning silent replicas")?;
        Ok(pruned)
    }

    fn put_dashboard_secret(
        &mut self,
        kind: DashboardSecret,
        digest: &[u8; 32],
        expires_at: Timestamp,
        user: DashboardUser,
    ) -> Result<(), StoreError> {
        let table = kind.table();
        let operator = user.operator_id();
        self.write_if("keeping a dashboard secret", false, |tx| {
            tx.execute(
                &format!("DELETE FROM {table} WHERE expires_at <= $1"),
                &[&ts(Timestamp::now())],
            )
            .ctx("dropping expired dashboard secrets")?;
            let kept = tx.execute(
                &format!(
                    "INSERT INTO {table} (digest, expires_at, operator_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (digest) DO UPDATE SET expires_at = excluded.expires_at, \
                     operator_id = excluded.operator_id"
                ),
                &[&digest.as_slice(), &ts(expires_at), &operator],
            );
            match kept {
                Ok(_) => Ok(()),
                Err(e) if is_foreign_key_violation(&e) => {
                    Err(StoreError::NotFound("that operator".into()))
                }
                Err(e) => Err(db_error("keeping a dashboard secret", e)),
            }
        })
    }

    fn check_dashboard_secret(
        &mut self,
        kind: DashboardSecret,
        digest: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<DashboardUser>, StoreError> {
        let table = kind.table();
        let mut client = self.conn()?;
        let sql = match kind {
            // Deleting is the check: of two replicas redeeming one link at
            // once, one deletes the row.
            DashboardSecret::Login => format!(
                "DELETE FROM {table} WHERE digest = $1 AND expires_at > $2 RETURNING operator_id"
            ),
            DashboardSecret::Session => {
                format!("SELECT operator_id FROM {table} WHERE digest = $1 AND expires_at > $2")
            }
        };
        let row = client
            .query_opt(&sql, &[&digest.as_slice(), &ts(now)])
            .ctx("looking up a dashboard login or session")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let operator: Option<i64> = row
            .try_get(0)
            .ctx("looking up a dashboard login or session")?;
        Ok(Some(DashboardUser::from_operator_id(operator)))
    }

    fn remove_dashboard_secret(
        &mut self,
        kind: DashboardSecret,
        digest: &[u8; 32],
    ) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                &format!("DELETE FROM {} WHERE digest = $1", kind.table()),
                &[&digest.as_slice()],
            )
            .ctx("removing a dashboard secret")?;
        Ok(())
    }

    fn add_operator(&mut self, operator: &NewOperator) -> Result<OperatorId, StoreError> {
        let all = i32::from(matches!(operator.keys, KeyScope::All));
        // Mirrored: bunkers count an operator's votes only once they know it.
        self.write_if("adding an operator", true, |tx| {
            let inserted = tx.query_one(
                "INSERT INTO operators (name, role, all_keys, created_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[
                    &operator.name,
                    &operator.role.as_str(),
                    &all,
                    &ts(operator.created_at),
                ],
            );
            let id: i64 = match inserted {
                Ok(row) => row.try_get(0).ctx("adding an operator")?,
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Duplicate(format!(
                        "an operator named {:?}",
                        operator.name
                    )));
                }
                Err(e) => return Err(db_error("adding an operator", e)),
            };
            if let KeyScope::Keys(keys) = &operator.keys {
                for key in keys {
                    match tx.execute(
                        "INSERT INTO operator_keys (operator_id, key_id) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                        &[&id, &key.0],
                    ) {
                        Ok(_) => {}
                        Err(e) if is_foreign_key_violation(&e) => {
                            return Err(StoreError::NotFound(format!("key {key}")));
                        }
                        Err(e) => return Err(db_error("adding an operator's keys", e)),
                    }
                }
            }
            Ok(OperatorId(id))
        })
    }

    fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        let pairs = self.collect(
            "SELECT operator_id, key_id FROM operator_keys ORDER BY key_id",
            &[],
            "listing operators' keys",
            |row| {
                let operator: i64 = row.try_get(0).ctx("listing operators' keys")?;
                let key: i64 = row.try_get(1).ctx("listing operators' keys")?;
                Ok((operator, KeyId(key)))
            },
        )?;
        let mut keys: std::collections::BTreeMap<i64, Vec<KeyId>> = Default::default();
        for (operator, key) in pairs {
            keys.entry(operator).or_default().push(key);
        }
        self.collect(
            "SELECT id, name, role, all_keys, created_at FROM operators ORDER BY id",
            &[],
            "listing operators",
            |row| {
                let id: i64 = row.try_get(0).unwrap_or_default();
                rows::operator(&PgRow(row), keys.get(&id).cloned().unwrap_or_default())
            },
        )
    }

    fn remove_operator(&mut self, name: &str) -> Result<(), StoreError> {
        let pending = to_json(&ApprovalStatus::Pending, "an approval status")?;
        self.write_if("removing an operator", true, |tx| {
            // Its keys, login links and sessions go with it (ON DELETE
            // CASCADE); its answers to requests still waiting are withdrawn.
            tx.execute(
                "UPDATE approvals SET votes = (SELECT COALESCE(jsonb_agg(v), '[]'::jsonb) \
                 FROM jsonb_array_elements(votes::jsonb) AS v WHERE v->>'by' <> $1)::text \
                 WHERE status = $2",
                &[&name, &pending],
            )
            .ctx("withdrawing an operator's votes")?;
            let removed = tx
                .execute("DELETE FROM operators WHERE name = $1", &[&name])
                .ctx("removing an operator")?;
            if removed == 0 {
                return Err(StoreError::NotFound(format!("operator {name:?}")));
            }
            Ok(())
        })
    }

    fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mirrored = changes.iter().any(Change::is_mirrored);
        self.write_if("committing changes", mirrored, |tx| {
            // The audit head first, before any other lock (see lock_audit_head).
            let mut tail = None;
            if changes.iter().any(|c| matches!(c, Change::Audit(_))) {
                tail = Some(lock_audit_head(tx)?);
            }
            let before = tail;
            for change in changes {
                apply_change(tx, change, &mut tail)?;
            }
            if let Some(head) = tail
                && tail != before
            {
                save_audit_head(tx, head)?;
            }
            Ok(())
        })
    }

    fn external_version(&mut self) -> Result<u64, StoreError> {
        let version = current_version(&mut *self.conn()?)?;
        if version != self.seen {
            self.seen = version;
            self.external += 1;
        }
        Ok(self.external)
    }
}

/// The name of the constraint a server error names, or "".
fn constraint(e: &postgres::Error) -> String {
    e.as_db_error()
        .and_then(|db| db.constraint())
        .unwrap_or_default()
        .to_owned()
}
