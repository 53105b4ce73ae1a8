//! The bunker's request path against the cryptographic floor.
//!
//! A `sign_event` request costs at least three schnorr operations: verify
//! the request event, sign the user's event, sign the response event. This
//! bench measures those three alone (the floor) and the whole in-process
//! path — relay message text in, relay message text out: parse, replay and
//! time checks, verify, NIP-44 decrypt with the cached conversation key,
//! request parsing, policy, signing, NIP-44 encrypt, sealing, the audit
//! record (built, not written: the store is another thread's work) — and
//! prints the ratio. The bar is ≤ 1.3× the floor.
//!
//! Run: `cargo bench -p rampart-bunker --bench request_path`.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bunker::Millis;
use bunker::engine::{Engine, EngineConfig, Snapshot, TransportKey};
use bunker::randomness::Counter;
use bunker::rate_limit::RateLimit;
use bunker::vault::{self, Passphrase, Vault};
use criterion::Criterion;
use nip46::envelope::{self, Entropy};
use nip46::nostr::nips::nip49::KeySecurity;
use nip46::nostr::prelude::{
    ClientMessage, Event, EventId, Keys, Kind, RelayMessage, SubscriptionId, Timestamp,
    UnsignedEvent,
};
use nip46::{Conversation, Preset, Scheme};
use store::{KeyId, Session, SessionOrigin};

struct Setup {
    engine: Engine,
    rng: Counter,
    client: Keys,
    to_signer: Conversation,
    seq: u64,
}

fn setup() -> Setup {
    let pass = Passphrase::new("bench");
    let kek = vault::Kek::create(&pass, 4).expect("vault key");
    let user = Keys::generate();
    let now = Timestamp::now();
    let new =
        vault::seal_key("bench", user.secret_key(), KeySecurity::Medium, &kek, now).expect("seal");
    let stored = new.stored(KeyId(1));
    let (mut vault, _) = Vault::unlock(std::slice::from_ref(&stored), &kek, &pass).expect("unlock");
    let signer_keys = vault.take_signer(KeyId(1)).expect("signer");
    let config = EngineConfig {
        rate_limit: RateLimit {
            burst: u32::MAX,
            per_second: 1e12,
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(
        config,
        Arc::new(vault),
        vec![TransportKey {
            key_id: KeyId(1),
            signer: signer_keys,
        }],
    );
    let client = Keys::generate();
    let session = Session::new(
        KeyId(1),
        client.public_key(),
        &Preset::Full.permissions(),
        SessionOrigin::Bunker,
        now,
    );
    let mut rng = Counter(0);
    engine.reload(
        Millis::now(),
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
        &mut rng,
    );
    let to_signer = Conversation::new(&client, stored.signer_pubkey).expect("conversation");
    Setup {
        engine,
        rng,
        client,
        to_signer,
        seq: 0,
    }
}

impl Setup {
    /// A fresh `sign_event` request as the relay would deliver it (client-side cost, not measured).
    fn relay_message(&mut self) -> String {
        self.seq += 1;
        let template = format!(
            r#"{{"kind":1,"content":"benchmark note {}","tags":[["t","rampart"]],"created_at":{}}}"#,
            self.seq,
            Timestamp::now().as_secs()
        );
        let request = serde_json::json!({"id": self.seq.to_string(), "method": "sign_event", "params": [template]}).to_string();
        let mut nonce = [0u8; 32];
        nonce[..8].copy_from_slice(&self.seq.to_le_bytes());
        let entropy = Entropy {
            nonce,
            aux: [3; 32],
        };
        let event = envelope::seal(
            &self.client,
            &mut self.to_signer,
            Scheme::Nip44,
            &request,
            Timestamp::now(),
            &entropy,
        )
        .expect("seal");
        RelayMessage::event(SubscriptionId::new("bunker"), event).as_json()
    }

    /// The whole path: relay text in, relay text out.
    fn handle(&mut self, text: &str) -> String {
        let RelayMessage::Event { event, .. } =
            RelayMessage::from_json(text).expect("relay message")
        else {
            unreachable!("the bench only feeds EVENT messages")
        };
        let out = self
            .engine
            .handle_event(Millis::now(), &event, &mut self.rng);
        let reply = out.publish.into_iter().next().expect("a reply");
        ClientMessage::event(reply.event).as_json()
    }
}

/// The three schnorr operations of a request, measured alone.
struct Floor {
    keys: Keys,
    event: Event,
}

impl Floor {
    fn new() -> Self {
        let keys = Keys::generate();
        let unsigned = UnsignedEvent::new(
            keys.public_key(),
            Timestamp::now(),
            Kind::TextNote,
            [],
            "floor",
        );
        let event = envelope::sign(&keys, unsigned, &[1; 32]).expect("sign");
        Floor { keys, event }
    }

    fn verify(&self) {
        envelope::verify(black_box(&self.event)).expect("valid");
    }
}

/// Time `n` runs of `f`: µs per run.
fn per_run(n: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Rounds of the ratio measurement (odd: the median is one of them).
const ROUNDS: usize = 31;

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let floor = Floor::new();
    let secp = secp256k1::Secp256k1::signing_only();
    let sign_once = || {
        let id = EventId::from_byte_array([7; 32]);
        black_box(
            floor
                .keys
                .sign_schnorr_with_aux_rand(&secp, id.as_bytes(), &[2; 32]),
        );
    };
    criterion.bench_function("floor/schnorr_verify", |b| b.iter(|| floor.verify()));
    criterion.bench_function("floor/schnorr_sign", |b| b.iter(sign_once));

    let mut s = setup();
    criterion.bench_function("bunker/sign_event_request", |b| {
        // Each request must be fresh (replay protection), and building it is
        // the client's cost: make them first, time only the bunker.
        b.iter_custom(|iters| {
            let messages: Vec<String> = (0..iters).map(|_| s.relay_message()).collect();
            let start = Instant::now();
            for text in &messages {
                black_box(s.handle(text));
            }
            start.elapsed()
        })
    });
    criterion.final_summary();

    // The ratio. The floor and the path are timed in alternation, round by
    // round, and the median of the rounds' ratios is printed: on a shared
    // machine whose speed drifts from one minute to the next, both sides
    // of each ratio saw the same speed.
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let messages: Vec<String> = (0..200).map(|_| s.relay_message()).collect();
        let mut it = messages.iter();
        let verify = per_run(200, || floor.verify());
        let sign = per_run(400, sign_once);
        let request = per_run(200, || {
            // Invariant: 200 messages for 200 runs.
            let text = it.next().expect("enough messages");
            black_box(s.handle(text));
        });
        rounds.push((verify, sign, request));
    }
    let verify = median(rounds.iter().map(|r| r.0).collect());
    let sign = median(rounds.iter().map(|r| r.1).collect());
    let request = median(rounds.iter().map(|r| r.2).collect());
    let ratio = median(rounds.iter().map(|(v, s, r)| r / (v + 2.0 * s)).collect());
    println!();
    println!("medians of {ROUNDS} alternating rounds:");
    println!("schnorr verify            {verify:>8.1} µs");
    println!("schnorr sign              {sign:>8.1} µs");
    println!("floor (verify + 2 signs)  {:>8.1} µs", verify + 2.0 * sign);
    println!("sign_event request path   {request:>8.1} µs");
    println!("ratio request / floor     {ratio:>8.2}×   (bar: ≤ 1.30×)");
}
