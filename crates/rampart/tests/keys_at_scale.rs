//! Keys at scale, end to end: `key generate --count` names and seals many
//! keys under the vault's one key-encryption key, `key list` narrows them,
//! `rampart run` serves the last one, `vault passphrase` reseals every key,
//! and keys stored as NIP-49 by earlier versions are opened and moved
//! under the vault key transparently. (How fast: `benches/keys.sh`, not
//! here.)

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use nip46::nostr::nips::nip49::{EncryptedSecretKey, KeySecurity};
use nip46::nostr::prelude::{Keys, Timestamp, ToBech32};
use nip46::{Outcome, Response};
use relay::server::{self, ServerConfig};
use store::{NewKey, Store};
use store_sqlite::SqliteStore;
use testkit::RawClient;

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

fn rampart(data_dir: &Path, passphrase: &str, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RAMPART_PASSPHRASE", passphrase)
        .env("RAMPART_VAULT_LOG_N", "4")
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run rampart")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_keys_are_generated_listed_served_and_resealed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let pass = "test passphrase";
    ok(rampart(
        data,
        pass,
        &[],
        &["key", "generate", "--name", "team", "--count", "120"],
    ));
    let all = names(&ok(rampart(data, pass, &[], &["key", "list"])));
    assert_eq!(all.len(), 120, "every key, by default");
    assert_eq!(
        (all[0].as_str(), all[119].as_str()),
        ("team-0001", "team-0120")
    );
    let page = names(&ok(rampart(
        data,
        pass,
        &[],
        &[
            "key", "list", "--filter", "team-01", "--offset", "2", "--limit", "3",
        ],
    )));
    assert_eq!(page, ["team-0102", "team-0103", "team-0104"]);
    // A name taken already: nothing is added.
    let again = rampart(
        data,
        pass,
        &[],
        &["key", "generate", "--name", "team", "--count", "2"],
    );
    assert!(!again.status.success());
    assert_eq!(
        names(&ok(rampart(data, pass, &[], &["key", "list"]))).len(),
        120
    );
    // A wrong passphrase opens nothing.
    let wrong = rampart(data, "wrong", &[], &["key", "export", "team-0001"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("passphrase"));

    // The passphrase changes: every key resealed; the old one stops working.
    ok(rampart(
        data,
        pass,
        &[("RAMPART_NEW_PASSPHRASE", "new passphrase")],
        &["vault", "passphrase"],
    ));
    assert!(
        !rampart(data, pass, &[], &["key", "export", "team-0001"])
            .status
            .success()
    );
    let exported = ok(rampart(
        data,
        "new passphrase",
        &[],
        &["key", "export", "team-0120"],
    ));
    assert!(exported.trim().starts_with("ncryptsec1"));

    // `rampart run` with the new passphrase serves the last key (it prints
    // a summary instead of 120 tokens).
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let mut bunker = Running::start(data, "new passphrase", &relay.url());
    bunker.wait_for("serving 120 keys");
    let uri = ok(rampart(
        data,
        "new passphrase",
        &[],
        &[
            "uri",
            "--key",
            "team-0120",
            "--grant",
            "read,sign_event:1",
            "--relay",
            &relay.url(),
        ],
    ));
    let mut c = RawClient::connected(uri.trim()).await;
    let r = c.call("pk", "get_public_key", serde_json::json!([])).await;
    let listed = ok(rampart(
        data,
        "new passphrase",
        &[],
        &["key", "list", "--filter", "team-0120", "--json"],
    ));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(r, Response::ok("pk", listed[0]["pubkey"].as_str().unwrap()));
    let template = serde_json::json!({"kind": 1, "content": "from the 120th", "tags": []});
    let r = c
        .call("s", "sign_event", serde_json::json!([template.to_string()]))
        .await;
    assert!(matches!(r.outcome, Outcome::Result(_)), "{r:?}");
    c.close().await;
    bunker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stored_as_nip49_are_opened_and_moved_under_the_vault_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let pass = "test passphrase";
    // A store as an earlier version left it: both secrets NIP-49.
    let user = Keys::generate();
    let signer = Keys::generate();
    let nip49 = |k: &Keys, security| {
        EncryptedSecretKey::new(k.secret_key(), pass, 4, security)
            .unwrap()
            .to_bech32()
            .unwrap()
    };
    {
        let mut store = SqliteStore::open(&data.join("rampart.sqlite")).unwrap();
        store
            .add_key(&NewKey {
                name: "old".into(),
                user_pubkey: user.public_key(),
                signer_pubkey: signer.public_key(),
                user_secret: nip49(&user, KeySecurity::Weak),
                signer_secret: nip49(&signer, KeySecurity::Medium),
                created_at: Timestamp::from_secs(1_700_000_000),
            })
            .unwrap();
    }
    // A passphrase that does not open the old keys creates no vault.
    assert!(
        !rampart(data, "wrong", &[], &["key", "export", "old"])
            .status
            .success()
    );
    let store = SqliteStore::open(&data.join("rampart.sqlite")).unwrap();
    assert_eq!(store.vault_params().unwrap(), None);
    drop(store);
    // Its export works before the move, and is the stored ncryptsec.
    let before = ok(rampart(data, pass, &[], &["key", "export", "old"]));
    assert_eq!(before.trim(), nip49_of(data, "old"));
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let mut bunker = Running::start(data, pass, &relay.url());
    bunker.stop();
    assert!(
        bunker
            .log()
            .contains("moved keys from NIP-49 to the vault key"),
        "{}",
        bunker.log()
    );
    let moved = nip49_of(data, "old");
    assert!(moved.starts_with("rampart-kek1:"), "{moved}");
    // Still the same key, exported as NIP-49 with its key-security byte.
    let after = ok(rampart(data, pass, &[], &["key", "export", "old"]));
    let encrypted =
        <EncryptedSecretKey as nip46::nostr::nips::nip19::FromBech32>::from_bech32(after.trim())
            .unwrap();
    assert_eq!(encrypted.key_security(), KeySecurity::Weak);
    assert_eq!(
        Keys::new(encrypted.decrypt(pass).unwrap()).public_key(),
        user.public_key()
    );
}

/// The stored user secret of key `name`.
fn nip49_of(data: &Path, name: &str) -> String {
    let store = SqliteStore::open(&data.join("rampart.sqlite")).unwrap();
    store
        .keys()
        .unwrap()
        .into_iter()
        .find(|k| k.name == name)
        .unwrap()
        .user_secret
}

/// `rampart run` on a data dir whose keys are too many for a token each:
/// ready once its log says it serves.
struct Running {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Running {
    fn start(data: &Path, passphrase: &str, relay: &str) -> Self {
        let log = data.join("run.log");
        let child = Command::new(BIN)
            .arg("--data-dir")
            .arg(data)
            .args(["run", "--no-prompt"])
            .env("RAMPART_PASSPHRASE", passphrase)
            .env("RAMPART_VAULT_LOG_N", "4")
            .env("RAMPART_RELAYS", relay)
            .env("RAMPART_DASHBOARD_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rampart run");
        let running = Running { child, log };
        running.wait_for("bunker serving");
        running
    }

    fn wait_for(&self, text: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.log().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "no `{text}` in: {}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signer_disconnects_the_apps_and_serves_fresh_tokens_at_once() {
    let args = ["--grant", "read,sign_event:1"];
    let bunker = testkit::RampartProcess::start(Path::new(BIN), None, &[], &args);
    let uri = bunker.uri().to_string();
    let old_signer = uri
        .strip_prefix("bunker://")
        .and_then(|rest| rest.split('?').next())
        .unwrap()
        .to_owned();
    let mut c = RawClient::connected(&uri).await;
    let user = c.call("pk", "get_public_key", serde_json::json!([])).await;

    let out = bunker.cli(&["key", "rotate-signer", "default"]);
    let new_signer = ok(out).trim().to_owned();
    assert_eq!(new_signer.len(), 64);
    assert_ne!(new_signer, old_signer);
    // From its next reload the running bunker serves the new signer and no
    // longer answers on the old one (a request to it is a stranger's).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(bunker.log_path())
        .unwrap_or_default()
        .contains("serving a key loaded while running")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the running bunker did not take the new signer"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let late = c.request("late", "get_public_key", serde_json::json!([]));
    c.publish(&late);
    assert!(
        c.response_to("late", std::time::Duration::from_secs(1))
            .await
            .is_none(),
        "the old signer key still answers"
    );
    c.close().await;

    // Without a restart it serves a fresh token, which names the new
    // signer; the user key is the same.
    let fresh = bunker.mint("read", &[]);
    assert!(
        fresh.starts_with(&format!("bunker://{new_signer}?")),
        "{fresh}"
    );
    let mut c = RawClient::connected(&fresh).await;
    let again = c.call("pk", "get_public_key", serde_json::json!([])).await;
    assert_eq!(again, user);
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_generated_while_running_is_served_without_a_restart() {
    let args = ["--grant", "read,sign_event:1"];
    let bunker = testkit::RampartProcess::start(Path::new(BIN), None, &[], &args);
    let npub = bunker
        .cli_ok(&["key", "generate", "--name", "late"])
        .trim()
        .to_owned();
    let uri = bunker.mint("read,sign_event:1", &["--key", "late"]);
    let secret = uri.split("secret=").nth(1).unwrap().to_string();
    let mut c = RawClient::new(&uri).await;
    // Served from the bunker's next reload (its 200 ms poll): until then a
    // request to the new signer goes unheard, so it is sent again.
    let mut answer = None;
    for _ in 0..50 {
        let connect = c.request("c", "connect", serde_json::json!(["", secret]));
        c.publish(&connect);
        if let Some(r) = c
            .response_to("c", std::time::Duration::from_millis(200))
            .await
        {
            answer = Some(r);
            break;
        }
    }
    assert_eq!(
        answer,
        Some(Response::ok("c", "ack")),
        "the new key never answered"
    );
    let pk = c.call("pk", "get_public_key", serde_json::json!([])).await;
    let Outcome::Result(hex) = &pk.outcome else {
        panic!("{pk:?}")
    };
    let user = nip46::nostr::prelude::PublicKey::from_hex(hex).unwrap();
    assert_eq!(
        user.to_bech32().unwrap(),
        npub,
        "the key generated is the one served"
    );
    let template = serde_json::json!({"kind": 1, "content": "late", "tags": []}).to_string();
    let r = c
        .call("s", "sign_event", serde_json::json!([template]))
        .await;
    let Outcome::Result(json) = &r.outcome else {
        panic!("{r:?}")
    };
    let event = nip46::nostr::prelude::Event::from_json(json).unwrap();
    event.verify().unwrap();
    assert_eq!(event.pubkey, user);
    // The first key still serves as before.
    let first = bunker.mint("read", &["--key", "default"]);
    let d = RawClient::connected(&first).await;
    c.close().await;
    d.close().await;
}
