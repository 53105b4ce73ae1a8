//! Interop with a real, widely used client: nostr-tools' `BunkerSigner`
//! (Node), logging in from a `bunker://` URI, signing, encrypting and
//! decrypting through a running `rampart run`.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::{RampartProcess, ci, skipped};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

#[test]
fn nostr_tools_bunker_signer_logs_in_and_signs() {
    let dir = interop_dir();
    if !dir.join("node_modules/nostr-tools").exists() {
        assert!(
            !ci(),
            "tests/interop/node_modules is missing; .ci/install runs `npm ci` there"
        );
        skipped("run `npm ci` in tests/interop to enable the nostr-tools interop test");
        return;
    }
    let bunker = RampartProcess::start(Path::new(BIN), None, &[], &["--grant", "full"]);
    let out = Command::new("node")
        .arg("nostr-tools-bunker.mjs")
        .arg(bunker.uri())
        .current_dir(&dir)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nostr-tools failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let keys = bunker.cli(&["key", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    assert_eq!(
        report["pubkey"], listed[0]["pubkey"],
        "nostr-tools got the user pubkey"
    );
    assert_eq!(report["event"]["pubkey"], listed[0]["pubkey"]);

    // The audit log shows nostr-tools' requests, with the signature traced.
    let audit = bunker.cli(&["audit", "--json"]);
    let rows = String::from_utf8_lossy(&audit.stdout);
    for method in [
        "connect",
        "get_public_key",
        "sign_event",
        "nip44_encrypt",
        "nip44_decrypt",
        "nip04_encrypt",
        "ping",
        "switch_relays",
    ] {
        assert!(
            rows.contains(&format!("\"method\":\"{method}\"")),
            "no audit row for {method}: {rows}"
        );
    }
    let id = report["event"]["id"].as_str().unwrap();
    assert!(
        rows.contains(id),
        "the signed event is traced to its audit row"
    );
}
