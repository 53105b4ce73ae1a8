//! The request engine driven directly: no sockets, no database, time and
//! randomness supplied by the test. Each test asserts the exact reply (or its
//! absence) and the store changes that go with it.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bunker::Millis;
use bunker::auth_url::AuthUrlBase;
use bunker::engine::{
    Dropped, Engine, EngineConfig, Output, Snapshot, TransportKey, UnlistedPolicy,
};
use bunker::randomness::Counter;
use bunker::rate_limit::RateLimit;
use bunker::vault::{self, Passphrase, Vault};
use nip46::envelope::{self, Entropy};
use nip46::nostr::nips::nip49::KeySecurity;
use nip46::nostr::prelude::{
    Event, Keys, Kind, PublicKey, RelayUrl, Tag, Timestamp, UnsignedEvent,
};
use nip46::{
    ConnectSecret, Conversation, EnvelopeError, ErrorCode, NostrConnectUri, Outcome, PermissionSet,
    Preset, Response, Scheme,
};
use store::{
    ApprovalDecision, ApprovalStatus, AuditDecision, Change, ConnectionToken, DecisionScope, KeyId,
    RequestSummary, Rule, RuleEffect, SecretHash, TokenId,
};

const NOW: u64 = 1_700_000_000;

fn now() -> Millis {
    Millis(NOW * 1000)
}

struct Harness {
    engine: Engine,
    rng: Counter,
    user: PublicKey,
    signer: PublicKey,
    tokens: Vec<ConnectionToken>,
}

fn harness_with(config: EngineConfig) -> Harness {
    let pass = Passphrase::new("test");
    let kek = vault::Kek::create(&pass, 4).unwrap();
    let user = Keys::generate();
    let new = vault::seal_key(
        "alice",
        user.secret_key(),
        KeySecurity::Medium,
        &kek,
        Timestamp::from_secs(NOW),
    )
    .unwrap();
    let stored = new.stored(KeyId(1));
    let (mut vault, _) = Vault::unlock(std::slice::from_ref(&stored), &kek, &pass).unwrap();
    let signer = vault.take_signer(KeyId(1)).unwrap();
    let engine = Engine::new(
        config,
        Arc::new(vault),
        vec![TransportKey {
            key_id: KeyId(1),
            signer,
        }],
    );
    Harness {
        engine,
        rng: Counter(0),
        user: user.public_key(),
        signer: stored.signer_pubkey,
        tokens: Vec::new(),
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        relays: vec![RelayUrl::parse("ws://127.0.0.1:7777").unwrap()],
        ..EngineConfig::default()
    }
}

fn harness() -> Harness {
    harness_with(config())
}

struct Client {
    keys: Keys,
    conv: Conversation,
    signer: PublicKey,
    seq: u64,
}

impl Client {
    fn new(signer: PublicKey) -> Self {
        let keys = Keys::generate();
        let conv = Conversation::new(&keys, signer).unwrap();
        Client {
            keys,
            conv,
            signer,
            seq: 0,
        }
    }

    fn event(&mut self, json: &str, scheme: Scheme, created_at: u64) -> Event {
        self.seq += 1;
        let entropy = Entropy {
            nonce: [self.seq as u8; 32],
            aux: [7; 32],
        };
        let mut ev = envelope::seal(
            &self.keys,
            &mut self.conv,
            scheme,
            json,
            Timestamp::from_secs(created_at),
            &entropy,
        )
        .unwrap();
        // Seal tags the conversation's peer already; keep the signer explicit for readers.
        assert!(ev.tags.public_keys().any(|p| p == self.signer));
        ev.tags = ev.tags.clone();
        ev
    }

    fn request(&mut self, id: &str, method: &str, params: serde_json::Value) -> Event {
        let json = serde_json::json!({"id": id, "method": method, "params": params}).to_string();
        self.event(&json, Scheme::Nip44, NOW)
    }

    fn open(&mut self, event: &Event) -> (Scheme, Response) {
        let opened = envelope::open_response(&self.keys, &mut self.conv, event).unwrap();
        (opened.scheme, opened.body)
    }
}

impl Harness {
    fn mint(&mut self, secret: &str, grant: PermissionSet, expires_at: Option<u64>) {
        self.tokens.push(ConnectionToken {
            id: TokenId(self.tokens.len() as i64 + 1),
            key_id: KeyId(1),
            secret_hash: SecretHash::of(secret),
            grant,
            expires_at: expires_at.map(Timestamp::from_secs),
            created_at: Timestamp::from_secs(NOW - 10),
            used_at: None,
            used_by: None,
            label: None,
        });
        let sessions = self.engine.sessions().cloned().collect();
        let snapshot = Snapshot {
            keys: vec![KeyId(1)],
            locked: vec![],
            sensitive: vec![],
            quorums: vec![],
            operators: vec![],
            tokens: self.tokens.clone(),
            sessions,
            approvals: vec![],
        };
        let out = self.engine.reload(now(), snapshot, &mut self.rng);
        assert!(out.is_empty());
    }

    fn send(&mut self, event: &Event) -> Output {
        self.engine.handle_event(now(), event, &mut self.rng)
    }

    /// Connect a fresh client with a `grant` token.
    fn connected(&mut self, grant: &str) -> Client {
        let secret = format!("secret-{}", self.tokens.len());
        self.mint(&secret, grant.parse().unwrap(), None);
        let mut client = Client::new(self.signer);
        let ev = client.request(
            "c",
            "connect",
            serde_json::json!([self.signer.to_hex(), secret]),
        );
        let out = self.send(&ev);
        let (_, resp) = client.open(&out.publish[0].event);
        assert_eq!(resp, Response::ok("c", "ack"));
        client
    }
}

fn only_reply(client: &mut Client, out: &Output) -> Response {
    assert_eq!(
        out.publish.len(),
        1,
        "expected exactly one reply, got {:?}",
        out.dropped
    );
    let event = &out.publish[0].event;
    assert_eq!(event.kind, Kind::NostrConnect);
    event.verify().unwrap();
    client.open(event).1
}

fn audits(out: &Output) -> Vec<&store::AuditEntry> {
    out.changes
        .iter()
        .filter_map(|c| match c {
            Change::Audit(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn error_code(resp: &Response) -> Option<ErrorCode> {
    match &resp.outcome {
        Outcome::Error(e) => e.code,
        _ => None,
    }
}

#[test]
fn connect_with_secret_then_every_read_method() {
    let mut h = harness();
    h.mint("s1", Preset::Read.permissions(), None);
    let mut c = Client::new(h.signer);
    let out = h.send(&c.request("1", "connect", serde_json::json!([h.signer.to_hex(), "s1"])));
    assert_eq!(only_reply(&mut c, &out), Response::ok("1", "ack"));
    assert!(
        out.changes
            .iter()
            .any(|ch| matches!(ch, Change::ConsumeToken { id: TokenId(1), .. }))
    );
    assert!(
        out.changes
            .iter()
            .any(|ch| matches!(ch, Change::PutSession(s) if s.client == c.keys.public_key()))
    );
    assert_eq!(audits(&out)[0].decision, AuditDecision::Allowed);
    // The reply comes from the signer key, not the user key.
    assert_eq!(out.publish[0].event.pubkey, h.signer);
    assert_ne!(h.signer, h.user);

    let out = h.send(&c.request("2", "get_public_key", serde_json::json!([])));
    assert_eq!(only_reply(&mut c, &out), Response::ok("2", h.user.to_hex()));
    let out = h.send(&c.request("3", "ping", serde_json::json!([])));
    assert_eq!(only_reply(&mut c, &out), Response::ok("3", "pong"));
    let out = h.send(&c.request("4", "switch_relays", serde_json::json!([])));
    assert_eq!(
        only_reply(&mut c, &out),
        Response::ok("4", r#"["ws://127.0.0.1:7777"]"#)
    );
    let out = h.send(&c.request("5", "get_relays", serde_json::json!([])));
    assert_eq!(
        only_reply(&mut c, &out),
        Response::ok("5", r#"{"ws://127.0.0.1:7777":{"read":true,"write":true}}"#)
    );
}

#[test]
fn secrets_are_single_use_and_expire() {
    let mut h = harness();
    h.mint("once", Preset::Write.permissions(), None);
    let mut first = Client::new(h.signer);
    let out = h.send(&first.request("1", "connect", serde_json::json!(["", "once"])));
    assert_eq!(only_reply(&mut first, &out), Response::ok("1", "ack"));

    let mut second = Client::new(h.signer);
    let out = h.send(&second.request("1", "connect", serde_json::json!(["", "once"])));
    let resp = only_reply(&mut second, &out);
    assert_eq!(error_code(&resp), Some(ErrorCode::Unauthorized));
    assert!(resp.to_json().contains("already used"));

    // The first client reconnecting with the old secret is fine (apps reconnect at start).
    let out = h.send(&first.request("2", "connect", serde_json::json!(["", "once"])));
    assert_eq!(only_reply(&mut first, &out), Response::ok("2", "ack"));

    h.mint("late", Preset::Write.permissions(), Some(NOW - 1));
    let mut third = Client::new(h.signer);
    let out = h.send(&third.request("1", "connect", serde_json::json!(["", "late"])));
    assert!(only_reply(&mut third, &out).to_json().contains("expired"));

    // An unknown secret waits briefly for a reload (a token minted a moment
    // ago may not have arrived yet), then is refused.
    let out = h.send(&third.request("2", "connect", serde_json::json!(["", "wrong"])));
    assert!(out.publish.is_empty() && out.wants_reload);
    assert!(h.engine.next_timeout().unwrap() <= now().plus_ms(500));
    let out = h.engine.handle_timeout(now().plus_ms(500), &mut h.rng);
    let resp = only_reply(&mut third, &out);
    assert_eq!(resp.id, "2");
    assert_eq!(error_code(&resp), Some(ErrorCode::Unauthorized));
    let out = h.send(&third.request("3", "connect", serde_json::json!([])));
    assert_eq!(
        error_code(&only_reply(&mut third, &out)),
        Some(ErrorCode::Unauthorized)
    );
}

#[test]
fn a_token_minted_after_the_connect_arrived_is_found_on_reload() {
    let mut h = harness();
    let mut c = Client::new(h.signer);
    let out = h.send(&c.request("early", "connect", serde_json::json!(["", "just-minted"])));
    assert!(out.publish.is_empty() && out.wants_reload);
    h.tokens.push(ConnectionToken {
        id: TokenId(99),
        key_id: KeyId(1),
        secret_hash: SecretHash::of("just-minted"),
        grant: Preset::Read.permissions(),
        expires_at: None,
        created_at: Timestamp::from_secs(NOW),
        used_at: None,
        used_by: None,
        label: None,
    });
    let snapshot = Snapshot {
        keys: vec![KeyId(1)],
        locked: vec![],
        sensitive: vec![],
        quorums: vec![],
        operators: vec![],
        tokens: h.tokens.clone(),
        sessions: vec![],
        approvals: vec![],
    };
    let out = h.engine.reload(now(), snapshot, &mut h.rng);
    assert_eq!(only_reply(&mut c, &out), Response::ok("early", "ack"));
    assert!(
        h.engine
            .next_timeout()
            .is_none_or(|t| t > now().plus_ms(500)),
        "nothing left waiting"
    );
}

#[test]
fn requests_without_a_session_are_unauthorized() {
    let mut h = harness();
    let mut c = Client::new(h.signer);
    let out = h.send(&c.request("1", "get_public_key", serde_json::json!([])));
    assert_eq!(
        error_code(&only_reply(&mut c, &out)),
        Some(ErrorCode::Unauthorized)
    );
    assert_eq!(audits(&out)[0].decision, AuditDecision::Denied);
}

#[test]
fn sign_event_returns_the_whole_signed_event() {
    let mut h = harness();
    let mut c = h.connected("write");
    let template = serde_json::json!({"kind": 1, "content": "hello", "tags": [["t", "rampart"]], "created_at": NOW});
    let out = h.send(&c.request("s", "sign_event", serde_json::json!([template.to_string()])));
    let resp = only_reply(&mut c, &out);
    let Outcome::Result(json) = resp.outcome else {
        panic!("{resp:?}")
    };
    let event: Event = serde_json::from_str(&json).unwrap();
    event.verify().unwrap();
    assert_eq!(event.pubkey, h.user);
    assert_eq!(event.content, "hello");
    assert_eq!(event.created_at.as_secs(), NOW);
    let audit = audits(&out)[0];
    assert_eq!(audit.signed_event_id, Some(event.id));
    assert_eq!(audit.kind, Some(1));

    // Without created_at the bunker's clock fills it in.
    let template = serde_json::json!({"kind": 1, "content": "x", "tags": []});
    let out = h.send(&c.request(
        "s2",
        "sign_event",
        serde_json::json!([template.to_string()]),
    ));
    let Outcome::Result(json) = only_reply(&mut c, &out).outcome else {
        panic!()
    };
    let event: Event = serde_json::from_str(&json).unwrap();
    assert_eq!(event.created_at.as_secs(), NOW);

    // A template naming another author is refused.
    let template = serde_json::json!({"kind": 1, "content": "", "tags": [], "pubkey": Keys::generate().public_key().to_hex()});
    let out = h.send(&c.request(
        "s3",
        "sign_event",
        serde_json::json!([template.to_string()]),
    ));
    assert_eq!(
        error_code(&only_reply(&mut c, &out)),
        Some(ErrorCode::InvalidParams)
    );
}

#[test]
fn per_kind_grants_deny_when_configured() {
    let mut h = harness_with(EngineConfig {
        unlisted: UnlistedPolicy::Deny,
        ..config()
    });
    let mut c = h.connected("sign_event:1");
    let t1 = serde_json::json!({"kind": 1, "content": "", "tags": []}).to_string();
    let t0 = serde_json::json!({"kind": 0, "content": "{}", "tags": []}).to_string();
    let out = h.send(&c.request("a", "sign_event", serde_json::json!([t1])));
    assert!(matches!(
        only_reply(&mut c, &out).outcome,
        Outcome::Result(_)
    ));
    let out = h.send(&c.request("b", "sign_event", serde_json::json!([t0])));
    let resp = only_reply(&mut c, &out);
    assert_eq!(error_code(&resp), Some(ErrorCode::Unauthorized));
    assert!(resp.to_json().contains("sign_event:0"));
    let out = h.send(&c.request(
        "c",
        "nip44_encrypt",
        serde_json::json!([h.user.to_hex(), "x"]),
    ));
    assert_eq!(
        error_code(&only_reply(&mut c, &out)),
        Some(ErrorCode::Unauthorized)
    );
}

#[test]
fn held_request_allowed_always_then_sticks() {
    let mut h = harness();
    let mut c = h.connected("read");
    let t1 = serde_json::json!({"kind": 1, "content": "needs ok", "tags": []}).to_string();
    let out = h.send(&c.request("h1", "sign_event", serde_json::json!([t1.clone()])));
    assert!(out.publish.is_empty(), "held requests get no reply yet");
    let pending = h.engine.pending();
    assert_eq!(pending.len(), 1);
    let approval = pending[0].clone();
    assert_eq!(approval.kind, Some(1));
    assert!(
        matches!(&approval.summary, store::RequestSummary::SignEvent { kind: 1, content, .. } if content == "needs ok"),
        "{:?}",
        approval.summary
    );
    assert!(
        out.changes
            .iter()
            .any(|ch| matches!(ch, Change::PutApproval(a) if a.id == approval.id))
    );

    let decision = ApprovalDecision {
        allow: true,
        scope: DecisionScope::Always { until: None },
    };
    let out = h
        .engine
        .decide(now(), &approval.id, decision, &mut h.rng)
        .unwrap();
    let resp = only_reply(&mut c, &out);
    assert_eq!(
        resp.id, "h1",
        "the real answer carries the original request id"
    );
    assert!(matches!(resp.outcome, Outcome::Result(_)));
    assert_eq!(audits(&out)[0].decision, AuditDecision::Approved);
    assert!(out.changes.iter().any(|ch| matches!(
        ch,
        Change::SetApprovalStatus {
            status: ApprovalStatus::Done(_),
            ..
        }
    )));

    // The next kind-1 request is answered at once; a kind-0 one is held.
    let out = h.send(&c.request("h2", "sign_event", serde_json::json!([t1])));
    assert!(matches!(
        only_reply(&mut c, &out).outcome,
        Outcome::Result(_)
    ));
    let t0 = serde_json::json!({"kind": 0, "content": "{}", "tags": []}).to_string();
    let out = h.send(&c.request("h3", "sign_event", serde_json::json!([t0])));
    assert!(out.publish.is_empty());
    assert!(
        h.engine
            .decide(now(), &approval.id, decision, &mut h.rng)
            .is_err(),
        "decided twice"
    );
}

#[test]
fn a_resent_held_request_is_asked_once() {
    let mut h = harness();
    let mut c = h.connected("read");
    let t1 = serde_json::json!({"kind": 1, "content": "", "tags": []}).to_string();
    h.send(&c.request("same", "sign_event", serde_json::json!([t1.clone()])));
    // After a reconnect the client sends the same request id in a fresh event.
    let out = h.send(&c.request("same", "sign_event", serde_json::json!([t1])));
    assert!(out.publish.is_empty() && out.changes.is_empty());
    assert_eq!(h.engine.pending().len(), 1);
    let id = h.engine.pending()[0].id.clone();
    let decision = ApprovalDecision {
        allow: true,
        scope: DecisionScope::Once,
    };
    let out = h.engine.decide(now(), &id, decision, &mut h.rng).unwrap();
    assert_eq!(only_reply(&mut c, &out).id, "same");
}

#[test]
fn held_request_denied_or_expired_is_unauthorized() {
    let mut h = harness();
    let mut c = h.connected("read");
    let out = h.send(&c.request(
        "d",
        "nip44_decrypt",
        serde_json::json!([h.user.to_hex(), "AAAA"]),
    ));
    assert!(out.publish.is_empty());
    let id = h.engine.pending()[0].id.clone();
    let out = h
        .engine
        .decide(
            now(),
            &id,
            ApprovalDecision {
                allow: false,
                scope: DecisionScope::Once,
            },
            &mut h.rng,
        )
        .unwrap();
    let resp = only_reply(&mut c, &out);
    assert_eq!(resp.id, "d");
    assert_eq!(error_code(&resp), Some(ErrorCode::Unauthorized));

    let out = h.send(&c.request(
        "e",
        "nip44_decrypt",
        serde_json::json!([h.user.to_hex(), "AAAA"]),
    ));
    assert!(out.publish.is_empty());
    let due = h.engine.next_timeout().unwrap();
    assert!(due <= now().plus_ms(60_000));
    let out = h.engine.handle_timeout(now().plus_ms(59_000), &mut h.rng);
    assert!(out.publish.is_empty(), "not yet");
    let out = h.engine.handle_timeout(now().plus_ms(60_000), &mut h.rng);
    let resp = only_reply(&mut c, &out);
    assert_eq!(resp.id, "e");
    assert_eq!(error_code(&resp), Some(ErrorCode::Unauthorized));
    assert!(h.engine.pending().is_empty());
}

#[test]
fn auth_url_challenge_then_real_answer() {
    let mut h = harness_with(EngineConfig {
        auth_url_base: Some(AuthUrlBase::parse("http://127.0.0.1:9999/").unwrap()),
        ..config()
    });
    let mut c = h.connected("read");
    let t1 = serde_json::json!({"kind": 1, "content": "", "tags": []}).to_string();
    let out = h.send(&c.request("x", "sign_event", serde_json::json!([t1])));
    let resp = only_reply(&mut c, &out);
    let id = h.engine.pending()[0].id.clone();
    assert_eq!(
        resp,
        Response::auth_url("x", format!("http://127.0.0.1:9999/approve/{id}"))
    );
    let out = h
        .engine
        .decide(
            now(),
            &id,
            ApprovalDecision {
                allow: true,
                scope: DecisionScope::Once,
            },
            &mut h.rng,
        )
        .unwrap();
    let resp = only_reply(&mut c, &out);
    assert_eq!(resp.id, "x");
    assert!(matches!(resp.outcome, Outcome::Result(_)));
}

fn kind_template(kind: u16) -> serde_json::Value {
    serde_json::json!([serde_json::json!({"kind": kind, "content": "", "tags": []}).to_string()])
}

fn held_id(h: &Harness, request_id: &str) -> store::ApprovalId {
    h.engine
        .pending()
        .into_iter()
        .find(|a| a.request_id == request_id)
        .map(|a| a.id.clone())
        .unwrap_or_else(|| panic!("`{request_id}` is not held"))
}

#[test]
fn always_allow_is_per_app_per_kind_and_can_expire() {
    let mut h = harness();
    let mut x = h.connected("read");
    let mut y = h.connected("read");
    let out = h.send(&x.request("x1", "sign_event", kind_template(1)));
    assert!(out.publish.is_empty());
    let hour = Timestamp::from_secs(NOW + 3600);
    let always_for_an_hour = ApprovalDecision {
        allow: true,
        scope: DecisionScope::Always { until: Some(hour) },
    };
    let id = held_id(&h, "x1");
    let out = h
        .engine
        .decide(now(), &id, always_for_an_hour, &mut h.rng)
        .unwrap();
    assert!(matches!(
        only_reply(&mut x, &out).outcome,
        Outcome::Result(_)
    ));
    // Stored as a rule merged into the stored session (the store moves its
    // revision on), not as a whole session that could overwrite an edit.
    assert!(
        out.changes.iter().any(|c| matches!(c,
        Change::AddRules { client, rules, .. }
            if *client == x.keys.public_key()
                && rules == &[Rule {
                    permission: "sign_event:1".parse().unwrap(),
                    effect: RuleEffect::Allow,
                    expires_at: Some(hour),
                }])),
        "the remembered rule is stored: {:?}",
        out.changes
    );

    // App X: kind 1 is answered at once, kind 0 is still asked.
    let out = h.send(&x.request("x2", "sign_event", kind_template(1)));
    assert!(matches!(
        only_reply(&mut x, &out).outcome,
        Outcome::Result(_)
    ));
    let out = h.send(&x.request("x3", "sign_event", kind_template(0)));
    assert!(out.publish.is_empty(), "kind 0 was not remembered");
    // App Y: its kind 1 is still asked.
    let out = h.send(&y.request("y1", "sign_event", kind_template(1)));
    assert!(
        out.publish.is_empty(),
        "another app's kind 1 is still asked"
    );
    assert_eq!(h.engine.pending().len(), 2);

    // An hour later the rule has expired: X's kind 1 is asked again.
    let later = Millis((NOW + 3600) * 1000);
    let json = serde_json::json!({"id": "x4", "method": "sign_event", "params": kind_template(1)});
    let event = x.event(&json.to_string(), Scheme::Nip44, NOW + 3600);
    let out = h.engine.handle_event(later, &event, &mut h.rng);
    assert!(out.publish.is_empty(), "the timed rule expired");
    held_id(&h, "x4");
}

#[test]
fn always_deny_refuses_the_next_request_at_once() {
    let mut h = harness();
    let mut c = h.connected("read");
    h.send(&c.request("k0", "sign_event", kind_template(0)));
    let id = held_id(&h, "k0");
    let deny_always = ApprovalDecision {
        allow: false,
        scope: DecisionScope::Always { until: None },
    };
    let out = h
        .engine
        .decide(now(), &id, deny_always, &mut h.rng)
        .unwrap();
    let resp = only_reply(&mut c, &out);
    assert_eq!(
        (resp.id.as_str(), error_code(&resp)),
        ("k0", Some(ErrorCode::Unauthorized))
    );

    let out = h.send(&c.request("k0b", "sign_event", kind_template(0)));
    let resp = only_reply(&mut c, &out);
    assert_eq!(
        error_code(&resp),
        Some(ErrorCode::Unauthorized),
        "refused without asking"
    );
    assert!(resp.to_json().contains("sign_event:0"));
    let out = h.send(&c.request("k1", "sign_event", kind_template(1)));
    assert!(out.publish.is_empty(), "other kinds are still asked");
}

#[test]
fn held_requests_are_answered_at_shutdown() {
    let mut h = harness();
    let mut c = h.connected("read");
    h.send(&c.request("s", "sign_event", kind_template(1)));
    let out = h.engine.shutdown(now(), &mut h.rng);
    let resp = only_reply(&mut c, &out);
    assert_eq!(
        (resp.id.as_str(), error_code(&resp)),
        ("s", Some(ErrorCode::Unauthorized))
    );
    assert!(h.engine.pending().is_empty(), "no client is left waiting");
}

#[test]
fn encryption_methods_round_trip() {
    let mut h = harness();
    let mut c = h.connected("encrypt");
    let peer = Keys::generate();
    for (enc, dec) in [
        ("nip44_encrypt", "nip44_decrypt"),
        ("nip04_encrypt", "nip04_decrypt"),
    ] {
        let out = h.send(&c.request(
            "e",
            enc,
            serde_json::json!([peer.public_key().to_hex(), "top secret"]),
        ));
        let Outcome::Result(ct) = only_reply(&mut c, &out).outcome else {
            panic!()
        };
        let out = h.send(&c.request(
            "d",
            dec,
            serde_json::json!([peer.public_key().to_hex(), ct]),
        ));
        assert_eq!(only_reply(&mut c, &out), Response::ok("d", "top secret"));
    }
    // A peer's real NIP-44 message to the user decrypts.
    let theirs = nip46::nostr::nips::nip44::encrypt(
        peer.secret_key(),
        &h.user,
        "from peer",
        nip46::nostr::nips::nip44::Version::V2,
    )
    .unwrap();
    let out = h.send(&c.request(
        "p",
        "nip44_decrypt",
        serde_json::json!([peer.public_key().to_hex(), theirs]),
    ));
    assert_eq!(only_reply(&mut c, &out), Response::ok("p", "from peer"));
    // Garbage ciphertext is the client's mistake.
    let out = h.send(&c.request(
        "g",
        "nip44_decrypt",
        serde_json::json!([peer.public_key().to_hex(), "garbage"]),
    ));
    assert_eq!(
        error_code(&only_reply(&mut c, &out)),
        Some(ErrorCode::InvalidParams)
    );
}

#[test]
fn nip04_requests_are_answered_in_nip04() {
    let mut h = harness();
    let mut c = h.connected("read");
    let ev = c.event(
        r#"{"id":"old","method":"ping","params":[]}"#,
        Scheme::Nip04,
        NOW,
    );
    assert!(ev.content.contains("?iv="));
    let out = h.send(&ev);
    let (scheme, resp) = c.open(&out.publish[0].event);
    assert_eq!(scheme, Scheme::Nip04);
    assert_eq!(resp, Response::ok("old", "pong"));
}

#[test]
fn replayed_stale_and_future_events_are_dropped() {
    let mut h = harness();
    let mut c = h.connected("read");
    let ev = c.request("r", "ping", serde_json::json!([]));
    assert_eq!(h.send(&ev).publish.len(), 1);
    let again = h.send(&ev);
    assert!(again.publish.is_empty());
    assert_eq!(again.dropped, Some(Dropped::Replayed));

    let stale = c.event(r#"{"id":"s","method":"ping"}"#, Scheme::Nip44, NOW - 601);
    assert_eq!(h.send(&stale).dropped, Some(Dropped::Stale));
    let future = c.event(r#"{"id":"f","method":"ping"}"#, Scheme::Nip44, NOW + 301);
    assert_eq!(h.send(&future).dropped, Some(Dropped::Future));
    // Still serving.
    assert_eq!(
        h.send(&c.request("ok", "ping", serde_json::json!([])))
            .publish
            .len(),
        1
    );
}

#[test]
fn replays_across_a_restart_are_dropped_when_seeded() {
    let mut h = harness();
    let mut c = h.connected("read");
    let ev = c.request("r", "ping", serde_json::json!([]));
    h.engine.seed_replay(
        now(),
        [store::AuditedEvent {
            event_id: ev.id,
            client: ev.pubkey,
            created_at: ev.created_at,
        }],
    );
    assert_eq!(h.send(&ev).dropped, Some(Dropped::Replayed));
}

#[test]
fn bad_input_is_dropped_or_answered_and_serving_continues() {
    let mut h = harness();
    let mut c = h.connected("full");

    // Unknown method → method_not_found.
    let out = h.send(&c.request("u", "create_account", serde_json::json!([])));
    assert_eq!(
        error_code(&only_reply(&mut c, &out)),
        Some(ErrorCode::MethodNotFound)
    );
    // Bad params → invalid_params with the id.
    let out = h.send(&c.request("p", "nip44_encrypt", serde_json::json!(["nothex", "x"])));
    let resp = only_reply(&mut c, &out);
    assert_eq!(resp.id, "p");
    assert_eq!(error_code(&resp), Some(ErrorCode::InvalidParams));
    // Undecryptable content → dropped.
    let unsigned = UnsignedEvent::new(
        c.keys.public_key(),
        Timestamp::from_secs(NOW),
        Kind::NostrConnect,
        [Tag::public_key(h.signer)],
        "garbage",
    );
    let garbage = envelope::sign(&c.keys, unsigned, &[1; 32]).unwrap();
    assert!(matches!(
        h.send(&garbage).dropped,
        Some(Dropped::Undecryptable(_))
    ));
    // Not JSON inside → dropped.
    let ev = c.event("not json", Scheme::Nip44, NOW);
    assert!(matches!(h.send(&ev).dropped, Some(Dropped::Malformed(_))));
    // Past the hard bound → dropped before any crypto.
    let mut big = c.request("b", "ping", serde_json::json!([]));
    big.content = "A".repeat(nip46::Limits::default().hard_request_content() + 1);
    assert!(matches!(
        h.send(&big).dropped,
        Some(Dropped::Envelope(EnvelopeError::TooLarge { .. }))
    ));
    // Bad signature → dropped.
    let mut forged = c.request("f", "ping", serde_json::json!([]));
    forged.content.push('A');
    assert_eq!(h.send(&forged).dropped, Some(Dropped::BadSignature));
    // Addressed to someone else → dropped.
    let mut other = Client::new(Keys::generate().public_key());
    assert_eq!(
        h.send(&other.request("o", "ping", serde_json::json!([])))
            .dropped,
        Some(Dropped::NotForUs)
    );
    // Still serving.
    let out = h.send(&c.request("z", "ping", serde_json::json!([])));
    assert_eq!(only_reply(&mut c, &out), Response::ok("z", "pong"));
}

#[test]
fn rate_limit_applies_per_session() {
    let mut h = harness_with(EngineConfig {
        rate_limit: RateLimit {
            burst: 3,
            per_second: 0.001,
        },
        ..config()
    });
    let mut c = h.connected("read");
    let mut other = h.connected("read");
    for i in 0..3 {
        let out = h.send(&c.request(&i.to_string(), "ping", serde_json::json!([])));
        assert!(matches!(
            only_reply(&mut c, &out).outcome,
            Outcome::Result(_)
        ));
    }
    let out = h.send(&c.request("x", "ping", serde_json::json!([])));
    assert_eq!(
        error_code(&only_reply(&mut c, &out)),
        Some(ErrorCode::RateLimited)
    );
    assert_eq!(audits(&out)[0].decision, AuditDecision::RateLimited);
    let out = h.send(&other.request("y", "ping", serde_json::json!([])));
    assert_eq!(only_reply(&mut other, &out), Response::ok("y", "pong"));
}

#[test]
fn logout_answers_then_ends_the_session() {
    let mut h = harness();
    let mut c = h.connected("read");
    let out = h.send(&c.request("l", "logout", serde_json::json!([])));
    assert_eq!(only_reply(&mut c, &out), Response::ok("l", "ack"));
    assert!(
        out.changes
            .iter()
            .any(|ch| matches!(ch, Change::RevokeSession { .. }))
    );
    let out = h.send(&c.request("after", "ping", serde_json::json!([])));
    assert_eq!(
        error_code(&only_reply(&mut c, &out)),
        Some(ErrorCode::Unauthorized)
    );
}

#[test]
fn revocation_from_the_store_takes_effect_on_reload() {
    let mut h = harness();
    let mut c = h.connected("read");
    let mut session = h
        .engine
        .session(KeyId(1), &c.keys.public_key())
        .unwrap()
        .clone();
    session.revoked_at = Some(Timestamp::from_secs(NOW));
    session.revision += 1;
    h.engine.reload(
        now(),
        Snapshot {
            keys: vec![KeyId(1)],
            locked: vec![],
            sensitive: vec![],
            quorums: vec![],
            operators: vec![],
            tokens: vec![],
            sessions: vec![session],
            approvals: vec![],
        },
        &mut h.rng,
    );
    let out = h.send(&c.request("p", "ping", serde_json::json!([])));
    assert_eq!(
        error_code(&only_reply(&mut c, &out)),
        Some(ErrorCode::Unauthorized)
    );
}

#[test]
fn approval_decided_in_the_store_is_applied_on_reload() {
    let mut h = harness();
    let mut c = h.connected("read");
    let t1 = serde_json::json!({"kind": 1, "content": "", "tags": []}).to_string();
    h.send(&c.request("q", "sign_event", serde_json::json!([t1])));
    let mut approval = h.engine.pending()[0].clone();
    approval.status = ApprovalStatus::Decided(ApprovalDecision {
        allow: true,
        scope: DecisionScope::Once,
    });
    let session = h
        .engine
        .session(KeyId(1), &c.keys.public_key())
        .unwrap()
        .clone();
    let out = h.engine.reload(
        now(),
        Snapshot {
            keys: vec![KeyId(1)],
            locked: vec![],
            sensitive: vec![],
            quorums: vec![],
            operators: vec![],
            tokens: vec![],
            sessions: vec![session],
            approvals: vec![approval],
        },
        &mut h.rng,
    );
    let resp = only_reply(&mut c, &out);
    assert_eq!(resp.id, "q");
    assert!(matches!(resp.outcome, Outcome::Result(_)));
}

#[test]
fn nostrconnect_sends_the_secret_from_the_signer_key() {
    let mut h = harness();
    let client = Keys::generate();
    let text = format!(
        "nostrconnect://{}?relay=ws%3A%2F%2F127.0.0.1%3A9000&secret=xyz123&perms=sign_event%3A1&name=Demo",
        client.public_key().to_hex()
    );
    let uri: NostrConnectUri = text.parse().unwrap();
    let out = h
        .engine
        .accept_nostrconnect(
            now(),
            KeyId(1),
            &uri,
            &Preset::Write.permissions(),
            &mut h.rng,
        )
        .unwrap();
    assert_eq!(out.publish.len(), 1);
    let sent = &out.publish[0];
    assert_eq!(sent.event.pubkey, h.signer);
    assert_eq!(sent.extra_relays, uri.relays);
    let mut conv = Conversation::new(&client, h.signer).unwrap();
    let opened = envelope::open_response(&client, &mut conv, &sent.event).unwrap();
    assert!(matches!(opened.body.outcome, Outcome::Result(ref s) if s == "xyz123"));
    let session = h.engine.session(KeyId(1), &client.public_key()).unwrap();
    assert_eq!(session.metadata.name.as_deref(), Some("Demo"));
    assert!(session.connect_reply.is_none(), "the reply is sent once");
    assert!(h.engine.wanted_relays(now()).contains(&uri.relays[0]));
    let _ = ConnectSecret::new("unused");
}

#[test]
fn session_counters_are_flushed_on_timeout() {
    let mut h = harness_with(EngineConfig {
        touch_interval_ms: 500,
        ..config()
    });
    let mut c = h.connected("read");
    for i in 0..3 {
        h.send(&c.request(&format!("t{i}"), "ping", serde_json::json!([])));
    }
    let out = h.engine.handle_timeout(now().plus_ms(500), &mut h.rng);
    let touched: Vec<u64> = out
        .changes
        .iter()
        .filter_map(|ch| match ch {
            Change::TouchSession { requests, .. } => Some(*requests),
            _ => None,
        })
        .collect();
    assert_eq!(touched, vec![3]);
}

#[test]
fn strangers_are_answered_then_silenced_and_audited_in_aggregate() {
    let mut h = harness();
    let mut friend = h.connected("read");
    let mut strangers: Vec<Client> = (0..50).map(|_| Client::new(h.signer)).collect();
    let (mut rows, mut answers, mut silenced, mut friend_answers) = (0, 0, 0, 0);
    let mut events = 0u32;
    for round in 0..100 {
        for (i, s) in strangers.iter_mut().enumerate() {
            let out = h.send(&s.request(&format!("p{round}-{i}"), "ping", serde_json::json!([])));
            rows += audits(&out).len();
            answers += out.publish.len();
            if out.dropped == Some(Dropped::Silenced) {
                silenced += 1;
            }
            events += audits(&out).iter().map(|e| e.events).sum::<u32>();
        }
        let out = h.send(&friend.request(&format!("f{round}"), "ping", serde_json::json!([])));
        assert_eq!(
            only_reply(&mut friend, &out),
            Response::ok(format!("f{round}"), "pong")
        );
        friend_answers += 1;
    }
    assert_eq!(
        friend_answers, 100,
        "the connected client is served throughout"
    );
    // A clear refusal first (three answers each at most), then silence.
    assert!(
        answers >= 50,
        "every stranger got a clear refusal: {answers}"
    );
    assert!(silenced >= 50 * 90, "{silenced} silenced");
    // One row per stranger at once…
    assert_eq!(rows, 50, "one row per stranger for its first refusal");
    // …and one more per stranger when its minute is over, with the count.
    let later = Millis(now().0 + 61_000);
    let out = h.engine.handle_timeout(later, &mut h.rng);
    let tallies: Vec<_> = audits(&out)
        .into_iter()
        .filter(|e| e.method == "ping" && e.events > 1)
        .collect();
    assert_eq!(tallies.len(), 50, "one aggregate row per stranger");
    events += tallies.iter().map(|e| e.events).sum::<u32>();
    // The rows count every refusal (three per stranger before its bucket is
    // empty; the total limit kept some of them silent); the later events
    // were dropped before their signature was checked, so are not counted.
    assert_eq!(events, 50 * 3, "{events} events in rows");
    assert_eq!(answers, 100, "the total limit (burst 100) holds");
    assert!(
        rows + tallies.len() <= 100,
        "≤ 100 rows for 50 × 100 requests"
    );
    // Nothing is left to write at shutdown.
    let out = h.engine.shutdown(later, &mut h.rng);
    assert!(
        audits(&out)
            .iter()
            .all(|e| e.client == Some(friend.keys.public_key()))
    );
}

#[test]
fn a_silenced_stranger_is_dropped_before_its_signature_is_checked() {
    let mut h = harness();
    let mut s = Client::new(h.signer);
    for i in 0..3 {
        let out = h.send(&s.request(&format!("a{i}"), "sign_event", serde_json::json!(["{}"])));
        let (_, resp) = s.open(&out.publish[0].event);
        assert!(matches!(resp.outcome, nip46::Outcome::Error(_)), "{resp:?}");
    }
    let out = h.send(&s.request("b", "ping", serde_json::json!([])));
    assert_eq!(out.dropped, Some(Dropped::Silenced));
    // Even a forged event under its name is dropped unverified, and another
    // stranger is not affected.
    let mut forged = s.request("c", "ping", serde_json::json!([]));
    forged.content = "tampered".into();
    assert_eq!(h.send(&forged).dropped, Some(Dropped::Silenced));
    let mut other = Client::new(h.signer);
    let out = h.send(&other.request("d", "ping", serde_json::json!([])));
    assert_eq!(out.publish.len(), 1);
    // A connect with a wrong secret counts as stranger traffic too.
    let mut c = Client::new(h.signer);
    for i in 0..5 {
        let out = h.send(&c.request(
            &format!("c{i}"),
            "connect",
            serde_json::json!([h.signer.to_hex(), "not-a-secret"]),
        ));
        if i >= 3 {
            assert!(out.publish.is_empty(), "silence after three refusals");
        }
    }
}

#[test]
fn the_deferred_connect_list_is_bounded() {
    let mut h = harness();
    let max = EngineConfig::default().max_deferred_connects;
    let mut deferred = 0;
    let mut refused_at_once = 0;
    for i in 0..max + 10 {
        let mut c = Client::new(h.signer);
        let ev = c.request(
            &format!("c{i}"),
            "connect",
            serde_json::json!([h.signer.to_hex(), format!("unknown-{i}")]),
        );
        let out = h.send(&ev);
        if out.wants_reload && out.publish.is_empty() {
            deferred += 1;
        } else {
            let (_, resp) = c.open(&out.publish[0].event);
            assert!(matches!(resp.outcome, nip46::Outcome::Error(_)), "{resp:?}");
            refused_at_once += 1;
        }
    }
    assert_eq!(deferred, max);
    assert_eq!(refused_at_once, 10);
}

#[test]
fn held_requests_are_capped_per_session() {
    let mut h = harness();
    let mut c = h.connected("read");
    let big_tags: Vec<Vec<String>> = (0..500)
        .map(|i| vec!["t".to_owned(), format!("{i:0>90}")])
        .collect();
    let mut refused = 0;
    for i in 0..20 {
        let template =
            serde_json::json!({"kind": 1, "content": "x".repeat(1000), "tags": big_tags})
                .to_string();
        let out = h.send(&c.request(
            &format!("s{i}"),
            "sign_event",
            serde_json::json!([template]),
        ));
        if let Some(outgoing) = out.publish.first() {
            let (_, resp) = c.open(&outgoing.event);
            assert_eq!(
                resp,
                Response::error(
                    format!("s{i}"),
                    ErrorCode::RateLimited,
                    "too many requests waiting for approval"
                )
            );
            refused += 1;
        }
    }
    let max = EngineConfig::default().max_held_per_session;
    assert_eq!(h.engine.pending().len(), max);
    assert_eq!(refused, 20 - max);
    // Summaries are bounded and say what they leave out.
    let RequestSummary::SignEvent {
        tags, tags_hidden, ..
    } = &h.engine.pending()[0].summary
    else {
        panic!("not a sign_event summary");
    };
    assert_eq!(tags.len(), RequestSummary::MAX_TAGS);
    assert_eq!(*tags_hidden as usize, 500 - RequestSummary::MAX_TAGS);
    // Another session still gets its requests held.
    let mut other = h.connected("read");
    let template = serde_json::json!({"kind": 1, "content": "", "tags": []}).to_string();
    let out = h.send(&other.request("o", "sign_event", serde_json::json!([template])));
    assert!(out.publish.is_empty(), "held, not refused");
    assert_eq!(h.engine.pending().len(), max + 1);
}

#[test]
fn what_is_approved_is_exactly_what_is_signed() {
    let mut h = harness();
    let mut c = h.connected("read");
    // No created_at: the bunker's clock fixes it when the request is held.
    let content = "é".repeat(RequestSummary::MAX_TEXT + 1234);
    let template =
        serde_json::json!({"kind": 1, "content": content, "tags": [["t", "a"]]}).to_string();
    let out = h.send(&c.request("whole", "sign_event", serde_json::json!([template])));
    assert!(out.publish.is_empty());
    let approval = h.engine.pending()[0].clone();
    let RequestSummary::SignEvent {
        content: shown,
        content_hidden,
        ..
    } = &approval.summary
    else {
        panic!("not a sign_event summary");
    };
    assert_eq!(shown.chars().count(), RequestSummary::MAX_TEXT);
    assert_eq!(*content_hidden, 1234, "the summary says how much it hides");
    let held = approval.event.clone().expect("the complete event is kept");
    assert_eq!(
        held.created_at,
        Timestamp::from_secs(NOW),
        "fixed when held"
    );
    assert_eq!(held.content, content, "complete");
    let held_id = held.id.expect("its id is computed when held");
    assert!(
        out.changes
            .iter()
            .any(|ch| matches!(ch, Change::PutApproval(a) if a.event == Some(held.clone()))),
        "stored with the held request"
    );
    // Decided two minutes later: the same event is signed, same id.
    let later = Millis(now().0 + 120_000);
    let decision = ApprovalDecision {
        allow: true,
        scope: DecisionScope::Once,
    };
    let out = h
        .engine
        .decide(later, &approval.id, decision, &mut h.rng)
        .unwrap();
    let resp = only_reply(&mut c, &out);
    let Outcome::Result(json) = &resp.outcome else {
        panic!("{resp:?}");
    };
    let signed = Event::from_json(json).unwrap();
    signed.verify().unwrap();
    assert_eq!(signed.id, held_id);
    assert_eq!(signed.created_at, held.created_at);
    assert_eq!(signed.content, held.content);
    assert_eq!(signed.tags, held.tags);
}

#[test]
fn a_deny_rule_added_while_a_request_waits_wins_over_allow_once() {
    let mut h = harness();
    let mut c = h.connected("read");
    let template = serde_json::json!({"kind": 1, "content": "", "tags": []}).to_string();
    h.send(&c.request("w", "sign_event", serde_json::json!([template])));
    let id = h.engine.pending()[0].id.clone();
    // The user (dashboard or CLI) denies kind 1 for this app meanwhile.
    let mut session = h
        .engine
        .session(KeyId(1), &c.keys.public_key())
        .unwrap()
        .clone();
    session.set_rule(Rule::permanent(
        "sign_event:1".parse().unwrap(),
        RuleEffect::Deny,
    ));
    session.revision += 1;
    let snapshot = Snapshot {
        keys: vec![KeyId(1)],
        locked: vec![],
        sensitive: vec![],
        quorums: vec![],
        operators: vec![],
        tokens: h.tokens.clone(),
        sessions: vec![session],
        approvals: vec![],
    };
    h.engine.reload(now(), snapshot, &mut h.rng);
    let decision = ApprovalDecision {
        allow: true,
        scope: DecisionScope::Once,
    };
    let out = h.engine.decide(now(), &id, decision, &mut h.rng).unwrap();
    let resp = only_reply(&mut c, &out);
    assert!(
        matches!(&resp.outcome, Outcome::Error(e) if e.code == Some(ErrorCode::Unauthorized)),
        "{resp:?}"
    );
}

#[test]
fn a_key_removed_from_the_store_is_unloaded() {
    let mut h = harness();
    let mut c = h.connected("read");
    let template = serde_json::json!({"kind": 1, "content": "", "tags": []}).to_string();
    h.send(&c.request("held", "sign_event", serde_json::json!([template])));
    assert_eq!(h.engine.pending().len(), 1);
    let snapshot = Snapshot {
        keys: vec![],
        locked: vec![],
        sensitive: vec![],
        quorums: vec![],
        operators: vec![],
        tokens: vec![],
        sessions: vec![],
        approvals: vec![],
    };
    let out = h.engine.reload(now(), snapshot, &mut h.rng);
    // The held request is refused, so the app is not left waiting…
    let resp = only_reply(&mut c, &out);
    assert_eq!(
        resp,
        Response::error(
            "held",
            ErrorCode::Unauthorized,
            "the key was removed from the signer"
        )
    );
    assert!(h.engine.pending().is_empty());
    // …and nothing is answered, let alone signed, with the key afterwards.
    let out = h.send(&c.request("after", "ping", serde_json::json!([])));
    assert_eq!(out.dropped, Some(Dropped::NotForUs));
    assert!(h.engine.signer_pubkeys().is_empty());
}

#[test]
fn a_locked_key_refuses_everything_and_its_held_requests_until_unlocked() {
    let mut h = harness();
    let mut c = h.connected("read,sign_event:1");
    // (Minting reloads the engine: done before the lock.)
    h.mint("fresh-secret", "read".parse().unwrap(), None);
    let held_template = serde_json::json!({"kind": 0, "content": "", "tags": []}).to_string();
    h.send(&c.request("held", "sign_event", serde_json::json!([held_template])));
    assert_eq!(h.engine.pending().len(), 1);
    let sessions: Vec<_> = h.engine.sessions().cloned().collect();
    let snapshot = |locked: Vec<KeyId>, h: &Harness| Snapshot {
        keys: vec![KeyId(1)],
        locked,
        sensitive: vec![],
        quorums: vec![],
        operators: vec![],
        tokens: h.tokens.clone(),
        sessions: sessions.clone(),
        approvals: vec![],
    };
    // The lock arrives with the user's approval of the held request (from
    // the CLI, say): the lock wins, nothing is signed.
    let mut decided = h.engine.pending()[0].clone();
    decided.status = ApprovalStatus::Decided(ApprovalDecision {
        allow: true,
        scope: DecisionScope::Once,
    });
    let mut locked = snapshot(vec![KeyId(1)], &h);
    locked.approvals = vec![decided];
    let out = h.engine.reload(now(), locked, &mut h.rng);
    // The held request is refused at once…
    let resp = only_reply(&mut c, &out);
    assert_eq!(
        resp,
        Response::error("held", ErrorCode::Unauthorized, "key locked")
    );
    assert!(h.engine.pending().is_empty());
    // …and so is every request, even one its rules allow, and a connect.
    let template = serde_json::json!({"kind": 1, "content": "x", "tags": []}).to_string();
    let out = h.send(&c.request(
        "granted",
        "sign_event",
        serde_json::json!([template.clone()]),
    ));
    assert_eq!(
        only_reply(&mut c, &out),
        Response::error("granted", ErrorCode::Unauthorized, "key locked")
    );
    assert!(
        out.changes.iter().any(|ch| matches!(ch, Change::Audit(a)
            if a.request_id == "granted" && a.decision == AuditDecision::Denied
            && a.signed_event_id.is_none())),
        "the refusal is audited: {:?}",
        out.changes
    );
    let out = h.send(&c.request("p", "ping", serde_json::json!([])));
    assert_eq!(
        only_reply(&mut c, &out),
        Response::error("p", ErrorCode::Unauthorized, "key locked")
    );
    let mut newcomer = Client::new(h.signer);
    let ev = newcomer.request(
        "c",
        "connect",
        serde_json::json!([h.signer.to_hex(), "fresh-secret"]),
    );
    let out = h.send(&ev);
    assert_eq!(
        only_reply(&mut newcomer, &out),
        Response::error("c", ErrorCode::Unauthorized, "key locked")
    );
    // Unlocked: the session's rules apply again.
    let unlocked = snapshot(vec![], &h);
    assert!(
        h.engine
            .reload(now(), unlocked, &mut h.rng)
            .publish
            .is_empty()
    );
    let out = h.send(&c.request("again", "sign_event", serde_json::json!([template])));
    let resp = only_reply(&mut c, &out);
    assert!(matches!(resp.outcome, Outcome::Result(_)), "{resp:?}");
}

#[test]
fn sensitive_kinds_always_ask_even_under_a_full_grant() {
    let mut h = harness();
    let mut c = h.connected("full");
    let sign = |c: &mut Client, id: &str, kind: u16| {
        let template = serde_json::json!({"kind": kind, "content": "", "tags": []}).to_string();
        c.request(id, "sign_event", serde_json::json!([template]))
    };
    let ev = sign(&mut c, "note", 1);
    let out = h.send(&ev);
    assert!(matches!(
        only_reply(&mut c, &out).outcome,
        Outcome::Result(_)
    ));
    // The default set: 0, 3, 5, 10002 are held for the user.
    for (id, kind) in [
        ("profile", 0),
        ("follows", 3),
        ("delete", 5),
        ("relays", 10_002),
    ] {
        let ev = sign(&mut c, id, kind);
        let out = h.send(&ev);
        assert!(out.publish.is_empty(), "{id} answered at once");
        assert_eq!(held_id(&h, id).0.len(), 32, "{id} is held");
    }
    // "Always allow" on a sensitive kind is this once: the next one asks again.
    let profile = held_id(&h, "profile");
    let always = ApprovalDecision {
        allow: true,
        scope: DecisionScope::Always { until: None },
    };
    let out = h
        .engine
        .decide(now(), &profile, always, &mut h.rng)
        .unwrap();
    assert!(matches!(
        only_reply(&mut c, &out).outcome,
        Outcome::Result(_)
    ));
    assert!(
        !out.changes
            .iter()
            .any(|ch| matches!(ch, Change::AddRules { .. })),
        "no rule remembered: {:?}",
        out.changes
    );
    let ev = sign(&mut c, "profile-again", 0);
    assert!(h.send(&ev).publish.is_empty(), "asks again");
    // A key's own list replaces the default: kind 1 asks, kind 0 does not.
    let sessions: Vec<_> = h.engine.sessions().cloned().collect();
    let own = Snapshot {
        keys: vec![KeyId(1)],
        locked: vec![],
        sensitive: vec![(KeyId(1), vec![1])],
        quorums: vec![],
        operators: vec![],
        tokens: h.tokens.clone(),
        sessions,
        approvals: vec![],
    };
    h.engine.reload(now(), own, &mut h.rng);
    let ev = sign(&mut c, "note-now", 1);
    assert!(
        h.send(&ev).publish.is_empty(),
        "kind 1 is sensitive for this key"
    );
    let ev = sign(&mut c, "profile-now", 0);
    let out = h.send(&ev);
    assert!(matches!(
        only_reply(&mut c, &out).outcome,
        Outcome::Result(_)
    ));
}

#[test]
fn a_session_deleted_in_the_store_leaves_the_engine_but_an_uncommitted_one_stays() {
    let mut h = harness();
    let mut stored = h.connected("read");
    // The first client's session reaches the store (a snapshot shows it)…
    let sessions: Vec<_> = h.engine.sessions().cloned().collect();
    let snapshot = |sessions: Vec<store::Session>, tokens: Vec<ConnectionToken>| Snapshot {
        keys: vec![KeyId(1)],
        locked: vec![],
        sensitive: vec![],
        quorums: vec![],
        operators: vec![],
        tokens,
        sessions,
        approvals: vec![],
    };
    h.engine
        .reload(now(), snapshot(sessions, h.tokens.clone()), &mut h.rng);
    // …a second connects, its session not committed yet.
    let mut fresh = h.connected("read");
    // The store no longer has either (the first was deleted there).
    h.engine
        .reload(now(), snapshot(vec![], h.tokens.clone()), &mut h.rng);
    let out = h.send(&stored.request("p1", "ping", serde_json::json!([])));
    let resp = only_reply(&mut stored, &out);
    assert!(
        matches!(&resp.outcome, Outcome::Error(e) if e.code == Some(ErrorCode::Unauthorized)),
        "deleted session: {resp:?}"
    );
    let out = h.send(&fresh.request("p2", "ping", serde_json::json!([])));
    assert_eq!(only_reply(&mut fresh, &out), Response::ok("p2", "pong"));
}

#[test]
fn a_session_whose_commit_failed_is_rolled_back() {
    let mut h = harness();
    h.mint("raced", Preset::Write.permissions(), None);
    let mut c = Client::new(h.signer);
    let out = h.send(&c.request(
        "c",
        "connect",
        serde_json::json!([h.signer.to_hex(), "raced"]),
    ));
    assert_eq!(only_reply(&mut c, &out), Response::ok("c", "ack"));
    // Another process consumed the token first: this commit fails.
    let undo = bunker::engine::Rollback::of(&out.changes).expect("something to undo");
    let out = h.engine.roll_back(now(), undo, &mut h.rng);
    assert!(out.wants_reload);
    // The store's state, read after the failure: the token used by another.
    let mut tokens = h.tokens.clone();
    tokens[0].used_at = Some(Timestamp::from_secs(NOW));
    tokens[0].used_by = Some(Keys::generate().public_key());
    let snapshot = Snapshot {
        keys: vec![KeyId(1)],
        locked: vec![],
        sensitive: vec![],
        quorums: vec![],
        operators: vec![],
        tokens,
        sessions: vec![],
        approvals: vec![],
    };
    h.engine.reload(now(), snapshot, &mut h.rng);
    let out = h.send(&c.request("p", "ping", serde_json::json!([])));
    let resp = only_reply(&mut c, &out);
    assert!(
        matches!(&resp.outcome, Outcome::Error(e) if e.code == Some(ErrorCode::Unauthorized)),
        "the session that did not commit does not serve: {resp:?}"
    );
    assert!(h.engine.session(KeyId(1), &c.keys.public_key()).is_none());
}

#[test]
fn many_keys_flooding_cannot_make_a_sessions_request_stale() {
    let mut h = harness_with(EngineConfig {
        replay_capacity: 8,
        stranger_replay_capacity: 8,
        ..config()
    });
    let mut friend = h.connected("read");
    // Signed junk from 100 fresh keys, dated as far ahead as allowed: far
    // more senders than either id set holds.
    for i in 0..100 {
        let mut s = Client::new(h.signer);
        let json =
            serde_json::json!({"id": format!("j{i}"), "method": "ping", "params": []}).to_string();
        h.send(&s.event(&json, Scheme::Nip44, NOW + 299));
    }
    let out = h.send(&friend.request("fresh", "ping", serde_json::json!([])));
    assert_eq!(only_reply(&mut friend, &out), Response::ok("fresh", "pong"));
}

/// Over the request limit: a client with a session is told the limit
/// (`invalid_params` with its id); a stranger's is dropped unopened.
#[test]
fn oversized_requests_are_answered_with_the_limit_for_sessions_only() {
    let limits = nip46::Limits::new(20_000);
    let mut h = harness_with(EngineConfig { limits, ..config() });
    let mut c = h.connected("full");
    let peer = Keys::generate().public_key().to_hex();
    let out = h.send(&c.request(
        "fits",
        "nip44_encrypt",
        serde_json::json!([peer, "a".repeat(19_000)]),
    ));
    assert!(matches!(
        only_reply(&mut c, &out).outcome,
        Outcome::Result(_)
    ));

    let big = c.request(
        "big",
        "nip44_encrypt",
        serde_json::json!([peer, "a".repeat(25_000)]),
    );
    assert!(big.content.len() > limits.max_request_content());
    let resp = only_reply(&mut c, &h.send(&big));
    assert_eq!(resp.id, "big");
    assert_eq!(error_code(&resp), Some(ErrorCode::InvalidParams));
    let Outcome::Error(e) = &resp.outcome else {
        panic!()
    };
    assert!(e.message.contains("limit of 20000 bytes"), "{e:?}");

    let mut stranger = Client::new(h.signer);
    let big = stranger.request(
        "big",
        "nip44_encrypt",
        serde_json::json!([peer, "a".repeat(25_000)]),
    );
    assert!(matches!(
        h.send(&big).dropped,
        Some(Dropped::Envelope(EnvelopeError::TooLarge { .. }))
    ));
}

/// An answer that would be over the limit clients take (JSON escaping can
/// grow a result sixfold) is replaced by an error naming the limit, never
/// sent for the client to drop unread.
#[test]
fn an_answer_over_the_limit_becomes_an_error_saying_so() {
    let limits = nip46::Limits::new(20_000);
    let mut h = harness_with(EngineConfig { limits, ..config() });
    let mut c = h.connected("full");
    let third = Keys::generate();
    // Control characters are escaped as \u00XX: 12 KB become 72 KB of JSON.
    let plaintext = "\u{1}".repeat(12_000);
    let ciphertext = nip46::nostr::nips::nip44::encrypt(
        third.secret_key(),
        &h.user,
        &plaintext,
        nip46::nostr::nips::nip44::Version::V2,
    )
    .unwrap();
    let peer = third.public_key().to_hex();
    let out = h.send(&c.request("d", "nip44_decrypt", serde_json::json!([peer, ciphertext])));
    let resp = only_reply(&mut c, &out);
    assert_eq!(error_code(&resp), Some(ErrorCode::InvalidParams));
    let Outcome::Error(e) = &resp.outcome else {
        panic!()
    };
    assert!(e.message.contains("exceeds this signer's limit"), "{e:?}");

    // A plain answer of the same length is sent as is.
    let plaintext = "a".repeat(12_000);
    let ciphertext = nip46::nostr::nips::nip44::encrypt(
        third.secret_key(),
        &h.user,
        &plaintext,
        nip46::nostr::nips::nip44::Version::V2,
    )
    .unwrap();
    let out = h.send(&c.request("e", "nip44_decrypt", serde_json::json!([peer, ciphertext])));
    assert_eq!(only_reply(&mut c, &out).outcome, Outcome::Result(plaintext));
}

/// Requests may be large: what waits for the user is bounded in bytes too.
#[test]
fn held_requests_are_capped_in_bytes() {
    let mut h = harness_with(EngineConfig {
        max_held_bytes: 200_000,
        ..config()
    });
    let mut c = h.connected("read");
    let template = |i: usize| {
        serde_json::json!({"kind": 1, "content": format!("{i}{}", "x".repeat(60_000)), "tags": []})
            .to_string()
    };
    // Each keeps about 120 KB: the first is held, the second would pass the bound.
    let out = h.send(&c.request("a", "sign_event", serde_json::json!([template(1)])));
    assert!(out.publish.is_empty(), "held, not answered");
    let out = h.send(&c.request("b", "sign_event", serde_json::json!([template(2)])));
    let resp = only_reply(&mut c, &out);
    assert_eq!(error_code(&resp), Some(ErrorCode::RateLimited));
    assert_eq!(h.engine.pending().len(), 1);
    // A small one still fits.
    let small = serde_json::json!({"kind": 1, "content": "hi", "tags": []}).to_string();
    let out = h.send(&c.request("c", "sign_event", serde_json::json!([small])));
    assert!(out.publish.is_empty());
    assert_eq!(h.engine.pending().len(), 2);
}

#[test]
fn a_quorum_of_distinct_people_releases_a_sensitive_request_and_one_deny_refuses_it() {
    let mut h = harness();
    let mut c = h.connected("full");
    let mut other = h.connected("read");
    let sign = |c: &mut Client, id: &str, kind: u16| {
        let template = serde_json::json!({"kind": kind, "content": "", "tags": []}).to_string();
        c.request(id, "sign_event", serde_json::json!([template]))
    };
    // Key 1 needs two people for its sensitive kinds.
    let sessions: Vec<_> = h.engine.sessions().cloned().collect();
    let snapshot = Snapshot {
        keys: vec![KeyId(1)],
        locked: vec![],
        sensitive: vec![],
        quorums: vec![(KeyId(1), 2)],
        // Who may vote: approvers of every key (an auditor never counts).
        operators: ["carol", "dave", "erin", "olga"]
            .iter()
            .enumerate()
            .map(|(i, name)| store::Operator {
                id: store::OperatorId(i as i64 + 1),
                name: (*name).into(),
                role: if *name == "olga" {
                    store::Role::Auditor
                } else {
                    store::Role::Approver
                },
                keys: store::KeyScope::All,
                created_at: Timestamp::from_secs(NOW),
            })
            .collect(),
        tokens: h.tokens.clone(),
        sessions,
        approvals: vec![],
    };
    h.engine.reload(now(), snapshot.clone(), &mut h.rng);
    let allow = |by: &str| store::Vote {
        by: by.into(),
        decision: ApprovalDecision {
            allow: true,
            scope: DecisionScope::Once,
        },
    };
    let deny = |by: &str| store::Vote {
        by: by.into(),
        decision: ApprovalDecision {
            allow: false,
            scope: DecisionScope::Once,
        },
    };

    // A kind that is not sensitive needs one allow, whatever the quorum.
    let out = h.send(&sign(&mut other, "note", 1));
    assert!(out.publish.is_empty(), "held: no grant for kind 1");
    let note = held_id(&h, "note");
    assert_eq!(h.engine.tally(&note), Some((0, 1)));
    let out = h
        .engine
        .vote(now(), &note, allow("carol"), &mut h.rng)
        .unwrap();
    assert!(matches!(
        only_reply(&mut other, &out).outcome,
        Outcome::Result(_)
    ));

    // Sensitive: the first allow is recorded, not sent.
    let out = h.send(&sign(&mut c, "profile", 0));
    assert!(out.publish.is_empty());
    let profile = held_id(&h, "profile");
    assert_eq!(h.engine.tally(&profile), Some((0, 2)));
    let out = h
        .engine
        .vote(now(), &profile, allow("carol"), &mut h.rng)
        .unwrap();
    assert!(out.publish.is_empty(), "one of two: nothing sent");
    assert!(
        out.changes
            .iter()
            .any(|ch| matches!(ch, Change::NoteVote { vote, .. } if vote.by == "carol")),
        "the allow is recorded for the other dashboards: {:?}",
        out.changes
    );
    assert_eq!(h.engine.tally(&profile), Some((1, 2)));
    // The same person again counts once.
    let out = h
        .engine
        .vote(now(), &profile, allow("carol"), &mut h.rng)
        .unwrap();
    assert!(out.publish.is_empty() && out.changes.is_empty(), "{out:?}");
    assert_eq!(h.engine.tally(&profile), Some((1, 2)));
    assert_eq!(
        h.engine
            .pending()
            .into_iter()
            .find(|a| a.id == profile)
            .map(|a| a.votes.len()),
        Some(1),
        "the held request shows who allowed so far"
    );
    // Neither an auditor nor a name the store does not know counts.
    for by in ["olga", "mallory"] {
        let out = h
            .engine
            .vote(now(), &profile, allow(by), &mut h.rng)
            .unwrap();
        assert!(out.publish.is_empty(), "{by}'s allow released it");
        assert_eq!(h.engine.tally(&profile), Some((1, 2)), "{by}");
    }
    let out = h
        .engine
        .vote(now(), &profile, deny("mallory"), &mut h.rng)
        .unwrap();
    assert!(out.publish.is_empty(), "an unknown name's deny refused it");
    // A second person releases it, and the audit row names both.
    let out = h
        .engine
        .vote(now(), &profile, allow("dave"), &mut h.rng)
        .unwrap();
    assert!(matches!(
        only_reply(&mut c, &out).outcome,
        Outcome::Result(_)
    ));
    assert_eq!(h.engine.tally(&profile), None);
    let row = audits(&out)
        .into_iter()
        .find(|e| e.request_id == "profile")
        .expect("its audit row");
    assert_eq!(row.decision, store::AuditDecision::Approved);
    assert_eq!(row.operator.as_deref(), Some("carol,dave"));

    // One deny refuses it, even after an allow; the row names the denier.
    let out = h.send(&sign(&mut c, "delete", 5));
    assert!(out.publish.is_empty());
    let delete = held_id(&h, "delete");
    h.engine
        .vote(now(), &delete, allow("carol"), &mut h.rng)
        .unwrap();
    let out = h
        .engine
        .vote(now(), &delete, deny("erin"), &mut h.rng)
        .unwrap();
    let resp = only_reply(&mut c, &out);
    assert!(
        matches!(&resp.outcome, Outcome::Error(e) if e.code == Some(ErrorCode::Unauthorized)),
        "{resp:?}"
    );
    let row = audits(&out)
        .into_iter()
        .find(|e| e.request_id == "delete")
        .unwrap();
    assert_eq!(row.operator.as_deref(), Some("erin"));
    assert!(matches!(
        h.engine.vote(now(), &delete, allow("dave"), &mut h.rng),
        Err(bunker::engine::DecideError::NotPending(_))
    ));

    // Votes recorded elsewhere (another replica's dashboard, the CLI) are
    // counted at a reload, once each.
    let out = h.send(&sign(&mut c, "relays", 10_002));
    assert!(out.publish.is_empty());
    let relays = held_id(&h, "relays");
    let mut stored = h
        .engine
        .pending()
        .into_iter()
        .find(|a| a.id == relays)
        .cloned()
        .unwrap();
    stored.votes = vec![allow("carol")];
    let with_votes = |approvals| Snapshot {
        approvals,
        ..snapshot.clone()
    };
    let out = h
        .engine
        .reload(now(), with_votes(vec![stored.clone()]), &mut h.rng);
    assert!(out.publish.is_empty(), "one of two");
    assert_eq!(h.engine.tally(&relays), Some((1, 2)));
    let out = h
        .engine
        .reload(now(), with_votes(vec![stored.clone()]), &mut h.rng);
    assert!(
        out.publish.is_empty() && h.engine.tally(&relays) == Some((1, 2)),
        "counted once"
    );
    stored.votes.push(allow("dave"));
    let out = h.engine.reload(now(), with_votes(vec![stored]), &mut h.rng);
    assert!(matches!(
        only_reply(&mut c, &out).outcome,
        Outcome::Result(_)
    ));
    assert_eq!(h.engine.tally(&relays), None);

    // An operator removed: its allow no longer counts.
    let out = h.send(&sign(&mut c, "follows", 3));
    assert!(out.publish.is_empty());
    let follows = held_id(&h, "follows");
    h.engine
        .vote(now(), &follows, allow("carol"), &mut h.rng)
        .unwrap();
    assert_eq!(h.engine.tally(&follows), Some((1, 2)));
    let mut without_carol = snapshot.clone();
    without_carol.operators.retain(|o| o.name != "carol");
    let out = h.engine.reload(now(), without_carol, &mut h.rng);
    assert!(out.publish.is_empty());
    assert_eq!(
        h.engine.tally(&follows),
        Some((0, 2)),
        "carol's allow is withdrawn"
    );
    let out = h
        .engine
        .vote(now(), &follows, allow("dave"), &mut h.rng)
        .unwrap();
    assert!(out.publish.is_empty(), "dave alone is one of two");
    // Carol added again (a new person of that name) starts without the
    // allow the old carol gave.
    let out = h.engine.reload(now(), snapshot.clone(), &mut h.rng);
    assert!(out.publish.is_empty(), "the old carol's allow came back");
    assert_eq!(h.engine.tally(&follows), Some((1, 2)));
}

#[test]
fn a_key_given_a_new_signer_while_running_answers_only_on_the_new_one() {
    let mut h = harness();
    let mut old_client = h.connected("read");
    let old = h.signer;
    assert!(h.engine.serves(KeyId(1), &old));
    // A request held under the old signer when the key is re-keyed.
    let template = serde_json::json!({"kind": 1, "content": "", "tags": []}).to_string();
    let out = h.send(&old_client.request("held", "sign_event", serde_json::json!([template])));
    assert!(out.publish.is_empty(), "held");
    let fresh = Keys::generate();
    let rotated = bunker::TransportKey {
        key_id: KeyId(1),
        signer: fresh.clone(),
    };
    let out = h
        .engine
        .add_signer(now(), rotated, &mut h.rng)
        .expect("the key is in the backend");
    // The held request is refused, sealed by the old signer before it goes.
    let resp = only_reply(&mut old_client, &out);
    assert!(
        matches!(&resp.outcome, Outcome::Error(e) if e.code == Some(ErrorCode::Unauthorized)),
        "{resp:?}"
    );
    assert!(h.engine.pending().is_empty());
    assert!(!h.engine.serves(KeyId(1), &old));
    assert!(h.engine.serves(KeyId(1), &fresh.public_key()));
    assert!(h.engine.serves_key(KeyId(1)));
    assert_eq!(h.engine.signer_pubkeys(), vec![fresh.public_key()]);
    // A request to the old signer key is nobody's now: dropped, unanswered.
    let out = h.send(&old_client.request("p", "ping", serde_json::json!([])));
    assert!(out.publish.is_empty(), "the old signer still answers");
    // A key the backend does not hold is not served.
    let unknown = bunker::TransportKey {
        key_id: KeyId(99),
        signer: Keys::generate(),
    };
    assert!(h.engine.add_signer(now(), unknown, &mut h.rng).is_none());
    assert!(!h.engine.serves_key(KeyId(99)));
    assert_eq!(h.engine.signer_pubkeys().len(), 1);
}
