//! A NIP-46 client's own cost per request, in process: sealing a request,
//! then opening the signer's response and checking what it carries.
//!
//! This is the path of `crates/client` (`link.rs` seals, `checks.rs` opens
//! and checks), written with the same protocol-core calls so that it runs
//! without sockets: build the request JSON, NIP-44 encrypt with the cached
//! conversation key, sign the kind-24133 event; then for the answer, the
//! cheap envelope checks, the signature (key parsed once per conversation),
//! NIP-44 decrypt, parse, and for `sign_event` the returned event: parse it,
//! compare it with what was asked, verify its id and signature.
//!
//! The least a `sign_event` round trip can cost a client is one signature
//! and two verifications; the bench prints the ratio to that floor.
//!
//! Run: `cargo bench -p rampart-nip46 --bench client_request`.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use nip46::envelope::{self, Entropy};
use nip46::nostr::prelude::{Event, Keys, Kind, Tag, Tags, Timestamp, UnsignedEvent};
use nip46::{Command, Conversation, EventTemplate, Outcome, Request, Response, Scheme};

/// The two ends of one connection, and the event the client asks to sign.
struct Connection {
    client: Keys,
    signer: Keys,
    user: Keys,
    to_signer: Conversation,
    to_client: Conversation,
    asked: UnsignedEvent,
    seq: u64,
}

fn entropy(seq: u64) -> Entropy {
    let mut nonce = [7u8; 32];
    nonce[..8].copy_from_slice(&seq.to_le_bytes());
    Entropy {
        nonce,
        aux: [9; 32],
    }
}

impl Connection {
    fn new() -> Connection {
        let (client, signer, user) = (Keys::generate(), Keys::generate(), Keys::generate());
        let to_signer = Conversation::new(&client, signer.public_key()).expect("conversation");
        let to_client = Conversation::new(&signer, client.public_key()).expect("conversation");
        let asked = UnsignedEvent::new(
            user.public_key(),
            Timestamp::now(),
            Kind::TextNote,
            [Tag::hashtag("rampart")],
            "a note of about the usual length, signed remotely by a NIP-46 bunker",
        );
        Connection {
            client,
            signer,
            user,
            to_signer,
            to_client,
            asked,
            seq: 0,
        }
    }

    /// What the client does to send `sign_event`.
    fn seal_sign_event(&mut self) -> Event {
        self.seq += 1;
        let template = EventTemplate {
            kind: self.asked.kind,
            content: self.asked.content.clone(),
            tags: self.asked.tags.clone(),
            created_at: Some(self.asked.created_at),
            pubkey: Some(self.user.public_key()),
        };
        let request = Request {
            id: format!("{:016x}", self.seq),
            command: Command::SignEvent(template),
        }
        .to_json();
        envelope::seal(
            &self.client,
            &mut self.to_signer,
            Scheme::Nip44,
            &request,
            Timestamp::now(),
            &entropy(self.seq),
        )
        .expect("seal")
    }

    /// The signer's answer (not measured).
    fn answer(&mut self, seq: u64, result: String) -> Event {
        let response = Response::ok(format!("{seq:016x}"), result).to_json();
        envelope::seal(
            &self.signer,
            &mut self.to_client,
            Scheme::Nip44,
            &response,
            Timestamp::now(),
            &entropy(seq + (1 << 32)),
        )
        .expect("seal")
    }

    fn signed_answer(&mut self, seq: u64) -> Event {
        let signed = envelope::sign(&self.user, self.asked.clone(), &[3; 32]).expect("sign");
        self.answer(seq, signed.as_json())
    }

    /// What the client does with the answer: open it, then check the event.
    fn open_signed(&mut self, event: &Event) -> Event {
        let (_, text) =
            envelope::open_text(&self.client, &mut self.to_signer, event).expect("open");
        let response = Response::parse(&text).expect("a response");
        let Outcome::Result(result) = response.outcome else {
            panic!("not a result")
        };
        let signed = Event::from_json(&result).expect("an event");
        let faithful = signed.pubkey == self.user.public_key()
            && signed.kind == self.asked.kind
            && signed.content == self.asked.content
            && signed.tags == self.asked.tags
            && signed.created_at == self.asked.created_at;
        assert!(faithful, "the event asked for");
        envelope::verify(&signed).expect("verifies");
        signed
    }

    fn open_pong(&mut self, event: &Event) {
        let (_, text) =
            envelope::open_text(&self.client, &mut self.to_signer, event).expect("open");
        let response = Response::parse(&text).expect("a response");
        assert_eq!(response.outcome, Outcome::Result("pong".into()));
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
    let mut c = Connection::new();

    criterion.bench_function("client/seal_sign_event_request", |b| {
        b.iter(|| black_box(c.seal_sign_event()))
    });
    criterion.bench_function("client/open_and_check_sign_event_response", |b| {
        b.iter_custom(|iters| {
            let answers: Vec<Event> = (0..iters).map(|i| c.signed_answer(i)).collect();
            let start = Instant::now();
            for answer in &answers {
                black_box(c.open_signed(answer));
            }
            start.elapsed()
        })
    });
    criterion.bench_function("client/seal_ping_request", |b| {
        b.iter(|| {
            c.seq += 1;
            let request = Request {
                id: format!("{:016x}", c.seq),
                command: Command::Ping,
            }
            .to_json();
            black_box(
                envelope::seal(
                    &c.client,
                    &mut c.to_signer,
                    Scheme::Nip44,
                    &request,
                    Timestamp::now(),
                    &entropy(c.seq),
                )
                .expect("seal"),
            )
        })
    });
    criterion.bench_function("client/open_pong_response", |b| {
        b.iter_custom(|iters| {
            let answers: Vec<Event> = (0..iters).map(|i| c.answer(i, "pong".into())).collect();
            let start = Instant::now();
            for answer in &answers {
                c.open_pong(answer);
            }
            start.elapsed()
        })
    });
    criterion.final_summary();

    // The ratio to the floor, measured the same way for both sides.
    let keys = Keys::generate();
    let note = UnsignedEvent::new(
        keys.public_key(),
        Timestamp::now(),
        Kind::TextNote,
        Tags::new(),
        "floor",
    );
    let event = envelope::sign(&keys, note.clone(), &[1; 32]).expect("sign");
    // Floor and round trip timed in alternation, round by round; the
    // median of the rounds' ratios (see crates/bunker/benches/request_path.rs).
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let answers: Vec<Event> = (0..200).map(|i| c.signed_answer(i)).collect();
        let mut next = answers.iter();
        let verify = per_run(400, || {
            envelope::verify(black_box(&event)).expect("valid");
        });
        let sign = per_run(200, || {
            black_box(envelope::sign(&keys, note.clone(), &[2; 32]).expect("sign"));
        });
        let round_trip = per_run(200, || {
            black_box(c.seal_sign_event());
            // Invariant: 200 answers for 200 runs.
            let answer = next.next().expect("enough answers");
            black_box(c.open_signed(answer));
        });
        rounds.push((verify, sign, round_trip));
    }
    let verify = median(rounds.iter().map(|r| r.0).collect());
    let sign = median(rounds.iter().map(|r| r.1).collect());
    let round_trip = median(rounds.iter().map(|r| r.2).collect());
    let ratio = median(rounds.iter().map(|(v, s, r)| r / (s + 2.0 * v)).collect());
    println!();
    println!("medians of {ROUNDS} alternating rounds:");
    println!("schnorr verify                 {verify:>8.1} µs");
    println!("schnorr sign                   {sign:>8.1} µs");
    println!(
        "floor (sign + 2 verifies)      {:>8.1} µs",
        sign + 2.0 * verify
    );
    println!("client sign_event round trip   {round_trip:>8.1} µs");
    println!("ratio client / floor           {ratio:>8.2}×");
}
