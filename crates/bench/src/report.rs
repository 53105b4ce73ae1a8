//! What `rampart bench` prints: the figures of one run, for people (a short
//! table) or for scripts (`--json`, the same fields).

use std::fmt::{self, Display, Write as _};

use serde::{Deserialize, Serialize};

use super::floor::Floor;
use super::latency::Percentiles;
use super::load::Errors;
use super::procfs::Machine;

/// CPU time one process used during the load phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CpuUse {
    /// The process.
    pub pid: u32,
    /// CPU seconds (user + system, all threads).
    pub cpu_secs: f64,
    /// CPU microseconds per answered request.
    pub us_per_request: f64,
    /// CPU seconds per wall-clock second: how many cores it kept busy.
    pub cores: f64,
    /// Resolution of the figure (one clock tick), in CPU seconds.
    pub resolution_secs: f64,
}

/// The result of a load run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    /// Which signer (`--label`).
    pub label: String,
    /// The method sent.
    pub method: String,
    /// Clients (apps), each with its own key and connection.
    pub clients: usize,
    /// Requests per client.
    pub requests_per_client: usize,
    /// Requests in flight per client, at most.
    pub in_flight: usize,
    /// Open loop: requests per second offered. `None`: closed loop.
    pub offered_rate: Option<f64>,
    /// Requests answered, every result checked.
    pub ok: u64,
    /// Requests that failed.
    pub errors: Errors,
    /// Wall-clock length of the load phase.
    pub elapsed_secs: f64,
    /// Answered requests per second.
    pub throughput: f64,
    /// End-to-end latency of answered requests.
    pub latency: Option<Percentiles>,
    /// Open loop: how late requests started after they were due.
    pub schedule_lag: Option<Percentiles>,
    /// The relay alone: two crossings back to back (see `relay_baseline`).
    pub relay_round_trip: Option<Percentiles>,
    /// `latency − relay_round_trip`, percentile by percentile.
    pub bunker_added: Option<Percentiles>,
    /// The signer's CPU time.
    pub bunker_cpu: Option<CpuUse>,
    /// The signer's CPU per request divided by the floor.
    pub bunker_cpu_floors: Option<f64>,
    /// The cryptographic floor of a request, measured during the run.
    pub floor: Floor,
    /// The relay's CPU time.
    pub relay_cpu: Option<CpuUse>,
    /// The load generator's own CPU time.
    pub generator_cpu: Option<CpuUse>,
    /// The machine, read before the run.
    pub machine: Machine,
    /// 1-minute load average after the run.
    pub load_average_after: f64,
    /// Context switches of the bunker's threads per answered request (how
    /// often it woke up or was put to sleep), during the load phase.
    #[serde(default)]
    pub bunker_wakeups_per_request: Option<f64>,
    /// The idle bunker after the load (`--idle-secs`).
    #[serde(default)]
    pub idle: Option<IdleUse>,
}

/// What the bunker spends while nothing is asked (clients connected).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleUse {
    /// Seconds measured.
    pub secs: f64,
    /// CPU milliseconds per idle second.
    pub cpu_ms_per_second: Option<f64>,
    /// Context switches of its threads per idle second.
    pub wakeups_per_second: Option<f64>,
}

/// The result of an idle-sessions run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleReport {
    /// Sessions in the store of the first bunker.
    pub sessions: usize,
    /// Resident memory of the bunker without sessions, in bytes.
    pub rss_without_bytes: u64,
    /// Resident memory of the bunker with the sessions loaded, in bytes.
    pub rss_with_bytes: u64,
    /// The difference, in bytes.
    pub extra_bytes: i64,
    /// After every session sent one request (`ping`): the answers received.
    pub touched_answers: Option<usize>,
    /// Resident memory of the bunker with sessions after that, in bytes.
    pub rss_with_after_touch_bytes: Option<u64>,
    /// Resident memory of the bunker without sessions then, in bytes.
    pub rss_without_after_touch_bytes: Option<u64>,
    /// The difference then, in bytes.
    pub extra_after_touch_bytes: Option<i64>,
    /// The machine.
    pub machine: Machine,
}

/// A latency in µs, shown in µs or ms.
struct Time(f64);

impl Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 1000.0 {
            write!(f, "{:.0} µs", self.0)
        } else {
            write!(f, "{:.2} ms", self.0 / 1000.0)
        }
    }
}

fn percentiles(p: &Percentiles) -> String {
    format!(
        "p50 {} · p90 {} · p99 {} · max {}",
        Time(p.p50_us),
        Time(p.p90_us),
        Time(p.p99_us),
        Time(p.max_us)
    )
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

fn cpu(name: &str, c: &CpuUse) -> String {
    format!(
        "{name} {:.1} µs (pid {}: {:.2} s CPU, {:.2} cores)",
        c.us_per_request, c.pid, c.cpu_secs, c.cores
    )
}

fn machine(m: &Machine) -> String {
    format!(
        "{} CPUs ({}), load average {:.2} {:.2} {:.2}",
        m.cpus, m.cpu_model, m.load_average[0], m.load_average[1], m.load_average[2]
    )
}

impl Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.offered_rate {
            Some(rate) => format!("open loop at {rate:.0} req/s"),
            None => "closed loop".to_owned(),
        };
        writeln!(
            f,
            "{}: {}, {} clients × {} requests, ≤ {} in flight per client, {mode}",
            self.label, self.method, self.clients, self.requests_per_client, self.in_flight
        )?;
        writeln!(
            f,
            "  answered      {} ok (every result checked), {} errors",
            self.ok, self.errors.count
        )?;
        for (kind, n) in &self.errors.by_kind {
            writeln!(f, "                {n} × {kind}")?;
        }
        for sample in &self.errors.samples {
            writeln!(f, "                e.g. {sample}")?;
        }
        writeln!(
            f,
            "  throughput    {:.0} req/s over {:.2} s",
            self.throughput, self.elapsed_secs
        )?;
        if let Some(p) = &self.latency {
            writeln!(f, "  latency       {}", percentiles(p))?;
        }
        if let Some(p) = &self.schedule_lag {
            writeln!(f, "  start lag     {}", percentiles(p))?;
        }
        if let Some(p) = &self.relay_round_trip {
            writeln!(
                f,
                "  relay alone   {}  ({} probes of two crossings)",
                percentiles(p),
                p.samples
            )?;
        }
        if let Some(p) = &self.bunker_added {
            writeln!(
                f,
                "  signer-added  p50 {} · p90 {} · p99 {}  (latency − relay alone)",
                Time(p.p50_us),
                Time(p.p90_us),
                Time(p.p99_us)
            )?;
        }
        if let (Some(c), Some(floors)) = (&self.bunker_cpu, self.bunker_cpu_floors) {
            writeln!(
                f,
                "  signer CPU    {:.1} µs per request = {floors:.2} × the floor (verify + 2 signs: {:.1} µs of CPU during this run)",
                c.us_per_request, self.floor.request_us
            )?;
        }
        let mut line = String::new();
        for (name, c) in [
            ("signer", &self.bunker_cpu),
            ("relay", &self.relay_cpu),
            ("load generator", &self.generator_cpu),
        ] {
            if let Some(c) = c {
                let sep = if line.is_empty() {
                    ""
                } else {
                    "\n                "
                };
                let _ = write!(line, "{sep}{}", cpu(name, c));
            }
        }
        if !line.is_empty() {
            writeln!(f, "  CPU/request   {line}")?;
        }
        if let Some(w) = self.bunker_wakeups_per_request {
            writeln!(
                f,
                "  wake-ups      signer {w:.2} context switches per request"
            )?;
        }
        if let Some(idle) = &self.idle {
            writeln!(
                f,
                "  idle          signer {} CPU ms and {} wake-ups per second (over {:.0} s, clients connected)",
                idle.cpu_ms_per_second
                    .map_or("?".into(), |c| format!("{c:.2}")),
                idle.wakeups_per_second
                    .map_or("?".into(), |w| format!("{w:.1}")),
                idle.secs
            )?;
        }
        writeln!(
            f,
            "  machine       {}; {:.2} after",
            machine(&self.machine),
            self.load_average_after
        )
    }
}

impl Display for IdleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "idle sessions: {} stored sessions", self.sessions)?;
        writeln!(
            f,
            "  loaded        {} with, {} without: {} extra ({:.0} bytes per session)",
            mib(self.rss_with_bytes as f64),
            mib(self.rss_without_bytes as f64),
            mib(self.extra_bytes as f64),
            self.extra_bytes as f64 / self.sessions.max(1) as f64
        )?;
        if let (Some(answers), Some(with), Some(without), Some(extra)) = (
            self.touched_answers,
            self.rss_with_after_touch_bytes,
            self.rss_without_after_touch_bytes,
            self.extra_after_touch_bytes,
        ) {
            writeln!(
                f,
                "  after 1 request each ({answers} answered): {} with, {} without: {} extra ({:.0} bytes per session)",
                mib(with as f64),
                mib(without as f64),
                mib(extra as f64),
                extra as f64 / self.sessions.max(1) as f64
            )?;
        }
        writeln!(f, "  machine       {}", machine(&self.machine))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_switch_units_at_a_millisecond() {
        assert_eq!(Time(812.4).to_string(), "812 µs");
        assert_eq!(Time(1234.0).to_string(), "1.23 ms");
    }
}
