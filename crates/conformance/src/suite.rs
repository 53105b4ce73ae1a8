//! The run: every check of the [catalogue](crate::catalogue), against one
//! signer, in an order that keeps them independent.
//!
//! 1. strangers (fresh keys that never connected) ask for a signature, an
//!    encryption and a decryption;
//! 2. the first token's secret opens the main session, where every method
//!    is exercised, then replay, concurrency and latency;
//! 3. the further tokens (fresh single-use secrets) try each `connect`
//!    variant, and a fresh key tries the first, now spent, secret;
//! 4. `logout` ends the main session, which is then tried again;
//! 5. every answer received on the way is judged for the transport checks.
//!
//! The suite never branches on which signer it is testing. Silence counts
//! as a refusal where the spec allows one; a check that could not run says
//! why (`skip`), and every check is always listed.

use std::collections::BTreeMap;
use std::time::Duration;

use nip46::nostr::nips::{nip04, nip44};
use nip46::nostr::prelude::{Event, Keys, PublicKey, RelayUrl, Timestamp};
use nip46::{BunkerUri, Outcome, Scheme, parse_relay_list};
use serde_json::json;

use crate::catalogue::{CHECKS, find};
use crate::probe::{Answer, Probe, ProbeError, Received, Sent};
use crate::report::{CheckResult, Latency, Report, Verdict};

/// What to test.
pub struct SuiteConfig {
    /// Tokens of one signer: the first opens the main session, the others
    /// (fresh single-use secrets) serve the `connect` variants.
    pub uris: Vec<BunkerUri>,
    /// How long each check waits for an answer.
    pub timeout: Duration,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// No token given.
    #[error("give at least one bunker:// URI")]
    NoUri,
    /// The tokens name different signers.
    #[error(
        "the URIs name different signers ({0} and {1}); every --uri must be a token of the same signer"
    )]
    MixedSigners(String, String),
    /// The first token names no relay.
    #[error("the first URI names no relay to reach the signer on")]
    NoRelays,
}

/// `switch_relays` must be answered within this (or the timeout, if shorter).
const SWITCH_RELAYS_WITHIN: Duration = Duration::from_secs(1);

/// How long after `logout`'s ack the session may still stand.
const LOGOUT_GRACE: Duration = Duration::from_secs(1);

/// Pings timed for the latency report.
const LATENCY_SAMPLES: usize = 20;

/// Requests sent at once for the concurrency check.
const IN_FLIGHT: usize = 10;

/// `connect` params from the signer pubkey and a secret.
type ConnectParams = fn(&str, &str) -> serde_json::Value;

/// Client metadata sent in `connect` (the 4th param).
const METADATA: &str =
    r#"{"name":"Rampart conformance suite","url":"https://conformance.invalid"}"#;

/// Run every check against the signer of `config.uris`; `progress` hears
/// each result as it is decided.
pub async fn run(
    config: SuiteConfig,
    progress: &mut (dyn FnMut(&CheckResult) + Send),
) -> Result<Report, SuiteError> {
    let first = config.uris.first().ok_or(SuiteError::NoUri)?;
    let signer = first.signer;
    if let Some(other) = config.uris.iter().find(|u| u.signer != signer) {
        return Err(SuiteError::MixedSigners(
            signer.to_hex(),
            other.signer.to_hex(),
        ));
    }
    if first.relays.is_empty() {
        return Err(SuiteError::NoRelays);
    }
    let mut run = Run {
        signer,
        relays: first.relays.clone(),
        timeout: config.timeout,
        results: BTreeMap::new(),
        received: Vec::new(),
        nip44_answers: Vec::new(),
        latency: None,
        progress,
    };
    run.all(&config.uris).await;
    Ok(run.report())
}

/// A run in progress.
struct Run<'a> {
    signer: PublicKey,
    relays: Vec<RelayUrl>,
    timeout: Duration,
    results: BTreeMap<&'static str, (Verdict, String)>,
    /// Everything the probes received, for the transport checks.
    received: Vec<Received>,
    /// The scheme of every answer to a NIP-44 request.
    nip44_answers: Vec<(String, Scheme)>,
    latency: Option<Latency>,
    progress: &'a mut (dyn FnMut(&CheckResult) + Send),
}

/// The main session, once open.
struct Session {
    probe: Probe,
    user: Option<PublicKey>,
}

impl Run<'_> {
    async fn all(&mut self, uris: &[BunkerUri]) {
        self.strangers().await;
        let session = self.main_connect(&uris[0]).await;
        let latency = match session {
            Some(mut session) => {
                let latency = self.session_checks(&mut session).await;
                self.fresh_connects(uris).await;
                self.logout(&mut session).await;
                self.keep(session.probe).await;
                latency
            }
            None => {
                self.fresh_connects(uris).await;
                None
            }
        };
        self.transport();
        self.latency = latency;
    }

    fn record(&mut self, id: &'static str, verdict: Verdict, detail: impl Into<String>) {
        if self.results.contains_key(id) {
            return;
        }
        let detail = detail.into();
        if let Some(info) = find(id) {
            (self.progress)(&CheckResult {
                id,
                level: info.level,
                spec: info.spec,
                result: verdict,
                detail: detail.clone(),
            });
        }
        self.results.insert(id, (verdict, detail));
    }

    fn pass(&mut self, id: &'static str, detail: impl Into<String>) {
        self.record(id, Verdict::Pass, detail);
    }

    fn fail(&mut self, id: &'static str, detail: impl Into<String>) {
        self.record(id, Verdict::Fail, detail);
    }

    fn skip(&mut self, id: &'static str, detail: impl Into<String>) {
        self.record(id, Verdict::Skip, detail);
    }

    fn report(self) -> Report {
        let mut results = self.results;
        let checks = CHECKS
            .iter()
            .map(|info| {
                let (result, detail) = results
                    .remove(info.id)
                    .unwrap_or((Verdict::Skip, "not reached".to_owned()));
                CheckResult {
                    id: info.id,
                    level: info.level,
                    spec: info.spec,
                    result,
                    detail,
                }
            })
            .collect();
        Report {
            signer: self.signer.to_hex(),
            relays: self.relays.iter().map(ToString::to_string).collect(),
            checks,
            latency: self.latency,
        }
    }

    async fn probe(&self) -> Result<Probe, ProbeError> {
        Probe::new(self.signer, &self.relays).await
    }

    /// Keep what a probe received for the transport checks, and close it.
    async fn keep(&mut self, probe: Probe) {
        let received = probe.close().await;
        self.received.extend(received);
    }

    fn note_scheme(&mut self, sent: &Sent, answer: &Answer, scheme: Scheme) {
        if scheme == Scheme::Nip44 {
            self.nip44_answers.push((sent.id.clone(), answer.scheme));
        }
    }

    /// Call and wait on `probe`, noting the answer's scheme.
    async fn call(
        &mut self,
        probe: &mut Probe,
        method: &str,
        params: serde_json::Value,
        timeout: Duration,
    ) -> Result<(Sent, Option<Answer>), ProbeError> {
        let (sent, answer) = probe.call(method, params, timeout).await?;
        if let Some(a) = &answer {
            self.note_scheme(&sent, a, Scheme::Nip44);
        }
        Ok((sent, answer))
    }

    // -----------------------------------------------------------------
    // 1. Strangers

    async fn strangers(&mut self) {
        let id = "session.strangers_get_nothing";
        let third = Keys::generate();
        let ciphertext = nip44::encrypt(
            third.secret_key(),
            &Keys::generate().public_key(),
            "for nobody",
            nip44::Version::V2,
        )
        .unwrap_or_default();
        let asks = [
            ("sign_event", json!([template(true, None).to_string()])),
            (
                "nip44_encrypt",
                json!([third.public_key().to_hex(), "secret"]),
            ),
            (
                "nip44_decrypt",
                json!([third.public_key().to_hex(), ciphertext]),
            ),
        ];
        let mut probes = Vec::new();
        for (method, params) in asks {
            // A fresh key for each: a signer may answer a stranger once and
            // then ignore it.
            let mut probe = match self.probe().await {
                Ok(p) => p,
                Err(e) => return self.fail(id, format!("could not set up a client: {e}")),
            };
            let request_id = probe.next_id(method);
            match probe.request(&request_id, method, params) {
                Ok(sent) => probes.push((method, probe, sent)),
                Err(e) => return self.fail(id, e.to_string()),
            }
        }
        let timeout = self.timeout;
        // Waited for together: silence costs one timeout, not three.
        let waits: Vec<_> = probes
            .into_iter()
            .map(|(method, mut probe, sent)| {
                tokio::spawn(async move {
                    let answer = probe.answer(&sent, timeout).await;
                    (method, probe, answer)
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for wait in waits {
            match wait.await {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => return self.fail(id, format!("a probe stopped: {e}")),
            }
        }
        let mut served = Vec::new();
        let mut seen = Vec::new();
        for (method, probe, answer) in outcomes {
            match &answer {
                Some(a) if matches!(a.response.outcome, Outcome::Result(_)) => {
                    served.push(format!("{method} → {}", outcome_text(a)));
                }
                Some(a) => seen.push(format!("{method} → {}", outcome_text(a))),
                None => seen.push(format!("{method} → silence within {}", secs(timeout))),
            }
            self.keep(probe).await;
        }
        if served.is_empty() {
            self.pass(id, seen.join("; "));
        } else {
            self.fail(
                id,
                format!(
                    "a client that never connected was served: {}",
                    served.join("; ")
                ),
            );
        }
    }

    // -----------------------------------------------------------------
    // 2. The main session

    async fn main_connect(&mut self, uri: &BunkerUri) -> Option<Session> {
        let mut probe = match self.probe().await {
            Ok(p) => p,
            Err(e) => {
                let why = format!("could not reach the relays: {e}");
                self.fail("connect.secret", why.clone());
                self.skip_session(&why);
                return None;
            }
        };
        let secret = uri.secret.as_ref().map(|s| s.expose().to_owned());
        let params = match &secret {
            Some(s) => json!([self.signer.to_hex(), s]),
            None => json!([self.signer.to_hex()]),
        };
        let timeout = self.timeout;
        let (sent, answer) = match self.call(&mut probe, "connect", params, timeout).await {
            Ok(x) => x,
            Err(e) => {
                self.fail("connect.secret", e.to_string());
                self.skip_session("connect failed");
                return None;
            }
        };
        let evidence = evidence(&sent, answer.as_ref(), timeout);
        let accepted = |r: &String| r == "ack" || secret.as_deref() == Some(r.as_str());
        match answer.as_ref().map(|a| &a.response.outcome) {
            Some(Outcome::Result(result)) if accepted(result) => {
                self.pass("connect.secret", evidence.clone());
                if result == "ack" {
                    self.pass("connect.ack", evidence);
                } else if secret.as_deref() == Some(result.as_str()) {
                    self.fail(
                        "connect.ack",
                        format!("echoed the secret instead of \"ack\": {evidence}"),
                    );
                } else {
                    self.fail("connect.ack", evidence);
                }
                Some(Session { probe, user: None })
            }
            _ => {
                self.fail("connect.secret", evidence.clone());
                self.skip("connect.ack", "connect failed");
                self.skip_session(&format!("connect failed: {evidence}"));
                self.keep(probe).await;
                None
            }
        }
    }

    /// Every check that needs the main session, skipped.
    fn skip_session(&mut self, why: &str) {
        for id in [
            "connect.ack",
            "get_public_key",
            "sign_event.spec_template",
            "sign_event.with_pubkey",
            "sign_event.without_created_at",
            "nip44_encrypt",
            "nip44_decrypt",
            "nip04_encrypt",
            "nip04_decrypt",
            "transport.nip04_request",
            "method.unknown",
            "params.malformed",
            "ping",
            "switch_relays",
            "replay.once",
            "concurrency.in_flight",
            "logout.ack",
            "logout.then_refused",
            "connect.spent_secret",
        ] {
            self.skip(id, why.to_owned());
        }
    }

    async fn session_checks(&mut self, session: &mut Session) -> Option<Latency> {
        // A failure to seal or publish is the machine's, not the signer's:
        // the rest of the session is skipped with the reason.
        if let Err(e) = self.session_checks_inner(session).await {
            self.skip_session(&format!("the suite could not send: {e}"));
        }
        self.latency(session).await.ok().flatten()
    }

    async fn session_checks_inner(&mut self, session: &mut Session) -> Result<(), ProbeError> {
        let t = self.timeout;
        let probe = &mut session.probe;

        let (sent, answer) = self.call(probe, "get_public_key", json!([]), t).await?;
        let ev = evidence(&sent, answer.as_ref(), t);
        match result_of(answer.as_ref())
            .and_then(|r| PublicKey::from_hex(r).ok().filter(|_| r.len() == 64))
        {
            Some(user) => {
                session.user = Some(user);
                self.pass("get_public_key", ev);
            }
            None => self.fail("get_public_key", ev),
        }
        let user = session.user;

        // sign_event, three template shapes.
        for (id, with_pubkey, with_time) in [
            ("sign_event.spec_template", false, true),
            ("sign_event.with_pubkey", true, true),
            ("sign_event.without_created_at", false, false),
        ] {
            if with_pubkey && user.is_none() {
                self.skip(
                    id,
                    "get_public_key gave no user pubkey to put in the template",
                );
                continue;
            }
            let now = Timestamp::now();
            let asked = template(with_time, with_pubkey.then_some(user).flatten());
            let (sent, answer) = self
                .call(probe, "sign_event", json!([asked.to_string()]), t)
                .await?;
            let ev = evidence(&sent, answer.as_ref(), t);
            match check_signed(result_of(answer.as_ref()), &asked, user, now) {
                Ok(()) => self.pass(id, ev),
                Err(why) => self.fail(id, format!("{why}; {ev}")),
            }
        }

        // Encryption with a third party, checked with the nostr crate.
        let third = Keys::generate();
        let peer = third.public_key().to_hex();
        match user {
            None => {
                for id in [
                    "nip44_encrypt",
                    "nip44_decrypt",
                    "nip04_encrypt",
                    "nip04_decrypt",
                ] {
                    self.skip(
                        id,
                        "no user pubkey (get_public_key failed) to check the ciphertext with",
                    );
                }
            }
            Some(user) => {
                let plaintext = "conformance: a private message ✓";
                let (sent, answer) = self
                    .call(probe, "nip44_encrypt", json!([peer, plaintext]), t)
                    .await?;
                let ev = evidence(&sent, answer.as_ref(), t);
                let opened = result_of(answer.as_ref())
                    .and_then(|ct| nip44::decrypt(third.secret_key(), &user, ct).ok());
                self.judge("nip44_encrypt", opened.as_deref() == Some(plaintext), ev);

                let ct = nip44::encrypt(third.secret_key(), &user, plaintext, nip44::Version::V2)
                    .unwrap_or_default();
                let (sent, answer) = self
                    .call(probe, "nip44_decrypt", json!([peer, ct]), t)
                    .await?;
                let ev = evidence(&sent, answer.as_ref(), t);
                self.judge(
                    "nip44_decrypt",
                    result_of(answer.as_ref()) == Some(plaintext),
                    ev,
                );

                let (sent, answer) = self
                    .call(probe, "nip04_encrypt", json!([peer, plaintext]), t)
                    .await?;
                let ev = evidence(&sent, answer.as_ref(), t);
                let opened = result_of(answer.as_ref())
                    .and_then(|ct| nip04::decrypt(third.secret_key(), &user, ct).ok());
                self.judge("nip04_encrypt", opened.as_deref() == Some(plaintext), ev);

                let ct = nip04::encrypt(third.secret_key(), &user, plaintext).unwrap_or_default();
                let (sent, answer) = self
                    .call(probe, "nip04_decrypt", json!([peer, ct]), t)
                    .await?;
                let ev = evidence(&sent, answer.as_ref(), t);
                self.judge(
                    "nip04_decrypt",
                    result_of(answer.as_ref()) == Some(plaintext),
                    ev,
                );
            }
        }

        // A NIP-04-encrypted request.
        let id = probe.next_id("ping04");
        let sent = probe.request_with(&id, "ping", json!([]), Scheme::Nip04)?;
        let answer = probe.answer(&sent, t).await;
        let ev = evidence(&sent, answer.as_ref(), t);
        let in_kind = answer.as_ref().is_some_and(|a| a.scheme == Scheme::Nip04);
        let pong = result_of(answer.as_ref()) == Some("pong");
        match (pong, in_kind) {
            (true, true) => self.pass("transport.nip04_request", ev),
            (true, false) => self.fail(
                "transport.nip04_request",
                format!("answered in NIP-44, not NIP-04; {ev}"),
            ),
            _ => self.fail("transport.nip04_request", ev),
        }

        let (sent, answer) = self
            .call(probe, "conformance_no_such_method", json!([]), t)
            .await?;
        let ev = evidence(&sent, answer.as_ref(), t);
        self.judge("method.unknown", is_error(answer.as_ref()), ev);

        let (sent, answer) = self
            .call(probe, "sign_event", json!(["{not json"]), t)
            .await?;
        let ev = evidence(&sent, answer.as_ref(), t);
        self.judge("params.malformed", is_error(answer.as_ref()), ev);

        let (sent, answer) = self.call(probe, "ping", json!([]), t).await?;
        let ev = evidence(&sent, answer.as_ref(), t);
        self.judge("ping", result_of(answer.as_ref()) == Some("pong"), ev);

        let within = SWITCH_RELAYS_WITHIN.min(t);
        let (sent, answer) = self.call(probe, "switch_relays", json!([]), within).await?;
        let ev = evidence(&sent, answer.as_ref(), within);
        let listed = result_of(answer.as_ref())
            .is_some_and(|r| r == "null" || parse_relay_list(r).is_some());
        self.judge("switch_relays", listed, ev);

        self.replay(probe).await?;
        self.in_flight(probe, user).await?;
        Ok(())
    }

    fn judge(&mut self, id: &'static str, ok: bool, evidence: String) {
        if ok {
            self.pass(id, evidence);
        } else {
            self.fail(id, evidence);
        }
    }

    async fn replay(&mut self, probe: &mut Probe) -> Result<(), ProbeError> {
        let id = probe.next_id("replay");
        let sent = probe.request(&id, "ping", json!([]))?;
        let first = probe.answer(&sent, self.timeout).await;
        if first.is_none() {
            self.fail(
                "replay.once",
                format!(
                    "the original was not answered within {}",
                    secs(self.timeout)
                ),
            );
            return Ok(());
        }
        // The same event, byte for byte (a relay may refuse the copy as a
        // duplicate: then the signer never sees it, which is also once).
        probe.publish(&sent.event);
        let wait = self.timeout.min(Duration::from_secs(2));
        probe.settle(wait).await;
        let again = probe.answers(&sent, Duration::ZERO).await;
        let relay_refused = probe
            .refused
            .iter()
            .any(|(id, why)| *id == sent.event.id && why.starts_with("duplicate"));
        if again.is_empty() && relay_refused {
            self.skip(
                "replay.once",
                format!(
                    "the relay refused the copy of {} as a duplicate, so the signer never saw it; run on a relay that forwards repeated ephemeral events",
                    short(&sent.event)
                ),
            );
        } else if again.is_empty() {
            self.pass(
                "replay.once",
                format!("event {} re-sent; answered once (a relay that already has an event may not forward the copy: then the relay kept it from the signer)", short(&sent.event)),
            );
        } else {
            self.fail(
                "replay.once",
                format!(
                    "event {} re-sent; answered {} times",
                    short(&sent.event),
                    1 + again.len()
                ),
            );
        }
        Ok(())
    }

    async fn in_flight(
        &mut self,
        probe: &mut Probe,
        user: Option<PublicKey>,
    ) -> Result<(), ProbeError> {
        let mut sent = Vec::new();
        for i in 0..IN_FLIGHT {
            let method = if i % 2 == 0 { "ping" } else { "get_public_key" };
            let id = probe.next_id("inflight");
            sent.push((method, probe.request(&id, method, json!([]))?));
        }
        let mut wrong = Vec::new();
        let mut slowest = Duration::ZERO;
        for (method, s) in &sent {
            let answer = probe.answer(s, self.timeout).await;
            if let Some(a) = &answer {
                slowest = slowest.max(a.elapsed);
                self.note_scheme(s, a, Scheme::Nip44);
            }
            let ok = match (*method, result_of(answer.as_ref())) {
                ("ping", Some("pong")) => true,
                ("get_public_key", Some(r)) => user.is_none_or(|u| u.to_hex() == r),
                _ => false,
            };
            if !ok {
                wrong.push(format!(
                    "{} ({method}): {}",
                    s.id,
                    answer.as_ref().map_or("no answer".into(), outcome_text)
                ));
            }
        }
        if wrong.is_empty() {
            self.pass(
                "concurrency.in_flight",
                format!(
                    "{IN_FLIGHT} sent at once, each answered by id; slowest {} ms",
                    slowest.as_millis()
                ),
            );
        } else {
            self.fail("concurrency.in_flight", wrong.join("; "));
        }
        Ok(())
    }

    async fn latency(&mut self, session: &mut Session) -> Result<Option<Latency>, ProbeError> {
        let mut times = Vec::new();
        for _ in 0..LATENCY_SAMPLES {
            let (_, answer) = self
                .call(&mut session.probe, "ping", json!([]), self.timeout)
                .await?;
            if let Some(a) = answer.filter(|a| matches!(a.response.outcome, Outcome::Result(_))) {
                times.push(a.elapsed.as_secs_f64() * 1000.0);
            }
        }
        if times.is_empty() {
            return Ok(None);
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        Ok(Some(Latency {
            samples: times.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
        }))
    }

    // -----------------------------------------------------------------
    // 3. Fresh secrets

    async fn fresh_connects(&mut self, uris: &[BunkerUri]) {
        let signer = self.signer.to_hex();
        let variants: [(&'static str, ConnectParams); 4] = [
            ("connect.empty_first_param", |_, s| json!(["", s])),
            ("connect.requested_perms", |pk, s| {
                json!([pk, s, "sign_event:1,nip44_encrypt"])
            }),
            ("connect.client_metadata", |pk, s| {
                json!([pk, s, "sign_event:1", METADATA])
            }),
            ("connect.metadata_empty_perms", |pk, s| {
                json!([pk, s, "", METADATA])
            }),
        ];
        let reusable = uris[0].secret.is_none();
        for (i, (id, params)) in variants.into_iter().enumerate() {
            // Tokens without a secret can be used again; single-use ones not.
            let uri = if reusable {
                uris.first()
            } else {
                uris.get(i + 1)
            };
            let Some(uri) = uri else {
                self.skip(id, format!("needs a fresh single-use secret: pass {} more --uri (tokens of this signer)", 5 - uris.len()));
                continue;
            };
            let secret = uri
                .secret
                .as_ref()
                .map(|s| s.expose().to_owned())
                .unwrap_or_default();
            self.one_connect(id, params(&signer, &secret)).await;
        }
        self.spent_secret(&uris[0]).await;
    }

    async fn one_connect(&mut self, id: &'static str, params: serde_json::Value) {
        let secret = params[1].as_str().unwrap_or_default().to_owned();
        let mut probe = match self.probe().await {
            Ok(p) => p,
            Err(e) => return self.fail(id, format!("could not set up a client: {e}")),
        };
        let timeout = self.timeout;
        match self.call(&mut probe, "connect", params, timeout).await {
            Ok((sent, answer)) => {
                let ev = evidence(&sent, answer.as_ref(), timeout);
                // "ack", or the secret some signers echo (connect.ack judges that).
                let result = result_of(answer.as_ref());
                let accepted = result == Some("ack")
                    || (!secret.is_empty() && result == Some(secret.as_str()));
                self.judge(id, accepted, ev);
            }
            Err(e) => self.fail(id, e.to_string()),
        }
        self.keep(probe).await;
    }

    async fn spent_secret(&mut self, uri: &BunkerUri) {
        let id = "connect.spent_secret";
        if self.results.get("connect.secret").map(|r| r.0) != Some(Verdict::Pass) {
            return self.skip(
                id,
                "the first connect failed, so its secret was never spent",
            );
        }
        let Some(secret) = uri.secret.as_ref().map(|s| s.expose().to_owned()) else {
            return self.skip(id, "the first token has no secret");
        };
        let mut probe = match self.probe().await {
            Ok(p) => p,
            Err(e) => return self.fail(id, format!("could not set up a client: {e}")),
        };
        let t = self.timeout;
        let outcome = async {
            let (sent, answer) = self
                .call(
                    &mut probe,
                    "connect",
                    json!([self.signer.to_hex(), secret]),
                    t,
                )
                .await?;
            let connected = result_of(answer.as_ref()).is_some();
            let ev = evidence(&sent, answer.as_ref(), t);
            let (sent2, answer2) = self
                .call(
                    &mut probe,
                    "sign_event",
                    json!([template(true, None).to_string()]),
                    t,
                )
                .await?;
            let signed = result_of(answer2.as_ref()).is_some();
            let ev2 = evidence(&sent2, answer2.as_ref(), t);
            Ok::<_, ProbeError>((connected, signed, format!("{ev}; then {ev2}")))
        }
        .await;
        match outcome {
            Ok((false, false, ev)) => self.pass(id, ev),
            Ok((_, _, ev)) => self.fail(
                id,
                format!("a second client got in with the spent secret: {ev}"),
            ),
            Err(e) => self.fail(id, e.to_string()),
        }
        self.keep(probe).await;
    }

    // -----------------------------------------------------------------
    // 4. Logout

    async fn logout(&mut self, session: &mut Session) {
        let t = self.timeout;
        let probe = &mut session.probe;
        let outcome = async {
            let (sent, answer) = self.call(probe, "logout", json!([]), t).await?;
            let ack = result_of(answer.as_ref()) == Some("ack");
            let ev = evidence(&sent, answer.as_ref(), t);
            Ok::<_, ProbeError>((ack, ev))
        }
        .await;
        let (ack, ev) = match outcome {
            Ok(x) => x,
            Err(e) => {
                self.fail("logout.ack", e.to_string());
                return self.skip("logout.then_refused", "logout could not be sent");
            }
        };
        self.judge("logout.ack", ack, ev);
        if !ack {
            return self.skip(
                "logout.then_refused",
                "logout was not acknowledged, so the session may stand",
            );
        }
        // "reply with ack before removing the session": give the removal
        // a moment after the ack.
        tokio::time::sleep(LOGOUT_GRACE.min(t)).await;
        let asked = template(true, None).to_string();
        match self.call(probe, "sign_event", json!([asked]), t).await {
            Ok((sent, answer)) => {
                let ev = evidence(&sent, answer.as_ref(), t);
                self.judge(
                    "logout.then_refused",
                    result_of(answer.as_ref()).is_none(),
                    ev,
                );
            }
            Err(e) => self.fail("logout.then_refused", e.to_string()),
        }
    }

    // -----------------------------------------------------------------
    // 5. Transport, judged over every answer

    fn transport(&mut self) {
        let received = std::mem::take(&mut self.received);
        let answers: Vec<&Received> = received.iter().filter(|r| r.response.is_some()).collect();
        let addressed: Vec<&Received> = received.iter().filter(|r| r.tags_us).collect();
        if answers.is_empty() && addressed.is_empty() {
            for id in ["transport.author", "transport.p_tag", "transport.nip44"] {
                self.skip(id, "the signer answered nothing");
            }
            return;
        }
        let foreign = addressed
            .iter()
            .filter(|r| r.event.pubkey != self.signer)
            .count();
        let unsigned = answers.iter().filter(|r| !r.signature_ok).count();
        let total = answers.len();
        if foreign == 0 && unsigned == 0 {
            self.pass(
                "transport.author",
                format!(
                    "{total} answers, each by {} and validly signed",
                    short_pk(&self.signer)
                ),
            );
        } else {
            self.fail("transport.author", format!("of {total} answers {unsigned} carry an invalid id or signature; {foreign} events addressed to the suite came from another key"));
        }
        let untagged = answers.iter().filter(|r| !r.tags_us).count();
        if untagged == 0 {
            self.pass(
                "transport.p_tag",
                format!("{total} answers, each p-tagging its client"),
            );
        } else {
            self.fail(
                "transport.p_tag",
                format!("{untagged} of {total} answers do not p-tag the client they answer"),
            );
        }
        let in_nip04 = self
            .nip44_answers
            .iter()
            .filter(|(_, s)| *s != Scheme::Nip44)
            .count();
        if self.nip44_answers.is_empty() {
            self.skip("transport.nip44", "no NIP-44 request was answered");
        } else if in_nip04 == 0 {
            self.pass(
                "transport.nip44",
                format!(
                    "{} answers to NIP-44 requests, all NIP-44",
                    self.nip44_answers.len()
                ),
            );
        } else {
            self.fail(
                "transport.nip44",
                format!(
                    "{in_nip04} of {} answers to NIP-44 requests came in NIP-04",
                    self.nip44_answers.len()
                ),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// A kind-1 template, as the spec writes it (`{kind, content, tags,
/// created_at}`), with `pubkey` when given.
fn template(with_time: bool, pubkey: Option<PublicKey>) -> serde_json::Value {
    let mut t = json!({
        "kind": 1,
        "content": "Rampart conformance suite: a test note",
        "tags": [["t", "nip46-conformance"]],
    });
    if with_time {
        t["created_at"] = json!(Timestamp::now().as_secs());
    }
    if let Some(pk) = pubkey {
        t["pubkey"] = json!(pk.to_hex());
    }
    t
}

/// A `sign_event` result checked against what was asked.
fn check_signed(
    result: Option<&str>,
    asked: &serde_json::Value,
    user: Option<PublicKey>,
    sent_at: Timestamp,
) -> Result<(), String> {
    let result = result.ok_or("no signed event came back")?;
    let event = Event::from_json(result).map_err(|e| format!("the result is not an event: {e}"))?;
    event
        .verify()
        .map_err(|_| "the signed event does not verify".to_owned())?;
    if let Some(user) = user
        && event.pubkey != user
    {
        return Err(format!(
            "signed by {} instead of the user key",
            short_pk(&event.pubkey)
        ));
    }
    if u64::from(event.kind.as_u16()) != asked["kind"].as_u64().unwrap_or(u64::MAX) {
        return Err("the kind differs from the template's".into());
    }
    if event.content != asked["content"].as_str().unwrap_or_default() {
        return Err("the content differs from the template's".into());
    }
    let tags: Vec<Vec<String>> = event.tags.iter().map(|t| t.as_slice().to_vec()).collect();
    let asked_tags: Vec<Vec<String>> =
        serde_json::from_value(asked["tags"].clone()).unwrap_or_default();
    if tags != asked_tags {
        return Err("the tags differ from the template's".into());
    }
    match asked["created_at"].as_u64() {
        Some(t) if event.created_at.as_secs() != t => {
            Err("created_at differs from the template's".into())
        }
        None if event.created_at.as_secs().abs_diff(sent_at.as_secs()) > 600 => {
            Err("created_at (filled in by the signer) is more than 10 minutes off".into())
        }
        _ => Ok(()),
    }
}

fn result_of(answer: Option<&Answer>) -> Option<&str> {
    match &answer?.response.outcome {
        Outcome::Result(r) => Some(r),
        _ => None,
    }
}

fn is_error(answer: Option<&Answer>) -> bool {
    answer.is_some_and(|a| matches!(a.response.outcome, Outcome::Error(_)))
}

/// `sent <method> …; got <outcome> in N ms` or `…; no answer within T`.
/// A `connect` secret never appears: it is shown as `<secret>`, in the
/// request and in an answer that echoes it (a token not spent yet would
/// otherwise be handed to whoever reads the report).
fn evidence(sent: &Sent, answer: Option<&Answer>, timeout: Duration) -> String {
    let (asked, secret) = redacted(&sent.text);
    let asked = clip(&asked, 110);
    let hide = |text: String| match &secret {
        Some(s) => text.replace(s.as_str(), "<secret>"),
        None => text,
    };
    match answer {
        Some(a) => hide(format!(
            "sent {asked}; got {} in {} ms",
            outcome_text(a),
            a.elapsed.as_millis()
        )),
        None => format!("sent {asked}; no answer within {}", secs(timeout)),
    }
}

/// A request's text with a `connect` secret (the second param) replaced by
/// `<secret>`, and the secret.
fn redacted(text: &str) -> (String, Option<String>) {
    let Ok(mut request) = serde_json::from_str::<serde_json::Value>(text) else {
        return (text.to_owned(), None);
    };
    if request["method"] != "connect" {
        return (text.to_owned(), None);
    }
    let Some(secret) = request["params"][1]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
    else {
        return (text.to_owned(), None);
    };
    request["params"][1] = json!("<secret>");
    (request.to_string(), Some(secret))
}

fn outcome_text(answer: &Answer) -> String {
    match &answer.response.outcome {
        Outcome::Result(r) => format!("result {}", clip(&json!(r).to_string(), 90)),
        Outcome::Error(e) => format!("error {}", clip(&json!(e.to_string()).to_string(), 90)),
        Outcome::AuthUrl(u) => format!("auth_url {}", clip(u, 60)),
    }
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max).collect();
    format!("{kept}…")
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn short(event: &Event) -> String {
    event.id.to_hex()[..12].to_owned()
}

fn short_pk(pk: &PublicKey) -> String {
    pk.to_hex()[..12].to_owned()
}
