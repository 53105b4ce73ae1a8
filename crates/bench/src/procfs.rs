//! A process's CPU time and resident memory, read from Linux's `/proc`.
//!
//! CPU time per request is the benchmark figure that survives a noisy
//! machine: wall-clock throughput and latency depend on what else runs,
//! the CPU a signer burns per request does not. The kernel reports it in
//! `/proc/<pid>/stat` (`utime` + `stime`, all threads, in clock ticks); the
//! resident set is `VmRSS` in `/proc/<pid>/status`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

/// CPU time a process has used so far, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// Time in user mode (`utime`).
    pub user: u64,
    /// Time in the kernel (`stime`).
    pub system: u64,
}

impl CpuTicks {
    /// User plus system time.
    pub fn total(self) -> u64 {
        self.user + self.system
    }

    /// Ticks used since `earlier` (zero if the counters went backwards).
    pub fn since(self, earlier: CpuTicks) -> u64 {
        self.total().saturating_sub(earlier.total())
    }
}

/// Parse `utime` and `stime` out of the text of `/proc/<pid>/stat`.
///
/// The second field is the command name in parentheses and may itself
/// contain spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<CpuTicks> {
    let after_name = &text[text.rfind(')')? + 1..];
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let mut fields = after_name.split_whitespace().skip(11);
    let user = fields.next()?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some(CpuTicks { user, system })
}

/// Parse `VmRSS` (in bytes) out of the text of `/proc/<pid>/status`.
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    (parts.next()? == "kB").then_some(kib * 1024)
}

fn read(pid: u32, file: &str) -> Result<(PathBuf, String)> {
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (is process {pid} running, on Linux?)",
            path.display()
        )
    })?;
    Ok((path, text))
}

/// The CPU time process `pid` has used so far (all its threads).
pub fn cpu_ticks(pid: u32) -> Result<CpuTicks> {
    let (path, text) = read(pid, "stat")?;
    parse_stat(&text).with_context(|| format!("unexpected contents in {}", path.display()))
}

/// Context switches of every thread of process `pid` so far (voluntary and
/// not, from `/proc/<pid>/task/*/status`): how often it woke up or was put
/// to sleep. Threads that ended are no longer counted.
pub fn context_switches(pid: u32) -> Result<u64> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    let tasks = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {} (is process {pid} running?)", dir.display()))?;
    let mut total = 0;
    for task in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        total += parse_switches(&status);
    }
    Ok(total)
}

/// `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` of a status file.
pub fn parse_switches(status: &str) -> u64 {
    status
        .lines()
        .filter(|l| {
            l.starts_with("voluntary_ctxt_switches:")
                || l.starts_with("nonvoluntary_ctxt_switches:")
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// The resident memory of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let (path, text) = read(pid, "status")?;
    parse_rss(&text).with_context(|| format!("no VmRSS in {}", path.display()))
}

/// Clock ticks per second of the `/proc` CPU times (`CLK_TCK`).
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// Convert ticks to time.
pub fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / per_second.max(1) as f64)
}

/// What the machine is: CPUs, CPU model, and how busy it is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    /// Logical CPUs available.
    pub cpus: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// 1, 5 and 15 minute load averages from `/proc/loadavg`.
    pub load_average: [f64; 3],
}

impl Machine {
    /// Read it now (fields that cannot be read stay empty or zero).
    pub fn now() -> Machine {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| parse_cpu_model(&info))
            .unwrap_or_default();
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| parse_loadavg(&text))
            .unwrap_or_default();
        Machine {
            cpus,
            cpu_model,
            load_average,
        }
    }
}

/// The first `model name` in `/proc/cpuinfo`.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// The three load averages of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_switches_add_both_kinds() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_switches(status), 127);
        assert_eq!(parse_switches("Name:\tx\n"), 0);
        assert!(context_switches(std::process::id()).unwrap() > 0);
    }

    // A real line, with a command name holding spaces and parentheses.
    const STAT: &str = "4242 (rampart (x) y) S 1 4242 4242 0 -1 4194560 2593 0 0 0 \
                        731 129 0 0 20 0 6 0 1176 1081344000 5120 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 1260 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let ticks = parse_stat(STAT).unwrap();
        assert_eq!(
            ticks,
            CpuTicks {
                user: 731,
                system: 129
            }
        );
        assert_eq!(ticks.total(), 860);
    }

    #[test]
    fn bad_stat_is_refused() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 7"), None);
    }

    #[test]
    fn differences_never_go_negative() {
        let before = CpuTicks {
            user: 10,
            system: 5,
        };
        let after = CpuTicks {
            user: 30,
            system: 9,
        };
        assert_eq!(after.since(before), 24);
        assert_eq!(before.since(after), 0);
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
    }

    #[test]
    fn rss_is_read_in_bytes() {
        let status = "Name:\trampart\nVmPeak:\t  999 kB\nVmRSS:\t   20480 kB\nThreads:\t6\n";
        assert_eq!(parse_rss(status), Some(20 * 1024 * 1024));
        assert_eq!(parse_rss("Name:\tx\n"), None);
        assert_eq!(parse_rss("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        cpu_ticks(me).unwrap();
        assert!(ticks_per_second() > 0);
    }

    #[test]
    fn machine_fields_parse() {
        let info = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t: fpu\n";
        assert_eq!(
            parse_cpu_model(info).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(
            parse_loadavg("0.52 1.10 2.00 1/234 5678\n"),
            Some([0.52, 1.10, 2.00])
        );
        assert_eq!(parse_loadavg("x"), None);
    }
}
