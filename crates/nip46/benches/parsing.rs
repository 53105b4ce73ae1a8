//! Parsing what users and apps hand the bunker: `bunker://` and
//! `nostrconnect://` URIs and permission lists, and (for scale) the request
//! and response messages every call carries.
//!
//! Run: `cargo bench -p rampart-nip46 --bench parsing`.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::Criterion;
use nip46::{BunkerUri, NostrConnectUri, PermissionSet, Request, Response};

const BUNKER: &str = "bunker://fa984bd7dbb282f07e16e7ae87b26a2a7b9b90b7246a44771f0cf5ae58018f52?relay=wss%3A%2F%2Frelay.example.com&relay=wss%3A%2F%2Frelay2.example.org&secret=d9aa70fbe9f1bd4a0f2e84b8b7d3f6c1";

const NOSTRCONNECT: &str = "nostrconnect://83f3b2ae6aa368e8275397b9c26cf550101d63ebaab900d19dd4a4429f5ad8f5?relay=wss%3A%2F%2Frelay1.example.com&perms=nip44_encrypt%2Cnip44_decrypt%2Csign_event%3A13%2Csign_event%3A14%2Csign_event%3A1059&name=My+Client&url=https%3A%2F%2Fclient.example.com&image=https%3A%2F%2Fclient.example.com%2Ficon.png&secret=0s8j2djs&relay=wss%3A%2F%2Frelay2.example2.com";

const PERMISSIONS: &str = "get_public_key,sign_event:1,sign_event:7,sign_event:30023,nip04_encrypt,nip44_encrypt,nip44_decrypt,ping";

const REQUEST: &str = r#"{"id":"4f2a9c81d0e3b7a6","method":"sign_event","params":["{\"kind\":1,\"content\":\"a note of about the usual length, signed remotely by a NIP-46 bunker\",\"tags\":[[\"t\",\"rampart\"]],\"created_at\":1700000000}"]}"#;

const RESPONSE: &str = r#"{"id":"4f2a9c81d0e3b7a6","result":"pong"}"#;

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    criterion.bench_function("parse/bunker_uri", |b| {
        b.iter(|| black_box(black_box(BUNKER).parse::<BunkerUri>().expect("valid")))
    });
    criterion.bench_function("parse/nostrconnect_uri", |b| {
        b.iter(|| {
            black_box(
                black_box(NOSTRCONNECT)
                    .parse::<NostrConnectUri>()
                    .expect("valid"),
            )
        })
    });
    criterion.bench_function("parse/permission_list", |b| {
        b.iter(|| {
            black_box(
                black_box(PERMISSIONS)
                    .parse::<PermissionSet>()
                    .expect("valid"),
            )
        })
    });
    criterion.bench_function("parse/permission_preset", |b| {
        b.iter(|| black_box(black_box("full").parse::<PermissionSet>().expect("valid")))
    });
    let uri: BunkerUri = BUNKER.parse().expect("valid");
    criterion.bench_function("format/bunker_uri", |b| {
        b.iter(|| black_box(black_box(&uri).to_string()))
    });
    criterion.bench_function("parse/sign_event_request", |b| {
        b.iter(|| black_box(Request::parse(black_box(REQUEST)).expect("valid")))
    });
    criterion.bench_function("parse/response", |b| {
        b.iter(|| black_box(Response::parse(black_box(RESPONSE)).expect("valid")))
    });
    criterion.final_summary();
}
