//! Sessions: what one client app may do with one user key.
//!
//! A session is keyed by (user key, client pubkey). Its permissions are a
//! list of [`Rule`]s, each allowing or denying one [`Permission`], optionally
//! until a time. This is the data only: what the rules mean for a call
//! (deny wins, expiry) is decided in one place, the bunker's `policy` module.

use nip46::nostr::prelude::{PublicKey, RelayUrl, Timestamp};
use nip46::{ClientMetadata, Permission, PermissionSet};
use serde::{Deserialize, Serialize};

use crate::key::KeyId;

/// Whether a rule allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleEffect {
    /// Answer without asking.
    Allow,
    /// Refuse without asking.
    Deny,
}

/// One permission rule of a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// What the rule is about (`sign_event:1`, `nip44_encrypt`, …).
    pub permission: Permission,
    /// Allow or deny.
    pub effect: RuleEffect,
    /// When the rule stops applying; `None` = until revoked.
    pub expires_at: Option<Timestamp>,
}

impl Rule {
    /// A rule that applies until removed.
    pub fn permanent(permission: Permission, effect: RuleEffect) -> Self {
        Rule {
            permission,
            effect,
            expires_at: None,
        }
    }
}

/// How the session came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionOrigin {
    /// A client presented a `bunker://` secret in `connect`.
    Bunker,
    /// The user accepted a client's `nostrconnect://` URI.
    NostrConnect,
}

impl SessionOrigin {
    /// Lower-case name as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionOrigin::Bunker => "bunker",
            SessionOrigin::NostrConnect => "nostrconnect",
        }
    }
}

/// A session between a client app and a user key. Its `Debug` leaves the
/// pending `connect` secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// The user key the app acts for.
    pub key_id: KeyId,
    /// The app's client pubkey (its kind-24133 author).
    pub client: PublicKey,
    /// Permission rules.
    pub rules: Vec<Rule>,
    /// When the whole session ends; `None` = until revoked.
    pub expires_at: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Last request time.
    pub last_used_at: Option<Timestamp>,
    /// Number of requests answered or refused.
    pub request_count: u64,
    /// App name/url/image as the app claims (unverified display hints).
    pub metadata: ClientMetadata,
    /// What the app asked for at connect time (shown to the user; grants nothing).
    pub requested_perms: PermissionSet,
    /// How it was created.
    pub origin: SessionOrigin,
    /// Relays the app listens on (nostrconnect sessions); responses also go there.
    pub relays: Vec<RelayUrl>,
    /// When it was revoked or logged out; a revoked session answers nothing.
    pub revoked_at: Option<Timestamp>,
    /// For a nostrconnect session whose `connect` response has not been sent
    /// yet: the secret from the URI, which that response must carry.
    pub connect_reply: Option<String>,
    /// Incremented by every writer on every change (bunker or CLI), so the
    /// running bunker can tell whether the stored copy is newer than its own.
    pub revision: u64,
}

impl Session {
    /// A fresh session allowing `grant`.
    pub fn new(
        key_id: KeyId,
        client: PublicKey,
        grant: &PermissionSet,
        origin: SessionOrigin,
        now: Timestamp,
    ) -> Self {
        Session {
            key_id,
            client,
            rules: grant
                .iter()
                .map(|p| Rule::permanent(p.clone(), RuleEffect::Allow))
                .collect(),
            expires_at: None,
            created_at: now,
            last_used_at: None,
            request_count: 0,
            metadata: ClientMetadata::default(),
            requested_perms: PermissionSet::empty(),
            origin,
            relays: Vec::new(),
            revoked_at: None,
            connect_reply: None,
            revision: 0,
        }
    }

    /// Whether the session can be used at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }

    /// Add rules, each replacing any rule for the same permission (what
    /// [`Change::AddRules`](crate::change::Change::AddRules) does in a store).
    pub fn set_rules(&mut self, rules: impl IntoIterator<Item = Rule>) {
        for rule in rules {
            self.set_rule(rule);
        }
    }

    /// Add a rule, replacing any rule for the same permission.
    pub fn set_rule(&mut self, rule: Rule) {
        self.rules.retain(|r| r.permission != rule.permission);
        self.rules.push(rule);
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("key_id", &self.key_id)
            .field("client", &self.client)
            .field("rules", &self.rules)
            .field("expires_at", &self.expires_at)
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .field("request_count", &self.request_count)
            .field("metadata", &self.metadata)
            .field("requested_perms", &self.requested_perms)
            .field("origin", &self.origin)
            .field("relays", &self.relays)
            .field("revoked_at", &self.revoked_at)
            .field(
                "connect_reply",
                &self.connect_reply.as_ref().map(|_| "<secret>"),
            )
            .field("revision", &self.revision)
            .finish()
    }
}
