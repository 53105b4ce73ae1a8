//! `rampart bench --compare OURS THEIRS`: two load reports side by side,
//! with the ratios the benchmark bars are about (CPU per request, ≤ 1/3 of
//! the other signer's; throughput, ≥ 2×).
//!
//! CPU per request is compared twice: as measured, and divided by each
//! run's floor (the three schnorr operations, timed during that run). The
//! second cancels a change of the machine's speed between the two runs.

use std::fmt::{self, Display};
use std::path::Path;

use anyhow::{Context, Result};

use super::report::LoadReport;

/// Our CPU per request may be at most this share of theirs.
pub const CPU_BAR: f64 = 1.0 / 3.0;

/// Our throughput must be at least this multiple of theirs.
pub const THROUGHPUT_BAR: f64 = 2.0;

/// Two reports of the same load against two signers.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The signer under test.
    pub ours: LoadReport,
    /// The signer compared with.
    pub theirs: LoadReport,
}

/// Read a report written by `rampart bench --json`.
pub fn read(path: &Path) -> Result<LoadReport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a `rampart bench --json` report", path.display()))
}

/// `ours / theirs`, when both are known and `theirs` is not zero.
fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    match (ours, theirs) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

impl Comparison {
    /// Signer CPU per request, ours over theirs, as measured.
    pub fn cpu_ratio(&self) -> Option<f64> {
        let cpu = |r: &LoadReport| r.bunker_cpu.as_ref().map(|c| c.us_per_request);
        ratio(cpu(&self.ours), cpu(&self.theirs))
    }

    /// Signer CPU per request in floors of its own run, ours over theirs.
    pub fn cpu_floor_ratio(&self) -> Option<f64> {
        ratio(self.ours.bunker_cpu_floors, self.theirs.bunker_cpu_floors)
    }

    /// Throughput, ours over theirs.
    pub fn throughput_ratio(&self) -> Option<f64> {
        ratio(Some(self.ours.throughput), Some(self.theirs.throughput))
    }
}

fn cell(value: Option<f64>, unit: &str, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}{unit}"))
}

fn verdict(holds: Option<bool>) -> &'static str {
    match holds {
        Some(true) => "holds",
        Some(false) => "misses",
        None => "unknown",
    }
}

impl Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (o, t) = (&self.ours, &self.theirs);
        writeln!(
            f,
            "{} vs {}: {}, {} clients × {} requests, ≤ {} in flight per client",
            o.label, t.label, o.method, o.clients, o.requests_per_client, o.in_flight
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, a: String, b: String, r: String| {
            writeln!(f, "  {name:<24} {a:>14} {b:>14} {r:>10}")
        };
        row(
            f,
            "",
            o.label.clone(),
            t.label.clone(),
            format!("{}/{}", o.label, t.label),
        )?;
        let cpu = |r: &LoadReport| r.bunker_cpu.as_ref().map(|c| c.us_per_request);
        row(
            f,
            "signer CPU / request",
            cell(cpu(o), " µs", 1),
            cell(cpu(t), " µs", 1),
            cell(self.cpu_ratio(), "", 2),
        )?;
        row(
            f,
            "  in floors of its run",
            cell(o.bunker_cpu_floors, "", 2),
            cell(t.bunker_cpu_floors, "", 2),
            cell(self.cpu_floor_ratio(), "", 2),
        )?;
        row(
            f,
            "throughput",
            cell(Some(o.throughput), " req/s", 0),
            cell(Some(t.throughput), " req/s", 0),
            cell(self.throughput_ratio(), "×", 2),
        )?;
        for (name, pick) in [
            (
                "latency p50",
                (|p: &super::latency::Percentiles| p.p50_us) as fn(&_) -> f64,
            ),
            ("latency p99", |p| p.p99_us),
        ] {
            row(
                f,
                name,
                cell(o.latency.as_ref().map(pick), " µs", 0),
                cell(t.latency.as_ref().map(pick), " µs", 0),
                cell(
                    ratio(o.latency.as_ref().map(pick), t.latency.as_ref().map(pick)),
                    "",
                    2,
                ),
            )?;
        }
        row(
            f,
            "errors",
            o.errors.count.to_string(),
            t.errors.count.to_string(),
            String::new(),
        )?;
        writeln!(
            f,
            "  bar: CPU per request ≤ {CPU_BAR:.2} of the peer's: {} as measured, {} in floors",
            verdict(self.cpu_ratio().map(|r| r <= CPU_BAR)),
            verdict(self.cpu_floor_ratio().map(|r| r <= CPU_BAR)),
        )?;
        writeln!(
            f,
            "  bar: throughput ≥ {THROUGHPUT_BAR:.0}× the peer's: {}",
            verdict(self.throughput_ratio().map(|r| r >= THROUGHPUT_BAR)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_need_both_sides() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio(None, Some(4.0)), None);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(cell(None, " µs", 1), "–");
        assert_eq!(cell(Some(2.345), "×", 2), "2.35×");
    }
}
