//! `rampart bench` end to end, tiny: it starts its own relay and bunker,
//! loads them, and reports figures that make sense. Speed itself is proven
//! by running the benchmarks (docs/benchmarks.md), never by timed tests.

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

fn bench(args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("run rampart bench");
    assert!(
        out.status.success(),
        "rampart bench failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

fn positive(report: &Value, pointer: &str) -> f64 {
    let value = report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing in {report:#}"));
    assert!(value > 0.0, "{pointer} = {value} in {report:#}");
    value
}

#[test]
fn a_spawned_closed_loop_run_reports_every_figure() {
    let report = bench(&[
        "--spawn", "-c", "2", "-r", "10", "-k", "3", "--warmup", "1", "--label", "tiny",
    ]);
    assert_eq!(report["label"], "tiny");
    assert_eq!(report["method"], "sign_event");
    assert_eq!(report["ok"], 20, "{report:#}");
    assert_eq!(report["errors"]["count"], 0, "{report:#}");
    assert!(report["offered_rate"].is_null());
    positive(&report, "/throughput");
    let p50 = positive(&report, "/latency/p50_us");
    let p99 = positive(&report, "/latency/p99_us");
    let max = positive(&report, "/latency/max_us");
    assert!(p50 <= p99 && p99 <= max, "{report:#}");
    assert_eq!(report["latency"]["samples"], 20);
    positive(&report, "/floor/request_us");
    // CPU time of all three processes, read from /proc.
    for who in ["bunker_cpu", "relay_cpu", "generator_cpu"] {
        assert!(report[who]["pid"].as_u64().is_some(), "{who}: {report:#}");
        assert!(
            report[who]["cpu_secs"].as_f64().is_some(),
            "{who}: {report:#}"
        );
    }
    assert!(report["machine"]["cpus"].as_u64().unwrap_or(0) >= 1);
}

#[test]
fn a_spawned_open_loop_run_paces_and_checks_ciphertexts() {
    let report = bench(&[
        "--spawn",
        "-c",
        "2",
        "-r",
        "5",
        "--method",
        "nip44_encrypt",
        "--rate",
        "100",
        "--warmup",
        "1",
        "--probe-rate",
        "50",
    ]);
    assert_eq!(report["method"], "nip44_encrypt");
    assert_eq!(report["ok"], 10, "{report:#}");
    assert_eq!(report["offered_rate"], 100.0);
    // 10 requests at 100/s take about 0.1 s; the schedule was followed.
    let elapsed = positive(&report, "/elapsed_secs");
    assert!(elapsed >= 0.08, "{report:#}");
    assert_eq!(report["schedule_lag"]["samples"], 10);
    positive(&report, "/relay_round_trip/p50_us");
    assert!(report["bunker_added"]["p50_us"].as_f64().is_some());
}

#[test]
fn idle_sessions_are_measured_against_a_bunker_without() {
    let report = bench(&["--idle-sessions", "20"]);
    assert_eq!(report["sessions"], 20);
    positive(&report, "/rss_with_bytes");
    positive(&report, "/rss_without_bytes");
    assert_eq!(report["touched_answers"], 20, "{report:#}");
    positive(&report, "/rss_with_after_touch_bytes");
}
