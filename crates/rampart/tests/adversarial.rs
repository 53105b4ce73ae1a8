//! The adversarial catalogue: hostile inputs against a real `rampart run` on
//! its embedded relay, each named (docs/security.md lists them with their
//! defence). Every case asserts the exact reply, or the exact drop reason the
//! bunker logs; that another client is still served; and, where nothing
//! should change, that the store's rows did not.
//!
//! One bunker serves the whole catalogue (cases run in order, each with
//! fresh client keys where its effect could leak into the next), so the
//! file also shows the bunker survives all of it in a row.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nip46::envelope::{self, Entropy};
use nip46::nostr::prelude::{
    Event, EventBuilder, FinalizeEvent, Keys, Kind, PublicKey, Tag, Timestamp, UnsignedEvent,
};
use nip46::{Conversation, ErrorCode, Outcome, Response, Scheme};
use store::{AuditQuery, Store};
use store_sqlite::SqliteStore;
use testkit::{RampartProcess, RawClient};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_rampart");
const WAIT: Duration = Duration::from_secs(10);

/// What the store holds, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rows {
    audit: usize,
    sessions: usize,
    tokens: usize,
    approvals: usize,
}

struct Catalogue {
    bunker: RampartProcess,
    friend: RawClient,
    pings: u32,
    names: Vec<&'static str>,
}

fn code(r: &Response) -> Option<ErrorCode> {
    match &r.outcome {
        Outcome::Error(e) => e.code,
        _ => None,
    }
}

fn message(r: &Response) -> String {
    match &r.outcome {
        Outcome::Error(e) => e.message.clone(),
        other => format!("{other:?}"),
    }
}

impl Catalogue {
    async fn new() -> Self {
        let bunker = RampartProcess::start(
            Path::new(BIN),
            None,
            &[
                ("RAMPART_APPROVAL_TIMEOUT_SECS", "30"),
                // Low enough that a debug build's relay meets it in a flood,
                // high enough for every other case's bursts.
                ("RAMPART_RELAY_EVENTS_PER_SECOND", "300"),
            ],
            &["--grant", "full", "--no-prompt"],
        );
        let mut friend = RawClient::new(bunker.uri()).await;
        let secret = secret_of(bunker.uri());
        let r = friend
            .call("c", "connect", serde_json::json!(["", secret]))
            .await;
        assert_eq!(r, Response::ok("c", "ack"));
        Catalogue {
            bunker,
            friend,
            pings: 0,
            names: Vec::new(),
        }
    }

    fn case(&mut self, name: &'static str) {
        assert!(!self.names.contains(&name), "case {name} listed twice");
        self.names.push(name);
    }

    fn rows(&self) -> Rows {
        let store = SqliteStore::open(&self.bunker.data_dir().join("rampart.sqlite")).unwrap();
        Rows {
            audit: store.audit(&AuditQuery::default()).unwrap().len(),
            sessions: store.sessions().unwrap().len(),
            tokens: store.tokens().unwrap().len(),
            approvals: store.approvals().unwrap().len(),
        }
    }

    /// The friend (a connected app) is still answered.
    async fn friend_served(&mut self) {
        self.pings += 1;
        let id = format!("friend-{}", self.pings);
        let r = self.friend.call(&id, "ping", serde_json::json!([])).await;
        assert_eq!(r, Response::ok(id, "pong"), "the friend is still served");
    }

    /// A client connected with a fresh token granting `grant`.
    async fn connected(&self, grant: &str) -> RawClient {
        let uri = self.bunker.mint(grant, &[]);
        let mut c = RawClient::new(&uri).await;
        let r = c
            .call("c", "connect", serde_json::json!(["", secret_of(&uri)]))
            .await;
        assert_eq!(r, Response::ok("c", "ack"));
        c
    }

    /// A client with no session (it never connected).
    async fn stranger(&self) -> RawClient {
        RawClient::new(self.bunker.uri()).await
    }

    /// The reason the bunker logged for dropping `event` (waits for it).
    fn drop_reason(&self, event: &Event) -> String {
        let needle = format!("event={}", event.id);
        let deadline = Instant::now() + WAIT;
        loop {
            let log =
                strip_ansi(&std::fs::read_to_string(self.bunker.log_path()).unwrap_or_default());
            if let Some(line) = log
                .lines()
                .find(|l| l.contains("dropped an event") && l.contains(&needle))
            {
                let reason = line.split("reason=").nth(1).unwrap_or_default();
                return reason.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "no drop logged for {}", event.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `bad` gets no answer (the client's next ping is answered first), the
    /// bunker logs `reason`, nothing is stored, and the friend is served.
    async fn dropped(&mut self, client: &mut RawClient, bad: &Event, reason: &str) {
        let before = self.rows();
        client.publish(bad);
        assert_eq!(self.drop_reason(bad), reason);
        let after = self.rows();
        assert_eq!(before, after, "a dropped event changes nothing stored");
        self.friend_served().await;
    }

    /// `bad` never reaches the bunker (the relay filters it out of the
    /// bunker's subscription): the client's next ping is its first answer,
    /// and only that ping's audit row is added.
    async fn not_delivered(&mut self, client: &mut RawClient, bad: &Event, tag: &str) {
        let before = self.rows();
        client.publish(bad);
        let ping = client.request(tag, "ping", serde_json::json!([]));
        client.publish(&ping);
        let (_, first) = client.next_response(WAIT).await.expect("an answer");
        assert_eq!(
            first,
            Response::ok(tag, "pong"),
            "the bad event got no answer"
        );
        let after = self.rows();
        assert_eq!(
            after,
            Rows {
                audit: before.audit + 1,
                ..before
            }
        );
        self.friend_served().await;
    }

    /// `bad` is answered with an error of `code` whose message starts with
    /// `starts`; one audit row is added and nothing else changes.
    async fn refused(
        &mut self,
        client: &mut RawClient,
        bad: &Event,
        id: &str,
        code_expected: ErrorCode,
        starts: &str,
    ) {
        let before = self.rows();
        client.publish(bad);
        let r = client.response_to(id, WAIT).await.expect("an answer");
        assert_eq!(code(&r), Some(code_expected), "{r:?}");
        assert!(
            message(&r).starts_with(starts),
            "{:?} vs {starts:?}",
            message(&r)
        );
        let after = self.rows();
        assert_eq!(
            after,
            Rows {
                audit: before.audit + 1,
                ..before
            },
            "only the audit row is added"
        );
        self.friend_served().await;
    }
}

fn secret_of(uri: &str) -> String {
    uri.split("secret=").nth(1).unwrap().to_owned()
}

/// A request sealed for `signer` by `keys`, created at `created_at`.
fn sealed(
    keys: &Keys,
    signer: PublicKey,
    json: &str,
    scheme: Scheme,
    created_at: Timestamp,
) -> Event {
    let mut conversation = Conversation::new(keys, signer).unwrap();
    let entropy = Entropy {
        nonce: Keys::generate().public_key().to_bytes(),
        aux: [9; 32],
    };
    envelope::seal(keys, &mut conversation, scheme, json, created_at, &entropy).unwrap()
}

/// A signed kind-24133 event to the signer with raw `content`.
fn raw(keys: &Keys, signer: PublicKey, content: &str) -> Event {
    let unsigned = UnsignedEvent::new(
        keys.public_key(),
        Timestamp::now(),
        Kind::NostrConnect,
        [Tag::public_key(signer)],
        content,
    );
    envelope::sign(keys, unsigned, &[1; 32]).unwrap()
}

/// Publish a request without waiting for its answer.
fn send(c: &mut RawClient, (id, method, params): (&str, &str, serde_json::Value)) {
    let event = c.request(id, method, params);
    c.publish(&event);
}

fn request_json(id: &str, method: &str, params: serde_json::Value) -> String {
    serde_json::json!({"id": id, "method": method, "params": params}).to_string()
}

/// A bare websocket to the relay, for frame-level cases.
struct Socket(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Socket {
    async fn open(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Socket(ws)
    }

    async fn send(&mut self, message: Message) {
        self.0.send(message).await.unwrap();
    }

    /// The next JSON frame that is not an AUTH challenge.
    async fn recv(&mut self) -> serde_json::Value {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.0.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                        if v[0] != "AUTH" {
                            return v;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("connection ended: {other:?}"),
                }
            }
        })
        .await
        .expect("a relay frame")
    }

    /// Publish and return the relay's `OK` (accepted, message).
    async fn publish(&mut self, event: &Event) -> (bool, String) {
        self.send(Message::text(
            serde_json::json!(["EVENT", event]).to_string(),
        ))
        .await;
        loop {
            let v = self.recv().await;
            if v[0] == "OK" && v[1] == event.id.to_hex() {
                return (v[2].as_bool().unwrap(), v[3].as_str().unwrap().to_owned());
            }
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_are_refused_or_dropped_and_the_bunker_serves_on() {
    let mut cat = Catalogue::new().await;
    let signer: PublicKey = cat.friend.signer;
    let relay_url = cat.bunker.relay_url.clone();

    // ---- Frames at the embedded relay --------------------------------
    let mut ws = Socket::open(&relay_url).await;
    cat.case("relay: a frame that is not JSON");
    ws.send(Message::text("this is not json")).await;
    assert_eq!(ws.recv().await[0], "NOTICE");
    cat.case("relay: an unknown message type");
    ws.send(Message::text(r#"["FROB",1]"#)).await;
    assert_eq!(ws.recv().await[0], "NOTICE");
    cat.case("relay: a binary frame");
    ws.send(Message::binary(vec![0u8; 16])).await;
    assert_eq!(ws.recv().await[0], "NOTICE");
    cat.case("relay: an oversized text frame");
    // Past the frame limit (≈ 2.8 MiB, sized for 1 MiB requests).
    ws.send(Message::text(format!(
        "[\"NOTICE\",\"{}\"]",
        "x".repeat(3 * 1024 * 1024)
    )))
    .await;
    assert_eq!(ws.recv().await[0], "NOTICE");
    let stranger_keys = Keys::generate();
    cat.case("relay: an oversized EVENT");
    let huge = EventBuilder::new(Kind::NostrConnect, "x".repeat(3 * 1024 * 1024))
        .finalize(&stranger_keys)
        .unwrap();
    let (ok, msg) = ws.publish(&huge).await;
    assert!(
        !ok && msg.starts_with("invalid: ") && msg.contains("exceeds this relay's limit"),
        "{msg}"
    );
    cat.case("relay: a kind other than NIP-46 (a note)");
    let note = EventBuilder::new(Kind::TextNote, "spam")
        .finalize(&stranger_keys)
        .unwrap();
    let (ok, msg) = ws.publish(&note).await;
    assert!(!ok && msg.starts_with("blocked: "), "{msg}");
    cat.case("relay: a kind-31990 that announces something else");
    let other_handler = EventBuilder::new(Kind::from(31990), "{}")
        .tags([Tag::parse(["k", "1"]).unwrap(), Tag::identifier("x")])
        .finalize(&stranger_keys)
        .unwrap();
    let (ok, msg) = ws.publish(&other_handler).await;
    assert!(!ok && msg.starts_with("blocked: "), "{msg}");
    cat.case("relay: an event whose id does not match");
    let mut bad_id = raw(&stranger_keys, signer, "x");
    bad_id.content = "changed after signing".into();
    let (ok, msg) = ws.publish(&bad_id).await;
    assert!(!ok && msg.starts_with("invalid: "), "{msg}");
    cat.case("relay: an event with a forged signature");
    let honest = raw(&stranger_keys, signer, "y");
    let forged = Event::new(
        honest.id,
        honest.pubkey,
        honest.created_at,
        honest.kind,
        honest.tags.clone(),
        honest.content.clone(),
        raw(&Keys::generate(), signer, "y").sig,
    );
    let (ok, msg) = ws.publish(&forged).await;
    assert!(!ok && msg.starts_with("invalid: bad signature"), "{msg}");
    cat.case("relay: a REQ with too many filters");
    let filters: Vec<serde_json::Value> = (0..20).map(|_| serde_json::json!({})).collect();
    let mut req = vec![serde_json::json!("REQ"), serde_json::json!("many")];
    req.extend(filters);
    ws.send(Message::text(serde_json::Value::Array(req).to_string()))
        .await;
    let closed = ws.recv().await;
    assert_eq!(closed[0], "CLOSED", "{closed}");
    cat.case("relay: a subscription id over 64 characters");
    ws.send(Message::text(
        serde_json::json!(["REQ", "s".repeat(65), {}]).to_string(),
    ))
    .await;
    assert_eq!(ws.recv().await[0], "CLOSED");
    cat.case("relay: COUNT");
    ws.send(Message::text(r#"["COUNT","c",{}]"#)).await;
    assert_eq!(ws.recv().await[0], "CLOSED");
    cat.case("relay: an AUTH answering the wrong challenge");
    let auth = EventBuilder::new(Kind::Authentication, "")
        .tags([
            Tag::parse(["challenge", "not-the-challenge"]).unwrap(),
            Tag::parse(["relay", relay_url.as_str()]).unwrap(),
        ])
        .finalize(&stranger_keys)
        .unwrap();
    ws.send(Message::text(serde_json::json!(["AUTH", auth]).to_string()))
        .await;
    let reply = ws.recv().await;
    assert_eq!(
        (reply[0].as_str(), reply[2].as_bool()),
        (Some("OK"), Some(false))
    );
    cat.case("relay: an AUTH event sent as EVENT");
    let (ok, msg) = ws.publish(&auth).await;
    assert!(!ok && msg.starts_with("invalid: "), "{msg}");
    cat.case("relay: one connection flooding events (rate limit)");
    let flood: Vec<Event> = (0..1_500)
        .map(|i| {
            raw(
                &stranger_keys,
                Keys::generate().public_key(),
                &format!("{i}"),
            )
        })
        .collect();
    for ev in &flood {
        // Sent back to back, without waiting for each OK.
        ws.0.feed(Message::text(serde_json::json!(["EVENT", ev]).to_string()))
            .await
            .unwrap();
    }
    ws.0.flush().await.unwrap();
    let mut refused = 0;
    for _ in 0..flood.len() {
        let v = ws.recv().await;
        assert_eq!(v[0], "OK");
        if v[2] == false {
            let msg = v[3].as_str().unwrap();
            assert!(msg.starts_with("rate-limited: "), "{msg}");
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "the flood met the limit ({refused} of {} refused)",
        flood.len()
    );
    cat.friend_served().await;
    cat.case("relay: 150 notes of 400 KB from a stranger (memory bound)");
    let pid = cat.bunker.pid().unwrap();
    let before = rss_kib(pid);
    let mut big = Socket::open(&relay_url).await;
    for i in 0..150 {
        let note = EventBuilder::new(Kind::TextNote, format!("{i}{}", "z".repeat(400 * 1024)))
            .finalize(&stranger_keys)
            .unwrap();
        let (ok, msg) = big.publish(&note).await;
        assert!(!ok && msg.starts_with("blocked: "), "{msg}");
    }
    let grown = rss_kib(pid).saturating_sub(before);
    eprintln!("relay RSS growth after 150 × 400 KB notes: {grown} KiB");
    assert!(grown < 64 * 1024, "grew {grown} KiB");
    cat.friend_served().await;
    cat.case(
        "relay: 150 signer announcements of 400 KB from fresh keys (stored, bounded in bytes)",
    );
    let before = rss_kib(pid);
    for i in 0..150 {
        let author = Keys::generate();
        let announcement =
            EventBuilder::new(Kind::from(31990), format!("{i}{}", "a".repeat(400 * 1024)))
                .tags([
                    Tag::parse(["k", "24133"]).unwrap(),
                    Tag::identifier("signer"),
                ])
                .finalize(&author)
                .unwrap();
        let (ok, msg) = big.publish(&announcement).await;
        assert!(ok, "announcements are kept: {msg}");
    }
    let grown = rss_kib(pid).saturating_sub(before);
    eprintln!("relay RSS growth after 150 × 400 KB stored announcements: {grown} KiB");
    assert!(
        grown < 64 * 1024,
        "the store is bounded in bytes: grew {grown} KiB"
    );
    // What is kept fits the byte bound (16 MiB): the newest ~40.
    big.send(Message::text(r#"["REQ","all",{"kinds":[31990]}]"#))
        .await;
    let mut kept = 0;
    loop {
        let v = big.recv().await;
        if v[0] == "EOSE" {
            break;
        }
        kept += 1;
    }
    assert!((1..150).contains(&kept), "{kept} kept of 150");
    cat.friend_served().await;

    // ---- Events that reach the bunker --------------------------------
    let mut c = cat.connected("full").await;
    let ck = c.keys.clone();
    cat.case("bunker: content that is not NIP-44 or NIP-04");
    let ev = raw(&ck, signer, "definitely not ciphertext");
    cat.dropped(
        &mut c,
        &ev,
        "undecryptable: content could not be decrypted (invalid base64)",
    )
    .await;
    cat.case("bunker: empty content");
    let ev = raw(&ck, signer, "");
    let reason = {
        c.publish(&ev);
        cat.drop_reason(&ev)
    };
    assert!(reason.starts_with("undecryptable: "), "{reason}");
    cat.friend_served().await;
    cat.case("bunker: NIP-44 with a bad MAC");
    let good = sealed(
        &ck,
        signer,
        &request_json("m", "ping", serde_json::json!([])),
        Scheme::Nip44,
        Timestamp::now(),
    );
    let mut bytes = base64_decode(&good.content);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let ev = raw(&ck, signer, &base64_encode(&bytes));
    c.publish(&ev);
    assert!(cat.drop_reason(&ev).starts_with("undecryptable: "));
    cat.friend_served().await;
    cat.case("bunker: NIP-44 with an unknown version byte");
    let mut bytes = base64_decode(&good.content);
    bytes[0] = 9;
    let ev = raw(&ck, signer, &base64_encode(&bytes));
    c.publish(&ev);
    assert!(cat.drop_reason(&ev).starts_with("undecryptable: "));
    cat.friend_served().await;
    cat.case("bunker: NIP-04 with a broken IV");
    let ev = raw(&ck, signer, "AAAA?iv=notbase64!!");
    c.publish(&ev);
    assert!(cat.drop_reason(&ev).starts_with("undecryptable: "));
    cat.friend_served().await;
    cat.case("bunker: sealed for another signer key");
    let elsewhere = sealed(
        &ck,
        Keys::generate().public_key(),
        "{}",
        Scheme::Nip44,
        Timestamp::now(),
    );
    let ev = raw(&ck, signer, &elsewhere.content);
    c.publish(&ev);
    assert!(cat.drop_reason(&ev).starts_with("undecryptable: "));
    cat.friend_served().await;
    cat.case("bunker: decrypts to something that is not JSON");
    let ev = sealed(&ck, signer, "hello there", Scheme::Nip44, Timestamp::now());
    c.publish(&ev);
    assert!(cat.drop_reason(&ev).starts_with("malformed request: "));
    cat.friend_served().await;
    cat.case("bunker: a request without an id");
    let ev = sealed(
        &ck,
        signer,
        r#"{"method":"ping","params":[]}"#,
        Scheme::Nip44,
        Timestamp::now(),
    );
    c.publish(&ev);
    assert!(cat.drop_reason(&ev).starts_with("malformed request: "));
    cat.friend_served().await;
    cat.case("bunker: a request id over 128 bytes");
    let ev = sealed(
        &ck,
        signer,
        &request_json(&"i".repeat(200), "ping", serde_json::json!([])),
        Scheme::Nip44,
        Timestamp::now(),
    );
    c.publish(&ev);
    assert_eq!(
        cat.drop_reason(&ev),
        "malformed request: id must be 1 to 128 bytes"
    );
    cat.friend_served().await;
    cat.case("bunker: an id that is an object");
    let ev = sealed(
        &ck,
        signer,
        r#"{"id":{"a":1},"method":"ping","params":[]}"#,
        Scheme::Nip44,
        Timestamp::now(),
    );
    c.publish(&ev);
    assert_eq!(
        cat.drop_reason(&ev),
        "malformed request: id is not a string"
    );
    cat.friend_served().await;
    cat.case("bunker: an event created 11 minutes ago (filtered by the relay)");
    let stale = sealed(
        &ck,
        signer,
        &request_json("s", "ping", serde_json::json!([])),
        Scheme::Nip44,
        Timestamp::from_secs(Timestamp::now().as_secs() - 660),
    );
    cat.not_delivered(&mut c, &stale, "after-stale").await;
    cat.case("bunker: an event created 6 minutes ahead");
    let future = sealed(
        &ck,
        signer,
        &request_json("f", "ping", serde_json::json!([])),
        Scheme::Nip44,
        // Taken now, not at the start: the cases before may take a while.
        Timestamp::from_secs(Timestamp::now().as_secs() + 360),
    );
    cat.dropped(&mut c, &future, "created too far in the future")
        .await;
    cat.case("bunker: the same request event sent twice");
    let once = c.request("twice", "ping", serde_json::json!([]));
    c.publish(&once);
    assert_eq!(
        c.response_to("twice", WAIT).await.unwrap(),
        Response::ok("twice", "pong")
    );
    // The relay answers the copy `duplicate:`; sent to the bunker again on
    // a fresh relay connection it is dropped as a replay.
    let again =
        RawClient::with_keys(Keys::generate(), signer, std::slice::from_ref(&relay_url)).await;
    let before = cat.rows();
    let replay_copy = Event::from_json(once.as_json()).unwrap();
    again.publish(&replay_copy);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cat.rows(), before, "a replay changes nothing");
    cat.friend_served().await;
    cat.case("bunker: content over the size limit");
    // Past what the bunker opens even for a session (twice the content of
    // a 1 MiB request), within what the relay carries.
    let over = nip46::Limits::default().hard_request_content() + 1;
    let huge = raw(&ck, signer, &"A".repeat(over));
    c.publish(&huge);
    assert!(
        cat.drop_reason(&huge)
            .starts_with("envelope refused: content of")
    );
    cat.friend_served().await;

    // ---- Answered with an error --------------------------------------
    cat.case("bunker: an unknown method");
    let ev = c.request("u", "frobnicate", serde_json::json!([]));
    cat.refused(
        &mut c,
        &ev,
        "u",
        ErrorCode::MethodNotFound,
        "`frobnicate` is not a NIP-46 method",
    )
    .await;
    cat.case("bunker: a method name with terminal escapes");
    let ev = c.request("esc", "\u{1b}[2Jwipe", serde_json::json!([]));
    cat.refused(&mut c, &ev, "esc", ErrorCode::MethodNotFound, "`")
        .await;
    let out = cat.bunker.cli(&["audit", "--since", "1h"]);
    let audit = String::from_utf8_lossy(&out.stdout);
    assert!(
        !audit.contains('\u{1b}') && audit.contains("\\u{1b}[2Jwipe"),
        "escaped on the terminal"
    );
    cat.case("bunker: params that are not an array");
    let ev = c.event(
        r#"{"id":"p","method":"ping","params":"nope"}"#,
        Scheme::Nip44,
        Timestamp::now(),
    );
    c.publish(&ev);
    assert!(
        cat.drop_reason(&ev).starts_with("malformed request: "),
        "not a request"
    );
    cat.friend_served().await;
    cat.case("bunker: a request over the size limit (1 MiB)");
    let ev = c.request(
        "big",
        "nip44_encrypt",
        serde_json::json!([signer.to_hex(), "x".repeat(1100 * 1024)]),
    );
    cat.refused(
        &mut c,
        &ev,
        "big",
        ErrorCode::InvalidParams,
        "request of 1126",
    )
    .await;
    cat.case("bunker: sign_event without a template");
    let ev = c.request("t0", "sign_event", serde_json::json!([]));
    cat.refused(
        &mut c,
        &ev,
        "t0",
        ErrorCode::InvalidParams,
        "sign_event needs an event template",
    )
    .await;
    cat.case("bunker: sign_event with a template that is not JSON");
    let ev = c.request("t1", "sign_event", serde_json::json!(["{kind:1"]));
    cat.refused(
        &mut c,
        &ev,
        "t1",
        ErrorCode::InvalidParams,
        "event template is not valid",
    )
    .await;
    cat.case("bunker: sign_event for another author");
    let other_author = serde_json::json!({"kind": 1, "content": "", "tags": [], "pubkey": Keys::generate().public_key().to_hex()}).to_string();
    let ev = c.request("t2", "sign_event", serde_json::json!([other_author]));
    cat.refused(
        &mut c,
        &ev,
        "t2",
        ErrorCode::InvalidParams,
        "the template's pubkey is not",
    )
    .await;
    cat.case("bunker: sign_event with an empty tag");
    let empty_tag = serde_json::json!({"kind": 1, "content": "", "tags": [[]]}).to_string();
    let ev = c.request("t3", "sign_event", serde_json::json!([empty_tag]));
    cat.refused(
        &mut c,
        &ev,
        "t3",
        ErrorCode::InvalidParams,
        "event template has an empty tag",
    )
    .await;
    cat.case("bunker: an encryption peer that is not a pubkey");
    let ev = c.request("e1", "nip44_encrypt", serde_json::json!(["zz", "hi"]));
    cat.refused(
        &mut c,
        &ev,
        "e1",
        ErrorCode::InvalidParams,
        "`zz` is not a pubkey",
    )
    .await;
    cat.case("bunker: an encryption peer off the curve");
    let ev = c.request(
        "e2",
        "nip44_encrypt",
        serde_json::json!(["f".repeat(64), "hi"]),
    );
    cat.refused(
        &mut c,
        &ev,
        "e2",
        ErrorCode::InvalidParams,
        "peer pubkey is not a valid curve point",
    )
    .await;
    cat.case("bunker: nip44_decrypt of garbage");
    let ev = c.request(
        "d1",
        "nip44_decrypt",
        serde_json::json!([signer.to_hex(), "garbage"]),
    );
    cat.refused(&mut c, &ev, "d1", ErrorCode::InvalidParams, "")
        .await;
    cat.case("bunker: nip04_decrypt of a NIP-44 ciphertext");
    let ev = c.request(
        "d2",
        "nip04_decrypt",
        serde_json::json!([signer.to_hex(), good.content.clone()]),
    );
    cat.refused(
        &mut c,
        &ev,
        "d2",
        ErrorCode::InvalidParams,
        "ciphertext is not nip04",
    )
    .await;
    cat.case("bunker: connect naming another signer pubkey");
    let ev = c.request("cx", "connect", serde_json::json!(["zz"]));
    cat.refused(
        &mut c,
        &ev,
        "cx",
        ErrorCode::InvalidParams,
        "`zz` is not a pubkey",
    )
    .await;

    // ---- Strangers and secrets ---------------------------------------
    cat.case("stranger: a request without a session");
    let mut s = cat.stranger().await;
    let ev = s.request(
        "n1",
        "sign_event",
        serde_json::json!([r#"{"kind":1,"content":"","tags":[]}"#]),
    );
    s.publish(&ev);
    let r = s.response_to("n1", WAIT).await.unwrap();
    assert_eq!(
        r,
        Response::error(
            "n1",
            ErrorCode::Unauthorized,
            "no active session: connect with a bunker:// secret first"
        )
    );
    cat.friend_served().await;
    cat.case("stranger: an unknown method without a session");
    let mut s = cat.stranger().await;
    let ev = s.request("n2", "frob", serde_json::json!([]));
    s.publish(&ev);
    assert_eq!(
        code(&s.response_to("n2", WAIT).await.unwrap()),
        Some(ErrorCode::Unauthorized)
    );
    cat.friend_served().await;
    cat.case("stranger: connect with a wrong secret");
    let mut s = cat.stranger().await;
    let before = cat.rows();
    let ev = s.request(
        "w",
        "connect",
        serde_json::json!([signer.to_hex(), "wrong-secret"]),
    );
    s.publish(&ev);
    assert_eq!(
        s.response_to("w", WAIT).await.unwrap(),
        Response::error("w", ErrorCode::Unauthorized, "invalid secret")
    );
    let after = cat.rows();
    assert_eq!(
        (after.sessions, after.tokens),
        (before.sessions, before.tokens),
        "no session, no token used"
    );
    cat.friend_served().await;
    cat.case("stranger: connect without a secret");
    let mut s = cat.stranger().await;
    let ev = s.request("ns", "connect", serde_json::json!([signer.to_hex()]));
    s.publish(&ev);
    assert_eq!(
        s.response_to("ns", WAIT).await.unwrap(),
        Response::error(
            "ns",
            ErrorCode::Unauthorized,
            "connect needs the secret from a bunker:// token"
        )
    );
    cat.friend_served().await;
    cat.case("stranger: connect with a used secret");
    let mut s = cat.stranger().await;
    let used = secret_of(cat.bunker.uri());
    let ev = s.request("us", "connect", serde_json::json!([signer.to_hex(), used]));
    s.publish(&ev);
    assert_eq!(
        s.response_to("us", WAIT).await.unwrap(),
        Response::error(
            "us",
            ErrorCode::Unauthorized,
            "this secret was already used; ask for a new bunker:// token"
        )
    );
    cat.friend_served().await;
    cat.case("stranger: connect with an expired secret");
    let expired = cat.bunker.mint("read", &["--expires", "1s"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut s = cat.stranger().await;
    let ev = s.request(
        "ex",
        "connect",
        serde_json::json!([signer.to_hex(), secret_of(&expired)]),
    );
    s.publish(&ev);
    assert_eq!(
        s.response_to("ex", WAIT).await.unwrap(),
        Response::error(
            "ex",
            ErrorCode::Unauthorized,
            "this secret has expired; ask for a new bunker:// token"
        )
    );
    cat.friend_served().await;
    cat.case("stranger: two clients racing on one secret");
    let token = cat.bunker.mint("read", &[]);
    let mut a = RawClient::new(&token).await;
    let mut b = RawClient::new(&token).await;
    let ea = a.request("ra", "connect", serde_json::json!(["", secret_of(&token)]));
    let eb = b.request("rb", "connect", serde_json::json!(["", secret_of(&token)]));
    a.publish(&ea);
    b.publish(&eb);
    let (ra, rb) = (
        a.response_to("ra", WAIT).await.unwrap(),
        b.response_to("rb", WAIT).await.unwrap(),
    );
    let acks = [&ra, &rb]
        .iter()
        .filter(|r| matches!(&r.outcome, Outcome::Result(s) if s == "ack"))
        .count();
    assert_eq!(acks, 1, "exactly one session: {ra:?} {rb:?}");
    cat.friend_served().await;
    cat.case("stranger: one key flooding (silenced after a clear refusal)");
    let mut s = cat.stranger().await;
    for i in 0..30 {
        send(&mut s, (&format!("fl{i}"), "ping", serde_json::json!([])));
    }
    let mut answers = 0;
    while s.next_response(Duration::from_millis(800)).await.is_some() {
        answers += 1;
    }
    assert!((1..=3).contains(&answers), "{answers} answers to a flooder");
    cat.friend_served().await;
    cat.case("stranger: a ping forged under a silenced key");
    let mut forged_ping = s.request("fl-x", "ping", serde_json::json!([]));
    forged_ping.content = "tampered".into();
    // The relay refuses it (bad id), so it never costs the bunker anything.
    let (ok, msg) = Socket::open(&relay_url).await.publish(&forged_ping).await;
    assert!(!ok && msg.starts_with("invalid: "), "{msg}");

    // ---- Sessions, rules and held requests ---------------------------
    cat.case("session: requests past its rate limit");
    let mut fast = cat.connected("read").await;
    for i in 0..260 {
        send(
            &mut fast,
            (&format!("rl{i}"), "ping", serde_json::json!([])),
        );
    }
    let mut limited = 0;
    while let Some((_, r)) = fast.next_response(Duration::from_millis(1500)).await {
        if code(&r) == Some(ErrorCode::RateLimited) {
            assert_eq!(message(&r), "too many requests; slow down");
            limited += 1;
        }
    }
    assert!(limited > 0, "the session's limit was met");
    cat.friend_served().await;
    cat.case("session: a read-only app flooding large sign_events");
    let mut reader = cat.connected("read").await;
    let tags: Vec<Vec<String>> = (0..400)
        .map(|i| vec!["t".to_owned(), format!("{i:0>100}")])
        .collect();
    let template =
        serde_json::json!({"kind": 1, "content": "x".repeat(8_000), "tags": tags}).to_string();
    let before = rss_kib(pid);
    for i in 0..250 {
        send(
            &mut reader,
            (
                &format!("big{i}"),
                "sign_event",
                serde_json::json!([template.clone()]),
            ),
        );
    }
    let (mut refused, mut waiting) = (0, 0);
    while let Some((_, r)) = reader.next_response(Duration::from_millis(1500)).await {
        if code(&r) == Some(ErrorCode::RateLimited) {
            refused += 1;
            if message(&r) == "too many requests waiting for approval" {
                waiting += 1;
            }
        }
    }
    let held = cat.rows().approvals;
    let grown = rss_kib(pid).saturating_sub(before);
    eprintln!("held {held}, refused {refused}, RSS growth {grown} KiB");
    assert!(
        waiting > 0,
        "refused for the cap ({refused} refused in all)"
    );
    let pending = String::from_utf8_lossy(&cat.bunker.cli(&["approvals", "list", "--json"]).stdout)
        .lines()
        .count();
    assert_eq!(pending, 16, "16 held for one app");
    assert!(grown < 64 * 1024, "RSS grew {grown} KiB");
    cat.friend_served().await;
    cat.case("session: the same held request re-sent");
    let mut asker = cat.connected("read").await;
    let t = serde_json::json!({"kind": 1, "content": "same", "tags": []}).to_string();
    let before = cat.rows().approvals;
    send(
        &mut asker,
        ("same", "sign_event", serde_json::json!([t.clone()])),
    );
    send(&mut asker, ("same", "sign_event", serde_json::json!([t])));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cat.rows().approvals, before + 1, "asked once");
    cat.friend_served().await;
    cat.case("session: hostile app metadata (escapes, bidi) on the terminal");
    let hostile_uri = cat.bunker.mint("read", &[]);
    let mut h = RawClient::new(&hostile_uri).await;
    let meta = serde_json::json!({"name": "\u{1b}]0;pwned\u{7}Evil\u{202e}ppA"}).to_string();
    let r = h
        .call(
            "c",
            "connect",
            serde_json::json!(["", secret_of(&hostile_uri), "", meta]),
        )
        .await;
    assert_eq!(r, Response::ok("c", "ack"));
    let out = cat.bunker.cli(&["sessions", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !listed.contains('\u{1b}') && !listed.contains('\u{202e}'),
        "{listed:?}"
    );
    assert!(
        listed.contains("\\u{1b}") && listed.contains("\\u{202e}"),
        "{listed}"
    );
    cat.case("session: hostile tags in a held request on the terminal");
    let t = serde_json::json!({"kind": 1, "content": "\u{1b}[31mred\r\noverwrite", "tags": [["t", "\u{1b}[2J"]]}).to_string();
    send(&mut h, ("tag", "sign_event", serde_json::json!([t])));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = cat.bunker.cli(&["approvals", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !listed.contains('\u{1b}') && !listed.contains('\r'),
        "{listed:?}"
    );
    assert!(
        listed.contains("overwrite"),
        "the request is listed: {listed:?}"
    );
    cat.case("session: logout, then a request");
    let mut leaver = cat.connected("read").await;
    assert_eq!(
        leaver.call("lo", "logout", serde_json::json!([])).await,
        Response::ok("lo", "ack")
    );
    let r = leaver.call("after", "ping", serde_json::json!([])).await;
    assert_eq!(code(&r), Some(ErrorCode::Unauthorized));
    cat.friend_served().await;
    cat.case("session: revoked from the CLI, then a request");
    let mut revoked = cat.connected("read").await;
    let out = cat.bunker.cli(&[
        "sessions",
        "revoke",
        &revoked.keys.public_key().to_hex()[..16],
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = revoked.call("rv", "ping", serde_json::json!([])).await;
    assert_eq!(code(&r), Some(ErrorCode::Unauthorized));
    cat.friend_served().await;
    cat.case("session: a held request decided after its session was revoked");
    let mut late = cat.connected("read").await;
    let t = serde_json::json!({"kind": 1, "content": "late", "tags": []}).to_string();
    send(&mut late, ("late", "sign_event", serde_json::json!([t])));
    tokio::time::sleep(Duration::from_millis(500)).await;
    cat.bunker
        .cli(&["sessions", "revoke", &late.keys.public_key().to_hex()[..16]]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let rows = String::from_utf8_lossy(&cat.bunker.cli(&["approvals", "list", "--json"]).stdout)
        .to_string();
    let id = rows
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["request_id"] == "late")
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .expect("held");
    cat.bunker.cli(&["approvals", "allow", &id]);
    let r = late.response_to("late", WAIT).await.unwrap();
    assert_eq!(
        r,
        Response::error(
            "late",
            ErrorCode::Unauthorized,
            "the session ended before approval"
        )
    );
    cat.friend_served().await;
    cat.case("cli: deciding an id that is not pending");
    let before = cat.rows();
    let out = cat.bunker.cli(&["approvals", "allow", "ffffffff"]);
    assert!(!out.status.success());
    assert_eq!(cat.rows(), before);
    cat.case("cli: a nostrconnect URI with a hostile name, read from stdin");
    let app = Keys::generate();
    let uri = format!(
        "nostrconnect://{}?relay={}&secret=x&name=%1B%5B2JEvil",
        app.public_key().to_hex(),
        relay_url.replace(':', "%3A").replace('/', "%2F")
    );
    let out = cat
        .bunker
        .cli_with_stdin(&["connect", "-", "--grant", "read"], &uri);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&cat.bunker.cli(&["sessions", "list"]).stdout).to_string();
    assert!(
        !listed.contains('\u{1b}') && listed.contains("\\u{1b}[2JEvil"),
        "{listed}"
    );

    // ---- Floods of strangers (last: they spend the strangers' budget) --
    cat.case("stranger: 50 keys × 100 requests (aggregate audit bound)");
    let before = cat.rows();
    let mut flooders = Vec::new();
    for _ in 0..50 {
        flooders.push(cat.stranger().await);
    }
    let flooder_keys: Vec<PublicKey> = flooders.iter().map(|f| f.keys.public_key()).collect();
    for round in 0..100 {
        for (i, f) in flooders.iter_mut().enumerate() {
            send(f, (&format!("x{round}-{i}"), "ping", serde_json::json!([])));
        }
        if round % 25 == 0 {
            cat.friend_served().await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    cat.friend_served().await;
    let added = cat.rows().audit - before.audit;
    eprintln!("audit rows for 50 × 100 stranger requests: {added} (friend pings included)");
    // The friend's five pings and at most two rows per stranger.
    assert!(added <= 100 + 5, "{added} rows");

    cat.case("key: removed from the CLI while serving");
    let second = cat.bunker.cli_with_stdin(
        &["key", "import", "--name", "spare"],
        &Keys::generate().secret_key().to_secret_hex(),
    );
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let out = cat.bunker.cli(&["key", "remove", "default"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let ev = cat.friend.request("gone", "ping", serde_json::json!([]));
    cat.friend.publish(&ev);
    assert!(
        cat.friend
            .response_to("gone", Duration::from_secs(2))
            .await
            .is_none(),
        "nothing answered for a removed key"
    );

    let log = strip_ansi(&std::fs::read_to_string(cat.bunker.log_path()).unwrap());
    assert!(
        log.contains("key removed from the store: unloaded"),
        "unloaded, not crashed"
    );
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the bunker is still running"
    );

    // Stopping writes the counted rows of windows still open: only now is
    // the whole cost of the stranger flood in the audit log.
    assert!(cat.bunker.stop(), "a graceful stop");
    let store = SqliteStore::open(&cat.bunker.data_dir().join("rampart.sqlite")).unwrap();
    let flood_rows: Vec<_> = store
        .audit(&AuditQuery::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.client.is_some_and(|c| flooder_keys.contains(&c)))
        .collect();
    let counted: u32 = flood_rows.iter().map(|r| r.events).sum();
    eprintln!(
        "50 × 100 stranger requests: {} audit rows standing for {counted} refused events",
        flood_rows.len()
    );
    assert!(flood_rows.len() <= 100, "{} rows", flood_rows.len());
    assert!(
        counted >= 50,
        "every stranger's refusals are counted: {counted}"
    );

    eprintln!("{} hostile cases", cat.names.len());
    for name in &cat.names {
        eprintln!("  - {name}");
    }
    assert!(cat.names.len() >= 60, "{} cases", cat.names.len());
}

/// The log without its colour codes (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
