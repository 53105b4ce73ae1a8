//! Interop with a real, widely used client: nostr-tools' `BunkerSigner`
//! (Node), logging in from a `bunker://` URI, signing, encrypting and
//! decrypting through a running `rampart run`.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use testkit::RampartProcess;
use testkit::peers::{node_json, node_package};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

#[test]
fn nostr_tools_bunker_signer_logs_in_and_signs() {
    if !node_package("nostr-tools") {
        return;
    }
    let bunker = RampartProcess::start(Path::new(BIN), None, &[], &["--grant", "full"]);
    let report = node_json("nostr-tools-bunker.mjs", &[bunker.uri()]);
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
