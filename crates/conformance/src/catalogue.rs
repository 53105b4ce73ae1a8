//! Every check of the suite: its id, its level and the sentence of NIP-46
//! (`../shared/specs/nip-46.md`, the current text) it tests.
//!
//! Levels: **MUST** — the spec says MUST, or the behaviour defines a method
//! or the transport every client relies on (`connect`, `get_public_key`,
//! `sign_event`, `ping`; answers authored by the signer key, `p`-tagging
//! the client, matched by id); **SHOULD** — the spec says SHOULD/should, or
//! the method is one a signer may leave out (replying with an error);
//! **interop** — not in the text, but a quirk real clients depend on.

use serde::Serialize;

/// How binding a check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    /// The spec requires it; a failure fails the run.
    #[serde(rename = "MUST")]
    Must,
    /// The spec recommends it.
    #[serde(rename = "SHOULD")]
    Should,
    /// Real clients depend on it.
    #[serde(rename = "interop")]
    Interop,
}

impl Level {
    /// As printed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::Interop => "interop",
        }
    }
}

/// One check.
#[derive(Debug, Clone, Copy)]
pub struct CheckInfo {
    /// Stable id (`area.what`).
    pub id: &'static str,
    /// How binding.
    pub level: Level,
    /// What it tests: the sentence of the spec (quoted), or the quirk.
    pub spec: &'static str,
}

const fn check(id: &'static str, level: Level, spec: &'static str) -> CheckInfo {
    CheckInfo { id, level, spec }
}

use Level::{Interop, Must, Should};

/// Every check, in the order they are reported.
pub const CHECKS: &[CheckInfo] = &[
    check(
        "connect.secret",
        Must,
        "Methods: `connect` [<remote-signer-pubkey>, <optional_secret>, …] → \"ack\" OR <required-secret-value> (a token's secret opens a session)",
    ),
    check(
        "connect.ack",
        Interop,
        "Methods: `connect` → \"ack\" OR <required-secret-value>: the table allows either, but bunker:// clients expect \"ack\" (the secret is the nostrconnect:// flow's answer)",
    ),
    check(
        "connect.empty_first_param",
        Interop,
        "NDK sends `connect` with an empty first param instead of the remote-signer pubkey",
    ),
    check(
        "connect.requested_perms",
        Should,
        "\"The `connect` method may be provided with `optional_requested_perms` for user convenience.\"",
    ),
    check(
        "connect.client_metadata",
        Should,
        "\"The `connect` method may be provided with `optional_client_metadata` so that remote-signer can identify and label the connection.\"",
    ),
    check(
        "connect.metadata_empty_perms",
        Must,
        "\"To send metadata without requesting permissions, an empty string MUST be passed for `optional_requested_perms` so that the metadata occupies the fourth position.\"",
    ),
    check(
        "connect.spent_secret",
        Should,
        "\"Optional secret can be used for single successfully established connection only, remote-signer SHOULD ignore new attempts to establish connection with old secret.\"",
    ),
    check(
        "session.strangers_get_nothing",
        Must,
        "\"A connection is established (see below), remote-signer learns client-pubkey\" before requests are served: a client that never connected gets nothing signed, encrypted or decrypted",
    ),
    check(
        "get_public_key",
        Must,
        "Methods: `get_public_key` [] → <user-pubkey>; \"client requests `get_public_key` to learn `user-pubkey`\"",
    ),
    check(
        "sign_event.spec_template",
        Must,
        "Methods: `sign_event` [<{kind, content, tags, created_at}>] → json_stringified(<signed_event>): verified, by the user key, equal to what was asked",
    ),
    check(
        "sign_event.with_pubkey",
        Interop,
        "clients (nostr-tools, NDK) send the template with `pubkey` set to the user key",
    ),
    check(
        "sign_event.without_created_at",
        Interop,
        "clients send templates without `created_at`; the signer fills in the time",
    ),
    check(
        "nip44_encrypt",
        Should,
        "Methods: `nip44_encrypt` [<third_party_pubkey>, <plaintext_to_encrypt>] → <nip44_ciphertext> (the third party decrypts it)",
    ),
    check(
        "nip44_decrypt",
        Should,
        "Methods: `nip44_decrypt` [<third_party_pubkey>, <nip44_ciphertext_to_decrypt>] → <plaintext>",
    ),
    check(
        "nip04_encrypt",
        Should,
        "Methods: `nip04_encrypt` [<third_party_pubkey>, <plaintext_to_encrypt>] → <nip04_ciphertext>",
    ),
    check(
        "nip04_decrypt",
        Should,
        "Methods: `nip04_decrypt` [<third_party_pubkey>, <nip04_ciphertext_to_decrypt>] → <plaintext>",
    ),
    check(
        "transport.nip04_request",
        Interop,
        "legacy clients still send NIP-04-encrypted requests; they are answered in NIP-04",
    ),
    check(
        "method.unknown",
        Must,
        "\"Requests made with unknown or unsupported methods MUST be replied with an error.\"",
    ),
    check(
        "params.malformed",
        Interop,
        "`params` is a positional array of string parameters: a `sign_event` whose template is not JSON gets an error reply, not silence",
    ),
    check("ping", Must, "Methods: `ping` [] → \"pong\""),
    check(
        "switch_relays",
        Should,
        "\"the remote-signer should reply with its updated list of relays, or `null` if there is nothing to be changed\" (within 1 s)",
    ),
    check(
        "transport.author",
        Must,
        "Response events: `\"pubkey\": <remote-signer-pubkey>`, validly signed (NIP-01)",
    ),
    check(
        "transport.p_tag",
        Must,
        "\"remote-signer responds to client by `p`-tagging and encrypting to the `client-pubkey`\"",
    ),
    check(
        "transport.nip44",
        Must,
        "Response events: `\"content\": <nip44(<response>)>` for a NIP-44 request",
    ),
    check(
        "replay.once",
        Interop,
        "a request event sent twice is answered at most once (an id is a request; a replayed event is not a new one)",
    ),
    check(
        "concurrency.in_flight",
        Must,
        "\"This same ID will be sent back in the response payload.\": 10 requests in flight at once, each answered and matched by id",
    ),
    check(
        "logout.ack",
        Should,
        "\"The remote-signer should reply with \\\"ack\\\" before removing the session.\"",
    ),
    check(
        "logout.then_refused",
        Should,
        "\"the remote-signer SHOULD remove the session associated with the requesting `client-pubkey` and reject any further requests from it\"",
    ),
];

/// The check with this id.
pub fn find(id: &str) -> Option<&'static CheckInfo> {
    CHECKS.iter().find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_25_checks_with_unique_ids_and_a_spec_each() {
        assert!(CHECKS.len() >= 25, "{}", CHECKS.len());
        let mut ids: Vec<&str> = CHECKS.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CHECKS.len(), "duplicate ids");
        assert!(CHECKS.iter().all(|c| !c.spec.is_empty()));
    }

    #[test]
    fn quoted_sentences_are_in_the_spec() {
        // The spec sits beside the repository (`../shared/specs`); a
        // checkout without it has nothing to compare against.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/specs/nip-46.md"
        );
        let Ok(spec) = std::fs::read_to_string(path) else {
            eprintln!("SKIPPED: {path} not found");
            return;
        };
        for check in CHECKS {
            let Some(start) = check.spec.find('"') else {
                continue;
            };
            let Some(end) = check.spec[start + 1..].find("\"") else {
                continue;
            };
            let quoted = &check.spec[start + 1..start + 1 + end];
            if quoted.len() < 20 || quoted.contains('\\') {
                continue;
            }
            let plain = quoted.replace('`', "");
            let text = spec.replace(['`', '_'], "").replace("*", "");
            assert!(
                text.contains(&plain.replace('_', "")),
                "{}: \"{quoted}\" is not in the spec",
                check.id
            );
        }
    }
}
