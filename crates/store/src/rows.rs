//! Reading stored rows back into the model, once for every backend.
//!
//! A backend only says how to get a column's raw value ([`RawRow`]: an
//! integer, a text, bytes, or NULL); everything else — times, keys, ids,
//! JSON, rules, and each table's row — is read here, and every bad value
//! becomes [`StoreError::Corrupt`] naming the table, the row and the column
//! (never the value: some are secrets), so one damaged row can be skipped
//! without hiding the others.

use std::fmt::Display;
use std::str::FromStr;

use nip46::nostr::prelude::{EventId, PublicKey, RelayUrl, Timestamp, UnsignedEvent};
use nip46::{ClientMetadata, Method, PermissionSet};
use serde::de::DeserializeOwned;

use crate::approval::{ApprovalId, ApprovalStatus, PendingApproval, RequestSummary, Vote};
use crate::audit::{AuditDecision, AuditEntry, AuditedEvent};
use crate::chain::{ChainPoint, ChainedRow, StoredChainRow};
use crate::codec;
use crate::error::StoreError;
use crate::key::{KeyId, NewKey, StoredKey, VaultParams};
use crate::operator::{KeyScope, Operator, OperatorId, Role};
use crate::relays::ServedRelays;
use crate::replica::{Claim, ReplicaBeat, ReplicaId};
use crate::session::{Rule, Session, SessionOrigin};
use crate::token::{ConnectionToken, SecretHash, TokenId};

/// A backend's row: raw column values, `None` for NULL; `Err` says why a
/// column cannot be read (missing, another type).
pub trait RawRow {
    /// An integer column.
    fn int(&self, column: &str) -> Result<Option<i64>, String>;
    /// A text column.
    fn text(&self, column: &str) -> Result<Option<String>, String>;
    /// A bytes column.
    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, String>;
}

/// Reads one row's columns as model values.
pub struct RowReader<'r, R: RawRow + ?Sized> {
    row: &'r R,
    table: &'static str,
    key: String,
}

impl<'r, R: RawRow + ?Sized> RowReader<'r, R> {
    /// `key_columns` identify the row in error messages.
    pub fn new(row: &'r R, table: &'static str, key_columns: &[&str]) -> Self {
        let key = key_columns
            .iter()
            .map(|c| match (row.int(c), row.text(c)) {
                (Ok(Some(i)), _) => i.to_string(),
                (_, Ok(Some(t))) => t,
                _ => "?".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        RowReader { row, table, key }
    }

    /// The error for a bad value in `column`.
    pub fn corrupt(&self, column: &str, problem: impl Display) -> StoreError {
        StoreError::Corrupt(format!(
            "{} row ({}), column {column}: {problem}; repair or remove the row",
            self.table, self.key
        ))
    }

    fn unreadable(&self, column: &str, e: String) -> StoreError {
        self.corrupt(column, format_args!("unreadable ({e})"))
    }

    /// A nullable integer.
    pub fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.row.int(column).map_err(|e| self.unreadable(column, e))
    }

    /// An integer.
    pub fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.opt_int(column)?
            .ok_or_else(|| self.corrupt(column, "missing"))
    }

    /// A nullable text.
    pub fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.row
            .text(column)
            .map_err(|e| self.unreadable(column, e))
    }

    /// A text.
    pub fn text(&self, column: &str) -> Result<String, StoreError> {
        self.opt_text(column)?
            .ok_or_else(|| self.corrupt(column, "missing"))
    }

    /// Bytes.
    pub fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        self.row
            .bytes(column)
            .map_err(|e| self.unreadable(column, e))?
            .ok_or_else(|| self.corrupt(column, "missing"))
    }

    fn time(&self, column: &str, secs: i64) -> Result<Timestamp, StoreError> {
        u64::try_from(secs)
            .map(Timestamp::from_secs)
            .map_err(|_| self.corrupt(column, "negative time"))
    }

    /// A time (seconds).
    pub fn ts(&self, column: &str) -> Result<Timestamp, StoreError> {
        let secs = self.int(column)?;
        self.time(column, secs)
    }

    /// A nullable time.
    pub fn opt_ts(&self, column: &str) -> Result<Option<Timestamp>, StoreError> {
        self.opt_int(column)?
            .map(|s| self.time(column, s))
            .transpose()
    }

    /// A count or revision (not negative).
    pub fn unsigned(&self, column: &str) -> Result<u64, StoreError> {
        u64::try_from(self.int(column)?).map_err(|_| self.corrupt(column, "negative"))
    }

    fn hex_pubkey(&self, column: &str, hex: &str) -> Result<PublicKey, StoreError> {
        PublicKey::from_hex(hex).map_err(|_| self.corrupt(column, "not a hex public key"))
    }

    /// A hex public key.
    pub fn pubkey(&self, column: &str) -> Result<PublicKey, StoreError> {
        let hex = self.text(column)?;
        self.hex_pubkey(column, &hex)
    }

    /// A nullable hex public key.
    pub fn opt_pubkey(&self, column: &str) -> Result<Option<PublicKey>, StoreError> {
        self.opt_text(column)?
            .map(|h| self.hex_pubkey(column, &h))
            .transpose()
    }

    fn hex_event_id(&self, column: &str, hex: &str) -> Result<EventId, StoreError> {
        EventId::from_hex(hex).map_err(|_| self.corrupt(column, "not a hex event id"))
    }

    /// A hex event id.
    pub fn event_id(&self, column: &str) -> Result<EventId, StoreError> {
        let hex = self.text(column)?;
        self.hex_event_id(column, &hex)
    }

    /// A nullable hex event id.
    pub fn opt_event_id(&self, column: &str) -> Result<Option<EventId>, StoreError> {
        self.opt_text(column)?
            .map(|h| self.hex_event_id(column, &h))
            .transpose()
    }

    /// A hex public key stored as empty text when there is none.
    pub fn pubkey_or_empty(&self, column: &str) -> Result<Option<PublicKey>, StoreError> {
        let hex = self.text(column)?;
        if hex.is_empty() {
            return Ok(None);
        }
        self.hex_pubkey(column, &hex).map(Some)
    }

    /// A hex event id stored as empty text when there is none.
    pub fn event_id_or_empty(&self, column: &str) -> Result<Option<EventId>, StoreError> {
        let hex = self.text(column)?;
        if hex.is_empty() {
            return Ok(None);
        }
        self.hex_event_id(column, &hex).map(Some)
    }

    /// A text parsed with `FromStr`.
    pub fn parsed<T>(&self, column: &str) -> Result<T, StoreError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.text(column)?
            .parse()
            .map_err(|e| self.corrupt(column, e))
    }

    fn decode_json<T: DeserializeOwned>(&self, column: &str, text: &str) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|e| self.corrupt(column, format_args!("bad JSON ({e})")))
    }

    /// A JSON value.
    pub fn json<T: DeserializeOwned>(&self, column: &str) -> Result<T, StoreError> {
        let text = self.text(column)?;
        self.decode_json(column, &text)
    }

    /// A nullable JSON value.
    pub fn opt_json<T: DeserializeOwned>(&self, column: &str) -> Result<Option<T>, StoreError> {
        self.opt_text(column)?
            .map(|t| self.decode_json(column, &t))
            .transpose()
    }

    /// A nullable event kind.
    pub fn kind(&self, column: &str) -> Result<Option<u16>, StoreError> {
        self.opt_int(column)?
            .map(|k| u16::try_from(k).map_err(|_| self.corrupt(column, "event kind out of range")))
            .transpose()
    }

    /// Session rules.
    pub fn rules(&self, column: &str) -> Result<Vec<Rule>, StoreError> {
        let text = self.text(column)?;
        codec::rules_from_json(&text).map_err(|e| self.corrupt(column, e))
    }

    /// Relay URLs.
    pub fn relays(&self, column: &str) -> Result<Vec<RelayUrl>, StoreError> {
        let text = self.text(column)?;
        codec::relays_from_json(&text).map_err(|e| self.corrupt(column, e))
    }

    /// A session origin.
    pub fn origin(&self, column: &str) -> Result<SessionOrigin, StoreError> {
        let text = self.text(column)?;
        codec::origin_from_str(&text)
            .ok_or_else(|| self.corrupt(column, "neither bunker nor nostrconnect"))
    }
}

/// A `keys` row.
pub fn key<R: RawRow + ?Sized>(row: &R) -> Result<StoredKey, StoreError> {
    let r = RowReader::new(row, "keys", &["id"]);
    let key = NewKey {
        name: r.text("name")?,
        user_pubkey: r.pubkey("user_pubkey")?,
        signer_pubkey: r.pubkey("signer_pubkey")?,
        user_secret: r.text("user_ncryptsec")?,
        signer_secret: r.text("signer_ncryptsec")?,
        created_at: r.ts("created_at")?,
    };
    let mut key = key.stored(KeyId(r.int("id")?));
    key.locked_at = r.opt_ts("locked_at")?;
    key.sensitive_kinds = r
        .opt_text("sensitive_kinds")?
        .map(|text| codec::kinds_from_text(&text))
        .transpose()
        .map_err(|e| r.corrupt("sensitive_kinds", e))?;
    key.quorum = u32::try_from(r.int("quorum")?)
        .ok()
        .filter(|q| *q >= 1)
        .ok_or_else(|| r.corrupt("quorum", "not a count of at least 1"))?;
    Ok(key)
}

/// An `audit` row's columns as stored, with its `row_hash`, for the chain.
pub fn chained<R: RawRow + ?Sized>(row: &R) -> Result<StoredChainRow, StoreError> {
    let r = RowReader::new(row, "audit", &["seq"]);
    let hash = match r
        .row
        .bytes("row_hash")
        .map_err(|e| r.unreadable("row_hash", e))?
    {
        None => None,
        Some(bytes) => Some(
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| r.corrupt("row_hash", "not 32 bytes"))?,
        ),
    };
    Ok(StoredChainRow {
        row: ChainedRow {
            seq: r.int("seq")?,
            at: r.int("at")?,
            key_id: r.int("key_id")?,
            client_pubkey: r.text("client_pubkey")?,
            event_id: r.text("event_id")?,
            request_id: r.text("request_id")?,
            method: r.text("method")?,
            kind: r.opt_int("kind")?,
            decision: r.text("decision")?,
            outcome: r.text("outcome")?,
            signed_event_id: r.opt_text("signed_event_id")?,
            event_created_at: r.opt_int("event_created_at")?,
            events: r.int("events")?,
            operator: r.opt_text("operator")?,
        },
        hash,
    })
}

/// A chain point (`seq` and a 32-byte `hash` column) of `table`.
pub fn chain_point<R: RawRow + ?Sized>(
    row: &R,
    table: &'static str,
    hash_column: &str,
) -> Result<ChainPoint, StoreError> {
    let r = RowReader::new(row, table, &["seq"]);
    let hash = <[u8; 32]>::try_from(r.bytes(hash_column)?.as_slice())
        .map_err(|_| r.corrupt(hash_column, "not 32 bytes"))?;
    Ok(ChainPoint {
        seq: r.int("seq")?,
        hash,
    })
}

/// The `vault` row.
pub fn vault_params<R: RawRow + ?Sized>(row: &R) -> Result<VaultParams, StoreError> {
    let r = RowReader::new(row, "vault", &["id"]);
    let salt = <[u8; 32]>::try_from(r.bytes("salt")?.as_slice())
        .map_err(|_| r.corrupt("salt", "not 32 bytes"))?;
    let log_n = u8::try_from(r.int("log_n")?).map_err(|_| r.corrupt("log_n", "out of range"))?;
    Ok(VaultParams {
        salt,
        log_n,
        check: r.bytes("check_value")?,
    })
}

/// A `tokens` row.
pub fn token<R: RawRow + ?Sized>(row: &R) -> Result<ConnectionToken, StoreError> {
    let r = RowReader::new(row, "tokens", &["id"]);
    let hash: [u8; 32] = r
        .bytes("secret_hash")?
        .try_into()
        .map_err(|_| r.corrupt("secret_hash", "not 32 bytes"))?;
    Ok(ConnectionToken {
        id: TokenId(r.int("id")?),
        key_id: KeyId(r.int("key_id")?),
        secret_hash: SecretHash(hash),
        grant: r.parsed::<PermissionSet>("grant_perms")?,
        expires_at: r.opt_ts("expires_at")?,
        created_at: r.ts("created_at")?,
        used_at: r.opt_ts("used_at")?,
        used_by: r.opt_pubkey("used_by")?,
        label: r.opt_text("label")?,
    })
}

/// A `sessions` row.
pub fn session<R: RawRow + ?Sized>(row: &R) -> Result<Session, StoreError> {
    let r = RowReader::new(row, "sessions", &["key_id", "client_pubkey"]);
    Ok(Session {
        key_id: KeyId(r.int("key_id")?),
        client: r.pubkey("client_pubkey")?,
        rules: r.rules("rules")?,
        expires_at: r.opt_ts("expires_at")?,
        created_at: r.ts("created_at")?,
        last_used_at: r.opt_ts("last_used_at")?,
        request_count: r.unsigned("request_count")?,
        metadata: r.json::<ClientMetadata>("metadata")?,
        requested_perms: r.parsed::<PermissionSet>("requested_perms")?,
        origin: r.origin("origin")?,
        relays: r.relays("relays")?,
        revoked_at: r.opt_ts("revoked_at")?,
        connect_reply: r.opt_text("connect_reply")?,
        revision: r.unsigned("revision")?,
    })
}

/// An `approvals` row.
pub fn approval<R: RawRow + ?Sized>(row: &R) -> Result<PendingApproval, StoreError> {
    let r = RowReader::new(row, "approvals", &["id"]);
    Ok(PendingApproval {
        id: ApprovalId(r.text("id")?),
        key_id: KeyId(r.int("key_id")?),
        client: r.pubkey("client_pubkey")?,
        metadata: r.json::<ClientMetadata>("metadata")?,
        request_id: r.text("request_id")?,
        method: r.parsed::<Method>("method")?,
        kind: r.kind("kind")?,
        summary: r.json::<RequestSummary>("summary")?,
        event: r.opt_json::<UnsignedEvent>("event")?,
        created_at: r.ts("created_at")?,
        expires_at: r.ts("expires_at")?,
        status: r.json::<ApprovalStatus>("status")?,
        votes: r.json::<Vec<Vote>>("votes")?,
    })
}

/// An `audit` row.
pub fn audit<R: RawRow + ?Sized>(row: &R) -> Result<AuditEntry, StoreError> {
    let r = RowReader::new(row, "audit", &["seq"]);
    let decision = r.text("decision")?;
    let at = r.ts("at")?;
    Ok(AuditEntry {
        seq: r.int("seq")?,
        at,
        event_created_at: r.opt_ts("event_created_at")?.unwrap_or(at),
        events: u32::try_from(r.int("events")?).map_err(|_| r.corrupt("events", "not a count"))?,
        key_id: KeyId(r.int("key_id")?),
        client: r.pubkey_or_empty("client_pubkey")?,
        event_id: r.event_id_or_empty("event_id")?,
        request_id: r.text("request_id")?,
        method: r.text("method")?,
        kind: r.kind("kind")?,
        decision: AuditDecision::parse(&decision)
            .ok_or_else(|| r.corrupt("decision", "unknown decision"))?,
        outcome: r.text("outcome")?,
        signed_event_id: r.opt_event_id("signed_event_id")?,
        operator: r.opt_text("operator")?,
    })
}

/// An audited request event (`seq`, `at`, `event_id`, `client_pubkey`,
/// `event_created_at` of an `audit` row).
pub fn audited_event<R: RawRow + ?Sized>(row: &R) -> Result<AuditedEvent, StoreError> {
    let r = RowReader::new(row, "audit", &["seq"]);
    let at = r.ts("at")?;
    Ok(AuditedEvent {
        event_id: r.event_id("event_id")?,
        client: r.pubkey("client_pubkey")?,
        created_at: r.opt_ts("event_created_at")?.unwrap_or(at),
    })
}

/// The `served_relays` row.
pub fn served_relays<R: RawRow + ?Sized>(row: &R) -> Result<ServedRelays, StoreError> {
    let r = RowReader::new(row, "served_relays", &["id"]);
    Ok(ServedRelays {
        relays: r.relays("relays")?,
        recorded_at: r.ts("recorded_at")?,
    })
}

/// Heartbeat rows `(replica, started_at secs, beat ms, incarnation)` as listed at `now_ms`
/// by the store's clock; rows with a name this Rampart would refuse are
/// skipped (nobody it knows wrote them).
pub fn replica_beats(rows: Vec<(String, i64, i64, String)>, now_ms: i64) -> Vec<ReplicaBeat> {
    rows.into_iter()
        .filter_map(|(name, started, beat, incarnation)| {
            let replica = ReplicaId::parse(&name).ok()?;
            Some(ReplicaBeat {
                replica,
                age_ms: u64::try_from(now_ms.saturating_sub(beat)).unwrap_or(0),
                started_at: Timestamp::from_secs(u64::try_from(started).unwrap_or(0)),
                incarnation,
            })
        })
        .collect()
}

/// The refusal of a heartbeat under a name another live process uses.
pub fn name_in_use(replica: &ReplicaId) -> crate::StoreError {
    crate::StoreError::Duplicate(format!(
        "a live replica named {replica} (another process: give this one another [replica] name,          or it waits until that one stops)"
    ))
}

/// Who holds a claimed request event, as `replica` sees it.
pub fn claim(replica: &ReplicaId, holder: &str, answer: Option<String>) -> Claim {
    if holder == replica.as_str() {
        return match answer {
            Some(answer) => Claim::AnsweredHere { answer },
            None => Claim::Ours,
        };
    }
    match ReplicaId::parse(holder) {
        Ok(holder) => Claim::Theirs {
            replica: holder,
            answer,
        },
        // A holder name no Rampart writes: still not ours.
        Err(_) => Claim::Theirs {
            replica: ReplicaId::unknown(),
            answer,
        },
    }
}

/// An `operators` row, with the ids of its keys (`operator_keys`).
pub fn operator<R: RawRow + ?Sized>(row: &R, keys: Vec<KeyId>) -> Result<Operator, StoreError> {
    let r = RowReader::new(row, "operators", &["id"]);
    let role = r.text("role")?;
    let all_keys = r.int("all_keys")? != 0;
    Ok(Operator {
        id: OperatorId(r.int("id")?),
        name: r.text("name")?,
        role: Role::parse(&role).ok_or_else(|| r.corrupt("role", "unknown role"))?,
        keys: if all_keys {
            KeyScope::All
        } else {
            KeyScope::Keys(keys)
        },
        created_at: r.ts("created_at")?,
    })
}
