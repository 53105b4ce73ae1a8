//! Spec examples and edge cases from `tests/vectors/*.json`, run against the parsers.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use nip46::{
    BunkerUri, Command, Method, NostrConnectUri, PermissionError, PermissionSet, Request,
    RequestError, UriError,
};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name);
    serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn request_vectors() {
    let cases = load("requests.json");
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let json = case["json"].as_str().unwrap();
        let result = Request::parse(json);
        match case["expect"].as_str().unwrap() {
            "ok" => {
                let req = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let method: Method = case["method"].as_str().unwrap().parse().unwrap();
                assert_eq!(req.command.method(), Some(method), "{name}");
                if let Some(kind) = case["kind"].as_u64() {
                    assert_eq!(req.command.kind(), Some(kind as u16), "{name}");
                }
            }
            "invalid_params" => {
                assert!(
                    matches!(result, Err(RequestError::InvalidParams { .. })),
                    "{name}: {result:?}"
                )
            }
            "unknown" => {
                let req = result.unwrap();
                assert!(matches!(req.command, Command::Unknown { .. }), "{name}");
            }
            "malformed" => assert!(matches!(result, Err(RequestError::Malformed(_))), "{name}"),
            other => panic!("unknown expectation {other}"),
        }
    }
}

fn relays_of(relays: &[nip46::nostr::prelude::RelayUrl]) -> Vec<String> {
    relays.iter().map(|r| r.as_str().to_owned()).collect()
}

#[test]
fn uri_vectors() {
    let cases = load("uris.json");
    for case in cases["valid"].as_array().unwrap() {
        let text = case["uri"].as_str().unwrap();
        let relays: Vec<String> = serde_json::from_value(case["relays"].clone()).unwrap();
        match case["kind"].as_str().unwrap() {
            "bunker" => {
                let uri: BunkerUri = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(relays_of(&uri.relays), relays);
                assert_eq!(
                    uri.secret.as_ref().map(|s| s.expose()),
                    case["secret"].as_str()
                );
                assert_eq!(uri.to_string().parse::<BunkerUri>().unwrap(), uri);
            }
            _ => {
                let uri: NostrConnectUri = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(relays_of(&uri.relays), relays);
                assert_eq!(Some(uri.secret.expose()), case["secret"].as_str());
                if let Some(perms) = case["perms"].as_str() {
                    assert_eq!(uri.perms.as_ref().unwrap().to_string(), perms);
                }
                if let Some(name) = case["name"].as_str() {
                    assert_eq!(uri.name.as_deref(), Some(name));
                }
                if let Some(url) = case["url"].as_str() {
                    assert_eq!(uri.url.as_deref(), Some(url));
                }
                assert_eq!(uri.to_string().parse::<NostrConnectUri>().unwrap(), uri);
            }
        }
    }
    for case in cases["invalid"].as_array().unwrap() {
        let text = case["uri"].as_str().unwrap();
        let err: UriError = match case["kind"].as_str().unwrap() {
            "bunker" => text.parse::<BunkerUri>().unwrap_err(),
            _ => text.parse::<NostrConnectUri>().unwrap_err(),
        };
        let variant = format!("{err:?}");
        let expected = case["error"].as_str().unwrap();
        assert!(
            variant.starts_with(expected),
            "{text}: got {variant}, expected {expected}"
        );
    }
}

#[test]
fn permission_vectors() {
    let cases = load("permissions.json");
    let call = |v: &Value| -> (Method, Option<u16>) {
        (
            v[0].as_str().unwrap().parse().unwrap(),
            v[1].as_u64().map(|k| k as u16),
        )
    };
    for case in cases["valid"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let set: PermissionSet = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        let display = set.to_string();
        let mut shown: Vec<&str> = display.split(',').filter(|s| !s.is_empty()).collect();
        let mut expected: Vec<&str> = case["display"]
            .as_str()
            .unwrap()
            .split(',')
            .filter(|s| !s.is_empty())
            .collect();
        shown.sort_unstable();
        expected.sort_unstable();
        assert_eq!(shown, expected, "{text}");
        for c in case["allows"].as_array().unwrap() {
            let (m, k) = call(c);
            assert!(set.allows(m, k), "{text} should allow {c}");
        }
        for c in case["denies"].as_array().unwrap() {
            let (m, k) = call(c);
            assert!(!set.allows(m, k), "{text} should deny {c}");
        }
        assert_eq!(display.parse::<PermissionSet>().unwrap(), set);
    }
    for case in cases["invalid"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let err: PermissionError = text.parse::<PermissionSet>().unwrap_err();
        assert!(
            format!("{err:?}").starts_with(case["error"].as_str().unwrap()),
            "{text}: {err:?}"
        );
    }
}
