//! The engine is a deterministic state machine: two engines fed the same
//! inputs (keys, store snapshots, events, times, randomness) produce the same
//! outputs byte for byte, including where it walks its maps (expiring held
//! requests, flushing session counters, shutting down).

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bunker::Millis;
use bunker::engine::{Engine, EngineConfig, Output, Snapshot, TransportKey};
use bunker::randomness::Counter;
use bunker::vault::{self, Passphrase, Vault};
use nip46::envelope::{self, Entropy};
use nip46::nostr::nips::nip49::KeySecurity;
use nip46::nostr::prelude::{Event, Keys, RelayUrl, SecretKey, Timestamp};
use nip46::{Conversation, PermissionSet, Scheme};
use store::{ConnectionToken, KeyId, SecretHash, StoredKey, TokenId};

const NOW: u64 = 1_700_000_000;
const KEYS: usize = 3;
const CLIENTS: usize = 3;

fn at(secs: u64) -> Millis {
    Millis(secs * 1000)
}

/// A fixed key pair from one byte (valid for 1..=255).
fn fixed_keys(n: u8) -> Keys {
    Keys::new(SecretKey::from_slice(&[n; 32]).expect("a valid secret key"))
}

/// Everything that is not the engine: the same for both runs.
struct World {
    pass: Passphrase,
    kek: vault::Kek,
    stored: Vec<StoredKey>,
    tokens: Vec<ConnectionToken>,
}

fn world() -> World {
    let pass = Passphrase::new("determinism");
    let kek = vault::Kek::create(&pass, 4).unwrap();
    let stored: Vec<StoredKey> = (0..KEYS)
        .map(|i| {
            let user = fixed_keys(10 + i as u8);
            vault::seal_key(
                &format!("key-{i}"),
                user.secret_key(),
                KeySecurity::Medium,
                &kek,
                Timestamp::from_secs(NOW),
            )
            .unwrap()
            .stored(KeyId(i as i64 + 1))
        })
        .collect();
    // One token per (key, client); the grant is `read`, so every signing
    // request is held for the user.
    let mut tokens = Vec::new();
    for key in &stored {
        for c in 0..CLIENTS {
            tokens.push(ConnectionToken {
                id: TokenId(tokens.len() as i64 + 1),
                key_id: key.id,
                secret_hash: SecretHash::of(&secret(key.id, c)),
                grant: "read".parse::<PermissionSet>().unwrap(),
                expires_at: None,
                created_at: Timestamp::from_secs(NOW - 10),
                used_at: None,
                used_by: None,
                label: None,
            });
        }
    }
    World {
        pass,
        kek,
        stored,
        tokens,
    }
}

fn secret(key: KeyId, client: usize) -> String {
    format!("secret-{key}-{client}")
}

fn engine(world: &World) -> Engine {
    let (mut vault, _) = Vault::unlock(&world.stored, &world.kek, &world.pass).unwrap();
    let transport = world
        .stored
        .iter()
        .map(|k| TransportKey {
            key_id: k.id,
            signer: vault.take_signer(k.id).unwrap(),
        })
        .collect();
    let config = EngineConfig {
        relays: vec![RelayUrl::parse("ws://127.0.0.1:7777").unwrap()],
        ..EngineConfig::default()
    };
    Engine::new(config, Arc::new(vault), transport)
}

/// A request from client `c` to key `k`, sealed with fixed entropy.
fn request(
    world: &World,
    c: usize,
    k: usize,
    id: &str,
    method: &str,
    params: serde_json::Value,
    secs: u64,
) -> Event {
    let keys = fixed_keys(100 + c as u8);
    let signer = world.stored[k].signer_pubkey;
    let mut conversation = Conversation::new(&keys, signer).unwrap();
    let json = serde_json::json!({"id": id, "method": method, "params": params}).to_string();
    let n = (c * KEYS + k) as u8;
    let entropy = Entropy {
        nonce: [n; 32],
        aux: [n.wrapping_add(1); 32],
    };
    let created = Timestamp::from_secs(secs);
    envelope::seal(
        &keys,
        &mut conversation,
        Scheme::Nip44,
        &json,
        created,
        &entropy,
    )
    .unwrap()
}

/// One output, rendered completely: changes, published events, drop reason.
fn render(out: &Output) -> String {
    let events: Vec<String> = out
        .publish
        .iter()
        .map(|o| format!("{} via {:?}", o.event.as_json(), o.extra_relays))
        .collect();
    format!(
        "changes={:?}\npublish={events:?}\ndropped={:?} reload={}\n",
        out.changes, out.dropped, out.wants_reload
    )
}

/// The whole scenario on a fresh engine; returns every output in order.
fn run(world: &World) -> Vec<String> {
    let mut engine = engine(world);
    let mut rng = Counter(0);
    let mut log = Vec::new();
    let snapshot = Snapshot {
        keys: world.stored.iter().map(|k| k.id).collect(),
        locked: vec![],
        sensitive: vec![],
        quorums: vec![],
        operators: vec![],
        tokens: world.tokens.clone(),
        sessions: Vec::new(),
        approvals: Vec::new(),
    };
    log.push(render(&engine.reload(at(NOW), snapshot, &mut rng)));
    // Every client connects to every key.
    for c in 0..CLIENTS {
        for k in 0..KEYS {
            let params = serde_json::json!([
                world.stored[k].signer_pubkey.to_hex(),
                secret(world.stored[k].id, c)
            ]);
            let ev = request(world, c, k, "connect", "connect", params, NOW);
            log.push(render(&engine.handle_event(at(NOW), &ev, &mut rng)));
        }
    }
    // Two rounds of held requests, 30 s apart, plus allowed calls in between.
    for (round, secs) in [(0, NOW + 1), (1, NOW + 31)] {
        for c in 0..CLIENTS {
            for k in 0..KEYS {
                let template = serde_json::json!({
                    "kind": 1,
                    "content": format!("round {round} from {c} to {k}"),
                    "tags": [],
                    "created_at": secs,
                })
                .to_string();
                let id = format!("sign-{round}-{c}-{k}");
                let ev = request(
                    world,
                    c,
                    k,
                    &id,
                    "sign_event",
                    serde_json::json!([template]),
                    secs,
                );
                log.push(render(&engine.handle_event(at(secs), &ev, &mut rng)));
                let ping = request(
                    world,
                    c,
                    k,
                    &format!("ping-{round}-{c}-{k}"),
                    "ping",
                    serde_json::json!([]),
                    secs,
                );
                log.push(render(&engine.handle_event(at(secs), &ping, &mut rng)));
            }
        }
    }
    assert_eq!(
        engine.pending().len(),
        2 * KEYS * CLIENTS,
        "every signing request is held"
    );
    // The first round expires (and session counters are flushed)…
    log.push(render(&engine.handle_timeout(at(NOW + 62), &mut rng)));
    assert_eq!(engine.pending().len(), KEYS * CLIENTS);
    // …and shutdown refuses the second.
    log.push(render(&engine.shutdown(at(NOW + 63), &mut rng)));
    assert!(engine.pending().is_empty());
    log
}

#[test]
fn same_inputs_give_the_same_outputs_byte_for_byte() {
    let world = world();
    let first = run(&world);
    let second = run(&world);
    assert_eq!(first.len(), second.len());
    for (i, (a, b)) in first.iter().zip(&second).enumerate() {
        assert_eq!(a, b, "output {i} differs between two identical runs");
    }
    // The walks that matter produced work: expiries, counters and refusals.
    let timeout = &first[first.len() - 2];
    assert_eq!(timeout.matches("SetApprovalStatus").count(), KEYS * CLIENTS);
    assert_eq!(timeout.matches("TouchSession").count(), KEYS * CLIENTS);
    let shutdown = &first[first.len() - 1];
    assert_eq!(
        shutdown.matches("SetApprovalStatus").count(),
        KEYS * CLIENTS
    );
}
