//! The [`Store`] trait: what every backend (SQLite, PostgreSQL) does, checked
//! by the shared suite.

use nip46::nostr::prelude::{EventId, PublicKey, Timestamp};

use crate::approval::{ApprovalId, PendingApproval};
use crate::audit::{AuditEntry, AuditQuery, AuditedEvent};
use crate::chain::{ChainPoint, StoredChainRow};
use crate::change::Change;
use crate::error::StoreError;
use crate::key::{KeyId, NewKey, ResealedKey, StoredKey, VaultParams};
use crate::operator::{DashboardUser, NewOperator, Operator, OperatorId};
use crate::relays::ServedRelays;
use crate::replica::{Claim, DashboardSecret, ReplicaBeat, ReplicaId};
use crate::session::Session;
use crate::token::{ConnectionToken, NewToken, TokenId};

/// Persistent state. Implementations are used from one thread at a time.
pub trait Store: Send {
    /// Add a user key; a duplicate name is [`StoreError::Duplicate`].
    fn add_key(&mut self, key: &NewKey) -> Result<KeyId, StoreError>;
    /// Every key, oldest first.
    fn keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Remove a key by name with its tokens, sessions and approvals (audit rows stay).
    fn remove_key(&mut self, name: &str) -> Result<(), StoreError>;
    /// Give a key a new signer (transport) key, in one transaction: its
    /// sessions are revoked and its unused tokens stop working at `at`
    /// (apps connect again with a fresh token, which names the new signer).
    /// An unknown key is [`StoreError::NotFound`]; a signer pubkey another
    /// key has is [`StoreError::Duplicate`].
    fn replace_signer(
        &mut self,
        key_id: KeyId,
        signer_pubkey: &PublicKey,
        signer_secret: &str,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// The vault's key-encryption parameters, if the store has any yet.
    fn vault_params(&self) -> Result<Option<VaultParams>, StoreError>;
    /// Record `params` unless the store has some already, and return the
    /// ones it has (two processes creating a vault at once agree on one).
    fn init_vault(&mut self, params: &VaultParams) -> Result<VaultParams, StoreError>;
    /// In one transaction, compare-and-swap: replace the sealed secrets of
    /// these keys (each only if it still holds the texts it `replaces`) and,
    /// with `vault = Some((from, to))` (a passphrase change), the vault
    /// parameters `from` by `to` — then `keys` must be every key there is.
    /// Anything changed meanwhile (a key resealed, added or given a new
    /// signer, the vault replaced) is [`StoreError::Changed`] and nothing is
    /// written. A key removed meanwhile is skipped.
    fn reseal_keys(
        &mut self,
        vault: Option<(&VaultParams, &VaultParams)>,
        keys: &[ResealedKey],
    ) -> Result<(), StoreError>;

    /// Store a minted token.
    fn add_token(&mut self, token: &NewToken) -> Result<TokenId, StoreError>;
    /// Every token, used and expired ones included.
    fn tokens(&self) -> Result<Vec<ConnectionToken>, StoreError>;

    /// Every session, revoked ones included.
    fn sessions(&self) -> Result<Vec<Session>, StoreError>;

    /// Every approval record, newest first.
    fn approvals(&self) -> Result<Vec<PendingApproval>, StoreError>;

    /// Audit rows matching the query, newest first.
    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Request events audited at or after `since`, oldest first (to refuse
    /// replays across a restart).
    fn audited_events(&self, since: Timestamp) -> Result<Vec<AuditedEvent>, StoreError>;

    /// Audit rows after `after_seq`, oldest first, at most `limit`, with
    /// their columns exactly as stored and their hashes (the chain, for
    /// `rampart audit verify`). An unreadable row is an error, never skipped.
    fn audit_chain(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredChainRow>, StoreError>;
    /// Where the chain starts: the last row retention pruned
    /// ([`Change::PruneAudit`]), if any was.
    fn audit_checkpoint(&self) -> Result<Option<ChainPoint>, StoreError>;
    /// The newest audit row's place and hash (the checkpoint when every row
    /// was pruned; none for an empty log).
    fn audit_head(&self) -> Result<Option<ChainPoint>, StoreError>;

    /// The relays the bunker last recorded serving on
    /// ([`Change::RecordServedRelays`]), if it ever did.
    fn served_relays(&self) -> Result<Option<ServedRelays>, StoreError>;

    /// Record a heartbeat of run `incarnation` of `replica` (stamped by the
    /// store's clock) and list every replica's last one, by name. A run
    /// seen for the first time starts now; while another run of the same
    /// name beat less than `lease_ms` ago, the heartbeat is refused with
    /// [`StoreError::Duplicate`] (two live processes under one name).
    fn beat(
        &mut self,
        replica: &ReplicaId,
        incarnation: &str,
        lease_ms: u64,
    ) -> Result<Vec<ReplicaBeat>, StoreError>;
    /// Remove `replica`'s heartbeat (it stops: the others take over at once
    /// instead of after its lease).
    fn retire(&mut self, replica: &ReplicaId) -> Result<(), StoreError>;
    /// Claim request events for `replica` at a takeover, in one transaction:
    /// an event nobody claimed becomes ours; for each, who holds it.
    fn claim(
        &mut self,
        replica: &ReplicaId,
        events: &[EventId],
        at: Timestamp,
    ) -> Result<Vec<(EventId, Claim)>, StoreError>;
    /// Adopt the requests `from` holds for the user (it died, or it is this
    /// replica's previous run): they become `replica`'s, with their request
    /// events' claims, in one transaction (of several replicas adopting at
    /// once, one gets each). Returns each adopted approval's id with its
    /// request event (JSON).
    fn adopt_held(
        &mut self,
        replica: &ReplicaId,
        from: &ReplicaId,
    ) -> Result<Vec<(ApprovalId, String)>, StoreError>;
    /// Forget claims and sealed answers made before `before` (their requests
    /// are past the replay window), and the heartbeats of replicas silent
    /// for a day (renamed or retired hosts); how many claims went.
    fn prune_answers(&mut self, before: Timestamp) -> Result<u64, StoreError>;

    /// Keep the digest of `user`'s dashboard login link or session cookie
    /// until `expires_at` (expired ones of the same kind are dropped on the
    /// way). An operator that does not exist is [`StoreError::NotFound`].
    fn put_dashboard_secret(
        &mut self,
        kind: DashboardSecret,
        digest: &[u8; 32],
        expires_at: Timestamp,
        user: DashboardUser,
    ) -> Result<(), StoreError>;
    /// Whose unexpired secret with this digest is kept, if any. A login
    /// link is used up by it (it works once, on any replica); a session
    /// stays.
    fn check_dashboard_secret(
        &mut self,
        kind: DashboardSecret,
        digest: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<DashboardUser>, StoreError>;
    /// Forget a dashboard secret (a session logged out).
    fn remove_dashboard_secret(
        &mut self,
        kind: DashboardSecret,
        digest: &[u8; 32],
    ) -> Result<(), StoreError>;

    /// Add an operator; a name taken is [`StoreError::Duplicate`], a key
    /// in its scope that does not exist [`StoreError::NotFound`].
    fn add_operator(&mut self, operator: &NewOperator) -> Result<OperatorId, StoreError>;
    /// Every operator, oldest first.
    fn operators(&self) -> Result<Vec<Operator>, StoreError>;
    /// Remove an operator by name, and in the same transaction its login
    /// links and dashboard sessions (a browser logged in as it is logged
    /// out at its next request). An unknown name is [`StoreError::NotFound`].
    fn remove_operator(&mut self, name: &str) -> Result<(), StoreError>;

    /// Apply a batch of changes in one transaction: all or nothing.
    fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError>;

    /// Whether a commit is short and local enough to run on an async
    /// runtime's thread at light load (SQLite: a write to a local file).
    /// PostgreSQL's client must never run there.
    fn commits_inline(&self) -> bool {
        false
    }

    /// [`Store::apply`], failing at once instead of waiting when another
    /// process holds the store's write lock (for commits on an async
    /// runtime's thread; see [`Store::commits_inline`]).
    fn apply_without_waiting(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        self.apply(changes)
    }

    /// A number that changes when another process has written to the store
    /// since the last call (SQLite's `data_version`), so a running bunker
    /// notices CLI edits. Writes through this same store do not change it.
    fn external_version(&mut self) -> Result<u64, StoreError>;
}
