//! The audit log's hash chain: each row's hash covers every column it is
//! stored with and the previous row's hash, so an edit, an insertion or a
//! deletion inside the log shows as the first row whose hash no longer
//! matches, and a truncation of the newest rows as a head (kept outside the
//! database) that is no longer there.
//!
//! Backends store rows through [`ChainedRow::of`] (the columns exactly as
//! written) and [`ChainedRow::hash`]; [`verify`] recomputes the chain from
//! the retention checkpoint. Pure functions: the same rows give the same
//! hashes on every backend.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::audit::AuditEntry;
use crate::codec::storable;

/// The "previous hash" of the first row ever written.
pub const GENESIS: [u8; 32] = [0; 32];

/// Domain separation: a row hash is never the hash of anything else.
const DOMAIN: &[u8] = b"rampart audit row v1\0";

/// Marks the optional `operator` field in a row's hash input (after the
/// fixed fields, so an older row's input is never a newer one's).
const OPERATOR_TAG: u8 = 3;

/// An audit row's columns, exactly as stored (text after
/// [`storable`], pubkeys and ids as lowercase hex, times as unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedRow {
    /// `seq`: the row's place in the chain.
    pub seq: i64,
    /// `at`.
    pub at: i64,
    /// `key_id`.
    pub key_id: i64,
    /// `client_pubkey`.
    pub client_pubkey: String,
    /// `event_id`.
    pub event_id: String,
    /// `request_id`.
    pub request_id: String,
    /// `method`.
    pub method: String,
    /// `kind`.
    pub kind: Option<i64>,
    /// `decision`.
    pub decision: String,
    /// `outcome`.
    pub outcome: String,
    /// `signed_event_id`.
    pub signed_event_id: Option<String>,
    /// `event_created_at` (empty in rows written before it was recorded).
    pub event_created_at: Option<i64>,
    /// `events`.
    pub events: i64,
    /// `operator` (empty in rows of what a rule decided, and in every row
    /// written before the column existed).
    pub operator: Option<String>,
}

impl ChainedRow {
    /// The columns a backend writes for `entry` as row `seq`.
    pub fn of(seq: i64, entry: &AuditEntry) -> Self {
        ChainedRow {
            seq,
            at: secs(entry.at.as_secs()),
            key_id: entry.key_id.0,
            // An action names no request event, perhaps no client: stored
            // as empty text (NOT NULL columns; the hash stays the one rows
            // always had).
            client_pubkey: entry.client.map(|c| c.to_hex()).unwrap_or_default(),
            event_id: entry.event_id.map(|e| e.to_hex()).unwrap_or_default(),
            request_id: owned(storable(&entry.request_id)),
            method: owned(storable(&entry.method)),
            kind: entry.kind.map(i64::from),
            decision: entry.decision.as_str().to_owned(),
            outcome: owned(storable(&entry.outcome)),
            signed_event_id: entry.signed_event_id.map(|id| id.to_hex()),
            event_created_at: Some(secs(entry.event_created_at.as_secs())),
            events: i64::from(entry.events),
            operator: entry.operator.as_deref().map(|o| owned(storable(o))),
        }
    }

    /// This row's hash, following `previous` (the row before it, or the
    /// checkpoint, or [`GENESIS`]). Every column is length- or
    /// presence-prefixed, so no two different rows encode alike. The
    /// `operator` column, added later, is hashed last and only when set:
    /// rows without one (all the older rows) keep the hash they were
    /// chained with, and setting or clearing it changes the hash.
    pub fn hash(&self, previous: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(previous);
        int(&mut h, Some(self.seq));
        int(&mut h, Some(self.at));
        int(&mut h, Some(self.key_id));
        text(&mut h, Some(&self.client_pubkey));
        text(&mut h, Some(&self.event_id));
        text(&mut h, Some(&self.request_id));
        text(&mut h, Some(&self.method));
        int(&mut h, self.kind);
        text(&mut h, Some(&self.decision));
        text(&mut h, Some(&self.outcome));
        text(&mut h, self.signed_event_id.as_deref());
        int(&mut h, self.event_created_at);
        int(&mut h, Some(self.events));
        if let Some(operator) = &self.operator {
            h.update([OPERATOR_TAG]);
            text(&mut h, Some(operator));
        }
        h.finalize().into()
    }
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn owned(text: Cow<'_, str>) -> String {
    text.into_owned()
}

fn int(h: &mut Sha256, value: Option<i64>) {
    match value {
        None => h.update([0u8]),
        Some(v) => {
            h.update([1u8]);
            h.update(v.to_be_bytes());
        }
    }
}

fn text(h: &mut Sha256, value: Option<&str>) {
    match value {
        None => h.update([0u8]),
        Some(s) => {
            h.update([2u8]);
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
    }
}

/// A point of the chain: a row's `seq` and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainPoint {
    /// The row.
    pub seq: i64,
    /// Its hash.
    pub hash: [u8; 32],
}

impl ChainPoint {
    /// `SEQ:HEX`, the form `rampart audit head` prints and `--head` reads.
    pub fn to_text(&self) -> String {
        let hex: String = self.hash.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{hex}", self.seq)
    }

    /// Parse `SEQ:HEX`.
    pub fn parse(text: &str) -> Option<Self> {
        let (seq, hex) = text.trim().split_once(':')?;
        let seq = seq.parse().ok()?;
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut hash = [0u8; 32];
        for (i, byte) in hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(ChainPoint { seq, hash })
    }
}

/// A stored row with the hash stored beside it (none: written without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChainRow {
    /// The columns.
    pub row: ChainedRow,
    /// The stored `row_hash`.
    pub hash: Option<[u8; 32]>,
}

/// Why the chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A row's stored hash is not the hash of its columns and the previous
    /// row's hash: it, or a row before it, was edited, inserted or removed.
    #[error(
        "audit row {seq} does not match its hash: it (or the row before it) was edited, \
         inserted or deleted"
    )]
    Mismatch {
        /// The first row that does not match.
        seq: i64,
    },
    /// A row has no hash at all.
    #[error("audit row {seq} has no hash: it was written outside Rampart")]
    Unhashed {
        /// The row.
        seq: i64,
    },
    /// The head recorded outside the database is not in the chain any more.
    #[error(
        "the audit head recorded earlier (row {seq}) is {what}: the newest rows were \
         deleted or rewritten"
    )]
    HeadLost {
        /// The recorded head's row.
        seq: i64,
        /// "missing" or "different".
        what: &'static str,
    },
}

/// Walks a chain, row by row (oldest first), from a checkpoint.
#[derive(Debug, Clone)]
pub struct Verifier {
    checkpoint: Option<ChainPoint>,
    previous: [u8; 32],
    last: Option<ChainPoint>,
    /// Heads recorded earlier (oldest first), each with whether it was met.
    expected: Vec<(ChainPoint, bool)>,
    rows: u64,
}

impl Verifier {
    /// Start after `checkpoint` (the last row pruned by retention), or from
    /// the start; each of `expected_heads`, recorded earlier, must be met.
    pub fn new(
        checkpoint: Option<ChainPoint>,
        expected_heads: impl IntoIterator<Item = ChainPoint>,
    ) -> Self {
        let mut expected: Vec<(ChainPoint, bool)> =
            expected_heads.into_iter().map(|h| (h, false)).collect();
        expected.sort_by_key(|(h, _)| h.seq);
        expected.dedup();
        Verifier {
            checkpoint,
            previous: checkpoint.map_or(GENESIS, |c| c.hash),
            last: checkpoint,
            expected,
            rows: 0,
        }
    }

    /// The next row (in `seq` order).
    pub fn next(&mut self, stored: &StoredChainRow) -> Result<(), ChainError> {
        let seq = stored.row.seq;
        let Some(hash) = stored.hash else {
            return Err(ChainError::Unhashed { seq });
        };
        if stored.row.hash(&self.previous) != hash {
            return Err(ChainError::Mismatch { seq });
        }
        for (head, seen) in self.expected.iter_mut().filter(|(h, _)| h.seq == seq) {
            if head.hash != hash {
                return Err(ChainError::HeadLost {
                    seq,
                    what: "different",
                });
            }
            *seen = true;
        }
        self.previous = hash;
        self.last = Some(ChainPoint { seq, hash });
        self.rows += 1;
        Ok(())
    }

    /// Every row is in: the head of the chain (the checkpoint, or none, for
    /// an empty log) and how many rows were checked.
    pub fn finish(self) -> Result<(Option<ChainPoint>, u64), ChainError> {
        let checkpoint_seq = self.checkpoint.map_or(0, |c| c.seq);
        for (head, seen) in &self.expected {
            let lost = |what| ChainError::HeadLost {
                seq: head.seq,
                what,
            };
            match self.checkpoint {
                // Pruned by retention since it was recorded: not checkable,
                // and retention is not truncation.
                _ if head.seq < checkpoint_seq => {}
                Some(c) if head.seq == c.seq && head.hash != c.hash => {
                    return Err(lost("different"));
                }
                Some(c) if head.seq == c.seq => {}
                _ if !seen => return Err(lost("missing")),
                _ => {}
            }
        }
        Ok((self.last, self.rows))
    }
}

/// Why `rampart audit verify` failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The chain is broken.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store could not be read (a row that cannot be read back is
    /// reported here, naming it).
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

/// What a verification found: the chain's head and how many rows it checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The newest row (or the checkpoint, or none for an empty log).
    pub head: Option<ChainPoint>,
    /// Rows checked.
    pub rows: u64,
    /// Where the chain started (the retention checkpoint).
    pub checkpoint: Option<ChainPoint>,
}

/// Rows read per query while verifying (bounded memory on any log size).
const VERIFY_PAGE: u32 = 5_000;

/// Recompute the whole chain of `store` from its checkpoint, page by page;
/// each of `expected_heads`, recorded earlier outside the database, must
/// still be in it (one pass for all of them).
pub fn verify_store(
    store: &dyn crate::Store,
    expected_heads: impl IntoIterator<Item = ChainPoint>,
) -> Result<Verified, VerifyError> {
    let checkpoint = store.audit_checkpoint()?;
    let mut verifier = Verifier::new(checkpoint, expected_heads);
    let mut after = checkpoint.map_or(0, |c| c.seq);
    loop {
        let page = store.audit_chain(after, VERIFY_PAGE)?;
        for row in &page {
            verifier.next(row)?;
            after = row.row.seq;
        }
        if page.len() < VERIFY_PAGE as usize {
            break;
        }
    }
    let (head, rows) = verifier.finish()?;
    Ok(Verified {
        head,
        rows,
        checkpoint,
    })
}

#[cfg(test)]
mod tests {
    use nip46::nostr::prelude::{EventId, PublicKey, Timestamp};

    use super::*;
    use crate::{AuditDecision, KeyId};

    fn entry(n: u8) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at: Timestamp::from_secs(1_700_000_000 + u64::from(n)),
            key_id: KeyId(1),
            client: Some(PublicKey::from_byte_array([2; 32])),
            event_id: Some(EventId::from_byte_array([n; 32])),
            event_created_at: Timestamp::from_secs(1_700_000_000),
            events: 1,
            request_id: format!("r{n}"),
            method: "sign_event".into(),
            kind: Some(1),
            decision: AuditDecision::Allowed,
            outcome: "ok".into(),
            signed_event_id: None,
            operator: None,
        }
    }

    fn chain(n: u8) -> Vec<StoredChainRow> {
        let mut previous = GENESIS;
        (1..=n)
            .map(|i| {
                let row = ChainedRow::of(i64::from(i), &entry(i));
                let hash = row.hash(&previous);
                previous = hash;
                StoredChainRow {
                    row,
                    hash: Some(hash),
                }
            })
            .collect()
    }

    fn verify(
        rows: &[StoredChainRow],
        checkpoint: Option<ChainPoint>,
        head: Option<ChainPoint>,
    ) -> Result<(Option<ChainPoint>, u64), ChainError> {
        let mut v = Verifier::new(checkpoint, head);
        for r in rows {
            v.next(r)?;
        }
        v.finish()
    }

    fn point(r: &StoredChainRow) -> ChainPoint {
        ChainPoint {
            seq: r.row.seq,
            hash: r.hash.unwrap(),
        }
    }

    #[test]
    fn the_operator_is_hashed_only_when_set() {
        let row = ChainedRow::of(1, &entry(1));
        assert_eq!(row.operator, None);
        let mut named = row.clone();
        named.operator = Some("alice".into());
        let mut other = row.clone();
        other.operator = Some("bob".into());
        let mut empty = row.clone();
        empty.operator = Some(String::new());
        let hashes = [&row, &named, &other, &empty].map(|r| r.hash(&GENESIS));
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b, "operator none / alice / bob / empty all differ");
            }
        }
    }

    #[test]
    fn an_intact_chain_verifies_to_its_head() {
        let rows = chain(5);
        let (head, n) = verify(&rows, None, Some(point(&rows[2]))).unwrap();
        assert_eq!((head, n), (Some(point(&rows[4])), 5));
        assert_eq!(
            ChainPoint::parse(&point(&rows[4]).to_text()),
            Some(point(&rows[4]))
        );
        assert_eq!(verify(&[], None, None).unwrap(), (None, 0));
    }

    #[test]
    fn every_column_is_covered() {
        let rows = chain(3);
        let edits: Vec<fn(&mut ChainedRow)> = vec![
            |r| r.seq += 10,
            |r| r.at += 1,
            |r| r.key_id += 1,
            |r| r.client_pubkey.push('0'),
            |r| r.event_id.push('0'),
            |r| r.request_id.push('x'),
            |r| r.method.push('x'),
            |r| r.kind = None,
            |r| r.decision = "denied".into(),
            |r| r.outcome.push('x'),
            |r| r.signed_event_id = Some("ab".into()),
            |r| r.event_created_at = None,
            |r| r.events += 1,
        ];
        for (i, edit) in edits.into_iter().enumerate() {
            let mut tampered = rows.clone();
            edit(&mut tampered[1].row);
            let seq = tampered[1].row.seq;
            assert_eq!(
                verify(&tampered, None, None),
                Err(ChainError::Mismatch { seq }),
                "edit {i}"
            );
        }
    }

    #[test]
    fn deletions_truncations_and_pruning() {
        let rows = chain(5);
        // A row deleted inside: the next one no longer follows.
        let mut gap = rows.clone();
        gap.remove(2);
        assert_eq!(
            verify(&gap, None, None),
            Err(ChainError::Mismatch { seq: 4 })
        );
        // The newest rows deleted: the chain verifies, the head does not.
        assert_eq!(
            verify(&rows[..3], None, Some(point(&rows[4]))),
            Err(ChainError::HeadLost {
                seq: 5,
                what: "missing"
            })
        );
        // Pruned from a checkpoint: verifies, and an old head is no reproach.
        let checkpoint = Some(point(&rows[1]));
        assert!(verify(&rows[2..], checkpoint, Some(point(&rows[0]))).is_ok());
        assert!(verify(&rows[2..], checkpoint, Some(point(&rows[1]))).is_ok());
        assert!(verify(&[], Some(point(&rows[4])), Some(point(&rows[4]))).is_ok());
        // A wrong checkpoint breaks the first row after it.
        let wrong = Some(ChainPoint {
            seq: 2,
            hash: [9; 32],
        });
        assert_eq!(
            verify(&rows[2..], wrong, None),
            Err(ChainError::Mismatch { seq: 3 })
        );
        // An unhashed row.
        let mut bare = rows.clone();
        bare[3].hash = None;
        assert_eq!(
            verify(&bare, None, None),
            Err(ChainError::Unhashed { seq: 4 })
        );
    }
}
