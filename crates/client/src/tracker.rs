//! Matching responses to requests: the client's sans-I/O core.
//!
//! Many requests travel over one connection at once, each answered by id, in
//! any order. This state machine keeps the pending ones and decides what
//! each incoming response, each passing deadline and each reconnect means. It
//! never touches a socket or a clock: times come in as [`Instant`]s, and its
//! verdicts go out as values the async layer acts on. That keeps the rules
//! (timeouts, `auth_url` extensions, re-sends) testable without sockets.
//!
//! Re-sending after a reconnect: a relay that went away may have lost a
//! request, or the signer's answer, or neither. Re-publishing the same event
//! is useless when the signer saw it (a bunker drops replayed event ids), so
//! a re-send is a *fresh* event carrying the *same request id*; whichever
//! answer comes first wins and the other is ignored. It is only worth doing
//! once the signer can hear us again (its own connection may come back after
//! ours), so after a reconnect the client sends a `ping` probe, repeated with
//! backoff, and releases the re-sends when any answer from the signer
//! arrives. Requests made meanwhile are held back until then, instead of
//! being sent into a path that may not work yet. Requests that already got an
//! `auth_url` challenge are not re-sent: the signer has them, and a second
//! copy would ask the user twice.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use nip46::{Method, Outcome, Response};
use url::Url;

/// Who is waiting for a request's answer.
pub(crate) enum Purpose<W> {
    /// A caller, through its waiter (a channel in the async layer).
    Caller(W),
    /// The reconnect probe; its answer only proves the signer hears us.
    Probe,
}

struct Entry<W> {
    method: Method,
    /// The request JSON, kept to re-send it under the same id.
    request: String,
    started: Instant,
    /// Key of this entry in the deadline index.
    due: (Instant, u64),
    /// The last `auth_url` the signer sent for this request.
    challenge: Option<Url>,
    /// Held back (or sent into a dead path) until the probe is answered.
    awaiting_probe: bool,
    purpose: Purpose<W>,
}

/// Whether a new request may go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dispatch {
    /// Send it.
    Now,
    /// A reconnect probe is in flight: the request is sent when it is answered.
    Held,
}

/// The result of [`Tracker::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Started {
    pub(crate) dispatch: Dispatch,
    /// The request's deadline is now the earliest one (the timer must be re-armed).
    pub(crate) earliest: bool,
}

/// A request to (re-)send now, with its id and JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Release {
    pub(crate) id: String,
    pub(crate) request: String,
}

/// What a response means for its request.
pub(crate) enum Resolution<W> {
    /// The final answer (a result or an error).
    Done {
        waiter: W,
        method: Method,
        outcome: Outcome,
    },
    /// A new `auth_url` challenge: show it, keep waiting (longer).
    Challenge {
        id: String,
        method: Method,
        url: Url,
    },
    /// An `auth_url` that is not http(s): never shown; the request fails.
    RefusedUrl {
        waiter: W,
        method: Method,
        url: String,
    },
}

/// Everything one incoming response causes.
pub(crate) struct Received<W> {
    pub(crate) resolution: Option<Resolution<W>>,
    /// Requests to send now (the signer has been heard after a reconnect).
    pub(crate) release: Vec<Release>,
}

/// A request whose deadline passed.
pub(crate) struct TimedOut<W> {
    pub(crate) waiter: W,
    pub(crate) method: Method,
    pub(crate) waited: Duration,
    pub(crate) challenged: bool,
}

/// Everything passing deadlines cause.
pub(crate) struct Expired<W> {
    pub(crate) timed_out: Vec<TimedOut<W>>,
    /// The probe went unanswered and requests still wait for it: send another.
    pub(crate) probe_due: bool,
}

/// Reconnect probing.
struct Probe {
    /// Requests are waiting for the signer to be heard.
    active: bool,
    /// Consecutive unanswered probes (sets the backoff).
    attempt: u32,
    min: Duration,
    max: Duration,
}

impl Probe {
    fn interval(&self) -> Duration {
        let factor = 1u32 << self.attempt.min(16);
        self.min.saturating_mul(factor).min(self.max)
    }
}

/// The pending requests of one connection.
pub(crate) struct Tracker<W> {
    entries: HashMap<String, Entry<W>>,
    deadlines: BTreeMap<(Instant, u64), String>,
    seq: u64,
    auth_timeout: Duration,
    probe: Probe,
}

impl<W> Tracker<W> {
    /// `auth_timeout` is how long a request waits after an `auth_url`;
    /// probes are repeated from `probe_min` doubling up to `probe_max`.
    pub(crate) fn new(auth_timeout: Duration, probe_min: Duration, probe_max: Duration) -> Self {
        Tracker {
            entries: HashMap::new(),
            deadlines: BTreeMap::new(),
            seq: 0,
            auth_timeout,
            probe: Probe {
                active: false,
                attempt: 0,
                min: probe_min.max(Duration::from_millis(1)),
                max: probe_max.max(probe_min),
            },
        }
    }

    /// Requests pending (probes included).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn schedule(&mut self, id: &str, at: Instant) -> (Instant, u64) {
        self.seq += 1;
        let key = (at, self.seq);
        self.deadlines.insert(key, id.to_owned());
        key
    }

    /// Track a new request. Refused (the waiter is handed back) if the id is
    /// already pending.
    pub(crate) fn start(
        &mut self,
        id: String,
        method: Method,
        request: String,
        now: Instant,
        timeout: Duration,
        waiter: W,
    ) -> Result<Started, W> {
        if self.entries.contains_key(&id) {
            return Err(waiter);
        }
        let at = now + timeout;
        let earliest = self
            .deadlines
            .keys()
            .next()
            .is_none_or(|(first, _)| at < *first);
        let due = self.schedule(&id, at);
        let held = self.probe.active;
        self.entries.insert(
            id,
            Entry {
                method,
                request,
                started: now,
                due,
                challenge: None,
                awaiting_probe: held,
                purpose: Purpose::Caller(waiter),
            },
        );
        let dispatch = if held { Dispatch::Held } else { Dispatch::Now };
        Ok(Started { dispatch, earliest })
    }

    /// Track a reconnect probe (a `ping`), to send now.
    pub(crate) fn start_probe(&mut self, id: String, request: String, now: Instant) {
        let due = self.schedule(&id, now + self.probe.interval());
        self.entries.insert(
            id,
            Entry {
                method: Method::Ping,
                request,
                started: now,
                due,
                challenge: None,
                awaiting_probe: false,
                purpose: Purpose::Probe,
            },
        );
    }

    /// The request JSON of a pending request.
    pub(crate) fn request(&self, id: &str) -> Option<&str> {
        self.entries.get(id).map(|e| e.request.as_str())
    }

    /// Forget a request (its caller gave up). Returns whether it was pending.
    pub(crate) fn cancel(&mut self, id: &str) -> bool {
        match self.entries.remove(id) {
            Some(entry) => {
                self.deadlines.remove(&entry.due);
                true
            }
            None => false,
        }
    }

    /// End a caller's request now (it cannot be answered): its waiter, to
    /// tell it why. `None` for probes and requests no longer pending.
    pub(crate) fn fail(&mut self, id: &str) -> Option<(W, Method)> {
        if !matches!(self.entries.get(id)?.purpose, Purpose::Caller(_)) {
            return None;
        }
        let entry = self.entries.remove(id)?;
        self.deadlines.remove(&entry.due);
        match entry.purpose {
            Purpose::Caller(waiter) => Some((waiter, entry.method)),
            Purpose::Probe => None,
        }
    }

    /// The next deadline, to arm the timer with.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|(at, _)| *at)
    }

    /// A response from the paired signer (the caller has checked the author
    /// and decrypted it).
    pub(crate) fn receive(&mut self, now: Instant, response: Response) -> Received<W> {
        let resolution = self.resolve(now, response);
        // Any answer proves the signer hears us: release what waited for that.
        let release = if self.probe.active {
            self.probe.active = false;
            self.probe.attempt = 0;
            let mut release: Vec<(u64, Release)> = self
                .entries
                .iter_mut()
                .filter(|(_, e)| e.awaiting_probe)
                .map(|(id, e)| {
                    e.awaiting_probe = false;
                    let release = Release {
                        id: id.clone(),
                        request: e.request.clone(),
                    };
                    (e.due.1, release)
                })
                .collect();
            // In the order they were made.
            release.sort_by_key(|(seq, _)| *seq);
            release.into_iter().map(|(_, r)| r).collect()
        } else {
            Vec::new()
        };
        Received {
            resolution,
            release,
        }
    }

    fn resolve(&mut self, now: Instant, response: Response) -> Option<Resolution<W>> {
        let Response { id, outcome } = response;
        let entry = self.entries.get_mut(&id)?;
        if let Outcome::AuthUrl(raw) = outcome {
            if matches!(entry.purpose, Purpose::Probe) {
                return None;
            }
            let Some(url) = http_url(&raw) else {
                let entry = self.remove(&id)?;
                let Purpose::Caller(waiter) = entry.purpose else {
                    return None;
                };
                return Some(Resolution::RefusedUrl {
                    waiter,
                    method: entry.method,
                    url: raw,
                });
            };
            entry.awaiting_probe = false;
            let fresh = entry.challenge.as_ref() != Some(&url);
            entry.challenge = Some(url.clone());
            let method = entry.method;
            let old = entry.due;
            self.deadlines.remove(&old);
            let due = self.schedule(&id, now + self.auth_timeout);
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.due = due;
            }
            return fresh.then_some(Resolution::Challenge { id, method, url });
        }
        let entry = self.remove(&id)?;
        match entry.purpose {
            Purpose::Caller(waiter) => Some(Resolution::Done {
                waiter,
                method: entry.method,
                outcome,
            }),
            Purpose::Probe => None,
        }
    }

    fn remove(&mut self, id: &str) -> Option<Entry<W>> {
        let entry = self.entries.remove(id)?;
        self.deadlines.remove(&entry.due);
        Some(entry)
    }

    /// Everything due at `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Expired<W> {
        let mut timed_out = Vec::new();
        let mut probe_lost = false;
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            let Some(entry) = self.entries.remove(&id) else {
                continue;
            };
            match entry.purpose {
                Purpose::Caller(waiter) => timed_out.push(TimedOut {
                    waiter,
                    method: entry.method,
                    waited: now.saturating_duration_since(entry.started),
                    challenged: entry.challenge.is_some(),
                }),
                Purpose::Probe => probe_lost = true,
            }
        }
        let waiting = self.entries.values().any(|e| e.awaiting_probe);
        if !waiting {
            self.probe.active = false;
            self.probe.attempt = 0;
        }
        let probe_due = probe_lost && self.probe.active;
        if probe_due {
            self.probe.attempt = self.probe.attempt.saturating_add(1);
        }
        Expired {
            timed_out,
            probe_due,
        }
    }

    /// A relay connection came back (or the relays changed). Returns whether
    /// a probe should be sent now: some requests got no answer yet.
    pub(crate) fn reconnected(&mut self) -> bool {
        let mut any = false;
        for entry in self.entries.values_mut() {
            if matches!(entry.purpose, Purpose::Caller(_)) && entry.challenge.is_none() {
                entry.awaiting_probe = true;
                any = true;
            }
        }
        if any {
            self.probe.active = true;
            self.probe.attempt = 0;
        }
        any
    }

    /// Forget everything (shutdown): the callers' waiters, to tell them.
    pub(crate) fn drain(&mut self) -> Vec<(W, Method)> {
        self.deadlines.clear();
        self.probe.active = false;
        self.entries
            .drain()
            .filter_map(|(_, e)| match e.purpose {
                Purpose::Caller(w) => Some((w, e.method)),
                Purpose::Probe => None,
            })
            .collect()
    }
}

/// An `auth_url` the client may show: absolute http(s) with a host.
pub(crate) fn http_url(raw: &str) -> Option<Url> {
    let url = Url::parse(raw.trim()).ok()?;
    let ok =
        matches!(url.scheme(), "https" | "http") && url.host_str().is_some_and(|h| !h.is_empty());
    ok.then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nip46::{ErrorCode, RpcError};

    const T: Duration = Duration::from_secs(30);
    const AUTH: Duration = Duration::from_secs(300);

    fn tracker() -> Tracker<u32> {
        Tracker::new(AUTH, Duration::from_secs(1), Duration::from_secs(8))
    }

    fn start(t: &mut Tracker<u32>, id: &str, now: Instant, waiter: u32) -> Started {
        t.start(id.into(), Method::Ping, format!("req-{id}"), now, T, waiter)
            .ok()
            .unwrap()
    }

    fn done(r: Received<u32>) -> (u32, Outcome) {
        match r.resolution {
            Some(Resolution::Done {
                waiter, outcome, ..
            }) => (waiter, outcome),
            _ => panic!("expected a final answer"),
        }
    }

    #[test]
    fn responses_match_by_id_in_any_order() {
        let now = Instant::now();
        let mut t = tracker();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(start(&mut t, id, now, i as u32).dispatch, Dispatch::Now);
        }
        assert_eq!(
            done(t.receive(now, Response::ok("c", "pong"))),
            (2, Outcome::Result("pong".into()))
        );
        let (w, outcome) =
            done(t.receive(now, Response::error("a", ErrorCode::Unauthorized, "no")));
        assert_eq!(w, 0);
        assert_eq!(
            outcome,
            Outcome::Error(RpcError::new(ErrorCode::Unauthorized, "no"))
        );
        // Unknown and already-answered ids are ignored.
        assert!(
            t.receive(now, Response::ok("zzz", "x"))
                .resolution
                .is_none()
        );
        assert!(
            t.receive(now, Response::ok("c", "again"))
                .resolution
                .is_none()
        );
        assert_eq!(done(t.receive(now, Response::ok("b", "pong"))).0, 1);
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let now = Instant::now();
        let mut t = tracker();
        start(&mut t, "a", now, 1);
        assert_eq!(
            t.start("a".into(), Method::Ping, String::new(), now, T, 2)
                .err(),
            Some(2)
        );
    }

    #[test]
    fn deadlines_expire_in_order_and_report_the_wait() {
        let now = Instant::now();
        let mut t = tracker();
        assert!(start(&mut t, "a", now, 1).earliest);
        let later = now + Duration::from_secs(5);
        assert!(!start(&mut t, "b", later, 2).earliest);
        assert_eq!(t.next_deadline(), Some(now + T));
        assert!(
            t.expire(now + T - Duration::from_millis(1))
                .timed_out
                .is_empty()
        );
        let expired = t.expire(now + T);
        assert_eq!(expired.timed_out.len(), 1);
        assert_eq!(expired.timed_out[0].waiter, 1);
        assert_eq!(expired.timed_out[0].waited, T);
        assert!(!expired.timed_out[0].challenged);
        assert_eq!(t.next_deadline(), Some(later + T));
        assert_eq!(t.expire(later + T).timed_out[0].waiter, 2);
        assert!(
            t.receive(later + T, Response::ok("a", "late"))
                .resolution
                .is_none()
        );
    }

    #[test]
    fn an_earlier_deadline_says_so() {
        let now = Instant::now();
        let mut t = tracker();
        start(&mut t, "a", now, 1);
        let short = t
            .start(
                "b".into(),
                Method::Ping,
                String::new(),
                now,
                Duration::from_secs(1),
                2,
            )
            .ok()
            .unwrap();
        assert!(short.earliest);
    }

    #[test]
    fn cancel_forgets_the_id() {
        let now = Instant::now();
        let mut t = tracker();
        start(&mut t, "a", now, 1);
        assert!(t.cancel("a"));
        assert!(!t.cancel("a"));
        assert_eq!(t.next_deadline(), None);
        assert!(
            t.receive(now, Response::ok("a", "pong"))
                .resolution
                .is_none()
        );
        assert!(t.expire(now + T).timed_out.is_empty());
    }

    #[test]
    fn auth_url_extends_the_wait_and_the_real_answer_follows() {
        let now = Instant::now();
        let mut t = tracker();
        start(&mut t, "a", now, 7);
        let at = now + Duration::from_secs(2);
        let r = t.receive(
            at,
            Response::auth_url("a", "https://signer.example/approve/1"),
        );
        let Some(Resolution::Challenge { id, url, method }) = r.resolution else {
            panic!("expected a challenge")
        };
        assert_eq!((id.as_str(), method), ("a", Method::Ping));
        assert_eq!(url.as_str(), "https://signer.example/approve/1");
        assert_eq!(t.next_deadline(), Some(at + AUTH));
        // The short timeout no longer applies.
        assert!(t.expire(now + T).timed_out.is_empty());
        // The same challenge again is not shown twice.
        let again = t.receive(
            at,
            Response::auth_url("a", "https://signer.example/approve/1"),
        );
        assert!(again.resolution.is_none());
        assert_eq!(done(t.receive(at, Response::ok("a", "pong"))).0, 7);
    }

    #[test]
    fn challenged_requests_time_out_with_the_longer_timeout() {
        let now = Instant::now();
        let mut t = tracker();
        start(&mut t, "a", now, 7);
        t.receive(
            now,
            Response::auth_url("a", "http://127.0.0.1:8080/approve/1"),
        );
        let expired = t.expire(now + AUTH);
        assert_eq!(expired.timed_out.len(), 1);
        assert!(expired.timed_out[0].challenged);
    }

    #[test]
    fn non_http_auth_urls_are_refused() {
        let now = Instant::now();
        for bad in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "nostr:npub1x",
            "not a url",
            "https://",
        ] {
            let mut t = tracker();
            start(&mut t, "a", now, 3);
            match t.receive(now, Response::auth_url("a", bad)).resolution {
                Some(Resolution::RefusedUrl { waiter, url, .. }) => {
                    assert_eq!(waiter, 3);
                    assert_eq!(url, bad);
                }
                _ => panic!("{bad} was not refused"),
            }
            assert_eq!(t.len(), 0);
        }
    }

    #[test]
    fn reconnect_probes_then_releases_unanswered_requests() {
        let now = Instant::now();
        let mut t = tracker();
        start(&mut t, "a", now, 1);
        start(&mut t, "b", now, 2);
        // "b" got a challenge: the signer has it, it is not re-sent.
        t.receive(now, Response::auth_url("b", "https://s.example/x"));
        assert!(t.reconnected());
        t.start_probe("p1".into(), "ping".into(), now);
        // New requests wait for the probe.
        assert_eq!(start(&mut t, "c", now, 3).dispatch, Dispatch::Held);
        // The probe goes unanswered: another one is due.
        let expired = t.expire(now + Duration::from_secs(1));
        assert!(expired.timed_out.is_empty());
        assert!(expired.probe_due);
        t.start_probe("p2".into(), "ping".into(), now + Duration::from_secs(1));
        // Backoff doubles.
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(3)));
        // The pong arrives: "a" and "c" go out, in the order they were made.
        let r = t.receive(now + Duration::from_secs(2), Response::ok("p2", "pong"));
        assert!(r.resolution.is_none());
        let ids: Vec<&str> = r.release.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(r.release[0].request, "req-a");
        // Back to normal.
        assert_eq!(start(&mut t, "d", now, 4).dispatch, Dispatch::Now);
        // The original answer to "a" still resolves it; its duplicate is ignored.
        assert_eq!(done(t.receive(now, Response::ok("a", "pong"))).0, 1);
        assert!(
            t.receive(now, Response::ok("a", "pong"))
                .resolution
                .is_none()
        );
    }

    #[test]
    fn any_answer_ends_probing() {
        let now = Instant::now();
        let mut t = tracker();
        start(&mut t, "a", now, 1);
        start(&mut t, "b", now, 2);
        assert!(t.reconnected());
        t.start_probe("p".into(), "ping".into(), now);
        // The answer to "a" itself arrives: "a" is done, "b" is re-sent, "a" is not.
        let r = t.receive(now, Response::ok("a", "pong"));
        assert_eq!(done_ref(&r), Some(1));
        assert_eq!(r.release.len(), 1);
        assert_eq!(r.release[0].id, "b");
        // The late pong changes nothing.
        let r = t.receive(now, Response::ok("p", "pong"));
        assert!(r.resolution.is_none() && r.release.is_empty());
    }

    fn done_ref(r: &Received<u32>) -> Option<u32> {
        match &r.resolution {
            Some(Resolution::Done { waiter, .. }) => Some(*waiter),
            _ => None,
        }
    }

    #[test]
    fn nothing_pending_means_no_probe() {
        let now = Instant::now();
        let mut t = tracker();
        assert!(!t.reconnected());
        assert_eq!(start(&mut t, "a", now, 1).dispatch, Dispatch::Now);
    }

    #[test]
    fn probing_stops_when_nothing_waits_any_more() {
        let now = Instant::now();
        let mut t = Tracker::new(AUTH, Duration::from_secs(1), Duration::from_secs(8));
        t.start(
            "a".into(),
            Method::Ping,
            String::new(),
            now,
            Duration::from_millis(500),
            1u32,
        )
        .ok()
        .unwrap();
        assert!(t.reconnected());
        t.start_probe("p".into(), "ping".into(), now);
        let expired = t.expire(now + Duration::from_secs(1));
        assert_eq!(expired.timed_out.len(), 1);
        assert!(!expired.probe_due);
        assert_eq!(start(&mut t, "b", now, 2).dispatch, Dispatch::Now);
    }

    #[test]
    fn probe_backoff_is_capped() {
        let now = Instant::now();
        let mut t = Tracker::new(AUTH, Duration::from_secs(1), Duration::from_secs(4));
        t.start(
            "a".into(),
            Method::Ping,
            String::new(),
            now,
            Duration::from_secs(3600),
            1u32,
        )
        .ok()
        .unwrap();
        assert!(t.reconnected());
        let mut at = now;
        let mut intervals = Vec::new();
        for i in 0..5 {
            t.start_probe(format!("p{i}"), "ping".into(), at);
            let next = t.next_deadline().unwrap();
            intervals.push((next - at).as_secs());
            at = next;
            assert!(t.expire(at).probe_due);
        }
        assert_eq!(intervals, [1, 2, 4, 4, 4]);
    }

    #[test]
    fn drain_returns_callers_only() {
        let now = Instant::now();
        let mut t = tracker();
        start(&mut t, "a", now, 1);
        t.start_probe("p".into(), "ping".into(), now);
        let drained = t.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].0, 1);
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn http_urls_only() {
        assert!(http_url("https://a.example/x?y=1").is_some());
        assert!(http_url("http://127.0.0.1:3000/approve/ab").is_some());
        assert!(http_url("ftp://a.example").is_none());
        assert!(http_url("data:text/html,hi").is_none());
    }
}
