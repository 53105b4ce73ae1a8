//! The interop matrix: Rampart's bunker against four real NIP-46 clients
//! (nostr-tools, NDK, applesauce, rust-nostr's nostr-connect), and
//! Rampart's client against two real signers (nostr-connect, applesauce),
//! on the embedded relay and on nostr-rs-relay.
//!
//! Every cell is run and compared with what is known of it: a cell that
//! works must work, a cell with a known third-party limitation must still
//! show it (so a fix upstream, or a regression here, fails the test and
//! the table is updated). With `RAMPART_INTEROP_OUT=<dir>` each cell is
//! also written there as JSON; `scripts/interop-matrix` turns those (and
//! the conformance reports) into `docs/interop.md`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use client::Client;
use testkit::app::{check_sign_and_encrypt, client_options};
use testkit::peers::{interop_dir, node_package, workspace_binary};
use testkit::{NostrRsRelay, Peer, RampartProcess};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

/// What a cell is known to do.
#[derive(Clone, Copy)]
enum Known {
    /// It works.
    Works,
    /// It works, with a limitation on the other side, stated.
    WorksBut(&'static str),
    /// It fails for a reason on the other side, stated.
    Fails(&'static str),
}

/// One cell's outcome.
struct Outcome {
    ok: bool,
    detail: String,
    elapsed: Duration,
}

fn save(kind: &str, peer: &str, relay: &str, known: Known, outcome: &Outcome, copes: &str) {
    let Some(dir) = std::env::var_os("RAMPART_INTEROP_OUT") else {
        return;
    };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    let known_note = match known {
        Known::Works => "",
        Known::WorksBut(why) | Known::Fails(why) => why,
    };
    let record = serde_json::json!({
        "kind": kind,
        "peer": peer,
        "relay": relay,
        "ok": outcome.ok,
        "detail": outcome.detail,
        "ms": outcome.elapsed.as_millis() as u64,
        "known_limitation": known_note,
        "rampart_copes": copes,
    });
    let name = format!("cell-{kind}-{peer}-{relay}.json").replace([' ', '/'], "_");
    std::fs::write(dir.join(name), record.to_string()).unwrap();
}

fn judge(cell: &str, known: Known, outcome: &Outcome) {
    match known {
        Known::Works | Known::WorksBut(_) => {
            assert!(outcome.ok, "{cell} should work: {}", outcome.detail)
        }
        Known::Fails(why) => assert!(
            !outcome.ok,
            "{cell} was known to fail ({why}) but worked: update the matrix"
        ),
    }
}

// ---------------------------------------------------------------------------
// Rampart's bunker ← third-party clients

/// A client program: its name, how to run it on a token, how Rampart copes with it.
struct ClientProgram {
    name: &'static str,
    run: fn(&str) -> Option<Command>,
    copes: &'static str,
}

/// `node SCRIPT URI` in `tests/interop`, or `None` (skip) without `package`.
fn node(script: &str, package: &str, uri: &str) -> Option<Command> {
    if !node_package(package) {
        return None;
    }
    let mut c = Command::new("node");
    c.arg(script).arg(uri).current_dir(interop_dir());
    Some(c)
}

const CLIENTS: &[ClientProgram] = &[
    ClientProgram {
        name: "nostr-tools",
        run: |uri| node("nostr-tools-bunker.mjs", "nostr-tools", uri),
        copes: "calls `switch_relays` right after connecting and parses its result as JSON, and checks every signed event itself: Rampart answers `switch_relays` with a stringified array of its relays and signs exactly the template it was sent",
    },
    ClientProgram {
        name: "NDK",
        run: |uri| node("ndk-bunker.mjs", "@nostr-dev-kit/ndk", uri),
        copes: "sends `connect` with an empty first param and takes only the signature from `sign_event` (it rebuilds the event itself): Rampart reads an empty first param as \"this signer\" and signs exactly the template's fields",
    },
    ClientProgram {
        name: "applesauce",
        run: |uri| node("applesauce-bunker.mjs", "applesauce-signers", uri),
        copes: "expects the secret or \"ack\" from `connect`: Rampart answers \"ack\" (bunker flow)",
    },
    ClientProgram {
        name: "nostr-connect",
        run: |uri| {
            let binary = workspace_binary("peer-client")?;
            let mut c = Command::new(binary);
            c.arg(uri);
            Some(c)
        },
        copes: "parses `result` against the method before looking at `error`: Rampart's error replies carry no `result` key",
    },
];

/// Which (client, relay) cells are known not to work, and why.
fn client_known(client: &str, relay: &str) -> Known {
    match (client, relay) {
        ("nostr-connect", "nostr-rs-relay") => Known::WorksBut(
            "slowly: rust-nostr's client waits for the relay's OK after each request, and nostr-rs-relay 0.8.12 sends none for ephemeral kinds, so every request first runs into that wait",
        ),
        _ => Known::Works,
    }
}

fn run_client(program: &ClientProgram, uri: &str) -> Option<Outcome> {
    let mut command = (program.run)(uri)?;
    let started = Instant::now();
    let out = output_within(&mut command, Duration::from_secs(150));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Option<serde_json::Value> = serde_json::from_str(stdout.trim()).ok();
    let ok = out.status.success() && report.as_ref().is_some_and(|r| r["ok"] == true);
    let detail = if ok {
        let id: String = report.as_ref().unwrap()["event"]["id"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(12)
            .collect();
        format!("connected, got the user key, signed a note ({id}…), NIP-44 and NIP-04 round trips")
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        err.lines()
            .next()
            .unwrap_or("no output")
            .chars()
            .take(200)
            .collect()
    };
    Some(Outcome {
        ok,
        detail,
        elapsed: started.elapsed(),
    })
}

/// Run to completion, killed (and reported as a failure) past `limit`: a
/// client that hangs must not hang the test.
fn output_within(command: &mut Command, limit: Duration) -> std::process::Output {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the client");
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn bunker_against_clients(relay_name: &str, relay_url: Option<&str>) {
    let bunker = RampartProcess::start(Path::new(BIN), relay_url, &[], &["--grant", "full"]);
    for program in CLIENTS {
        let uri = bunker.mint("full", &[]);
        let Some(outcome) = run_client(program, &uri) else {
            continue;
        };
        let known = client_known(program.name, relay_name);
        save(
            "client",
            program.name,
            relay_name,
            known,
            &outcome,
            program.copes,
        );
        judge(
            &format!("{} → Rampart on {relay_name}", program.name),
            known,
            &outcome,
        );
    }
}

#[test]
fn rampart_bunker_with_every_client_on_the_embedded_relay() {
    bunker_against_clients("embedded", None);
}

#[test]
fn rampart_bunker_with_every_client_on_nostr_rs_relay() {
    let Some(relay) = NostrRsRelay::start() else {
        return;
    };
    bunker_against_clients("nostr-rs-relay", Some(&relay.url()));
}

// ---------------------------------------------------------------------------
// Rampart's client → third-party signers

struct SignerProgram {
    name: &'static str,
    start: fn(&str) -> Option<Peer>,
    copes: &'static str,
}

const SIGNERS: &[SignerProgram] = &[
    SignerProgram {
        name: "nostr-connect",
        start: |relay| Peer::nostr_connect(relay, "matrix-secret"),
        copes: "ignores methods it does not know (`switch_relays`) and needs `pubkey` in templates: Rampart's client waits only briefly for `switch_relays` and always sends the user pubkey it got from `get_public_key`",
    },
    SignerProgram {
        name: "applesauce",
        start: |relay| Peer::applesauce(relay, "matrix-secret", &[]),
        copes: "echoes the secret on `connect`, answers `switch_relays` with `result: null`, sends errors without a code: Rampart's client accepts all three",
    },
];

fn signer_known(signer: &str, relay: &str) -> Known {
    match (signer, relay) {
        ("nostr-connect", "nostr-rs-relay") => Known::Fails(
            "rust-nostr's signer waits for the relay's OK after each answer, which nostr-rs-relay 0.8.12 never sends for ephemeral kinds: it answers one request per OK timeout",
        ),
        _ => Known::Works,
    }
}

async fn client_against_signer(program: &SignerProgram, relay_name: &str, relay_url: &str) {
    let Some(peer) = (program.start)(relay_url) else {
        return;
    };
    let started = Instant::now();
    let uri = peer.uri.clone();
    let attempt = tokio::spawn(async move {
        let client = Client::connect(
            &uri,
            // 4 s a request: ample on loopback, and shorter than the OK
            // wait that stalls rust-nostr's signer on nostr-rs-relay.
            client_options("interop matrix", Duration::from_secs(4)),
        )
        .await
        .map_err(|e| e.to_string())?;
        check_sign_and_encrypt(&client, "signed through the matrix").await;
        client.shutdown().await;
        Ok::<_, String>(())
    });
    let outcome = match tokio::time::timeout(Duration::from_secs(60), attempt).await {
        Ok(Ok(Ok(()))) => Outcome {
            ok: true,
            detail: "connected, signed a note, NIP-44 and NIP-04 round trips (checked on the third party's side), ping".into(),
            elapsed: started.elapsed(),
        },
        Ok(Ok(Err(e))) => Outcome {
            ok: false,
            detail: e,
            elapsed: started.elapsed(),
        },
        Ok(Err(panic)) => Outcome {
            ok: false,
            detail: format!("a step failed: {panic}"),
            elapsed: started.elapsed(),
        },
        Err(_) => Outcome {
            ok: false,
            detail: "no result within 60 s".into(),
            elapsed: started.elapsed(),
        },
    };
    let known = signer_known(program.name, relay_name);
    save(
        "signer",
        program.name,
        relay_name,
        known,
        &outcome,
        program.copes,
    );
    judge(
        &format!("Rampart's client → {} on {relay_name}", program.name),
        known,
        &outcome,
    );
    drop(peer);
}

#[tokio::test(flavor = "multi_thread")]
async fn rampart_client_with_every_signer_on_the_embedded_relay() {
    let relay = relay::server::spawn(relay::ServerConfig::default())
        .await
        .unwrap();
    for program in SIGNERS {
        client_against_signer(program, "embedded", &relay.url()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rampart_client_with_every_signer_on_nostr_rs_relay() {
    let Some(relay) = NostrRsRelay::start() else {
        return;
    };
    for program in SIGNERS {
        client_against_signer(program, "nostr-rs-relay", &relay.url()).await;
    }
}
