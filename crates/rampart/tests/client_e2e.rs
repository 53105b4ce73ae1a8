//! The client library and `rampart client` against our bunker: a real
//! `rampart run` process on a real relay (the embedded one, a relay this test
//! controls so it can stop and restart it, and nostr-rs-relay when
//! installed). Nothing is mocked; every wait is bounded.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use client::{AuthChallenge, Client, ClientOptions, Error, Session};
use nip46::nostr::nips::{nip04, nip44};
use nip46::nostr::prelude::{
    Event, EventBuilder, FinalizeEventAsync, Keys, Kind, PublicKey, RelayUrl, Tag,
};
use nip46::{BunkerUri, Command, ErrorCode, EventTemplate, Method};
use relay::server::{self, ServerConfig};
use testkit::app::{WAIT, client_options, note, within};
use testkit::{NostrRsRelay, RampartProcess, RawClient};
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_rampart");
/// Upper bound of every wait: a broken test fails instead of hanging.
/// So that 200 requests at once are not rate limited.
const NO_RATE_LIMIT: [(&str, &str); 2] = [
    ("RAMPART_RATE_BURST", "100000"),
    ("RAMPART_RATE_PER_SECOND", "100000"),
];

/// A `rampart run` process, once it serves.
async fn bunker(relay: Option<&str>, env: &[(&str, &str)], grant: &str) -> RampartProcess {
    let bunker = RampartProcess::start(Path::new(BIN), relay, env, &["--grant", grant]);
    wait_serving(&bunker).await;
    bunker
}

/// `rampart run` prints its token before its relay subscription is live.
/// Wait until it answers: a ping without a session gets `unauthorized`.
async fn wait_serving(bunker: &RampartProcess) {
    let mut raw = RawClient::new(bunker.uri()).await;
    for i in 0..60 {
        let ping = raw.request(&format!("ready-{i}"), "ping", serde_json::json!([]));
        raw.publish(&ping);
        if raw
            .next_response(Duration::from_millis(500))
            .await
            .is_some()
        {
            return;
        }
    }
    panic!(
        "the bunker never answered; see {}",
        bunker.log_path().display()
    );
}

async fn connect(bunker: &RampartProcess, options: ClientOptions) -> Client {
    within("connect", Client::connect(bunker.uri(), options))
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}; see {}", bunker.log_path().display()))
}

fn options() -> ClientOptions {
    client_options("client e2e", Duration::from_secs(15))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_method_through_our_bunker() {
    let bunker = bunker(None, &[], "full").await;
    let client = connect(&bunker, options()).await;
    let user = client.user_pubkey();
    assert_eq!(client.get_public_key().await.unwrap(), user);
    client.ping().await.unwrap();

    // Through the nostr crate's signer traits.
    let event = EventBuilder::new(Kind::TextNote, "signed remotely")
        .tags([Tag::hashtag("rampart")])
        .finalize_async(&client)
        .await
        .unwrap();
    event.verify().unwrap();
    assert_eq!(event.pubkey, user);
    assert_eq!(event.content, "signed remotely");

    // A template without a time: the client fills it in.
    let template =
        EventTemplate::parse(r#"{"kind":7,"content":"+","tags":[["e","abc"]]}"#).unwrap();
    let reaction = client.sign_template(template).await.unwrap();
    assert_eq!(reaction.kind, Kind::Reaction);

    // Encryption, checked by the third party with the nostr crate.
    let peer = Keys::generate();
    let ct = client
        .nip44_encrypt(&peer.public_key(), "for your eyes")
        .await
        .unwrap();
    assert_eq!(
        nip44::decrypt(peer.secret_key(), &user, &ct).unwrap(),
        "for your eyes"
    );
    let reply = nip44::encrypt(peer.secret_key(), &user, "reply", nip44::Version::V2).unwrap();
    assert_eq!(
        client
            .nip44_decrypt(&peer.public_key(), &reply)
            .await
            .unwrap(),
        "reply"
    );
    let ct = client
        .nip04_encrypt(&peer.public_key(), "legacy")
        .await
        .unwrap();
    assert_eq!(
        nip04::decrypt(peer.secret_key(), &user, &ct).unwrap(),
        "legacy"
    );
    let reply = nip04::encrypt(peer.secret_key(), &user, "old reply").unwrap();
    assert_eq!(
        client
            .nip04_decrypt(&peer.public_key(), &reply)
            .await
            .unwrap(),
        "old reply"
    );

    // Our bunker answers switch_relays with its relays: the one in use.
    let relay = RelayUrl::parse(&bunker.relay_url).unwrap();
    assert_eq!(
        client.switch_relays().await.unwrap(),
        Some(vec![relay.clone()])
    );
    assert_eq!(client.relays(), vec![relay]);

    // A malformed request is the signer's error, with its code.
    let err = client
        .call(Command::Nip44Decrypt {
            peer: peer.public_key(),
            ciphertext: "not a ciphertext".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Signer { .. }), "{err}");
    assert_eq!(err.code(), Some(ErrorCode::InvalidParams));

    // Logout: the client closes, and the bunker ended the session.
    let session = client.session();
    client.logout().await.unwrap();
    assert!(matches!(client.ping().await, Err(Error::Disconnected(_))));
    let err = within("restore", Client::restore(session, options()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Denied {
                method: Method::GetPublicKey,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_requests_in_flight() {
    let bunker = bunker(None, &NO_RATE_LIMIT, "full").await;
    let client = connect(&bunker, options()).await;
    let peer = Keys::generate().public_key();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = client.clone();
        tasks.spawn(async move {
            if i % 2 == 0 {
                let event = client
                    .sign_event(note(&client, &format!("note {i}")))
                    .await?;
                assert_eq!(event.content, format!("note {i}"));
            } else {
                let ct = client.nip44_encrypt(&peer, &format!("text {i}")).await?;
                assert_eq!(client.nip44_decrypt(&peer, &ct).await?, format!("text {i}"));
            }
            Ok::<(), Error>(())
        });
    }
    let mut most = 0;
    let results = within("200 requests", async {
        let mut results = Vec::new();
        loop {
            most = most.max(client.pending());
            match tasks.join_next().await {
                Some(r) => results.push(r.unwrap()),
                None => break results,
            }
        }
    })
    .await;
    assert_eq!(results.len(), 200);
    for r in results {
        r.unwrap();
    }
    assert!(most > 1, "requests were not in flight together");
    assert_eq!(client.pending(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_bunker_means_a_timeout_not_a_hang() {
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let mut bunker = bunker(Some(&relay.url()), &[], "full").await;
    let client = connect(&bunker, options()).await;
    client.ping().await.unwrap();
    bunker.kill9();

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let client = client.clone();
        tasks.spawn(async move {
            client
                .call_with_timeout(Command::Ping, Duration::from_millis(800))
                .await
        });
    }
    while let Some(r) = within("timeouts", tasks.join_next()).await {
        let err = r.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Timeout {
                    method: Method::Ping,
                    challenged: false,
                    ..
                }
            ),
            "{err}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(client.pending(), 0);

    // A caller that gives up first cancels its request: the id is forgotten.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        client.sign_event(note(&client, "abandoned")),
    )
    .await;
    assert!(gave_up.is_err());
    assert_eq!(client.pending(), 0);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_relays_are_a_connection_error() {
    // The embedded relay dies with the bunker.
    let mut bunker = bunker(None, &[], "full").await;
    let client = connect(&bunker, options()).await;
    bunker.kill9();
    let err = within(
        "error",
        client.call_with_timeout(Command::Ping, Duration::from_secs(1)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_survive_a_relay_restart() {
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let addr = relay.local_addr();
    let _bunker = bunker(Some(&relay.url()), &[], "full").await;
    let client = connect(&_bunker, options().request_timeout(Duration::from_secs(25))).await;
    client.ping().await.unwrap();

    relay.shutdown().await;
    // Made while the relay is down: queued, then sent on reconnect — maybe
    // before the bunker is back, so the client probes and re-sends.
    let during = {
        let client = client.clone();
        tokio::spawn(async move { client.sign_event(note(&client, "during the outage")).await })
    };
    within("the request to be pending", async {
        while client.pending() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let relay = server::spawn_on(addr, ServerConfig::default())
        .await
        .unwrap();
    let event = within("the answer after the restart", during)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.content, "during the outage");
    client.ping().await.unwrap();
    relay.shutdown().await;
}

/// The case a re-sent *copy* of the request would not survive: the bunker
/// got the request and answered, but the answer was lost with the client's
/// connection. The bunker drops replayed event ids (and the relay drops
/// duplicate events), so the client re-sends a fresh event with the same
/// request id once it hears the bunker again.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_lost_with_the_connection_is_recovered() {
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let bunker = bunker(Some(&relay.url()), &[], "full").await;
    let proxy = CuttingProxy::start(relay.local_addr()).await;
    // Reach the bunker through the proxy only (and stay there: our bunker
    // would otherwise move the client to its own relay list).
    let mut uri: BunkerUri = bunker.uri().parse().unwrap();
    uri.relays = vec![RelayUrl::parse(&proxy.url()).unwrap()];
    let options = options().switch_relays_timeout(None);
    let client = within("connect", Client::connect_bunker(uri, options))
        .await
        .unwrap();
    client.ping().await.unwrap();

    proxy.arm();
    let event = within(
        "the answer",
        client.sign_event(note(&client, "answer lost once")),
    )
    .await
    .unwrap();
    assert_eq!(event.content, "answer lost once");
    assert_eq!(proxy.cuts(), 1, "the answer was not intercepted");
}

/// A TCP proxy in front of a relay that, once armed, swallows the next
/// `EVENT` the relay sends to the client and cuts that connection.
struct CuttingProxy {
    addr: std::net::SocketAddr,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CuttingProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (a, c) = (armed.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(relay) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(pipe(client, relay, a.clone(), c.clone()));
            }
        });
        CuttingProxy { addr, armed, cuts }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn cuts(&self) -> usize {
        self.cuts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Client bytes go up untouched; relay bytes come down frame by frame (after
/// the HTTP upgrade), so one text frame can be recognised and dropped.
async fn pipe(
    client: tokio::net::TcpStream,
    relay: tokio::net::TcpStream,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut relay_rd, mut relay_wr) = relay.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_rd, &mut relay_wr).await;
    });
    let mut buf: Vec<u8> = Vec::new();
    let mut upgraded = false;
    let mut chunk = [0u8; 16 * 1024];
    'read: loop {
        let n = match relay_rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if !upgraded {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            if client_wr.write_all(&head).await.is_err() {
                break;
            }
            upgraded = true;
        }
        while let Some((len, payload_at)) = frame_len(&buf) {
            let frame: Vec<u8> = buf.drain(..len).collect();
            let text = frame[0] & 0x0f == 1;
            if text
                && frame[payload_at..].starts_with(b"[\"EVENT\"")
                && armed.swap(false, Ordering::SeqCst)
            {
                cuts.fetch_add(1, Ordering::SeqCst);
                break 'read;
            }
            if client_wr.write_all(&frame).await.is_err() {
                break 'read;
            }
        }
    }
    up.abort();
}

/// Length of the first complete server frame in `buf`, and where its
/// (unmasked) payload starts.
fn frame_len(buf: &[u8]) -> Option<(usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (header, len) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (10, usize::try_from(u64::from_be_bytes(b)).ok()?)
        }
        126 | 127 => return None,
        n => (2, usize::from(n)),
    };
    let header = header + if buf[1] & 0x80 != 0 { 4 } else { 0 };
    (buf.len() >= header + len).then_some((header + len, header))
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_url_callback_then_the_real_result() {
    let bunker = bunker(
        None,
        &[("RAMPART_AUTH_URL_BASE", "http://127.0.0.1:9/")],
        "read",
    )
    .await;
    let (tx, mut challenges) = mpsc::unbounded_channel::<AuthChallenge>();
    let options = options().on_auth_url(move |c| {
        let _ = tx.send(c.clone());
    });
    let client = connect(&bunker, options).await;

    // Approved in another process.
    let signing = {
        let client = client.clone();
        tokio::spawn(async move { client.sign_event(note(&client, "needs approval")).await })
    };
    let challenge = within("the challenge", challenges.recv()).await.unwrap();
    assert_eq!(challenge.method, Method::SignEvent);
    assert!(
        challenge
            .url
            .as_str()
            .starts_with("http://127.0.0.1:9/approve/"),
        "{}",
        challenge.url
    );
    let id = approval_id(&challenge);
    assert_success(&bunker.cli(&["approvals", "allow", &id]));
    let event = within("the approved result", signing)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.content, "needs approval");
    event.verify().unwrap();

    // Denied in another process: the unauthorized code is parsed.
    let signing = {
        let client = client.clone();
        tokio::spawn(async move { client.sign_event(note(&client, "will be denied")).await })
    };
    let challenge = within("the second challenge", challenges.recv())
        .await
        .unwrap();
    assert_success(&bunker.cli(&["approvals", "deny", &approval_id(&challenge)]));
    let err = within("the denial", signing).await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Denied {
                method: Method::SignEvent,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized));
}

fn approval_id(challenge: &AuthChallenge) -> String {
    challenge.url.path().rsplit('/').next().unwrap().to_owned()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_requests_carry_the_code() {
    let bunker = bunker(None, &[("RAMPART_UNLISTED", "deny")], "read").await;
    let client = connect(&bunker, options()).await;
    client.ping().await.unwrap();
    let err = client
        .sign_event(note(&client, "not granted"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Denied {
                method: Method::SignEvent,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized));
    let err = client
        .nip44_encrypt(&Keys::generate().public_key(), "x")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Denied {
                method: Method::Nip44Encrypt,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_session_survives_both_restarts() {
    let mut bunker = bunker(None, &[], "write").await;
    let client = connect(&bunker, options()).await;
    let user = client.user_pubkey();
    client.sign_event(note(&client, "before")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    client.session().save(&path).unwrap();
    client.shutdown().await;

    // The bunker restarts too (same data dir, same relay).
    assert!(bunker.stop(), "the bunker did not stop cleanly");
    bunker.restart(&["--grant", "write"]);
    wait_serving(&bunker).await;

    let restored = within(
        "restore",
        Client::restore(Session::load(&path).unwrap(), options()),
    )
    .await
    .unwrap();
    assert_eq!(restored.user_pubkey(), user);
    let event = restored.sign_event(note(&restored, "after")).await.unwrap();
    assert_eq!(event.pubkey, user);

    // A session whose signer now answers for someone else is refused.
    let mut changed = Session::load(&path).unwrap();
    changed.user = Keys::generate().public_key();
    let err = within("restore", Client::restore(changed, options()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::SessionMismatch { actual, .. } if actual == user),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nostrconnect_uri_accepted_by_our_bunker() {
    let bunker = bunker(None, &[], "write").await;
    let relay = RelayUrl::parse(&bunker.relay_url).unwrap();
    let pending = within(
        "listening",
        Client::nostrconnect(
            vec![relay],
            options().perms("sign_event:1".parse().unwrap()),
        ),
    )
    .await
    .unwrap();
    let uri = pending.uri().to_string();
    assert!(uri.starts_with("nostrconnect://"), "{uri}");
    assert!(uri.contains("secret="));
    assert_success(&bunker.cli(&["connect", &uri, "--grant", "write"]));
    let client = within("pairing", pending.wait(WAIT)).await.unwrap();
    let event = client
        .sign_event(note(&client, "client-initiated"))
        .await
        .unwrap();
    assert_eq!(event.pubkey, client.user_pubkey());
}

#[tokio::test(flavor = "multi_thread")]
async fn nip05_login_finds_our_bunker() {
    let bunker = bunker(None, &[], "write").await;
    let token: BunkerUri = bunker.uri().parse().unwrap();
    let domain = serve_nostr_json(token.signer, &bunker.relay_url).await;

    // Our bunker admits new clients by secret only: a bare NIP-05 login is refused.
    let err = within(
        "nip05 connect",
        Client::connect(&format!("alice@{domain}"), options()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Denied {
                method: Method::Connect,
                ..
            }
        ),
        "{err}"
    );

    // With the address resolved and a token's secret, it connects.
    let address = format!("alice@{domain}").parse().unwrap();
    let mut uri = client::nip05::resolve(&address, WAIT).await.unwrap();
    assert_eq!(uri.signer, token.signer);
    uri.secret = token.secret;
    let client = within("connect", Client::connect_bunker(uri, options()))
        .await
        .unwrap();
    client.sign_event(note(&client, "via nip05")).await.unwrap();
}

/// A loopback HTTP server answering every request with a nostr.json naming
/// `alice`; returns its `host:port`.
async fn serve_nostr_json(signer: PublicKey, relay: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::json!({
        "names": {"alice": signer.to_hex()},
        "nip46": {"relays": [relay]},
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") && read < buf.len() {
                    match socket.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_method_on_nostr_rs_relay() {
    let Some(mut relay) = NostrRsRelay::start() else {
        return;
    };
    let bunker = bunker(Some(&relay.url()), &[], "full").await;
    let client = connect(&bunker, options().request_timeout(Duration::from_secs(25))).await;
    let event = client
        .sign_event(note(&client, "on nostr-rs-relay"))
        .await
        .unwrap();
    event.verify().unwrap();
    let peer = Keys::generate().public_key();
    let ct = client.nip44_encrypt(&peer, "hi").await.unwrap();
    assert_eq!(client.nip44_decrypt(&peer, &ct).await.unwrap(), "hi");
    let ct = client.nip04_encrypt(&peer, "old").await.unwrap();
    assert_eq!(client.nip04_decrypt(&peer, &ct).await.unwrap(), "old");
    client.ping().await.unwrap();

    // It restarts (it never answers OK to ephemeral events, so nothing is
    // re-sent by the pool itself): the client probes and re-sends.
    relay.stop();
    let during = {
        let client = client.clone();
        tokio::spawn(async move { client.sign_event(note(&client, "during the outage")).await })
    };
    within("the request to be pending", async {
        while client.pending() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    relay.restart();
    let event = within("the answer after the restart", during)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.content, "during the outage");
    client.logout().await.unwrap();
}

// ---- the CLI -------------------------------------------------------------

fn cli(bunker: &RampartProcess, args: &[&str], stdin: &str) -> Output {
    let mut all = vec!["client"];
    all.extend_from_slice(args);
    bunker.cli_with_stdin(&all, stdin)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Exactly one line on stderr, in the documented form.
fn one_line_error(out: &Output, code: i32) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {stderr}");
    assert!(lines[0].starts_with("rampart client: "), "stderr: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_round_trip() {
    let bunker = bunker(None, &[], "full").await;
    let session = bunker.data_dir().join("client-session.json");
    let out = cli(&bunker, &["connect", bunker.uri()], "");
    assert_success(&out);
    assert!(session.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&session).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let out = cli(&bunker, &["pubkey"], "");
    assert_success(&out);
    let user = PublicKey::from_hex(&stdout(&out)).unwrap();

    // A template on stdin.
    let out = cli(
        &bunker,
        &["sign"],
        r#"{"kind":1,"content":"from the cli","tags":[["t","cli"]]}"#,
    );
    assert_success(&out);
    let event = Event::from_json(stdout(&out)).unwrap();
    event.verify().unwrap();
    assert_eq!(
        (event.pubkey, event.content.as_str()),
        (user, "from the cli")
    );

    // Flags.
    let out = cli(
        &bunker,
        &[
            "sign",
            "--kind",
            "7",
            "--content",
            "+",
            "--tag",
            &format!("e={};wss://r.example", event.id),
            "--created-at",
            "1700000000",
        ],
        "",
    );
    assert_success(&out);
    let reaction = Event::from_json(stdout(&out)).unwrap();
    assert_eq!(reaction.kind, Kind::Reaction);
    assert_eq!(reaction.created_at.as_secs(), 1_700_000_000);
    assert_eq!(
        reaction.tags.first().unwrap().as_slice()[2],
        "wss://r.example"
    );

    // Encryption both ways, NIP-44 and NIP-04, checked by the third party.
    let peer = Keys::generate();
    let pk = peer.public_key().to_hex();
    let out = cli(&bunker, &["encrypt", "--to", &pk], "hello\n");
    assert_success(&out);
    assert_eq!(
        nip44::decrypt(peer.secret_key(), &user, stdout(&out)).unwrap(),
        "hello"
    );
    let ct = nip44::encrypt(peer.secret_key(), &user, "back", nip44::Version::V2).unwrap();
    let out = cli(&bunker, &["decrypt", "--from", &pk], &ct);
    assert_eq!(stdout(&out), "back");
    let out = cli(&bunker, &["encrypt", "--nip04", "--to", &pk], "old");
    assert_eq!(
        nip04::decrypt(peer.secret_key(), &user, stdout(&out)).unwrap(),
        "old"
    );
    let ct = nip04::encrypt(peer.secret_key(), &user, "old back").unwrap();
    let out = cli(&bunker, &["decrypt", "--nip04", "--from", &pk], &ct);
    assert_eq!(stdout(&out), "old back");

    let out = cli(&bunker, &["ping"], "");
    assert_eq!(stdout(&out), "pong");

    // Bad input is a usage error.
    one_line_error(&cli(&bunker, &["sign"], "not json"), 2);
    one_line_error(&cli(&bunker, &["encrypt", "--to", "nobody"], "x"), 2);

    // Logout forgets the session.
    assert_success(&cli(&bunker, &["logout"], ""));
    assert!(!session.exists());
    one_line_error(&cli(&bunker, &["pubkey"], ""), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_exit_codes() {
    // Denied: 4.
    let denying = bunker(None, &[("RAMPART_UNLISTED", "deny")], "read").await;
    assert_success(&cli(&denying, &["connect", denying.uri()], ""));
    one_line_error(
        &cli(&denying, &["sign", "--kind", "1", "--content", "x"], ""),
        4,
    );

    // Timeout: 3 (the relay is up, the bunker is gone).
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let mut gone = bunker(Some(&relay.url()), &[], "full").await;
    assert_success(&cli(&gone, &["connect", gone.uri()], ""));
    gone.kill9();
    let started = Instant::now();
    one_line_error(&cli(&gone, &["--timeout", "1s", "ping"], ""), 3);
    assert!(started.elapsed() < Duration::from_secs(10));

    // Connection: 6 (nothing listens on the relay any more).
    relay.shutdown().await;
    one_line_error(&cli(&gone, &["--timeout", "1s", "ping"], ""), 6);

    // Usage: 2.
    let out = cli(&gone, &["sign", "--content", "no kind"], "");
    assert_eq!(out.status.code(), Some(2));
}
