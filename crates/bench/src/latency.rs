//! Latency samples and their percentiles.
//!
//! Every request's latency is kept (a run has at most a few hundred thousand),
//! so percentiles are exact: the nearest-rank method on the sorted samples,
//! no histogram buckets to blur the tail the bars are about.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A summary of latency samples, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many samples.
    pub samples: usize,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest sample.
    pub max_us: f64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of sorted samples.
pub fn nearest_rank(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

impl Percentiles {
    /// Summarize `samples` (`None` when there are none).
    pub fn of(mut samples: Vec<Duration>) -> Option<Percentiles> {
        samples.sort_unstable();
        let at = |p| nearest_rank(&samples, p).map_or(0.0, micros);
        let max = samples.last().copied()?;
        let total: Duration = samples.iter().sum();
        Some(Percentiles {
            samples: samples.len(),
            p50_us: at(50.0),
            p90_us: at(90.0),
            p99_us: at(99.0),
            max_us: micros(max),
            mean_us: micros(total) / samples.len() as f64,
        })
    }

    /// `self − baseline`, percentile by percentile, never below zero.
    ///
    /// The difference of two percentiles is not the percentile of a
    /// difference; it estimates what one stage adds when the baseline's
    /// samples were taken under the same conditions.
    pub fn minus(&self, baseline: &Percentiles) -> Percentiles {
        let sub = |a: f64, b: f64| (a - b).max(0.0);
        Percentiles {
            samples: self.samples,
            p50_us: sub(self.p50_us, baseline.p50_us),
            p90_us: sub(self.p90_us, baseline.p90_us),
            p99_us: sub(self.p99_us, baseline.p99_us),
            max_us: sub(self.max_us, baseline.max_us),
            mean_us: sub(self.mean_us, baseline.mean_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank_on_a_hundred_samples() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(samples).unwrap();
        assert_eq!(p.samples, 100);
        assert_eq!(p.p50_us, 50_000.0);
        assert_eq!(p.p90_us, 90_000.0);
        assert_eq!(p.p99_us, 99_000.0);
        assert_eq!(p.max_us, 100_000.0);
        assert_eq!(p.mean_us, 50_500.0);
    }

    #[test]
    fn order_does_not_matter_and_small_sets_work() {
        let p = Percentiles::of(ms(&[30, 10, 20])).unwrap();
        assert_eq!(
            (p.p50_us, p.p90_us, p.p99_us),
            (20_000.0, 30_000.0, 30_000.0)
        );
        let one = Percentiles::of(ms(&[7])).unwrap();
        assert_eq!(
            (one.p50_us, one.p99_us, one.max_us),
            (7_000.0, 7_000.0, 7_000.0)
        );
        assert_eq!(Percentiles::of(Vec::new()), None);
        assert_eq!(
            nearest_rank(&ms(&[1, 2]), 0.0),
            Some(Duration::from_millis(1))
        );
    }

    #[test]
    fn the_tail_is_not_averaged_away() {
        // 990 fast samples and 10 slow ones: p99 is the last fast one, max the slow.
        let mut samples = ms(&[1; 990]);
        samples.extend(ms(&[50; 10]));
        let p = Percentiles::of(samples).unwrap();
        assert_eq!(p.p99_us, 1_000.0);
        assert_eq!(p.max_us, 50_000.0);
        let mut samples = ms(&[1; 989]);
        samples.extend(ms(&[50; 11]));
        assert_eq!(Percentiles::of(samples).unwrap().p99_us, 50_000.0);
    }

    #[test]
    fn differences_are_per_percentile_and_clamped() {
        let total = Percentiles::of(ms(&[3, 4, 10])).unwrap();
        let base = Percentiles::of(ms(&[1, 2, 12])).unwrap();
        let added = total.minus(&base);
        assert_eq!(added.p50_us, 2_000.0);
        assert_eq!(added.max_us, 0.0);
    }
}
