//! The relay pool against a real external relay, nostr-rs-relay 0.8.12.
//!
//! The binary is looked up in `$NOSTR_RS_RELAY`, then `PATH`, then
//! `~/.cargo/bin` (`bash .ci/install` builds it there). Without it these tests
//! print why they are skipped and pass — unless `CI` is set, where a missing
//! binary is a failure.
//!
//! nostr-rs-relay quirks these tests rely on: it sends no `OK` for ephemeral
//! kinds (24133 included) and no `OK` for a successful `AUTH`; with
//! `nip42_auth` it challenges every connection but only restricts kind-4
//! DMs (with `nip42_dms`), so it never refuses anything with `auth-required:`.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{
    event, eventually, init_tracing, test_config, wait_for, wait_for_eose, wait_for_event, within,
};
use nostr::prelude::{Filter, Keys, Kind, Tag};
use relay::{AuthState, PoolEvent, RelayPool};

const NOSTR_CONNECT: u16 = 24133;

/// Finds the nostr-rs-relay binary, or explains (or fails, under CI) why not.
fn binary(test: &str) -> Option<PathBuf> {
    let from_env = std::env::var_os("NOSTR_RS_RELAY").map(PathBuf::from);
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nostr-rs-relay"))
            .find(|candidate| candidate.is_file())
    });
    let in_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .map(|home| home.join("bin").join("nostr-rs-relay"))
        .filter(|candidate| candidate.is_file());
    if let Some(found) = from_env.or(on_path).or(in_cargo_home) {
        return Some(found);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !ci,
        "nostr-rs-relay not found and CI is set: run `bash .ci/install`, or point \
         NOSTR_RS_RELAY at the binary"
    );
    // Written straight to stderr so it shows even though the test passes.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: nostr-rs-relay not found (set NOSTR_RS_RELAY, put it on PATH, or \
         run `bash .ci/install`)"
    );
    None
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("rampart-nostr-rs-relay-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running nostr-rs-relay on a loopback port, killed on drop.
struct ExternalRelay {
    binary: PathBuf,
    dir: TempDir,
    addr: SocketAddr,
    child: Option<Child>,
}

impl ExternalRelay {
    /// Starts the relay on a free port with a fresh data directory.
    async fn start(binary: PathBuf, auth: bool) -> Self {
        let free = StdListener::bind("127.0.0.1:0").expect("binding a probe socket");
        let addr = free.local_addr().expect("probe address");
        drop(free);
        let dir = TempDir::new();
        let config = format!(
            r#"[info]
relay_url = "ws://{addr}/"
name = "rampart test relay"

[network]
address = "127.0.0.1"
port = {port}

[authorization]
nip42_auth = {auth}
nip42_dms = {auth}
"#,
            port = addr.port()
        );
        std::fs::write(dir.0.join("config.toml"), config).expect("writing config.toml");
        let mut relay = Self {
            binary,
            dir,
            addr,
            child: None,
        };
        relay.spawn().await;
        relay
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Starts the process (again, same port and data) and waits until the
    /// port accepts connections.
    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join("relay.log"))
            .expect("opening the relay log");
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(self.dir.0.join("config.toml"))
            .arg("--db")
            .arg(&self.dir.0)
            .env("RUST_LOG", "warn,nostr_rs_relay=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("starting nostr-rs-relay");
        self.child = Some(child);
        let addr = self.addr;
        let log = self.dir.0.join("relay.log");
        let ready = async {
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .is_err()
        {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("nostr-rs-relay did not open port {addr}; its log:\n{log}");
        }
    }

    /// Kills the process and waits for it to be gone.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ExternalRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn nostr_rs_relay_publish_subscribe_kind_24133() {
    init_tracing();
    let Some(binary) = binary("nostr_rs_relay_publish_subscribe_kind_24133") else {
        return;
    };
    let relay = ExternalRelay::start(binary, false).await;
    let alice = Keys::generate();

    let (subscriber, mut notifications) = RelayPool::new(test_config());
    subscriber.add_relay(&relay.url()).unwrap();
    let filter = Filter::new()
        .kind(Kind::from(NOSTR_CONNECT))
        .author(alice.public_key());
    subscriber.subscribe(filter).unwrap();
    wait_for_eose(&mut notifications, 1).await;

    let (publisher, _events) = RelayPool::new(test_config());
    publisher.add_relay(&relay.url()).unwrap();
    let request = event(&alice, NOSTR_CONNECT, "request", vec![]);
    // Returns at once, though this relay will never answer OK for it.
    assert_eq!(publisher.publish(&request).unwrap().queued, 1);
    wait_for_event(&mut notifications, request.id).await;

    // A stored kind is answered OK; the ephemeral one times out unanswered.
    publisher
        .publish(&event(&alice, 1, "stored", vec![]))
        .unwrap();
    eventually("an OK for the stored event and none for 24133", || {
        let status = publisher.status().remove(0);
        status.ok == 1 && status.no_answer == 1
    })
    .await;
    publisher.shutdown().await;
    subscriber.shutdown().await;
}

#[tokio::test]
async fn nostr_rs_relay_reconnect_after_restart() {
    init_tracing();
    let Some(binary) = binary("nostr_rs_relay_reconnect_after_restart") else {
        return;
    };
    let mut relay = ExternalRelay::start(binary, false).await;
    let alice = Keys::generate();

    let (pool, mut notifications) = RelayPool::new(test_config());
    pool.add_relay(&relay.url()).unwrap();
    pool.subscribe(
        Filter::new()
            .kind(Kind::from(NOSTR_CONNECT))
            .author(alice.public_key()),
    )
    .unwrap();
    wait_for_eose(&mut notifications, 1).await;

    relay.stop();
    wait_for(&mut notifications, "the disconnect", |n| {
        matches!(n, PoolEvent::Disconnected { .. }).then_some(())
    })
    .await;
    let queued = event(&alice, NOSTR_CONNECT, "while down", vec![]);
    let report = pool.publish(&queued).unwrap();
    assert_eq!(report.waiting_for_reconnect, 1);

    relay.spawn().await;
    // Re-subscribed (EOSE), then the queued event, on the same socket.
    wait_for_eose(&mut notifications, 1).await;
    wait_for_event(&mut notifications, queued.id).await;

    let (other, _events) = RelayPool::new(test_config());
    other.add_relay(&relay.url()).unwrap();
    let live = event(&alice, NOSTR_CONNECT, "after restart", vec![]);
    other.publish(&live).unwrap();
    wait_for_event(&mut notifications, live.id).await;
    let status = pool.status().remove(0);
    assert!(status.connected);
    assert_eq!((status.reconnects, status.dropped), (1, 0));
    other.shutdown().await;
    pool.shutdown().await;
}

#[tokio::test]
async fn nostr_rs_relay_nip42_auth_unlocks_direct_messages() {
    init_tracing();
    let Some(binary) = binary("nostr_rs_relay_nip42_auth_unlocks_direct_messages") else {
        return;
    };
    let relay = ExternalRelay::start(binary, true).await;
    let alice = Keys::generate();
    let bob = Keys::generate();
    let dm = event(
        &alice,
        4,
        "ciphertext",
        vec![Tag::public_key(bob.public_key())],
    );
    let to_bob = || Filter::new().kind(Kind::from(4)).pubkey(bob.public_key());

    let (sender, _events) = RelayPool::new(test_config());
    sender.add_relay(&relay.url()).unwrap();
    sender.publish(&dm).unwrap();
    eventually("the DM to be stored", || sender.status()[0].ok == 1).await;

    // Without keys the relay's challenge goes unanswered and, with
    // nip42_dms, the stored DM is withheld.
    let (anonymous, mut anonymous_events) = RelayPool::new(test_config());
    anonymous.add_relay(&relay.url()).unwrap();
    anonymous.subscribe(to_bob()).unwrap();
    let mut leaked = false;
    wait_for(&mut anonymous_events, "EOSE without the DM", |n| match n {
        PoolEvent::Event { .. } => {
            leaked = true;
            None
        }
        PoolEvent::EndOfStoredEvents { .. } => Some(()),
        _ => None,
    })
    .await;
    assert!(!leaked, "the relay sent a DM to an unauthenticated client");
    eventually("the challenge", || {
        anonymous.status()[0].auth == AuthState::NoKeys
    })
    .await;

    // Bob's pool answers the challenge. nostr-rs-relay sends no OK for a
    // successful AUTH, so subscribe after sending it: the REQ follows the
    // AUTH on the same socket and is served authenticated.
    let (recipient, mut notifications) = RelayPool::new(test_config().with_auth_keys(bob.clone()));
    recipient.add_relay(&relay.url()).unwrap();
    wait_for(&mut notifications, "AUTH sent", |n| {
        matches!(n, PoolEvent::AuthSent { .. }).then_some(())
    })
    .await;
    recipient.subscribe(to_bob()).unwrap();
    wait_for_event(&mut notifications, dm.id).await;
    wait_for_eose(&mut notifications, 1).await;
    // And live DMs reach the authenticated subscriber.
    let second = event(&alice, 4, "again", vec![Tag::public_key(bob.public_key())]);
    sender.publish(&second).unwrap();
    within("the live DM", wait_for_event(&mut notifications, second.id)).await;
    let status = recipient.status().remove(0);
    assert_eq!(
        status.auth,
        AuthState::Sent,
        "no OK for AUTH from nostr-rs-relay"
    );

    sender.shutdown().await;
    anonymous.shutdown().await;
    recipient.shutdown().await;
}
