//! The suite against a scripted signer on the embedded relay: faultless it
//! passes every check; with faults it reports exactly the checks those
//! faults break — so a check that cannot fail, or fails for the wrong
//! reason, shows up here.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use conformance::{Report, SuiteConfig, Verdict};
use relay::server::{self, ServerConfig};
use testkit::{Faults, ScriptedSigner};

/// The embedded relay refuses a repeated event as a duplicate, so the
/// replay check cannot reach the signer there (it says so, as a skip).
fn relay_kept_the_replay(c: &conformance::CheckResult) -> bool {
    c.id == "replay.once" && c.result == Verdict::Skip && c.detail.contains("as a duplicate")
}

async fn suite(uris: &[String]) -> Report {
    let config = SuiteConfig {
        uris: uris.iter().map(|u| u.parse().unwrap()).collect(),
        timeout: Duration::from_secs(2),
    };
    conformance::run(config, &mut |_| {}).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_faultless_signer_passes_every_check() {
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let signer = ScriptedSigner::start(&relay.url(), 5, Faults::default()).await;
    let report = suite(&signer.uris).await;
    let not_passed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.result != Verdict::Pass && !relay_kept_the_replay(c))
        .map(|c| format!("{} {:?}: {}", c.id, c.result, c.detail))
        .collect();
    assert!(not_passed.is_empty(), "{not_passed:#?}");
    assert!(report.conforms());
    assert!(report.latency.as_ref().is_some_and(|l| l.samples == 20));
    signer.stop();
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_fault_fails_exactly_its_checks() {
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let faults = Faults {
        silent_on_unknown_methods: true,
        reusable_secrets: true,
        unsigned_events: true,
        untagged_answers: true,
        echoes_secret: true,
        answers_nip04_in_nip44: true,
        ..Faults::default()
    };
    let signer = ScriptedSigner::start(&relay.url(), 5, faults).await;
    let report = suite(&signer.uris).await;
    let mut failed = report.failed();
    failed.sort_unstable();
    assert_eq!(
        failed,
        [
            "connect.ack",
            "connect.spent_secret",
            "method.unknown",
            "sign_event.spec_template",
            "sign_event.with_pubkey",
            "sign_event.without_created_at",
            "transport.nip04_request",
            "transport.p_tag",
        ],
        "{}",
        report.to_table()
    );
    assert!(
        report.with(Verdict::Skip).is_empty(),
        "{}",
        report.to_table()
    );
    assert!(
        !report.conforms(),
        "method.unknown and transport.p_tag are MUSTs"
    );
    let detail = &report.result("connect.ack").unwrap().detail;
    assert!(detail.contains("echoed the secret"), "{detail}");
    signer.stop();
    relay.shutdown().await;
}

/// Faults on the session's edges: who is served, and until when.
#[tokio::test(flavor = "multi_thread")]
async fn session_faults_fail_exactly_their_checks() {
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let faults = Faults {
        serves_strangers: true,
        refuses_empty_first_param: true,
        ..Faults::default()
    };
    let signer = ScriptedSigner::start(&relay.url(), 5, faults).await;
    let report = suite(&signer.uris).await;
    let mut failed = report.failed();
    failed.sort_unstable();
    // Serving strangers also serves the client that tried the spent
    // secret, and the one that logged out.
    assert_eq!(
        failed,
        [
            "connect.empty_first_param",
            "connect.spent_secret",
            "logout.then_refused",
            "session.strangers_get_nothing",
        ],
        "{}",
        report.to_table()
    );
    signer.stop();

    let faults = Faults {
        keeps_session_after_logout: true,
        ..Faults::default()
    };
    let signer = ScriptedSigner::start(&relay.url(), 5, faults).await;
    let report = suite(&signer.uris).await;
    assert_eq!(
        report.failed(),
        ["logout.then_refused"],
        "{}",
        report.to_table()
    );
    signer.stop();
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_token_skips_the_checks_that_need_fresh_secrets_saying_why() {
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let signer = ScriptedSigner::start(&relay.url(), 1, Faults::default()).await;
    let report = suite(&signer.uris[..1]).await;
    let mut skipped: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.result == Verdict::Skip && !relay_kept_the_replay(c))
        .map(|c| c.id)
        .collect();
    skipped.sort_unstable();
    assert_eq!(
        skipped,
        [
            "connect.client_metadata",
            "connect.empty_first_param",
            "connect.metadata_empty_perms",
            "connect.requested_perms",
        ]
    );
    for id in skipped {
        let detail = &report.result(id).unwrap().detail;
        assert!(detail.contains("fresh single-use secret"), "{id}: {detail}");
    }
    assert!(report.failed().is_empty(), "{}", report.to_table());
    // The JSON form carries exactly the three results.
    let json = report.to_json();
    for check in json["checks"].as_array().unwrap() {
        let result = check["result"].as_str().unwrap();
        assert!(["pass", "fail", "skip"].contains(&result), "{check}");
        for key in ["id", "level", "spec", "detail"] {
            assert!(check.get(key).is_some(), "{key} missing in {check}");
        }
    }
    signer.stop();
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signer_that_is_not_there_fails_connect_and_lists_every_check() {
    let relay = server::spawn(ServerConfig::default()).await.unwrap();
    let nobody = nip46::nostr::prelude::Keys::generate()
        .public_key()
        .to_hex();
    let uri = format!(
        "bunker://{nobody}?relay={}&secret=s",
        relay.url().replace(':', "%3A").replace('/', "%2F")
    );
    let report = suite(&[uri]).await;
    assert_eq!(report.checks.len(), conformance::CHECKS.len());
    assert_eq!(
        report.result("connect.secret").unwrap().result,
        Verdict::Fail
    );
    assert_eq!(
        report
            .result("session.strangers_get_nothing")
            .unwrap()
            .result,
        Verdict::Pass,
        "silence is a refusal"
    );
    let ping = report.result("ping").unwrap();
    assert_eq!(ping.result, Verdict::Skip);
    assert!(ping.detail.starts_with("connect failed"), "{}", ping.detail);
    assert!(!report.conforms());
    relay.shutdown().await;
}

/// A flood addressed to a probe is kept up to its bound, the rest counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_at_a_probe_is_bounded() {
    use conformance::probe::{MAX_RECEIVED, Probe};
    use nip46::nostr::prelude::{Keys, Kind, Tag, Timestamp, UnsignedEvent};

    let relay = server::spawn(ServerConfig {
        events_per_second: 1_000_000,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let url = nip46::nostr::prelude::RelayUrl::parse(&relay.url()).unwrap();
    let signer = Keys::generate().public_key();
    let mut probe = Probe::new(signer, std::slice::from_ref(&url))
        .await
        .unwrap();
    let flooder = Keys::generate();
    let (pool, _events) = relay::RelayPool::new(relay::PoolConfig::default());
    pool.add_relay(&relay.url()).unwrap();
    let total = MAX_RECEIVED + 500;
    for batch in 0..total.div_ceil(250) {
        for i in 0..250 {
            let unsigned = UnsignedEvent::new(
                flooder.public_key(),
                Timestamp::now(),
                Kind::NostrConnect,
                [Tag::public_key(probe.pubkey())],
                format!("flood {batch}-{i}"),
            );
            let event = nip46::envelope::sign(&flooder, unsigned, &[7; 32]).unwrap();
            let _ = pool.publish(&event);
        }
        probe.settle(Duration::from_millis(200)).await;
    }
    probe.settle(Duration::from_secs(2)).await;
    assert_eq!(probe.received.len(), MAX_RECEIVED);
    assert!(probe.overflow > 0, "nothing past the bound was counted");
    pool.shutdown().await;
    relay.shutdown().await;
}
