//! Property tests: tokens and permission sets round-trip through text, and no
//! input makes a parser panic.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nip46::nostr::prelude::{Keys, RelayUrl, SecretKey};
use nip46::{
    BunkerUri, ConnectSecret, Conversation, EventTemplate, Method, NostrConnectUri, Permission,
    PermissionSet, Request, Response, RpcError,
};
use proptest::prelude::*;

fn pubkey() -> impl Strategy<Value = nip46::nostr::prelude::PublicKey> {
    any::<[u8; 32]>().prop_filter_map("valid secret key", |b| {
        SecretKey::from_slice(&b)
            .ok()
            .map(|sk| Keys::new(sk).public_key())
    })
}

fn relay() -> impl Strategy<Value = RelayUrl> {
    (
        "(ws|wss)",
        "[a-z][a-z0-9]{0,10}(\\.[a-z]{2,5})?",
        proptest::option::of(1u16..),
        "(/[a-z0-9]{1,6}){0,2}",
    )
        .prop_map(|(scheme, host, port, path)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            RelayUrl::parse(&format!("{scheme}://{host}{port}{path}")).unwrap()
        })
}

fn relays() -> impl Strategy<Value = Vec<RelayUrl>> {
    proptest::collection::vec(relay(), 1..5).prop_map(|mut v| {
        let mut seen = Vec::new();
        v.retain(|r| {
            let fresh = !seen.contains(r);
            seen.push(r.clone());
            fresh
        });
        v
    })
}

fn text() -> impl Strategy<Value = String> {
    // Any printable text, including the URI's own delimiters.
    "[ -~àé€🙂]{1,40}"
}

fn permission() -> impl Strategy<Value = Permission> {
    prop_oneof![
        proptest::sample::select(Method::ALL.to_vec()).prop_map(Permission::Method),
        any::<u16>().prop_map(Permission::SignEventKind),
        (
            proptest::sample::select(Method::ALL.to_vec()),
            "[a-z0-9_]{1,8}"
        )
            .prop_filter_map("sign_event params are kinds", |(method, param)| {
                (method != Method::SignEvent).then_some(Permission::Scoped { method, param })
            }),
    ]
}

fn permission_set() -> impl Strategy<Value = PermissionSet> {
    proptest::collection::vec(permission(), 0..8).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #[test]
    fn bunker_uri_round_trips(signer in pubkey(), relays in relays(), secret in proptest::option::of(text())) {
        let uri = BunkerUri { signer, relays, secret: secret.map(ConnectSecret::new) };
        let shown = uri.to_string();
        let parsed: BunkerUri = shown.parse().unwrap();
        prop_assert_eq!(parsed.to_string(), shown);
        prop_assert!(parsed == uri);
    }

    #[test]
    fn nostrconnect_uri_round_trips(
        client in pubkey(),
        relays in relays(),
        secret in text(),
        perms in proptest::option::of(permission_set()),
        name in proptest::option::of(text()),
        url in proptest::option::of(text()),
        image in proptest::option::of(text()),
    ) {
        let uri = NostrConnectUri { client, relays, secret: ConnectSecret::new(secret), perms, name, url, image };
        let shown = uri.to_string();
        let parsed: NostrConnectUri = shown.parse().unwrap();
        prop_assert_eq!(parsed.to_string(), shown);
        // An empty perms list displays as `perms=`, which reads back as an empty set.
        let perms_match = parsed.perms.clone().unwrap_or_default() == uri.perms.clone().unwrap_or_default();
        prop_assert!(perms_match);
        prop_assert!(parsed.client == uri.client && parsed.relays == uri.relays && parsed.secret == uri.secret);
        prop_assert!(parsed.name == uri.name && parsed.url == uri.url && parsed.image == uri.image);
    }

    #[test]
    fn permission_sets_round_trip(set in permission_set()) {
        let shown = set.to_string();
        prop_assert_eq!(shown.parse::<PermissionSet>().unwrap(), set);
    }

    #[test]
    fn parsers_never_panic_on_text(s in "\\PC{0,300}") {
        let _ = s.parse::<BunkerUri>();
        let _ = s.parse::<NostrConnectUri>();
        let _ = s.parse::<PermissionSet>();
        let _ = PermissionSet::parse_lenient(&s);
        let _ = Request::parse(&s);
        let _ = Response::parse(&s);
        let _ = EventTemplate::parse(&s);
        let _ = RpcError::parse(&s);
        let _ = format!("bunker://{s}").parse::<BunkerUri>();
        let _ = format!("nostrconnect://{s}").parse::<NostrConnectUri>();
    }

    #[test]
    fn parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = Request::parse(&s);
        let _ = Response::parse(&s);
        let _ = s.parse::<BunkerUri>();
        let _ = s.parse::<PermissionSet>();
    }

    #[test]
    fn structured_garbage_requests_never_panic(
        id in prop_oneof![Just("\"x\"".to_string()), Just("1".into()), Just("null".into()), "\\PC{0,10}"],
        method in prop_oneof![proptest::sample::select(Method::ALL.to_vec()).prop_map(|m| m.as_str().to_string()), "\\PC{0,12}"],
        params in proptest::collection::vec(prop_oneof![Just("\"\"".to_string()), Just("null".into()), Just("{}".into()), Just("[1]".into()), "\"[0-9a-f]{64}\"", "\"\\{[^\"]{0,30}\\}\""], 0..5),
    ) {
        let json = format!(r#"{{"id":{id},"method":"{method}","params":[{}]}}"#, params.join(","));
        let _ = Request::parse(&json);
    }

    #[test]
    fn decrypting_garbage_never_panics(content in "\\PC{0,200}", b64 in "[A-Za-z0-9+/=]{0,200}") {
        let local = Keys::new(SecretKey::from_slice(&[1; 32]).unwrap());
        let peer = Keys::new(SecretKey::from_slice(&[2; 32]).unwrap()).public_key();
        let mut conv = Conversation::new(&local, peer).unwrap();
        let _ = conv.decrypt(&local, &content);
        let _ = conv.decrypt(&local, &b64);
        let _ = conv.decrypt(&local, &format!("{b64}?iv={b64}"));
    }
}
