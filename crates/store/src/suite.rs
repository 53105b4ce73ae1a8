//! The behaviour every [`Store`] backend must have, as one shared test suite.
//!
//! The trait's documentation says what a backend does; this module checks
//! it, so SQLite and any later backend (PostgreSQL) are held to the same
//! contract. Each check takes a fresh, empty store and panics on the first
//! difference. A backend's test file runs them all with one line:
//!
//! ```ignore
//! store::store_suite!(|| Box::new(MyStore::connect_fresh().unwrap()) as Box<dyn store::Store>);
//! ```
//!
//! which generates one `#[test]` per check. The closure may instead return
//! any value that dereferences mutably to `dyn Store` (a fixture holding a
//! temporary directory next to the store, say). [`run_all`] runs the same
//! checks in one test.

use nip46::nostr::prelude::{EventId, Kind, PublicKey, RelayUrl, Tag, Timestamp, UnsignedEvent};
use nip46::{ClientMetadata, Method, Permission, PermissionSet, Preset};

use crate::{
    ApprovalDecision, ApprovalId, ApprovalStatus, AuditDecision, AuditEntry, AuditQuery,
    AuditedEvent, Change, ConnectionToken, DecisionScope, KeyId, NewKey, NewToken, PendingApproval,
    RequestSummary, Rule, RuleEffect, SecretHash, ServedRelays, Session, SessionOrigin, Store,
    StoreError, TokenId,
};
use crate::{ChainError, ChainPoint, ChainedRow, ResealedKey, VaultParams, Verified};
use crate::{Claim, DashboardSecret, HeldRequest, ReplicaId, SealedAnswer};
use crate::{DashboardUser, KeyScope, NewOperator, OperatorId, Role, Vote};

/// One check of the suite: gets a fresh, empty store, panics on failure.
pub type Check = fn(&mut dyn Store);

/// Calls `$callback! { [$args] check_a, check_b, … }` with the names of every
/// check, so the list lives in one place.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_store_check {
    ($($callback:ident)::+ [$($args:tt)*]) => {
        $($callback)::+ ! {
            [$($args)*]
            keys_round_trip,
            key_names_are_unique,
            key_ids_are_not_reused,
            remove_unknown_key_is_not_found,
            remove_key_cascades_but_keeps_audit,
            tokens_round_trip,
            token_for_unknown_key_is_refused,
            token_secrets_are_unique,
            token_is_single_use,
            consume_unknown_token_is_not_found,
            revoke_token_stops_only_unused_ones,
            sessions_round_trip,
            put_session_replaces,
            add_rules_merge_into_the_stored_session,
            clear_connect_reply_keeps_the_rest,
            session_for_unknown_key_is_refused,
            touch_session_counts_and_keeps_latest_use,
            revoke_session_keeps_first_time,
            approvals_round_trip_newest_first,
            approval_status_changes,
            approval_ids_are_unique,
            audit_round_trip,
            audit_newest_first_with_limit,
            audit_filters,
            audited_events_since,
            apply_is_all_or_nothing,
            empty_apply_is_a_no_op,
            external_version_is_stable_alone,
            served_relays_are_replaced,
            key_locks_keep_the_first_time_and_cover_all_keys,
            sensitive_kinds_are_kept_per_key,
            the_vault_is_created_once_and_keys_are_resealed_together,
            a_new_signer_revokes_the_keys_sessions_and_unused_tokens,
            audit_rows_are_chained_across_batches,
            audit_retention_prunes_a_prefix_and_the_chain_still_verifies,
            heartbeats_list_every_replica,
            answers_are_claimed_once,
            takeover_claims_report_the_holder,
            answers_are_pruned_by_age,
            dashboard_logins_work_once,
            dashboard_sessions_last_until_removed,
            held_requests_are_adopted_once_with_their_claims,
            text_a_peer_chose_is_kept_whatever_it_holds,
            decisions_only_reach_waiting_requests,
            operators_round_trip_and_removal_ends_their_logins,
            quorums_are_kept_per_key,
            action_rows_name_their_operator,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_suite_tests {
    ([$make:expr] $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let mut fixture = ($make)();
                $crate::suite::$check(&mut *fixture);
            }
        )*
    };
}

/// Generate one `#[test]` per suite check, each on a fresh store made by
/// the given closure (returning `Box<dyn Store>` or anything that
/// dereferences mutably to `dyn Store`).
#[macro_export]
macro_rules! store_suite {
    ($make:expr) => {
        $crate::__for_each_store_check!($crate::__store_suite_tests[$make]);
    };
}

macro_rules! checks_table {
    ([] $($check:ident),* $(,)?) => {
        /// Every check with its name, in a stable order.
        pub const CHECKS: &[(&str, Check)] = &[$((stringify!($check), $check as Check)),*];
    };
}

crate::__for_each_store_check!(checks_table[]);

/// Run every check, each on a fresh store from `make`; panics naming the
/// first check that fails.
pub fn run_all(make: &mut dyn FnMut() -> Box<dyn Store>) {
    for (name, check) in CHECKS {
        let mut store = make();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&mut *store)));
        if let Err(panic) = outcome {
            eprintln!("store suite: check `{name}` failed");
            std::panic::resume_unwind(panic);
        }
    }
}

// ---------------------------------------------------------------------------
// Fixtures

fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what}: unexpected error: {e}"),
    }
}

fn some<T>(value: Option<T>, what: &str) -> T {
    match value {
        Some(value) => value,
        None => panic!("{what}: missing"),
    }
}

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

fn pk(n: u8) -> PublicKey {
    PublicKey::from_byte_array([n; 32])
}

fn event(n: u8) -> EventId {
    EventId::from_byte_array([n; 32])
}

fn relay(url: &str) -> RelayUrl {
    match RelayUrl::parse(url) {
        Ok(r) => r,
        Err(e) => panic!("fixture relay {url}: {e}"),
    }
}

fn perms(text: &str) -> PermissionSet {
    match text.parse() {
        Ok(p) => p,
        Err(e) => panic!("fixture permissions {text}: {e}"),
    }
}

fn perm(text: &str) -> Permission {
    match text.parse() {
        Ok(p) => p,
        Err(e) => panic!("fixture permission {text}: {e}"),
    }
}

fn new_key(name: &str, n: u8) -> NewKey {
    NewKey {
        name: name.to_owned(),
        user_pubkey: pk(n),
        signer_pubkey: pk(n.wrapping_add(100)),
        user_secret: format!("ncryptsec1user{n}"),
        signer_secret: format!("ncryptsec1signer{n}"),
        created_at: t(1_700_000_000 + u64::from(n)),
    }
}

fn add_key(store: &mut dyn Store, name: &str, n: u8) -> KeyId {
    ok(store.add_key(&new_key(name, n)), "add_key")
}

fn new_token(key_id: KeyId, n: u8) -> NewToken {
    NewToken {
        key_id,
        secret_hash: SecretHash::of(&format!("secret-{n}")),
        grant: PermissionSet::from(Preset::Write),
        expires_at: None,
        created_at: t(1_700_000_100),
        label: None,
    }
}

fn token(store: &dyn Store, id: TokenId) -> ConnectionToken {
    let tokens = ok(store.tokens(), "tokens");
    match tokens.into_iter().find(|tok| tok.id == id) {
        Some(tok) => tok,
        None => panic!("token {} is missing", id.0),
    }
}

/// A session with every field set to something other than its default.
fn full_session(key_id: KeyId, client: PublicKey) -> Session {
    Session {
        key_id,
        client,
        rules: vec![
            Rule::permanent(perm("get_public_key"), RuleEffect::Allow),
            Rule {
                permission: perm("sign_event:1"),
                effect: RuleEffect::Allow,
                expires_at: Some(t(1_800_000_000)),
            },
            Rule::permanent(perm("sign_event:0"), RuleEffect::Deny),
            Rule {
                permission: perm("nip44_encrypt:someone"),
                effect: RuleEffect::Deny,
                expires_at: Some(t(1_900_000_000)),
            },
        ],
        expires_at: Some(t(2_000_000_000)),
        created_at: t(1_700_000_200),
        last_used_at: Some(t(1_700_000_300)),
        request_count: 42,
        metadata: ClientMetadata {
            name: Some("Client \"quoted\" ünïcode".to_owned()),
            url: Some("https://client.example.com".to_owned()),
            image: Some("https://client.example.com/icon.png".to_owned()),
        },
        requested_perms: perms("nip44_encrypt,sign_event:4,get_relays:x"),
        origin: SessionOrigin::NostrConnect,
        relays: vec![
            relay("wss://relay1.example.com"),
            relay("wss://relay2.example.com/path/"),
        ],
        revoked_at: Some(t(1_700_000_400)),
        connect_reply: Some("0s8j2djs".to_owned()),
        revision: 17,
    }
}

fn minimal_session(key_id: KeyId, client: PublicKey) -> Session {
    Session::new(
        key_id,
        client,
        &PermissionSet::from(Preset::Read),
        SessionOrigin::Bunker,
        t(1_700_000_500),
    )
}

fn session(store: &dyn Store, key_id: KeyId, client: PublicKey) -> Option<Session> {
    ok(store.sessions(), "sessions")
        .into_iter()
        .find(|s| s.key_id == key_id && s.client == client)
}

fn approval(key_id: KeyId, id: &str, created_at: u64, status: ApprovalStatus) -> PendingApproval {
    PendingApproval {
        id: ApprovalId(id.to_owned()),
        key_id,
        client: pk(7),
        metadata: ClientMetadata {
            name: Some("App".to_owned()),
            url: None,
            image: Some("https://app.example/i.png".to_owned()),
        },
        request_id: format!("req-{id}"),
        method: Method::SignEvent,
        kind: Some(30_023),
        summary: RequestSummary::SignEvent {
            kind: 30_023,
            content: "hello".to_owned(),
            content_hidden: 0,
            tags: vec![vec!["d".to_owned(), "post".to_owned()]],
            tags_hidden: 0,
            created_at: Some(created_at),
        },
        event: Some(unsigned_event(created_at)),
        created_at: t(created_at),
        expires_at: t(created_at + 60),
        status,
        votes: Vec::new(),
    }
}

/// The event a held `sign_event` would sign, id computed.
fn unsigned_event(created_at: u64) -> UnsignedEvent {
    let mut event = UnsignedEvent::new(
        pk(7),
        t(created_at),
        Kind::from(30_023),
        [Tag::identifier("post")],
        "hello",
    );
    event.ensure_id();
    event
}

fn audit_row(key_id: KeyId, client: PublicKey, at: u64, n: u8) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at: t(at),
        key_id,
        client: Some(client),
        event_id: Some(event(n)),
        event_created_at: t(at.saturating_sub(3)),
        events: 1,
        request_id: format!("r{n}"),
        method: "sign_event".to_owned(),
        kind: Some(1),
        decision: AuditDecision::Allowed,
        outcome: "ok".to_owned(),
        signed_event_id: Some(event(n.wrapping_add(128))),
        operator: None,
    }
}

fn audit_all(store: &dyn Store) -> Vec<AuditEntry> {
    ok(store.audit(&AuditQuery::default()), "audit")
}

fn apply(store: &mut dyn Store, changes: &[Change]) {
    ok(store.apply(changes), "apply");
}

// ---------------------------------------------------------------------------
// Keys

/// Every key field comes back; keys are listed oldest first.
pub fn keys_round_trip(store: &mut dyn Store) {
    assert!(
        ok(store.keys(), "keys").is_empty(),
        "a fresh store has no keys"
    );
    let a = add_key(store, "alice", 1);
    let b = add_key(store, "bob", 2);
    assert_ne!(a, b);
    let keys = ok(store.keys(), "keys");
    assert_eq!(keys.len(), 2);
    for (stored, (id, new)) in keys
        .iter()
        .zip([(a, new_key("alice", 1)), (b, new_key("bob", 2))])
    {
        assert_eq!(stored.id, id);
        assert_eq!(stored.name, new.name);
        assert_eq!(stored.user_pubkey, new.user_pubkey);
        assert_eq!(stored.signer_pubkey, new.signer_pubkey);
        assert_eq!(stored.user_secret, new.user_secret);
        assert_eq!(stored.signer_secret, new.signer_secret);
        assert_eq!(stored.created_at, new.created_at);
    }
}

/// A taken name (or signer pubkey) is `Duplicate` and changes nothing.
pub fn key_names_are_unique(store: &mut dyn Store) {
    add_key(store, "alice", 1);
    let err = store.add_key(&new_key("alice", 2)).err();
    assert!(matches!(err, Some(StoreError::Duplicate(_))), "{err:?}");
    let mut same_signer = new_key("carol", 3);
    same_signer.signer_pubkey = new_key("alice", 1).signer_pubkey;
    let err = store.add_key(&same_signer).err();
    assert!(matches!(err, Some(StoreError::Duplicate(_))), "{err:?}");
    assert_eq!(ok(store.keys(), "keys").len(), 1);
}

/// A removed key's id is never handed out again (audit rows keep it).
pub fn key_ids_are_not_reused(store: &mut dyn Store) {
    let first = add_key(store, "alice", 1);
    ok(store.remove_key("alice"), "remove_key");
    let second = add_key(store, "alice", 1);
    assert_ne!(first, second);
}

/// Removing an unknown key is `NotFound`.
pub fn remove_unknown_key_is_not_found(store: &mut dyn Store) {
    add_key(store, "alice", 1);
    let err = store.remove_key("bob").err();
    assert!(matches!(err, Some(StoreError::NotFound(_))), "{err:?}");
    assert_eq!(ok(store.keys(), "keys").len(), 1);
}

/// Removing a key removes its tokens, sessions and approvals, and nothing
/// of another key; its audit rows stay.
pub fn remove_key_cascades_but_keeps_audit(store: &mut dyn Store) {
    let a = add_key(store, "alice", 1);
    let b = add_key(store, "bob", 2);
    for (key, n) in [(a, 1), (b, 2)] {
        ok(store.add_token(&new_token(key, n)), "add_token");
        apply(
            store,
            &[
                Change::PutSession(minimal_session(key, pk(50 + n))),
                Change::PutApproval(approval(
                    key,
                    &format!("ap{n}"),
                    100,
                    ApprovalStatus::Pending,
                )),
                Change::Audit(audit_row(key, pk(50 + n), 100, n)),
            ],
        );
    }
    ok(store.remove_key("alice"), "remove_key");

    let keys = ok(store.keys(), "keys");
    assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), [b]);
    let tokens = ok(store.tokens(), "tokens");
    assert_eq!(tokens.iter().map(|tok| tok.key_id).collect::<Vec<_>>(), [b]);
    let sessions = ok(store.sessions(), "sessions");
    assert_eq!(sessions.iter().map(|s| s.key_id).collect::<Vec<_>>(), [b]);
    let approvals = ok(store.approvals(), "approvals");
    assert_eq!(
        approvals.iter().map(|ap| ap.key_id).collect::<Vec<_>>(),
        [b]
    );
    let mut audited: Vec<KeyId> = audit_all(store).iter().map(|e| e.key_id).collect();
    audited.sort();
    assert_eq!(audited, [a, b], "audit rows outlive their key");
}

// ---------------------------------------------------------------------------
// Tokens

/// Every token field comes back, unused.
pub fn tokens_round_trip(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    let plain = new_token(key, 1);
    let mut rich = new_token(key, 2);
    rich.grant = perms("nip44_encrypt,sign_event:4,nip04_decrypt:odd");
    rich.expires_at = Some(t(1_700_003_600));
    rich.label = Some("phone — ünïcode".to_owned());
    let mut empty = new_token(key, 3);
    empty.grant = PermissionSet::empty();

    let ids = [&plain, &rich, &empty].map(|tok| ok(store.add_token(tok), "add_token"));
    let stored = ok(store.tokens(), "tokens");
    assert_eq!(stored.len(), 3);
    for (id, new) in ids.into_iter().zip([&plain, &rich, &empty]) {
        let got = token(store, id);
        assert_eq!(got.key_id, new.key_id);
        assert!(got.secret_hash.ct_matches(&new.secret_hash));
        assert_eq!(got.grant, new.grant);
        assert_eq!(got.expires_at, new.expires_at);
        assert_eq!(got.created_at, new.created_at);
        assert_eq!(got.label, new.label);
        assert_eq!(got.used_at, None);
        assert_eq!(got.used_by, None);
    }
}

/// A token for a key that does not exist is `NotFound`.
pub fn token_for_unknown_key_is_refused(store: &mut dyn Store) {
    let err = store.add_token(&new_token(KeyId(999), 1)).err();
    assert!(matches!(err, Some(StoreError::NotFound(_))), "{err:?}");
}

/// Two tokens with the same secret are refused (`Duplicate`).
pub fn token_secrets_are_unique(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    ok(store.add_token(&new_token(key, 1)), "add_token");
    let err = store.add_token(&new_token(key, 1)).err();
    assert!(matches!(err, Some(StoreError::Duplicate(_))), "{err:?}");
}

/// `ConsumeToken` works once; the second time it fails the whole batch
/// with `AlreadyUsed` and leaves the first use recorded.
pub fn token_is_single_use(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    let id = ok(store.add_token(&new_token(key, 1)), "add_token");
    apply(
        store,
        &[
            Change::ConsumeToken {
                id,
                client: pk(60),
                at: t(1_700_000_700),
            },
            Change::PutSession(minimal_session(key, pk(60))),
        ],
    );
    let used = token(store, id);
    assert_eq!(used.used_at, Some(t(1_700_000_700)));
    assert_eq!(used.used_by, Some(pk(60)));
    assert!(!used.is_usable(t(1_700_000_701)));

    let err = store
        .apply(&[
            Change::Audit(audit_row(key, pk(61), 1_700_000_800, 9)),
            Change::ConsumeToken {
                id,
                client: pk(61),
                at: t(1_700_000_800),
            },
            Change::PutSession(minimal_session(key, pk(61))),
        ])
        .err();
    assert!(matches!(err, Some(StoreError::AlreadyUsed(_))), "{err:?}");
    let still = token(store, id);
    assert_eq!(still.used_at, Some(t(1_700_000_700)));
    assert_eq!(still.used_by, Some(pk(60)));
    assert!(
        session(store, key, pk(61)).is_none(),
        "the failed batch left a session"
    );
    assert!(
        audit_all(store).is_empty(),
        "the failed batch left an audit row"
    );
}

/// Consuming a token that does not exist (or was removed with its key) is
/// `NotFound`.
pub fn consume_unknown_token_is_not_found(store: &mut dyn Store) {
    let err = store
        .apply(&[Change::ConsumeToken {
            id: TokenId(12345),
            client: pk(60),
            at: t(1),
        }])
        .err();
    assert!(matches!(err, Some(StoreError::NotFound(_))), "{err:?}");
}

// ---------------------------------------------------------------------------
// Sessions

/// Every session field comes back, for a rich and a minimal session.
pub fn sessions_round_trip(store: &mut dyn Store) {
    assert!(ok(store.sessions(), "sessions").is_empty());
    let key = add_key(store, "alice", 1);
    let rich = full_session(key, pk(70));
    let minimal = minimal_session(key, pk(71));
    let mut legacy = minimal_session(key, pk(72));
    legacy.metadata.name = Some("only a name".to_owned());
    apply(
        store,
        &[
            Change::PutSession(rich.clone()),
            Change::PutSession(minimal.clone()),
            Change::PutSession(legacy.clone()),
        ],
    );
    assert_eq!(ok(store.sessions(), "sessions").len(), 3);
    assert_eq!(session(store, key, pk(70)), Some(rich));
    assert_eq!(session(store, key, pk(71)), Some(minimal));
    assert_eq!(session(store, key, pk(72)), Some(legacy));
}

/// `RevokeToken` makes an unused token expire (never later than it would
/// have) and leaves used ones and missing ones alone.
pub fn revoke_token_stops_only_unused_ones(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    let unused = ok(store.add_token(&new_token(key, 1)), "add_token");
    let used = ok(store.add_token(&new_token(key, 2)), "add_token");
    apply(
        store,
        &[Change::ConsumeToken {
            id: used,
            client: pk(70),
            at: t(150),
        }],
    );
    let before_used = token(store, used);
    apply(
        store,
        &[
            Change::RevokeToken {
                id: unused,
                at: t(200),
            },
            Change::RevokeToken {
                id: used,
                at: t(200),
            },
            Change::RevokeToken {
                id: TokenId(9_999),
                at: t(200),
            },
        ],
    );
    let revoked = token(store, unused);
    assert_eq!(revoked.expires_at, Some(t(200)));
    assert!(!revoked.is_usable(t(200)) && revoked.is_usable(t(199)));
    let after_used = token(store, used);
    assert!(
        after_used.expires_at == before_used.expires_at && after_used.used_by == Some(pk(70)),
        "a used token is history"
    );
    // Revoking never extends a token's life.
    apply(
        store,
        &[Change::RevokeToken {
            id: unused,
            at: t(300),
        }],
    );
    assert_eq!(token(store, unused).expires_at, Some(t(200)));
}

/// `AddRules` sets rules in the stored session (replacing those for the same
/// permission), keeps every other stored rule and field, adds one to the
/// revision, and ignores a missing session; `RemoveRules` takes rules out.
pub fn add_rules_merge_into_the_stored_session(store: &mut dyn Store) {
    let a = add_key(store, "alice", 1);
    let mut stored = minimal_session(a, pk(70));
    stored.set_rule(Rule::permanent(perm("nip44_encrypt"), RuleEffect::Allow));
    stored.set_rule(Rule::permanent(perm("sign_event:1"), RuleEffect::Allow));
    stored.revision = 4;
    apply(store, &[Change::PutSession(stored.clone())]);
    let rules = vec![
        Rule::permanent(perm("sign_event:1"), RuleEffect::Deny),
        Rule::permanent(perm("sign_event:7"), RuleEffect::Allow),
    ];
    apply(
        store,
        &[
            Change::AddRules {
                key_id: a,
                client: pk(70),
                rules: rules.clone(),
            },
            Change::AddRules {
                key_id: a,
                client: pk(99),
                rules,
            },
        ],
    );
    let read = some(session(store, a, pk(70)), "still there");
    let mut expected = stored;
    expected.set_rules([
        Rule::permanent(perm("sign_event:1"), RuleEffect::Deny),
        Rule::permanent(perm("sign_event:7"), RuleEffect::Allow),
    ]);
    expected.revision = read.revision;
    assert_eq!(read, expected, "merged, nothing else changed");
    assert!(read.revision > 4, "revision moved on: {}", read.revision);
    assert_eq!(
        session(store, a, pk(99)),
        None,
        "a missing session is not created"
    );
    // `RemoveRules` takes rules out the same way, leaving the rest.
    apply(
        store,
        &[Change::RemoveRules {
            key_id: a,
            client: pk(70),
            permissions: vec![perm("sign_event:7"), perm("nip04_decrypt")],
        }],
    );
    let removed = some(session(store, a, pk(70)), "still there");
    expected
        .rules
        .retain(|r| r.permission != perm("sign_event:7"));
    expected.revision = removed.revision;
    assert_eq!(removed, expected);
    assert!(removed.revision > read.revision);
}

/// `ClearConnectReply` clears only `connect_reply` (and moves the revision on).
pub fn clear_connect_reply_keeps_the_rest(store: &mut dyn Store) {
    let a = add_key(store, "alice", 1);
    let mut stored = full_session(a, pk(70));
    stored.connect_reply = Some("the-uri-secret".to_owned());
    apply(store, &[Change::PutSession(stored.clone())]);
    let before = some(session(store, a, pk(70)), "stored");
    apply(
        store,
        &[
            Change::ClearConnectReply {
                key_id: a,
                client: pk(70),
            },
            Change::ClearConnectReply {
                key_id: a,
                client: pk(98),
            },
        ],
    );
    let read = some(session(store, a, pk(70)), "still there");
    assert_eq!(read.connect_reply, None);
    assert!(read.revision > before.revision);
    assert_eq!(
        Session {
            connect_reply: None,
            revision: read.revision,
            ..before
        },
        read
    );
}

/// `PutSession` replaces the session of the same (key, client) and only it.
pub fn put_session_replaces(store: &mut dyn Store) {
    let a = add_key(store, "alice", 1);
    let b = add_key(store, "bob", 2);
    apply(
        store,
        &[
            Change::PutSession(full_session(a, pk(70))),
            Change::PutSession(full_session(b, pk(70))),
        ],
    );
    let mut replacement = minimal_session(a, pk(70));
    replacement.set_rule(Rule::permanent(perm("sign_event:7"), RuleEffect::Allow));
    replacement.revision = 3;
    apply(store, &[Change::PutSession(replacement.clone())]);
    assert_eq!(ok(store.sessions(), "sessions").len(), 2);
    assert_eq!(session(store, a, pk(70)), Some(replacement));
    assert_eq!(session(store, b, pk(70)), Some(full_session(b, pk(70))));
}

/// A session for an unknown key is `NotFound`.
pub fn session_for_unknown_key_is_refused(store: &mut dyn Store) {
    let err = store
        .apply(&[Change::PutSession(minimal_session(KeyId(999), pk(70)))])
        .err();
    assert!(matches!(err, Some(StoreError::NotFound(_))), "{err:?}");
    assert!(ok(store.sessions(), "sessions").is_empty());
}

/// `TouchSession` adds to the count and keeps the latest use time; a
/// missing session is not an error.
pub fn touch_session_counts_and_keeps_latest_use(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    apply(store, &[Change::PutSession(minimal_session(key, pk(70)))]);
    let touch = |at: u64, requests: u64| Change::TouchSession {
        key_id: key,
        client: pk(70),
        at: t(at),
        requests,
    };
    apply(store, &[touch(1_700_001_000, 3), touch(1_700_000_900, 2)]);
    let s = session(store, key, pk(70));
    assert_eq!(s.as_ref().map(|s| s.request_count), Some(5));
    assert_eq!(
        s.as_ref().map(|s| s.revision),
        Some(0),
        "usage is not a revision"
    );
    assert_eq!(s.and_then(|s| s.last_used_at), Some(t(1_700_001_000)));

    apply(
        store,
        &[Change::TouchSession {
            key_id: key,
            client: pk(99),
            at: t(1),
            requests: 1,
        }],
    );
    assert!(
        session(store, key, pk(99)).is_none(),
        "touch must not create a session"
    );
}

/// `RevokeSession` sets `revoked_at` once and adds one to `revision` each
/// time; a missing session is not an error.
pub fn revoke_session_keeps_first_time(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    let mut live = minimal_session(key, pk(70));
    live.revision = 5;
    apply(store, &[Change::PutSession(live)]);
    let revoke = |client: PublicKey, at: u64| Change::RevokeSession {
        key_id: key,
        client,
        at: t(at),
    };
    apply(store, &[revoke(pk(70), 1_700_002_000)]);
    apply(
        store,
        &[revoke(pk(70), 1_700_003_000), revoke(pk(99), 1_700_003_000)],
    );
    let s = session(store, key, pk(70));
    assert_eq!(
        s.as_ref().and_then(|s| s.revoked_at),
        Some(t(1_700_002_000))
    );
    assert_eq!(s.as_ref().map(|s| s.revision), Some(7));
    assert!(!s.is_some_and(|s| s.is_active(t(1_700_002_500))));
    assert!(
        session(store, key, pk(99)).is_none(),
        "revoke must not create a session"
    );
}

// ---------------------------------------------------------------------------
// Approvals

fn every_status() -> [ApprovalStatus; 6] {
    [
        ApprovalStatus::Pending,
        ApprovalStatus::Decided(ApprovalDecision {
            allow: true,
            scope: DecisionScope::Once,
        }),
        ApprovalStatus::Decided(ApprovalDecision {
            allow: false,
            scope: DecisionScope::Always { until: None },
        }),
        ApprovalStatus::Expired,
        ApprovalStatus::Done(ApprovalDecision {
            allow: true,
            scope: DecisionScope::Always {
                until: Some(t(1_800_000_000)),
            },
        }),
        ApprovalStatus::Done(ApprovalDecision {
            allow: false,
            scope: DecisionScope::Once,
        }),
    ]
}

/// Every approval field and every status comes back, newest first.
pub fn approvals_round_trip_newest_first(store: &mut dyn Store) {
    assert!(ok(store.approvals(), "approvals").is_empty());
    let key = add_key(store, "alice", 1);
    let mut expected: Vec<PendingApproval> = every_status()
        .into_iter()
        .enumerate()
        .map(|(i, status)| approval(key, &format!("{i:032x}"), 1_700_000_000 + i as u64, status))
        .collect();
    expected[0].kind = None;
    expected[0].method = Method::Nip44Decrypt;
    expected[0].metadata = ClientMetadata::default();
    // Insert out of time order: the listing sorts.
    let changes: Vec<Change> = expected
        .iter()
        .rev()
        .cloned()
        .map(Change::PutApproval)
        .collect();
    let (newest, oldest) = changes.split_at(2);
    apply(store, oldest);
    apply(store, newest);
    expected.reverse();
    assert_eq!(ok(store.approvals(), "approvals"), expected);
}

/// `SetApprovalStatus` changes only the status of that approval; an unknown
/// id is not an error.
pub fn approval_status_changes(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    let first = approval(key, "aa", 100, ApprovalStatus::Pending);
    let second = approval(key, "bb", 200, ApprovalStatus::Pending);
    apply(
        store,
        &[
            Change::PutApproval(first.clone()),
            Change::PutApproval(second.clone()),
        ],
    );
    for status in every_status() {
        apply(
            store,
            &[
                Change::SetApprovalStatus {
                    id: first.id.clone(),
                    status,
                },
                Change::SetApprovalStatus {
                    id: ApprovalId("missing".to_owned()),
                    status,
                },
            ],
        );
        let mut changed = first.clone();
        changed.status = status;
        assert_eq!(
            ok(store.approvals(), "approvals"),
            [second.clone(), changed]
        );
    }
}

/// A taken approval id is `Duplicate`; an unknown key is `NotFound`.
pub fn approval_ids_are_unique(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    apply(
        store,
        &[Change::PutApproval(approval(
            key,
            "aa",
            100,
            ApprovalStatus::Pending,
        ))],
    );
    let err = store
        .apply(&[Change::PutApproval(approval(
            key,
            "aa",
            200,
            ApprovalStatus::Expired,
        ))])
        .err();
    assert!(matches!(err, Some(StoreError::Duplicate(_))), "{err:?}");
    let err = store
        .apply(&[Change::PutApproval(approval(
            KeyId(999),
            "bb",
            200,
            ApprovalStatus::Pending,
        ))])
        .err();
    assert!(matches!(err, Some(StoreError::NotFound(_))), "{err:?}");
    let stored = ok(store.approvals(), "approvals");
    assert_eq!(stored, [approval(key, "aa", 100, ApprovalStatus::Pending)]);
}

// ---------------------------------------------------------------------------
// Audit

/// Every audit field comes back, with increasing sequence numbers.
pub fn audit_round_trip(store: &mut dyn Store) {
    assert!(audit_all(store).is_empty());
    let key = add_key(store, "alice", 1);
    let full = audit_row(key, pk(80), 1_700_000_000, 1);
    let bare = AuditEntry {
        kind: None,
        signed_event_id: None,
        events: 40,
        method: "no_such_method".to_owned(),
        decision: AuditDecision::Invalid,
        outcome: "method_not_found".to_owned(),
        ..audit_row(KeyId(999), pk(81), 1_700_000_001, 2)
    };
    let others: Vec<AuditEntry> = [
        AuditDecision::Approved,
        AuditDecision::Denied,
        AuditDecision::Pending,
        AuditDecision::RateLimited,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, decision)| AuditEntry {
        decision,
        ..audit_row(key, pk(82), 1_700_000_002 + i as u64, 3 + i as u8)
    })
    .collect();
    let mut written = vec![full, bare];
    written.extend(others);
    let changes: Vec<Change> = written.iter().cloned().map(Change::Audit).collect();
    apply(store, &changes);

    let mut read = audit_all(store);
    read.reverse();
    assert_eq!(read.len(), written.len());
    assert!(read.iter().all(|e| e.seq > 0), "seq is assigned");
    assert!(
        read.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq increases"
    );
    for (got, mut want) in read.into_iter().zip(written) {
        want.seq = got.seq;
        assert_eq!(got, want);
    }
}

/// Newest first means latest `at`, then latest written; `limit` keeps the
/// newest rows.
pub fn audit_newest_first_with_limit(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    let ats = [10, 30, 20, 30, 5];
    let changes: Vec<Change> = ats
        .iter()
        .enumerate()
        .map(|(i, at)| Change::Audit(audit_row(key, pk(80), *at, i as u8)))
        .collect();
    apply(store, &changes);
    let order: Vec<String> = audit_all(store).into_iter().map(|e| e.request_id).collect();
    assert_eq!(order, ["r3", "r1", "r2", "r0", "r4"]);

    let limited = ok(
        store.audit(&AuditQuery {
            limit: Some(2),
            ..AuditQuery::default()
        }),
        "audit",
    );
    let order: Vec<String> = limited.into_iter().map(|e| e.request_id).collect();
    assert_eq!(order, ["r3", "r1"]);
    let none = ok(
        store.audit(&AuditQuery {
            limit: Some(0),
            ..AuditQuery::default()
        }),
        "audit",
    );
    assert!(none.is_empty());
}

/// Each filter alone and all together: `since` inclusive, `until` exclusive.
pub fn audit_filters(store: &mut dyn Store) {
    let a = add_key(store, "alice", 1);
    let b = add_key(store, "bob", 2);
    let row = |key: KeyId, client: u8, at: u64, n: u8, method: &str, decision: AuditDecision| {
        Change::Audit(AuditEntry {
            method: method.to_owned(),
            decision,
            ..audit_row(key, pk(client), at, n)
        })
    };
    apply(
        store,
        &[
            row(a, 80, 100, 0, "sign_event", AuditDecision::Allowed),
            row(a, 81, 200, 1, "nip44_encrypt", AuditDecision::Denied),
            row(b, 80, 300, 2, "sign_event", AuditDecision::Denied),
            row(b, 81, 400, 3, "ping", AuditDecision::Allowed),
            row(a, 80, 500, 4, "sign_event", AuditDecision::Denied),
        ],
    );
    let ids = |query: AuditQuery| -> Vec<String> {
        ok(store.audit(&query), "audit")
            .into_iter()
            .map(|e| e.request_id)
            .collect()
    };
    let all = AuditQuery::default;
    assert_eq!(
        ids(AuditQuery {
            since: Some(t(300)),
            ..all()
        }),
        ["r4", "r3", "r2"]
    );
    assert_eq!(
        ids(AuditQuery {
            until: Some(t(300)),
            ..all()
        }),
        ["r1", "r0"]
    );
    assert_eq!(
        ids(AuditQuery {
            key_id: Some(b),
            ..all()
        }),
        ["r3", "r2"]
    );
    assert_eq!(
        ids(AuditQuery {
            client: Some(pk(81)),
            ..all()
        }),
        ["r3", "r1"]
    );
    assert_eq!(
        ids(AuditQuery {
            method: Some("sign_event".to_owned()),
            ..all()
        }),
        ["r4", "r2", "r0"]
    );
    assert_eq!(
        ids(AuditQuery {
            decision: Some(AuditDecision::Denied),
            ..all()
        }),
        ["r4", "r2", "r1"]
    );
    assert_eq!(
        ids(AuditQuery {
            since: Some(t(100)),
            until: Some(t(500)),
            key_id: Some(a),
            client: Some(pk(80)),
            method: Some("sign_event".to_owned()),
            decision: Some(AuditDecision::Allowed),
            limit: Some(10),
            key_ids: Some(vec![a, b]),
        }),
        ["r0"]
    );
    assert!(
        ids(AuditQuery {
            key_id: Some(KeyId(999)),
            ..all()
        })
        .is_empty()
    );
    // An operator's scope: the limit applies to its keys' rows.
    assert_eq!(
        ids(AuditQuery {
            key_ids: Some(vec![b]),
            limit: Some(1),
            ..all()
        }),
        ["r3"]
    );
    assert_eq!(
        ids(AuditQuery {
            key_ids: Some(vec![a, b]),
            ..all()
        }),
        ["r4", "r3", "r2", "r1", "r0"]
    );
    assert!(
        ids(AuditQuery {
            key_ids: Some(vec![]),
            ..all()
        })
        .is_empty()
    );
}

/// `audited_events` returns the request events audited at or after `since`,
/// oldest first, with their author and their own `created_at`.
pub fn audited_events_since(store: &mut dyn Store) {
    assert!(ok(store.audited_events(t(0)), "audited_events").is_empty());
    let key = add_key(store, "alice", 1);
    let changes: Vec<Change> = [100, 200, 300]
        .into_iter()
        .enumerate()
        .map(|(i, at)| Change::Audit(audit_row(key, pk(80 + i as u8), at, i as u8)))
        .collect();
    apply(store, &changes);
    let events = ok(store.audited_events(t(200)), "audited_events");
    assert_eq!(
        events,
        [
            AuditedEvent {
                event_id: event(1),
                client: pk(81),
                created_at: t(197),
            },
            AuditedEvent {
                event_id: event(2),
                client: pk(82),
                created_at: t(297),
            },
        ]
    );
    assert_eq!(ok(store.audited_events(t(301)), "audited_events"), []);
}

// ---------------------------------------------------------------------------
// Batches

/// A batch with one failing change leaves no trace of the others.
pub fn apply_is_all_or_nothing(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    let token_id = ok(store.add_token(&new_token(key, 1)), "add_token");
    apply(store, &[Change::PutSession(minimal_session(key, pk(70)))]);
    let before_session = session(store, key, pk(70));

    let err = store
        .apply(&[
            Change::Audit(audit_row(key, pk(70), 100, 1)),
            Change::ConsumeToken {
                id: token_id,
                client: pk(70),
                at: t(100),
            },
            Change::TouchSession {
                key_id: key,
                client: pk(70),
                at: t(100),
                requests: 1,
            },
            Change::RevokeSession {
                key_id: key,
                client: pk(70),
                at: t(100),
            },
            Change::PutApproval(approval(key, "aa", 100, ApprovalStatus::Pending)),
            Change::PutSession(minimal_session(KeyId(999), pk(71))),
        ])
        .err();
    assert!(err.is_some(), "the batch should have failed");
    assert!(audit_all(store).is_empty());
    assert_eq!(token(store, token_id).used_at, None);
    assert_eq!(session(store, key, pk(70)), before_session);
    assert!(ok(store.approvals(), "approvals").is_empty());

    // The store is still usable after a failed batch.
    apply(store, &[Change::Audit(audit_row(key, pk(70), 100, 1))]);
    assert_eq!(audit_all(store).len(), 1);
}

/// An empty batch succeeds and changes nothing.
pub fn empty_apply_is_a_no_op(store: &mut dyn Store) {
    apply(store, &[]);
    assert!(audit_all(store).is_empty());
}

/// With no other writer, the external version does not move, not even after
/// this store's own writes.
pub fn external_version_is_stable_alone(store: &mut dyn Store) {
    let first = ok(store.external_version(), "external_version");
    assert_eq!(ok(store.external_version(), "external_version"), first);
    let key = add_key(store, "alice", 1);
    apply(store, &[Change::Audit(audit_row(key, pk(1), 1, 1))]);
    assert_eq!(ok(store.external_version(), "external_version"), first);
}

/// The served relays start unrecorded; each record replaces the last, order kept.
pub fn served_relays_are_replaced(store: &mut dyn Store) {
    assert_eq!(ok(store.served_relays(), "served relays"), None);
    let first = ServedRelays {
        relays: vec![relay("wss://b.example"), relay("wss://a.example")],
        recorded_at: Timestamp::from_secs(1_700_000_000),
    };
    ok(
        store.apply(&[Change::RecordServedRelays(first.clone())]),
        "recording relays",
    );
    assert_eq!(ok(store.served_relays(), "served relays"), Some(first));
    let second = ServedRelays {
        relays: vec![relay("ws://127.0.0.1:9999")],
        recorded_at: Timestamp::from_secs(1_700_000_100),
    };
    ok(
        store.apply(&[Change::RecordServedRelays(second.clone())]),
        "recording relays again",
    );
    assert_eq!(ok(store.served_relays(), "served relays"), Some(second));
}

/// A key's sensitive kinds round-trip (none, a list, an empty list, back
/// to none); a missing key is not found; the change is mirrored.
pub fn sensitive_kinds_are_kept_per_key(store: &mut dyn Store) {
    let alice = add_key(store, "alice", 1);
    let bob = add_key(store, "bob", 2);
    let kinds = |store: &dyn Store| -> Vec<Option<Vec<u16>>> {
        ok(store.keys(), "keys")
            .into_iter()
            .map(|k| k.sensitive_kinds)
            .collect()
    };
    assert_eq!(kinds(store), [None, None]);
    let set = |key_id, kinds: Option<Vec<u16>>| Change::SetSensitiveKinds { key_id, kinds };
    apply(store, &[set(alice, Some(vec![0, 3, 10_002]))]);
    apply(store, &[set(bob, Some(vec![]))]);
    assert_eq!(kinds(store), [Some(vec![0, 3, 10_002]), Some(vec![])]);
    apply(store, &[set(alice, None)]);
    assert_eq!(kinds(store), [None, Some(vec![])]);
    assert!(matches!(
        store.apply(&[set(KeyId(alice.0 + bob.0 + 3), Some(vec![1]))]),
        Err(StoreError::NotFound(_))
    ));
    assert!(set(alice, None).is_mirrored());
}

/// A lock keeps its first time; unlocking clears it; `None` is every key; a
/// missing key is not found; locks survive other edits and are mirrored.
pub fn key_locks_keep_the_first_time_and_cover_all_keys(store: &mut dyn Store) {
    let alice = add_key(store, "alice", 1);
    let bob = add_key(store, "bob", 2);
    let locked = |store: &dyn Store| -> Vec<(String, Option<u64>)> {
        ok(store.keys(), "keys")
            .into_iter()
            .map(|k| (k.name, k.locked_at.map(|t| t.as_secs())))
            .collect()
    };
    assert_eq!(
        locked(store),
        [("alice".into(), None), ("bob".into(), None)]
    );
    let lock = |key_id, at: Option<u64>| Change::SetKeyLock {
        key_id,
        locked_at: at.map(Timestamp::from_secs),
    };
    apply(store, &[lock(Some(alice), Some(100))]);
    apply(store, &[lock(Some(alice), Some(200))]);
    assert_eq!(
        locked(store),
        [("alice".into(), Some(100)), ("bob".into(), None)]
    );
    apply(store, &[lock(None, Some(300))]);
    assert_eq!(
        locked(store),
        [("alice".into(), Some(100)), ("bob".into(), Some(300))]
    );
    apply(store, &[lock(Some(bob), None)]);
    assert_eq!(
        locked(store),
        [("alice".into(), Some(100)), ("bob".into(), None)]
    );
    assert!(
        matches!(
            store.apply(&[lock(Some(KeyId(alice.0 + bob.0 + 10)), Some(1))]),
            Err(StoreError::NotFound(_))
        ),
        "locking a missing key"
    );
    assert!(
        lock(None, None).is_mirrored(),
        "other processes reload after a lock"
    );
    apply(store, &[lock(None, None)]);
    assert_eq!(
        locked(store),
        [("alice".into(), None), ("bob".into(), None)]
    );
}

/// The first vault parameters win (a second process creating a vault at
/// once gets the first one's); resealing replaces the parameters and the
/// keys' secrets together, leaves other keys and fields alone, and skips a
/// key that is gone.
pub fn the_vault_is_created_once_and_keys_are_resealed_together(store: &mut dyn Store) {
    assert_eq!(ok(store.vault_params(), "vault params"), None);
    let params = |n: u8| VaultParams {
        salt: [n; 32],
        log_n: n,
        check: vec![n; 40],
    };
    assert_eq!(ok(store.init_vault(&params(1)), "init vault"), params(1));
    assert_eq!(
        ok(store.init_vault(&params(2)), "init vault again"),
        params(1)
    );
    let alice = add_key(store, "alice", 1);
    let bob = add_key(store, "bob", 2);
    let before = ok(store.keys(), "keys");
    let resealed = |key: &crate::StoredKey, tag: &str| ResealedKey {
        id: key.id,
        replaces: (key.user_secret.clone(), key.signer_secret.clone()),
        user_secret: format!("user-{tag}"),
        signer_secret: format!("signer-{tag}"),
    };
    // A passphrase change must name every key, from the vault there is.
    for (from, keys) in [
        (
            params(9),
            vec![resealed(&before[0], "a"), resealed(&before[1], "b")],
        ),
        (params(1), vec![resealed(&before[0], "a")]),
    ] {
        assert!(
            matches!(
                store.reseal_keys(Some((&from, &params(3))), &keys),
                Err(StoreError::Changed(_))
            ),
            "a stale vault or a missing key"
        );
    }
    assert_eq!(ok(store.keys(), "keys"), before, "nothing written");
    let mut gone = resealed(&before[0], "gone");
    gone.id = KeyId(alice.0 + bob.0 + 7);
    ok(
        store.reseal_keys(
            Some((&params(1), &params(3))),
            &[resealed(&before[0], "a"), resealed(&before[1], "b")],
        ),
        "reseal",
    );
    assert_eq!(ok(store.vault_params(), "vault params"), Some(params(3)));
    let after = ok(store.keys(), "keys");
    assert_eq!(
        (
            after[0].user_secret.as_str(),
            after[1].signer_secret.as_str()
        ),
        ("user-a", "signer-b")
    );
    assert_eq!(after[0].user_pubkey, before[0].user_pubkey);
    // A key resealed (or given a new signer) meanwhile is not overwritten;
    // a key removed meanwhile is skipped.
    assert!(matches!(
        store.reseal_keys(None, &[resealed(&before[0], "stale")]),
        Err(StoreError::Changed(_))
    ));
    ok(
        store.reseal_keys(None, &[resealed(&after[1], "b2"), gone]),
        "reseal one",
    );
    let last = ok(store.keys(), "keys");
    assert_eq!(
        (last[0].user_secret.as_str(), last[1].user_secret.as_str()),
        ("user-a", "user-b2")
    );
    assert_eq!(ok(store.vault_params(), "vault params"), Some(params(3)));
}

/// A new signer key replaces the old one; the key's sessions are revoked
/// and its unused tokens expire, another key's are untouched; a signer
/// pubkey in use and a missing key are refused.
pub fn a_new_signer_revokes_the_keys_sessions_and_unused_tokens(store: &mut dyn Store) {
    let alice = add_key(store, "alice", 1);
    let bob = add_key(store, "bob", 2);
    for (key, client) in [(alice, 10), (bob, 11)] {
        apply(
            store,
            &[Change::PutSession(minimal_session(key, pk(client)))],
        );
        ok(store.add_token(&new_token(key, client)), "add token");
    }
    let at = t(5_000);
    let fresh = pk(50);
    ok(
        store.replace_signer(alice, &fresh, "sealed-new", at),
        "replace signer",
    );
    let keys = ok(store.keys(), "keys");
    assert_eq!(
        (keys[0].signer_pubkey, keys[0].signer_secret.as_str()),
        (fresh, "sealed-new")
    );
    assert_eq!(keys[1].signer_pubkey, new_key("bob", 2).signer_pubkey);
    let sessions = ok(store.sessions(), "sessions");
    let revoked = |key: KeyId| {
        sessions
            .iter()
            .find(|s| s.key_id == key)
            .and_then(|s| s.revoked_at)
    };
    assert_eq!(revoked(alice), Some(at));
    assert_eq!(revoked(bob), None);
    let tokens = ok(store.tokens(), "tokens");
    let expiry = |key: KeyId| {
        tokens
            .iter()
            .find(|t| t.key_id == key)
            .and_then(|t| t.expires_at)
    };
    assert_eq!(expiry(alice), Some(at));
    assert_ne!(expiry(bob), Some(at));
    assert!(matches!(
        store.replace_signer(bob, &fresh, "x", at),
        Err(StoreError::Duplicate(_))
    ));
    assert!(matches!(
        store.replace_signer(KeyId(alice.0 + bob.0 + 9), &pk(51), "x", at),
        Err(StoreError::NotFound(_))
    ));
}

fn audit_at(key: KeyId, n: u8, at: u64) -> Change {
    Change::Audit(audit_row(key, pk(1), at, n))
}

fn verified(store: &dyn Store, head: Option<ChainPoint>) -> Verified {
    match crate::verify_store(store, head) {
        Ok(v) => v,
        Err(e) => panic!("the audit chain does not verify: {e}"),
    }
}

/// Rows get consecutive `seq`s and hashes chained across batches (and
/// across other changes in a batch); the chain verifies, pages read in
/// order, the head is the newest row.
pub fn audit_rows_are_chained_across_batches(store: &mut dyn Store) {
    assert_eq!(verified(store, None).head, None, "an empty log");
    assert_eq!(ok(store.audit_head(), "audit head"), None);
    let key = add_key(store, "alice", 1);
    apply(store, &[audit_at(key, 1, 100), audit_at(key, 2, 100)]);
    let Some(first) = ok(store.audit_head(), "audit head") else {
        panic!("no audit head after two rows");
    };
    apply(
        store,
        &[
            audit_at(key, 3, 101),
            Change::RecordServedRelays(ServedRelays {
                relays: vec![relay("wss://a.example")],
                recorded_at: Timestamp::from_secs(1),
            }),
            audit_at(key, 4, 102),
        ],
    );
    apply(store, &[audit_at(key, 5, 103)]);
    let chain = ok(store.audit_chain(0, 100), "audit chain");
    let seqs: Vec<i64> = chain.iter().map(|r| r.row.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert!(chain.iter().all(|r| r.hash.is_some()));
    let page = ok(store.audit_chain(2, 2), "audit chain page");
    assert_eq!(page.iter().map(|r| r.row.seq).collect::<Vec<_>>(), [3, 4]);
    let v = verified(store, Some(first));
    assert_eq!(v.rows, 5);
    assert_eq!(v.head, ok(store.audit_head(), "audit head"));
    assert_eq!(v.head.map(|h| h.seq), Some(5));
    // What the chain covers is what `audit` reads back.
    let read = ok(store.audit(&AuditQuery::default()), "audit");
    assert_eq!(chain[4].row, ChainedRow::of(5, &read[0]));
}

/// Retention removes the oldest rows only up to the first newer one; the
/// checkpoint keeps the chain verifiable, a head recorded before the prune
/// is no reproach, and new rows continue the numbering and the chain, also
/// after every row was pruned.
pub fn audit_retention_prunes_a_prefix_and_the_chain_still_verifies(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    apply(
        store,
        &[
            audit_at(key, 1, 100),
            audit_at(key, 2, 200),
            audit_at(key, 3, 150),
            audit_at(key, 4, 400),
        ],
    );
    let Some(first) = ok(store.audit_chain(0, 1), "audit chain").pop() else {
        panic!("no audit rows");
    };
    let Some(hash) = first.hash else {
        panic!("audit row {} has no hash", first.row.seq);
    };
    let old_head = ChainPoint {
        seq: first.row.seq,
        hash,
    };
    // Row 3 (at 150) is older than 175 but comes after row 2 (at 200): the
    // prefix stops at row 1.
    apply(
        store,
        &[Change::PruneAudit {
            before: Timestamp::from_secs(175),
        }],
    );
    let seqs = |store: &dyn Store| -> Vec<i64> {
        ok(store.audit_chain(0, 100), "audit chain")
            .iter()
            .map(|r| r.row.seq)
            .collect()
    };
    assert_eq!(seqs(store), [2, 3, 4]);
    assert_eq!(
        ok(store.audit_checkpoint(), "checkpoint").map(|c| c.seq),
        Some(1)
    );
    let v = verified(store, Some(old_head));
    assert_eq!((v.rows, v.checkpoint.map(|c| c.seq)), (3, Some(1)));
    apply(
        store,
        &[Change::PruneAudit {
            before: Timestamp::from_secs(300),
        }],
    );
    assert_eq!(seqs(store), [4]);
    apply(store, &[audit_at(key, 5, 500)]);
    assert_eq!(seqs(store), [4, 5]);
    verified(store, None);
    // Everything pruned: the head is the checkpoint, and the next row
    // continues from it.
    apply(
        store,
        &[Change::PruneAudit {
            before: Timestamp::from_secs(10_000),
        }],
    );
    assert!(seqs(store).is_empty());
    let checkpoint = ok(store.audit_checkpoint(), "checkpoint");
    assert_eq!(checkpoint.map(|c| c.seq), Some(5));
    assert_eq!(ok(store.audit_head(), "audit head"), checkpoint);
    apply(store, &[audit_at(key, 6, 600)]);
    assert_eq!(seqs(store), [6]);
    assert_eq!(verified(store, checkpoint).rows, 1);
}

/// Tampering, through raw SQL (`exec`, on another connection to the same
/// database): an edit of each stored column of a row in turn — and of its
/// hash — is named by `verify` as that row; a deletion of the newest row is
/// caught against the head recorded before. Every edit is undone from a
/// copy of the table before the next.
pub fn tampering_with_each_column_is_named(store: &mut dyn Store, exec: &mut dyn FnMut(&str)) {
    let key = add_key(store, "alice", 1);
    for n in 1..=5 {
        let mut row = audit_row(key, pk(1), 100 + u64::from(n), n);
        if n == 3 {
            row.operator = Some("alice,bob".into());
        }
        apply(store, &[Change::Audit(row)]);
    }
    let head = verified(store, None).head;
    exec("CREATE TABLE audit_copy AS SELECT * FROM audit");
    let edits = [
        ("at", "at = at + 1"),
        ("key_id", "key_id = key_id + 1"),
        ("client_pubkey", "client_pubkey = client_pubkey || '0'"),
        ("event_id", "event_id = event_id || '0'"),
        ("request_id", "request_id = request_id || '.'"),
        ("method", "method = method || '.'"),
        ("kind", "kind = kind + 1"),
        ("decision", "decision = 'denied'"),
        ("outcome", "outcome = outcome || '.'"),
        (
            "signed_event_id",
            "signed_event_id = signed_event_id || '0'",
        ),
        (
            "event_created_at",
            "event_created_at = event_created_at + 1",
        ),
        ("events", "events = events + 1"),
        ("operator", "operator = 'alice'"),
        ("operator (cleared)", "operator = NULL"),
        (
            "row_hash",
            "row_hash = (SELECT row_hash FROM audit_copy WHERE seq = 1)",
        ),
    ];
    for (column, set) in edits {
        exec(&format!("UPDATE audit SET {set} WHERE seq = 3"));
        match crate::verify_store(store, head) {
            Err(crate::VerifyError::Chain(ChainError::Mismatch { seq: 3 })) => {}
            other => panic!("editing {column}: {other:?}"),
        }
        exec("DELETE FROM audit");
        exec("INSERT INTO audit SELECT * FROM audit_copy");
        verified(store, head);
    }
    exec("UPDATE audit SET operator = 'mallory' WHERE seq = 4");
    match crate::verify_store(store, head) {
        Err(crate::VerifyError::Chain(ChainError::Mismatch { seq: 4 })) => {}
        other => panic!("setting an operator: {other:?}"),
    }
    exec("UPDATE audit SET operator = NULL WHERE seq = 4");
    verified(store, head);
    exec("UPDATE audit SET seq = 50 WHERE seq = 5");
    match crate::verify_store(store, None) {
        Err(crate::VerifyError::Chain(ChainError::Mismatch { seq: 50 })) => {}
        other => panic!("editing seq: {other:?}"),
    }
    exec("DELETE FROM audit WHERE seq = 50");
    verified(store, None);
    match crate::verify_store(store, head) {
        Err(crate::VerifyError::Chain(ChainError::HeadLost { seq: 5, .. })) => {}
        other => panic!("truncated: {other:?}"),
    }
}

fn replica(name: &str) -> ReplicaId {
    ok(
        ReplicaId::parse(name).map_err(|e| StoreError::Corrupt(e.to_string())),
        "a replica name",
    )
}

fn sealed(request: u8, by: &ReplicaId, answer: &str, at: u64) -> Change {
    Change::Answer(SealedAnswer {
        request: EventId::from_byte_array([request; 32]),
        replica: by.clone(),
        answer: answer.to_owned(),
        at: t(at),
    })
}

/// A heartbeat adds or refreshes the replica's row; every replica is listed,
/// by name, with a small age; a retired one is gone.
pub fn heartbeats_list_every_replica(store: &mut dyn Store) {
    let (a, b) = (replica("a-1"), replica("b-2"));
    const LEASE: u64 = 5_000;
    let first = ok(store.beat(&b, "run-1", LEASE), "first heartbeat");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].replica, b);
    let listed = ok(store.beat(&a, "run-1", LEASE), "second replica's heartbeat");
    let names: Vec<&ReplicaId> = listed.iter().map(|r| &r.replica).collect();
    assert_eq!(names, vec![&a, &b]);
    // Both just beat: ages are small (generous for a loaded machine).
    assert!(listed.iter().all(|r| r.age_ms < 10_000), "{listed:?}");
    std::thread::sleep(std::time::Duration::from_millis(60));
    let again = ok(store.beat(&a, "run-1", LEASE), "a heartbeat again");
    let (fresh, older) = (&again[0], &again[1]);
    assert!(
        older.age_ms >= 50 && older.age_ms > fresh.age_ms,
        "b did not beat again, a did: {again:?}"
    );
    assert_eq!(
        fresh.started_at, listed[0].started_at,
        "a restart is not a beat"
    );
    assert_eq!(fresh.incarnation, "run-1");
    // Another process under a live name is refused; once that one is past
    // the lease (here 50 ms), a new run takes the name over.
    assert!(matches!(
        store.beat(&a, "run-2", LEASE),
        Err(StoreError::Duplicate(_))
    ));
    std::thread::sleep(std::time::Duration::from_millis(60));
    let taken = ok(store.beat(&a, "run-2", 50), "a new run after the lease");
    assert_eq!(taken[0].incarnation, "run-2");
    ok(store.retire(&b), "retiring");
    let left = ok(store.beat(&a, "run-2", LEASE), "after retiring");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].replica, a);
    ok(store.retire(&b), "retiring twice is not an error");
}

/// The first replica to commit an answer for a request event holds it:
/// another's answer is refused (with the batch around it), the holder's
/// own later answer (a held request decided) replaces its first.
pub fn answers_are_claimed_once(store: &mut dyn Store) {
    let (a, b) = (replica("a"), replica("b"));
    let key = add_key(store, "alice", 1);
    apply(store, &[sealed(1, &a, "first", 100)]);
    let refused = store.apply(&[
        Change::Audit(audit_row(key, pk(1), 1, 100)),
        sealed(1, &b, "second", 101),
    ]);
    match refused {
        Err(StoreError::Claimed(_, holder)) => assert_eq!(holder, "a"),
        other => panic!("another replica's answer: {other:?}"),
    }
    assert!(
        ok(store.audit(&AuditQuery::default()), "audit").is_empty(),
        "the refused batch left its audit row"
    );
    apply(store, &[sealed(1, &a, "decided", 102)]);
    let claims = ok(
        store.claim(&b, &[EventId::from_byte_array([1; 32])], t(103)),
        "claiming",
    );
    assert_eq!(
        claims[0].1,
        Claim::Theirs {
            replica: a,
            answer: Some("decided".into())
        }
    );
}

/// At a takeover, unclaimed events become the claimer's (and its answer is
/// then accepted); claimed ones name their holder, answered or not.
pub fn takeover_claims_report_the_holder(store: &mut dyn Store) {
    let (a, b) = (replica("a"), replica("b"));
    apply(store, &[sealed(1, &a, "sealed", 100)]);
    let ids = [1u8, 2, 3].map(|n| EventId::from_byte_array([n; 32]));
    let first = ok(store.claim(&a, &ids[2..], t(100)), "a claims 3");
    assert_eq!(first, vec![(ids[2], Claim::Ours)]);
    let claims = ok(store.claim(&b, &ids, t(101)), "b claims 1, 2, 3");
    assert_eq!(
        claims,
        vec![
            (
                ids[0],
                Claim::Theirs {
                    replica: a.clone(),
                    answer: Some("sealed".into())
                }
            ),
            (ids[1], Claim::Ours),
            (
                ids[2],
                Claim::Theirs {
                    replica: a.clone(),
                    answer: None
                }
            ),
        ]
    );
    let again = ok(store.claim(&b, &ids[1..2], t(102)), "b claims 2 again");
    assert_eq!(again, vec![(ids[1], Claim::Ours)]);
    apply(store, &[sealed(2, &b, "taken over", 102)]);
    // b's commit went through though b never heard back: claiming again
    // finds its own answer, to send rather than sign anew.
    let lost_ack = ok(store.claim(&b, &ids[1..2], t(103)), "b claims 2 once more");
    assert_eq!(
        lost_ack,
        vec![(
            ids[1],
            Claim::AnsweredHere {
                answer: "taken over".into()
            }
        )]
    );
    assert!(matches!(
        store.apply(&[sealed(2, &a, "late", 103)]),
        Err(StoreError::Claimed(..))
    ));
}

/// Pruning removes claims made before the cut, and only those.
pub fn answers_are_pruned_by_age(store: &mut dyn Store) {
    let a = replica("a");
    apply(
        store,
        &[sealed(1, &a, "old", 100), sealed(2, &a, "new", 200)],
    );
    assert_eq!(ok(store.prune_answers(t(150)), "pruning"), 1);
    let b = replica("b");
    let claims = ok(
        store.claim(
            &b,
            &[
                EventId::from_byte_array([1; 32]),
                EventId::from_byte_array([2; 32]),
            ],
            t(300),
        ),
        "claiming",
    );
    assert_eq!(claims[0].1, Claim::Ours, "the pruned claim is free again");
    assert!(matches!(claims[1].1, Claim::Theirs { .. }));
}

/// A login link's digest works once and not after its expiry.
pub fn dashboard_logins_work_once(store: &mut dyn Store) {
    let kind = DashboardSecret::Login;
    let now = Timestamp::now();
    let later = Timestamp::from_secs(now.as_secs() + 600);
    let owner = DashboardUser::Owner;
    ok(
        store.put_dashboard_secret(kind, &[1; 32], later, owner),
        "a link",
    );
    ok(
        store.put_dashboard_secret(kind, &[2; 32], later, owner),
        "another link",
    );
    assert_eq!(
        ok(store.check_dashboard_secret(kind, &[3; 32], now), "unknown"),
        None
    );
    assert_eq!(
        ok(
            store.check_dashboard_secret(kind, &[1; 32], now),
            "first use"
        ),
        Some(owner)
    );
    assert_eq!(
        ok(
            store.check_dashboard_secret(kind, &[1; 32], now),
            "second use"
        ),
        None
    );
    let after = Timestamp::from_secs(later.as_secs() + 1);
    assert_eq!(
        ok(
            store.check_dashboard_secret(kind, &[2; 32], after),
            "expired"
        ),
        None
    );
    assert_eq!(
        ok(
            store.check_dashboard_secret(DashboardSecret::Session, &[2; 32], now),
            "a link is not a session"
        ),
        None
    );
}

/// A session's digest is found as often as asked until it expires or is
/// removed.
pub fn dashboard_sessions_last_until_removed(store: &mut dyn Store) {
    let kind = DashboardSecret::Session;
    let now = Timestamp::now();
    let later = Timestamp::from_secs(now.as_secs() + 600);
    let owner = DashboardUser::Owner;
    ok(
        store.put_dashboard_secret(kind, &[7; 32], later, owner),
        "a session",
    );
    for _ in 0..3 {
        assert_eq!(
            ok(store.check_dashboard_secret(kind, &[7; 32], now), "in use"),
            Some(owner)
        );
    }
    let after = Timestamp::from_secs(later.as_secs() + 1);
    assert_eq!(
        ok(
            store.check_dashboard_secret(kind, &[7; 32], after),
            "expired"
        ),
        None
    );
    ok(store.remove_dashboard_secret(kind, &[7; 32]), "logging out");
    assert_eq!(
        ok(
            store.check_dashboard_secret(kind, &[7; 32], now),
            "logged out"
        ),
        None
    );
}

/// Operators round-trip with their role and keys; a name is unique; an
/// unknown key is refused; a removed key leaves their lists; their login
/// links and sessions are theirs, and go when they are removed.
pub fn operators_round_trip_and_removal_ends_their_logins(store: &mut dyn Store) {
    let alice = add_key(store, "alice", 1);
    let bob = add_key(store, "bob", 2);
    let new = |name: &str, role, keys| NewOperator {
        name: name.into(),
        role,
        keys,
        created_at: t(10),
    };
    let carol = ok(
        store.add_operator(&new(
            "carol",
            Role::Approver,
            KeyScope::Keys(vec![alice, bob]),
        )),
        "an approver",
    );
    let dave = ok(
        store.add_operator(&new("dave", Role::Auditor, KeyScope::All)),
        "an auditor",
    );
    assert!(matches!(
        store.add_operator(&new("carol", Role::Owner, KeyScope::All)),
        Err(StoreError::Duplicate(_))
    ));
    assert!(matches!(
        store.add_operator(&new(
            "erin",
            Role::Approver,
            KeyScope::Keys(vec![KeyId(999)])
        )),
        Err(StoreError::NotFound(_))
    ));
    let listed = ok(store.operators(), "operators");
    assert_eq!(listed.len(), 2, "erin was not added: {listed:?}");
    assert_eq!(listed[0].id, carol);
    assert_eq!(listed[0].name, "carol");
    assert_eq!(listed[0].role, Role::Approver);
    assert_eq!(listed[0].keys, KeyScope::Keys(vec![alice, bob]));
    assert_eq!(listed[0].created_at, t(10));
    assert_eq!((listed[1].id, listed[1].role), (dave, Role::Auditor));
    assert_eq!(listed[1].keys, KeyScope::All);
    ok(store.remove_key("bob"), "removing bob");
    assert_eq!(
        ok(store.operators(), "operators")[0].keys,
        KeyScope::Keys(vec![alice])
    );

    let now = Timestamp::now();
    let later = Timestamp::from_secs(now.as_secs() + 600);
    let as_carol = DashboardUser::Operator(carol);
    let (login, session) = (DashboardSecret::Login, DashboardSecret::Session);
    ok(
        store.put_dashboard_secret(login, &[1; 32], later, as_carol),
        "a link",
    );
    ok(
        store.put_dashboard_secret(login, &[2; 32], later, as_carol),
        "a link",
    );
    ok(
        store.put_dashboard_secret(session, &[3; 32], later, as_carol),
        "a session",
    );
    ok(
        store.put_dashboard_secret(session, &[4; 32], later, DashboardUser::Operator(dave)),
        "dave's session",
    );
    assert!(matches!(
        store.put_dashboard_secret(
            session,
            &[5; 32],
            later,
            DashboardUser::Operator(OperatorId(999))
        ),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        ok(
            store.check_dashboard_secret(login, &[1; 32], now),
            "carol's link"
        ),
        Some(as_carol)
    );
    assert_eq!(
        ok(
            store.check_dashboard_secret(session, &[3; 32], now),
            "carol's session"
        ),
        Some(as_carol)
    );
    // Carol's answers to a request still waiting go with her; others stay.
    let vote = |by: &str| Vote {
        by: by.into(),
        decision: ApprovalDecision {
            allow: true,
            scope: DecisionScope::Once,
        },
    };
    apply(
        store,
        &[Change::PutApproval(approval(
            alice,
            "held",
            100,
            ApprovalStatus::Pending,
        ))],
    );
    for by in ["carol", "dave", "carol-2"] {
        apply(
            store,
            &[Change::DecideApproval {
                id: ApprovalId("held".into()),
                vote: vote(by),
            }],
        );
    }
    ok(store.remove_operator("carol"), "removing carol");
    assert!(matches!(
        store.remove_operator("carol"),
        Err(StoreError::NotFound(_))
    ));
    let held = ok(store.approvals(), "approvals");
    assert_eq!(
        held[0].votes,
        [vote("dave"), vote("carol-2")],
        "carol's vote is withdrawn"
    );
    assert_eq!(
        ok(
            store.check_dashboard_secret(session, &[3; 32], now),
            "after removal"
        ),
        None,
        "a removed operator's session ends"
    );
    assert_eq!(
        ok(
            store.check_dashboard_secret(login, &[2; 32], now),
            "after removal"
        ),
        None,
        "a removed operator's link stops working"
    );
    assert_eq!(
        ok(
            store.check_dashboard_secret(session, &[4; 32], now),
            "dave's"
        ),
        Some(DashboardUser::Operator(dave))
    );
    let names: Vec<String> = ok(store.operators(), "operators")
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["dave"]);
}

/// A key's quorum is 1 until set; `None` sets every key's; an unknown key
/// is not found; it is mirrored.
pub fn quorums_are_kept_per_key(store: &mut dyn Store) {
    let alice = add_key(store, "alice", 1);
    let bob = add_key(store, "bob", 2);
    let quorums = |store: &dyn Store| -> Vec<u32> {
        ok(store.keys(), "keys")
            .into_iter()
            .map(|k| k.quorum)
            .collect()
    };
    assert_eq!(quorums(store), [1, 1]);
    apply(
        store,
        &[Change::SetQuorum {
            key_id: Some(bob),
            quorum: 3,
        }],
    );
    assert_eq!(quorums(store), [1, 3]);
    apply(
        store,
        &[Change::SetQuorum {
            key_id: None,
            quorum: 2,
        }],
    );
    assert_eq!(quorums(store), [2, 2]);
    let missing = Change::SetQuorum {
        key_id: Some(KeyId(alice.0 + bob.0 + 3)),
        quorum: 2,
    };
    assert!(matches!(
        store.apply(std::slice::from_ref(&missing)),
        Err(StoreError::NotFound(_))
    ));
    assert!(missing.is_mirrored());
}

/// An operator's action is a row naming no request event (and perhaps no
/// client or key): it round-trips, is chained like every row, and is not a
/// request event replay protection remembers.
pub fn action_rows_name_their_operator(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    let mut decided = audit_row(key, pk(1), 100, 1);
    decided.decision = AuditDecision::Approved;
    decided.operator = Some("carol,dave".into());
    let action = AuditEntry {
        seq: 0,
        at: t(101),
        key_id: KeyId(0),
        client: None,
        event_id: None,
        event_created_at: t(101),
        events: 1,
        request_id: "approver".into(),
        method: "dashboard.login".into(),
        kind: None,
        decision: AuditDecision::Action,
        outcome: "ok".into(),
        signed_event_id: None,
        operator: Some("carol".into()),
    };
    apply(
        store,
        &[
            Change::Audit(decided.clone()),
            Change::Audit(action.clone()),
        ],
    );
    let rows = audit_all(store);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].operator.as_deref(), Some("carol"));
    assert_eq!((rows[0].client, rows[0].event_id), (None, None));
    assert_eq!(rows[0].decision, AuditDecision::Action);
    assert_eq!(rows[0].key_id, KeyId(0));
    assert_eq!(rows[1].operator.as_deref(), Some("carol,dave"));
    assert_eq!(rows[1].client, Some(pk(1)));
    let events = ok(store.audited_events(t(0)), "audited events");
    assert_eq!(events.len(), 1, "an action is no request event: {events:?}");
    assert_eq!(Some(events[0].event_id), decided.event_id);
    assert_eq!(verified(store, None).rows, 2);
}

/// A held request's holder can be taken over once (with the claim of its
/// request event, so the adopter's answer is accepted and the old holder's
/// refused); a hold for an unknown approval is refused.
pub fn held_requests_are_adopted_once_with_their_claims(store: &mut dyn Store) {
    let (a, b, c) = (replica("a"), replica("b"), replica("c"));
    let key = add_key(store, "alice", 1);
    let approval = self::approval(key, "held-1", 100, ApprovalStatus::Pending);
    let hold = |id: &str, by: &ReplicaId| {
        Change::HoldRequest(HeldRequest {
            approval: ApprovalId(id.into()),
            holder: by.clone(),
            request_event: format!("request of {id}"),
            request_event_id: EventId::from_byte_array([5; 32]),
        })
    };
    apply(
        store,
        &[
            Change::PutApproval(approval),
            hold("held-1", &a),
            sealed(5, &a, "auth_url answer", 100),
        ],
    );
    assert!(matches!(
        store.apply(&[hold("missing", &a)]),
        Err(StoreError::NotFound(_))
    ));
    let adopted = ok(store.adopt_held(&b, &a), "b adopts a's");
    assert_eq!(
        adopted,
        vec![(ApprovalId("held-1".into()), "request of held-1".to_owned())]
    );
    assert!(ok(store.adopt_held(&c, &a), "c is too late").is_empty());
    apply(store, &[sealed(5, &b, "the decided answer", 101)]);
    assert!(matches!(
        store.apply(&[sealed(5, &a, "late", 102)]),
        Err(StoreError::Claimed(..))
    ));
    assert_eq!(ok(store.adopt_held(&c, &b), "c adopts b's").len(), 1);
    // Answered: the hold ends, nobody adopts it any more.
    apply(
        store,
        &[Change::SetApprovalStatus {
            id: ApprovalId("held-1".into()),
            status: ApprovalStatus::Expired,
        }],
    );
    assert!(ok(store.adopt_held(&a, &c), "after the answer").is_empty());
}

/// A decision from another process reaches only a request still waiting: it
/// never overwrites an answer, and a missing request is not found.
pub fn decisions_only_reach_waiting_requests(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    let decision = ApprovalDecision {
        allow: true,
        scope: DecisionScope::Once,
    };
    apply(
        store,
        &[
            Change::PutApproval(approval(key, "waiting", 100, ApprovalStatus::Pending)),
            Change::PutApproval(approval(
                key,
                "answered",
                101,
                ApprovalStatus::Done(decision),
            )),
        ],
    );
    let vote = |by: &str| Vote {
        by: by.into(),
        decision,
    };
    let decide = |id: &str, by: &str| Change::DecideApproval {
        id: ApprovalId(id.into()),
        vote: vote(by),
    };
    apply(store, &[decide("waiting", "carol")]);
    // Two processes' votes both count (each appends in one statement).
    apply(store, &[decide("waiting", "dave")]);
    // The same answer again is kept once (an approval's votes are bounded
    // by who may vote), and is not an error.
    apply(store, &[decide("waiting", "carol")]);
    for id in ["answered", "missing"] {
        assert!(
            matches!(
                store.apply(&[decide(id, "carol")]),
                Err(StoreError::NotFound(_))
            ),
            "{id}: decided"
        );
    }
    // The holder's own notes are lenient: a request answered meanwhile is
    // left as it is, and nothing fails.
    apply(
        store,
        &[Change::NoteVote {
            id: ApprovalId("answered".into()),
            vote: vote("erin"),
        }],
    );
    let approvals = ok(store.approvals(), "approvals");
    let Some(waiting) = approvals.iter().find(|a| a.id.0 == "waiting") else {
        panic!("the waiting approval is gone")
    };
    assert_eq!(
        waiting.status,
        ApprovalStatus::Pending,
        "votes are counted by the holder"
    );
    assert_eq!(waiting.votes, [vote("carol"), vote("dave")]);
    let Some(answered) = approvals.iter().find(|a| a.id.0 == "answered") else {
        panic!("the answered approval is gone")
    };
    assert_eq!(answered.status, ApprovalStatus::Done(decision));
    assert!(answered.votes.is_empty());
    apply(
        store,
        &[Change::SetApprovalStatus {
            id: ApprovalId("waiting".into()),
            status: ApprovalStatus::Done(decision),
        }],
    );
    assert!(matches!(
        store.apply(&[decide("waiting", "erin")]),
        Err(StoreError::NotFound(_))
    ));
}

/// A request id and a method name are a peer's choice: even NUL (which
/// PostgreSQL's text refuses) is stored, as U+FFFD, instead of failing the
/// batch it is in.
pub fn text_a_peer_chose_is_kept_whatever_it_holds(store: &mut dyn Store) {
    let key = add_key(store, "alice", 1);
    let mut row = audit_row(key, pk(1), 1, 1);
    row.request_id = "a\0b".into();
    row.method = "sign\0event".into();
    apply(store, &[Change::Audit(row)]);
    let mut held = approval(key, "nul", 100, ApprovalStatus::Pending);
    held.request_id = "x\0y".into();
    apply(store, &[Change::PutApproval(held)]);
    let rows = ok(store.audit(&AuditQuery::default()), "audit");
    assert_eq!(rows[0].request_id, "a\u{FFFD}b");
    assert_eq!(rows[0].method, "sign\u{FFFD}event");
    let approvals = ok(store.approvals(), "approvals");
    assert_eq!(approvals[0].request_id, "x\u{FFFD}y");
}
