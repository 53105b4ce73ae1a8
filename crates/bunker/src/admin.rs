//! The user's administrative actions, on the store: answer held requests,
//! edit and revoke sessions, mint tokens, accept `nostrconnect://` URIs, and
//! the JSON views of what the store holds.
//!
//! The CLI (`rampart approvals|sessions|uri|connect|audit`) and the web
//! dashboard both call these functions, so each action has one
//! implementation. Every session write bumps its `revision`, which is how the
//! running bunker knows to take the stored copy over its own (it reloads
//! within ~200 ms). Decisions made inside the bunker process go to the
//! engine directly instead ([`crate::service::AdminCommand::Decide`]); from
//! another process they are written here as `Decided` and applied on reload.

use std::time::Duration;

use nip46::nostr::nips::nip19::{FromBech32, ToBech32};
use nip46::nostr::prelude::{PublicKey, RelayUrl, Timestamp, UnsignedEvent};
use nip46::{BunkerUri, ConnectSecret, NostrConnectUri, Permission, PermissionSet};
use serde::Serialize;
use store::{
    ApprovalDecision, ApprovalId, ApprovalStatus, AuditDecision, AuditEntry, Change, DecisionScope,
    KeyId, KeyScope, NewOperator, NewToken, Operator, PendingApproval, RequestSummary, Role, Rule,
    RuleEffect, Session, Store, StoreError, StoredKey, Vote,
};

use crate::describe;
use crate::engine::nostrconnect_session;
use crate::policy;
use crate::randomness::Randomness;

/// Why an admin action failed. The messages are meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Nothing matches.
    #[error("{0}")]
    NotFound(String),
    /// A prefix matches more than one thing.
    #[error("{0}")]
    Ambiguous(String),
    /// The input cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The four answers to a held request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Allow this request only.
    AllowOnce,
    /// Allow it, and from now on this method (this kind, for `sign_event`) for this app.
    AllowAlways,
    /// Refuse this request only.
    DenyOnce,
    /// Refuse it, and from now on this method (kind) for this app.
    DenyAlways,
}

impl Answer {
    /// Every answer, in the order interfaces offer them.
    pub const ALL: [Answer; 4] = [
        Answer::AllowOnce,
        Answer::AllowAlways,
        Answer::DenyOnce,
        Answer::DenyAlways,
    ];

    /// The name used in forms and the JSON API (`allow_once`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Answer::AllowOnce => "allow_once",
            Answer::AllowAlways => "allow_always",
            Answer::DenyOnce => "deny_once",
            Answer::DenyAlways => "deny_always",
        }
    }

    /// Parse a name from [`Answer::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Answer::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// The terminal's one-letter answers: `y` once, `a` always, `n` deny, `d` always deny.
    pub fn from_key(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Some(Answer::AllowOnce),
            "a" | "always" => Some(Answer::AllowAlways),
            "n" | "no" => Some(Answer::DenyOnce),
            "d" | "never" => Some(Answer::DenyAlways),
            _ => None,
        }
    }

    /// Whether it allows.
    pub const fn allows(self) -> bool {
        matches!(self, Answer::AllowOnce | Answer::AllowAlways)
    }

    /// Whether it is remembered.
    pub const fn is_always(self) -> bool {
        matches!(self, Answer::AllowAlways | Answer::DenyAlways)
    }

    /// The decision, a remembered one lasting `until` (`None` = until revoked).
    pub fn decision(self, until: Option<Timestamp>) -> ApprovalDecision {
        let scope = if self.is_always() {
            DecisionScope::Always { until }
        } else {
            DecisionScope::Once
        };
        ApprovalDecision {
            allow: self.allows(),
            scope,
        }
    }

    /// Words for a person, in the past tense (`allowed once`).
    pub const fn done(self) -> &'static str {
        match self {
            Answer::AllowOnce => "allowed once",
            Answer::AllowAlways => "allowed, and remembered",
            Answer::DenyOnce => "denied",
            Answer::DenyAlways => "denied, and remembered",
        }
    }
}

/// `now + duration`, for "always, but only for a while".
pub fn until(now: Timestamp, duration: Option<Duration>) -> Option<Timestamp> {
    duration.map(|d| Timestamp::from_secs(now.as_secs().saturating_add(d.as_secs())))
}

/// Requests still waiting, oldest first, as the store knows them.
pub fn pending_approvals(
    store: &dyn Store,
    now: Timestamp,
) -> Result<Vec<PendingApproval>, AdminError> {
    let mut pending: Vec<PendingApproval> = store
        .approvals()?
        .into_iter()
        .filter(|a| a.status == ApprovalStatus::Pending && a.expires_at > now)
        .collect();
    pending.sort_by_key(|a| a.created_at);
    Ok(pending)
}

/// The one waiting request whose id starts with `prefix`.
pub fn find_pending(
    store: &dyn Store,
    prefix: &str,
    now: Timestamp,
) -> Result<PendingApproval, AdminError> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() {
        return Err(AdminError::Invalid("give a request id".into()));
    }
    let mut matches: Vec<PendingApproval> = pending_approvals(store, now)?
        .into_iter()
        .filter(|a| a.id.0.starts_with(&prefix))
        .collect();
    match matches.len() {
        0 => Err(AdminError::NotFound(format!(
            "no pending request `{prefix}`; it may have been answered or expired"
        ))),
        1 => Ok(matches.remove(0)),
        _ => Err(AdminError::Ambiguous(format!(
            "`{prefix}` matches several requests; give more of the id"
        ))),
    }
}

/// Record the owner's decision for the running bunker to apply (from
/// another process: the CLI).
pub fn record_decision(
    store: &mut dyn Store,
    id: &ApprovalId,
    decision: ApprovalDecision,
) -> Result<(), AdminError> {
    let vote = Vote {
        by: store::OWNER.to_owned(),
        decision,
    };
    record_vote(store, id, vote)
}

/// Record someone's answer to a waiting request for the bunker holding it
/// to count on its next reload (another replica's dashboard, the CLI).
pub fn record_vote(store: &mut dyn Store, id: &ApprovalId, vote: Vote) -> Result<(), AdminError> {
    store.apply(&[Change::DecideApproval {
        id: id.clone(),
        vote,
    }])?;
    Ok(())
}

/// How many distinct people must allow `approval`: its key's quorum for a
/// sensitive kind (the key's own list, else `default_sensitive`), else 1.
/// The engine counts the same way.
pub fn allows_needed(
    approval: &PendingApproval,
    keys: &[StoredKey],
    default_sensitive: &[u16],
) -> u32 {
    let Some(key) = keys.iter().find(|k| k.id == approval.key_id) else {
        return 1;
    };
    let Some(kind) = approval
        .kind
        .filter(|_| approval.method == nip46::Method::SignEvent)
    else {
        return 1;
    };
    let sensitive = key
        .sensitive_kinds
        .as_deref()
        .unwrap_or(default_sensitive)
        .contains(&kind);
    if sensitive { key.quorum.max(1) } else { 1 }
}

/// The distinct people who allowed `approval` so far, as shown.
pub fn allowed_by(approval: &PendingApproval) -> Vec<String> {
    let mut names: Vec<&str> = Vec::new();
    for vote in approval.votes.iter().filter(|v| v.decision.allow) {
        if !names.contains(&vote.by.as_str()) {
            names.push(&vote.by);
        }
    }
    names.into_iter().map(voter_name).collect()
}

/// How a voter or actor is shown: an operator by name, the owner as `owner`.
pub fn voter_name(by: &str) -> String {
    if by == store::OWNER {
        "owner".to_owned()
    } else {
        by.to_owned()
    }
}

/// Set how many distinct people must allow a held request for one of a
/// key's sensitive kinds (every key with `None`); the names it applies to.
pub fn set_quorum(
    store: &mut dyn Store,
    name: Option<&str>,
    quorum: u32,
) -> Result<Applied, AdminError> {
    if quorum == 0 {
        return Err(AdminError::Invalid(
            "a quorum is at least 1 (1: one person's allow is enough)".into(),
        ));
    }
    let (key_id, names) = named_or_every_key(store, name)?;
    store.apply(&[Change::SetQuorum { key_id, quorum }])?;
    Ok(Applied::to(key_id, names))
}

/// Add an operator: `keys` by name (ignored for an owner, who covers every
/// key), or every key with `all_keys`.
pub fn add_operator(
    store: &mut dyn Store,
    name: &str,
    role: Role,
    keys: &[String],
    all_keys: bool,
    now: Timestamp,
) -> Result<Operator, AdminError> {
    store::operator::check_name(name).map_err(|e| AdminError::Invalid(e.to_string()))?;
    let scope = if all_keys || role == Role::Owner {
        KeyScope::All
    } else {
        if keys.is_empty() {
            return Err(AdminError::Invalid(format!(
                "say which keys an {role} covers: --keys k1,k2 or --all-keys"
            )));
        }
        let stored = store.keys()?;
        let mut ids = Vec::new();
        for wanted in keys {
            let wanted = wanted.trim();
            let key = stored
                .iter()
                .find(|k| k.name == wanted)
                .ok_or_else(|| AdminError::NotFound(format!("no key named `{wanted}`")))?;
            ids.push(key.id);
        }
        KeyScope::Keys(ids)
    };
    let new = NewOperator {
        name: name.to_owned(),
        role,
        keys: scope,
        created_at: now,
    };
    let id = store.add_operator(&new)?;
    Ok(Operator {
        id,
        name: new.name,
        role: new.role,
        keys: new.keys,
        created_at: now,
    })
}

/// The operator named `name`.
pub fn find_operator(store: &dyn Store, name: &str) -> Result<Operator, AdminError> {
    store
        .operators()?
        .into_iter()
        .find(|o| o.name == name.trim())
        .ok_or_else(|| AdminError::NotFound(format!("no operator named `{}`", name.trim())))
}

/// An operator's login or edit, for the audit log: what (`method`, e.g.
/// `session.revoke`), by whom (an operator's name or [`store::OWNER`]), on
/// which key (0: none or every key) and app, and about what (`detail`).
pub struct Action<'a> {
    /// What was done.
    pub method: &'a str,
    /// Who did it.
    pub by: &'a str,
    /// The key it concerned (`KeyId(0)`: none, or every key).
    pub key_id: KeyId,
    /// The app it concerned.
    pub client: Option<PublicKey>,
    /// About what (a key's name, the rules set), shortened.
    pub detail: &'a str,
}

/// Append an operator's action to the audit log (chained like every row).
pub fn audit_action(
    store: &mut dyn Store,
    action: &Action<'_>,
    now: Timestamp,
) -> Result<(), AdminError> {
    store.apply(&[Change::Audit(action_entry(action, now))])?;
    Ok(())
}

/// Append an edit made by the store's owner (the CLI) to the audit log.
pub fn audit_owner_action(
    store: &mut dyn Store,
    method: &str,
    key_id: KeyId,
    client: Option<PublicKey>,
    detail: &str,
) -> Result<(), AdminError> {
    let action = Action {
        method,
        by: store::OWNER,
        key_id,
        client,
        detail,
    };
    audit_action(store, &action, Timestamp::now())
}

/// The audit row of an action.
pub fn action_entry(action: &Action<'_>, now: Timestamp) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at: now,
        key_id: action.key_id,
        client: action.client,
        event_id: None,
        event_created_at: now,
        events: 1,
        request_id: describe::clip(action.detail, 200),
        method: action.method.to_owned(),
        kind: None,
        decision: AuditDecision::Action,
        outcome: "ok".to_owned(),
        signed_event_id: None,
        operator: Some(action.by.to_owned()),
    }
}

/// The session of `client` with key `key_id`, revoked or not.
pub fn session(
    store: &dyn Store,
    key_id: KeyId,
    client: &PublicKey,
) -> Result<Session, AdminError> {
    store
        .sessions()?
        .into_iter()
        .find(|s| s.key_id == key_id && s.client == *client)
        .ok_or_else(|| AdminError::NotFound(format!("no session for {}", client.to_hex())))
}

/// The one active session whose client pubkey (hex or npub) starts with `prefix`.
pub fn find_session(
    store: &dyn Store,
    prefix: &str,
    now: Timestamp,
) -> Result<Session, AdminError> {
    let prefix = match PublicKey::from_bech32(prefix.trim()) {
        Ok(pk) => pk.to_hex(),
        Err(_) => prefix.trim().to_ascii_lowercase(),
    };
    if prefix.is_empty() {
        return Err(AdminError::Invalid(
            "give a client pubkey or a prefix of it".into(),
        ));
    }
    let mut matches: Vec<Session> = store
        .sessions()?
        .into_iter()
        .filter(|s| s.is_active(now) && s.client.to_hex().starts_with(&prefix))
        .collect();
    match matches.len() {
        0 => Err(AdminError::NotFound(format!(
            "no active session for a client starting with `{prefix}`"
        ))),
        1 => Ok(matches.remove(0)),
        n => Err(AdminError::Ambiguous(format!(
            "`{prefix}` matches {n} sessions; give more of the pubkey"
        ))),
    }
}

/// Revoke a session: the app's next request is refused.
pub fn revoke_session(
    store: &mut dyn Store,
    key_id: KeyId,
    client: &PublicKey,
    now: Timestamp,
) -> Result<(), AdminError> {
    let found = session(store, key_id, client)?;
    if !found.is_active(now) {
        return Err(AdminError::NotFound(
            "that session has ended already".into(),
        ));
    }
    // RevokeSession bumps the revision, so the running bunker takes it.
    store.apply(&[Change::RevokeSession {
        key_id,
        client: *client,
        at: now,
    }])?;
    Ok(())
}

/// A change to a session's permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEdit {
    /// Add a rule, replacing any rule for the same permission.
    SetRule(Rule),
    /// Remove the rule for a permission (the app is asked again next time).
    RemoveRule(Permission),
}

/// Apply an edit to an active session and store it with a new revision.
pub fn edit_session(
    store: &mut dyn Store,
    key_id: KeyId,
    client: &PublicKey,
    edit: SessionEdit,
    now: Timestamp,
) -> Result<Session, AdminError> {
    let mut current = session(store, key_id, client)?;
    if !current.is_active(now) {
        return Err(AdminError::NotFound(
            "that session has ended; it cannot be edited".into(),
        ));
    }
    // Written as a merge, not the whole session: a rule the running
    // bunker stores meanwhile ("always allow") is kept.
    let change = match edit {
        SessionEdit::SetRule(rule) => {
            if matches!(rule.permission, Permission::Scoped { .. }) {
                return Err(AdminError::Invalid(format!(
                    "`{}` is not a permission Rampart can enforce; use a method or sign_event:<kind>",
                    rule.permission
                )));
            }
            Change::AddRules {
                key_id,
                client: *client,
                rules: vec![rule],
            }
        }
        SessionEdit::RemoveRule(permission) => {
            let before = current.rules.len();
            current.rules.retain(|r| r.permission != permission);
            if current.rules.len() == before {
                return Err(AdminError::NotFound(format!(
                    "the session has no rule for `{permission}`"
                )));
            }
            Change::RemoveRules {
                key_id,
                client: *client,
                permissions: vec![permission],
            }
        }
    };
    store.apply(&[change])?;
    // What the store holds now (with whatever else was merged in).
    session(store, key_id, client)
}

/// Lock (`lock`) or unlock one key by name, or every key (`None`): while
/// locked, every request for the key is refused (`unauthorized: key
/// locked`) and its held requests are refused at once, by every bunker on
/// the store (each notices within its reload poll). Returns the names of the
/// keys it applies to.
pub fn set_lock(
    store: &mut dyn Store,
    name: Option<&str>,
    lock: bool,
    now: Timestamp,
) -> Result<Applied, AdminError> {
    let (key_id, names) = named_or_every_key(store, name)?;
    store.apply(&[Change::SetKeyLock {
        key_id,
        locked_at: lock.then_some(now),
    }])?;
    Ok(Applied::to(key_id, names))
}

/// The keys an edit of one key or of every key applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The key, or `KeyId(0)` for every key (as audit rows name it).
    pub key_id: KeyId,
    /// Their names.
    pub names: Vec<String>,
}

impl Applied {
    fn to(key_id: Option<KeyId>, names: Vec<String>) -> Self {
        Applied {
            key_id: key_id.unwrap_or(KeyId(0)),
            names,
        }
    }
}

/// The key named (its id and name), or with `None` every key (no id, every
/// name): what a change to one key or to all applies to.
fn named_or_every_key(
    store: &dyn Store,
    name: Option<&str>,
) -> Result<(Option<KeyId>, Vec<String>), AdminError> {
    let keys = store.keys()?;
    match name.map(str::trim) {
        Some(n) => {
            let key = keys
                .into_iter()
                .find(|k| k.name == n)
                .ok_or_else(|| AdminError::NotFound(format!("no key named `{n}`")))?;
            Ok((Some(key.id), vec![key.name]))
        }
        None => Ok((None, keys.into_iter().map(|k| k.name).collect())),
    }
}

/// The key named, or the first one.
pub fn pick_key(store: &dyn Store, name: Option<&str>) -> Result<StoredKey, AdminError> {
    let keys = store.keys()?;
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => keys
            .into_iter()
            .find(|k| k.name == n)
            .ok_or_else(|| AdminError::NotFound(format!("no key named `{n}`"))),
        None => keys.into_iter().next().ok_or_else(|| {
            AdminError::NotFound("no keys yet: run `rampart key generate` first".into())
        }),
    }
}

/// Store a fresh single-use token for `key` and return its `bunker://` URI
/// (the only place the secret ever appears: the store keeps its hash).
#[allow(clippy::too_many_arguments)]
pub fn mint_token(
    store: &mut dyn Store,
    key: &StoredKey,
    grant: PermissionSet,
    expires_at: Option<Timestamp>,
    label: Option<String>,
    relays: Vec<RelayUrl>,
    rng: &mut dyn Randomness,
    now: Timestamp,
) -> Result<BunkerUri, AdminError> {
    if relays.is_empty() {
        return Err(AdminError::Invalid(
            "a bunker:// token needs at least one relay".into(),
        ));
    }
    let mut entropy = [0u8; 16];
    rng.fill(&mut entropy);
    let secret = ConnectSecret::from_entropy(entropy);
    let mut token = NewToken::new(key.id, &secret, grant, expires_at, now);
    token.label = label;
    store.add_token(&token)?;
    Ok(BunkerUri {
        signer: key.signer_pubkey,
        relays,
        secret: Some(secret),
    })
}

/// Save the session a `nostrconnect://` URI asks for; the running bunker
/// sends the `connect` response (carrying the URI's secret) on reload.
pub fn accept_nostrconnect(
    store: &mut dyn Store,
    key_id: KeyId,
    uri: &NostrConnectUri,
    grant: &PermissionSet,
    now: Timestamp,
) -> Result<Session, AdminError> {
    let mut session = nostrconnect_session(key_id, uri, grant, now);
    let previous = store
        .sessions()?
        .into_iter()
        .find(|s| s.key_id == key_id && s.client == uri.client);
    session.revision = previous.map_or(1, |p| p.revision + 1);
    store.apply(&[Change::PutSession(session.clone())])?;
    Ok(session)
}

/// The name of key `id` among `keys`, or `?`.
pub fn key_name(keys: &[StoredKey], id: KeyId) -> String {
    keys.iter()
        .find(|k| k.id == id)
        .map_or_else(|| "?".to_owned(), |k| k.name.clone())
}

/// A held request as the CLI and the JSON API show it.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    /// The approval id.
    pub id: String,
    /// The key's name.
    pub key: String,
    /// The app's name, or a short pubkey (an unverified hint).
    pub app: String,
    /// The app's claimed URL (unverified).
    pub app_url: Option<String>,
    /// The app's claimed image URL (unverified).
    pub app_image: Option<String>,
    /// The client pubkey (hex).
    pub client: String,
    /// The client pubkey (npub).
    pub client_npub: String,
    /// The NIP-46 request id the answer will carry.
    pub request_id: String,
    /// The method.
    pub method: String,
    /// The kind, for `sign_event`.
    pub kind: Option<u16>,
    /// The kind's common name.
    pub kind_name: Option<&'static str>,
    /// What "always" would remember (`sign_event:1`, `nip44_decrypt`).
    pub permission: String,
    /// One line for a person.
    pub description: String,
    /// What the request asks, as the engine summarized it.
    pub details: RequestSummary,
    /// For `sign_event`: the complete event signed if allowed (id included).
    pub event: Option<UnsignedEvent>,
    /// The same event as JSON text, exactly as it is signed (its length is
    /// the size shown).
    #[serde(skip)]
    pub event_json: Option<String>,
    /// When asked (unix seconds).
    pub created_at: u64,
    /// When the client gets `unauthorized` (unix seconds).
    pub expires_at: u64,
    /// Who allowed it so far (distinct people; `owner` for the store's owner).
    pub allowed_by: Vec<String>,
    /// How many distinct people must allow it (a sensitive kind's quorum).
    pub allows_needed: u32,
}

impl ApprovalView {
    /// The view of `approval`; `default_sensitive`: the kinds a key without
    /// its own list always asks for (to tell its quorum).
    pub fn new(approval: &PendingApproval, keys: &[StoredKey], default_sensitive: &[u16]) -> Self {
        let client = approval.client.to_hex();
        ApprovalView {
            allowed_by: allowed_by(approval),
            allows_needed: allows_needed(approval, keys, default_sensitive),
            id: approval.id.0.clone(),
            key: key_name(keys, approval.key_id),
            app: describe::app_label(&approval.metadata, &client),
            app_url: approval.metadata.url.clone(),
            app_image: approval.metadata.image.clone(),
            client_npub: approval.client.to_bech32().unwrap_or_default(),
            request_id: approval.request_id.clone(),
            method: approval.method.as_str().to_owned(),
            kind: approval.kind,
            kind_name: approval.kind.and_then(describe::kind_name),
            permission: policy::permission_for(approval.method, approval.kind).to_string(),
            description: describe::one_line(approval),
            details: approval.summary.clone(),
            event_json: approval.event.as_ref().map(|e| e.as_json()),
            event: approval.event.clone(),
            created_at: approval.created_at.as_secs(),
            expires_at: approval.expires_at.as_secs(),
            client,
        }
    }
}

/// One rule of a session, for display.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    /// `sign_event:1`, `nip44_encrypt`, …
    pub permission: String,
    /// `allow` or `deny`.
    pub effect: RuleEffect,
    /// When it stops applying (unix seconds); `None` = until removed.
    pub expires_at: Option<u64>,
    /// Whether it has stopped applying.
    pub expired: bool,
}

/// A session as the CLI and the JSON API show it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    /// The key's name.
    pub key: String,
    /// The key's id.
    pub key_id: i64,
    /// The client pubkey (hex).
    pub client: String,
    /// The client pubkey (npub).
    pub client_npub: String,
    /// The app's claimed name (unverified).
    pub name: Option<String>,
    /// The app's claimed URL (unverified).
    pub url: Option<String>,
    /// The app's claimed image URL (unverified).
    pub image: Option<String>,
    /// `bunker` or `nostrconnect`.
    pub origin: &'static str,
    /// Permissions currently allowed.
    pub allowed: String,
    /// Permissions denied by a rule.
    pub denied: Vec<String>,
    /// Every rule.
    pub rules: Vec<RuleView>,
    /// What the app asked for at connect time (grants nothing).
    pub requested: String,
    /// When created (unix seconds).
    pub created_at: u64,
    /// Last request (unix seconds).
    pub last_used_at: Option<u64>,
    /// Requests answered or refused.
    pub requests: u64,
    /// Whether it can be used.
    pub active: bool,
    /// When revoked or logged out (unix seconds).
    pub revoked_at: Option<u64>,
}

impl SessionView {
    /// The view of `session` at `now`.
    pub fn new(session: &Session, keys: &[StoredKey], now: Timestamp) -> Self {
        SessionView {
            key: key_name(keys, session.key_id),
            key_id: session.key_id.0,
            client: session.client.to_hex(),
            client_npub: session.client.to_bech32().unwrap_or_default(),
            name: session.metadata.name.clone(),
            url: session.metadata.url.clone(),
            image: session.metadata.image.clone(),
            origin: session.origin.as_str(),
            allowed: policy::allowed(session, now).to_string(),
            denied: session
                .rules
                .iter()
                .filter(|r| r.effect == RuleEffect::Deny && policy::in_force(r, now))
                .map(|r| r.permission.to_string())
                .collect(),
            rules: session
                .rules
                .iter()
                .map(|r| RuleView {
                    permission: r.permission.to_string(),
                    effect: r.effect,
                    expires_at: r.expires_at.map(|t| t.as_secs()),
                    expired: !policy::in_force(r, now),
                })
                .collect(),
            requested: session.requested_perms.to_string(),
            created_at: session.created_at.as_secs(),
            last_used_at: session.last_used_at.map(|t| t.as_secs()),
            requests: session.request_count,
            active: session.is_active(now),
            revoked_at: session.revoked_at.map(|t| t.as_secs()),
        }
    }
}

/// An audit row as the CLI and the JSON API show it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditView {
    /// Sequence number.
    pub seq: i64,
    /// When (unix seconds).
    pub at: u64,
    /// The key's name (`-` for an action on no key or every key).
    pub key: String,
    /// The client pubkey (hex; empty for an action on no app).
    pub client: String,
    /// The app's claimed name (unverified), from its session.
    pub app: Option<String>,
    /// The request event id (empty for an action).
    pub event_id: String,
    /// The NIP-46 request id.
    pub request_id: String,
    /// The method as sent.
    pub method: String,
    /// The kind, for `sign_event`.
    pub kind: Option<u16>,
    /// allowed, approved, denied, pending, rate_limited, invalid, action.
    pub decision: &'static str,
    /// What was sent back: `ok`, `auth_url` or an error code.
    pub outcome: String,
    /// The id of the event signed, if any.
    pub signed_event_id: Option<String>,
    /// How many request events the row stands for (more than 1 for refused
    /// strangers counted together).
    pub events: u32,
    /// Who decided a held request or did an action (`owner` for the store's
    /// owner); none for what a rule decided.
    pub operator: Option<String>,
}

impl AuditView {
    /// The view of `row`; the app's name is looked up in `sessions`.
    pub fn new(row: &AuditEntry, keys: &[StoredKey], sessions: &[Session]) -> Self {
        AuditView {
            seq: row.seq,
            at: row.at.as_secs(),
            key: if row.key_id.0 == 0 {
                "-".to_owned()
            } else {
                key_name(keys, row.key_id)
            },
            client: row.client.map(|c| c.to_hex()).unwrap_or_default(),
            app: sessions
                .iter()
                .find(|s| s.key_id == row.key_id && Some(s.client) == row.client)
                .and_then(|s| s.metadata.name.clone()),
            event_id: row.event_id.map(|e| e.to_hex()).unwrap_or_default(),
            request_id: row.request_id.clone(),
            method: row.method.clone(),
            kind: row.kind,
            decision: row.decision.as_str(),
            outcome: row.outcome.clone(),
            signed_event_id: row.signed_event_id.map(|e| e.to_hex()),
            events: row.events,
            operator: row
                .operator
                .as_deref()
                .map(|o| o.split(',').map(voter_name).collect::<Vec<_>>().join(",")),
        }
    }
}

/// A client pubkey given as hex or npub.
pub fn parse_pubkey(text: &str) -> Result<PublicKey, AdminError> {
    let text = text.trim();
    PublicKey::from_hex(text)
        .or_else(|_| PublicKey::from_bech32(text))
        .map_err(|_| {
            AdminError::Invalid(format!(
                "`{}` is not a hex or npub public key",
                describe::clip(text, 70)
            ))
        })
}

/// A rule from user input: a permission (`sign_event:1`, `nip44_encrypt`),
/// allow or deny, optionally for a while.
pub fn parse_rule(
    permission: &str,
    effect: RuleEffect,
    duration: Option<Duration>,
    now: Timestamp,
) -> Result<Rule, AdminError> {
    let permission: Permission = permission.trim().parse().map_err(|e| {
        AdminError::Invalid(format!(
            "`{}` is not a permission: {e}",
            describe::clip(permission, 70)
        ))
    })?;
    Ok(Rule {
        permission,
        effect,
        expires_at: until(now, duration),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nip46::nostr::prelude::Keys;
    use nip46::{Method, Preset};
    use store::SessionOrigin;
    use store_sqlite::SqliteStore;

    struct Counter(u8);
    impl Randomness for Counter {
        fn fill(&mut self, out: &mut [u8]) {
            for b in out {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
        }
    }

    fn store_with_key() -> (tempfile::TempDir, SqliteStore, StoredKey) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("t.sqlite")).unwrap();
        let pass = crate::vault::Passphrase::new("p");
        let kek = crate::vault::Kek::for_store(&mut store, &pass, 4).unwrap();
        let key = Keys::generate();
        let new = crate::vault::seal_key(
            "alice",
            key.secret_key(),
            nip46::nostr::nips::nip49::KeySecurity::Medium,
            &kek,
            Timestamp::from_secs(1),
        )
        .unwrap();
        store.add_key(&new).unwrap();
        let stored = store.keys().unwrap().remove(0);
        (dir, store, stored)
    }

    #[test]
    fn answers_parse_and_decide() {
        for a in Answer::ALL {
            assert_eq!(Answer::parse(a.as_str()), Some(a));
        }
        assert_eq!(Answer::from_key(" Y\n"), Some(Answer::AllowOnce));
        assert_eq!(Answer::from_key("a"), Some(Answer::AllowAlways));
        assert_eq!(Answer::from_key("n"), Some(Answer::DenyOnce));
        assert_eq!(Answer::from_key("d"), Some(Answer::DenyAlways));
        assert_eq!(Answer::from_key("maybe"), None);
        let t = Timestamp::from_secs(100);
        let d = Answer::AllowAlways.decision(until(t, Some(Duration::from_secs(3600))));
        assert_eq!(
            d,
            ApprovalDecision {
                allow: true,
                scope: DecisionScope::Always {
                    until: Some(Timestamp::from_secs(3700))
                }
            }
        );
        assert_eq!(
            Answer::DenyOnce.decision(None),
            ApprovalDecision {
                allow: false,
                scope: DecisionScope::Once
            }
        );
    }

    #[test]
    fn session_edits_bump_the_revision_and_revoke_ends_it() {
        let (_dir, mut store, key) = store_with_key();
        let client = Keys::generate().public_key();
        let now = Timestamp::from_secs(10);
        let fresh = Session::new(
            key.id,
            client,
            &Preset::Read.permissions(),
            SessionOrigin::Bunker,
            now,
        );
        store.apply(&[Change::PutSession(fresh)]).unwrap();

        let rule = parse_rule(
            "sign_event:1",
            RuleEffect::Allow,
            Some(Duration::from_secs(60)),
            now,
        )
        .unwrap();
        let edited =
            edit_session(&mut store, key.id, &client, SessionEdit::SetRule(rule), now).unwrap();
        assert_eq!(edited.revision, 1);
        let stored = find_session(&store, &client.to_hex()[..10], now).unwrap();
        assert_eq!(
            policy::evaluate(&stored, now, Method::SignEvent, Some(1)),
            policy::Verdict::Allow
        );
        assert_eq!(
            policy::evaluate(
                &stored,
                Timestamp::from_secs(70),
                Method::SignEvent,
                Some(1)
            ),
            policy::Verdict::Ask,
            "the timed rule expired"
        );

        let removed = SessionEdit::RemoveRule("sign_event:1".parse().unwrap());
        assert_eq!(
            edit_session(&mut store, key.id, &client, removed.clone(), now)
                .unwrap()
                .revision,
            2
        );
        assert!(matches!(
            edit_session(&mut store, key.id, &client, removed, now),
            Err(AdminError::NotFound(_))
        ));
        let scoped = parse_rule("nip44_encrypt:x", RuleEffect::Allow, None, now).unwrap();
        assert!(matches!(
            edit_session(
                &mut store,
                key.id,
                &client,
                SessionEdit::SetRule(scoped),
                now
            ),
            Err(AdminError::Invalid(_))
        ));
        assert!(parse_rule("teleport", RuleEffect::Allow, None, now).is_err());

        revoke_session(&mut store, key.id, &client, now).unwrap();
        let after = session(&store, key.id, &client).unwrap();
        assert!(!after.is_active(now));
        assert!(after.revision >= 3);
        assert!(find_session(&store, &client.to_hex(), now).is_err());
        assert!(revoke_session(&mut store, key.id, &client, now).is_err());
    }

    #[test]
    fn tokens_and_pending_lookups() {
        let (_dir, mut store, key) = store_with_key();
        let now = Timestamp::from_secs(10);
        let relay = RelayUrl::parse("ws://127.0.0.1:7447").unwrap();
        let uri = mint_token(
            &mut store,
            &key,
            Preset::Write.permissions(),
            None,
            None,
            vec![relay],
            &mut Counter(0),
            now,
        )
        .unwrap();
        assert_eq!(uri.signer, key.signer_pubkey);
        assert_eq!(store.tokens().unwrap().len(), 1);
        assert!(
            mint_token(
                &mut store,
                &key,
                PermissionSet::empty(),
                None,
                None,
                vec![],
                &mut Counter(0),
                now
            )
            .is_err()
        );
        assert_eq!(pick_key(&store, None).unwrap().id, key.id);
        assert!(pick_key(&store, Some("bob")).is_err());

        let approval = |id: &str| PendingApproval {
            id: ApprovalId(id.into()),
            key_id: key.id,
            client: Keys::generate().public_key(),
            metadata: nip46::ClientMetadata::default(),
            request_id: "r".into(),
            method: Method::SignEvent,
            kind: Some(1),
            summary: store::RequestSummary::Other,
            event: None,
            created_at: now,
            expires_at: Timestamp::from_secs(70),
            status: ApprovalStatus::Pending,
            votes: Vec::new(),
        };
        store
            .apply(&[
                Change::PutApproval(approval("abc1")),
                Change::PutApproval(approval("abc2")),
            ])
            .unwrap();
        assert!(matches!(
            find_pending(&store, "abc", now),
            Err(AdminError::Ambiguous(_))
        ));
        let found = find_pending(&store, "ABC1", now).unwrap();
        record_decision(&mut store, &found.id, Answer::AllowOnce.decision(None)).unwrap();
        // Still waiting: the bunker holding it counts the vote at its next reload.
        let pending = pending_approvals(&store, now).unwrap();
        assert_eq!(pending.len(), 2);
        let voted = pending.iter().find(|a| a.id == found.id).unwrap();
        assert_eq!(allowed_by(voted), ["owner"]);
        store
            .apply(&[Change::SetApprovalStatus {
                id: found.id.clone(),
                status: ApprovalStatus::Done(Answer::AllowOnce.decision(None)),
            }])
            .unwrap();
        assert_eq!(pending_approvals(&store, now).unwrap().len(), 1);
        assert!(
            pending_approvals(&store, Timestamp::from_secs(70))
                .unwrap()
                .is_empty(),
            "expired"
        );
        assert!(matches!(
            find_pending(&store, "abc1", now),
            Err(AdminError::NotFound(_))
        ));
    }
}
