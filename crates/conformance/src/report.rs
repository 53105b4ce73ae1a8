//! What a run found: one result per check, for people (a table) and for
//! programs (one JSON object).

use serde::Serialize;

use crate::catalogue::Level;

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// It holds.
    Pass,
    /// It does not: the detail says what was sent and what came back.
    Fail,
    /// Not run: the detail says why.
    Skip,
}

impl Verdict {
    /// As printed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Skip => "skip",
        }
    }
}

/// One check's result with its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The check's id.
    pub id: &'static str,
    /// How binding it is.
    pub level: Level,
    /// The sentence of the spec it tests.
    pub spec: &'static str,
    /// Pass, fail or skip.
    pub result: Verdict,
    /// What was sent, what came back and how long it took; or why skipped.
    pub detail: String,
}

/// Round-trip times of `ping`, reported, not judged.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Pings answered.
    pub samples: usize,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The signer's pubkey (hex), from the token.
    pub signer: String,
    /// The relays the run used.
    pub relays: Vec<String>,
    /// Every check, in catalogue order.
    pub checks: Vec<CheckResult>,
    /// `ping` round trips, when a session was open.
    pub latency: Option<Latency>,
}

impl Report {
    /// Whether every MUST passed (the exit status).
    pub fn conforms(&self) -> bool {
        self.checks
            .iter()
            .filter(|c| c.level == Level::Must)
            .all(|c| c.result == Verdict::Pass)
    }

    /// The ids of the checks that failed.
    pub fn failed(&self) -> Vec<&'static str> {
        self.with(Verdict::Fail)
    }

    /// The ids of the checks with this result.
    pub fn with(&self, verdict: Verdict) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.result == verdict)
            .map(|c| c.id)
            .collect()
    }

    /// The result of one check.
    pub fn result(&self, id: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing plain strings, numbers and enums cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let width = self.checks.iter().map(|c| c.id.len()).max().unwrap_or(10);
        let mut out = format!(
            "NIP-46 conformance of signer {} on {}\n\n",
            self.signer,
            self.relays.join(", ")
        );
        out.push_str(&format!(
            "{:<width$}  {:<7}  {:<4}  detail\n",
            "check", "level", "result"
        ));
        for c in &self.checks {
            out.push_str(&format!(
                "{:<width$}  {:<7}  {:<6}  {}\n",
                c.id,
                c.level.as_str(),
                c.result.as_str(),
                c.detail
            ));
        }
        let count = |v| self.checks.iter().filter(|c| c.result == v).count();
        out.push_str(&format!(
            "\n{} pass, {} fail, {} skip",
            count(Verdict::Pass),
            count(Verdict::Fail),
            count(Verdict::Skip)
        ));
        if let Some(l) = &self.latency {
            out.push_str(&format!(
                "; ping round trip p50 {:.1} ms, p99 {:.1} ms ({} samples)",
                l.p50_ms, l.p99_ms, l.samples
            ));
        }
        out.push('\n');
        let musts = |v| {
            self.checks
                .iter()
                .filter(|c| c.level == Level::Must && c.result == v)
                .count()
        };
        let (failed, not_run) = (musts(Verdict::Fail), musts(Verdict::Skip));
        out.push_str(&if failed > 0 {
            format!("{failed} MUST failed: the signer does not conform\n")
        } else if not_run > 0 {
            format!(
                "no MUST failed, but {not_run} could not run (see why above): conformance not shown\n"
            )
        } else {
            "every MUST passed\n".to_owned()
        });
        out
    }
}
