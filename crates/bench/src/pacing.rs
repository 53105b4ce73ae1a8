//! When each request of an open-loop run is due.
//!
//! With `--rate N`, requests are sent on a fixed schedule whatever the
//! signer's answers, N per second in total, spread evenly over the clients:
//! request `j` of client `c` (of `C`) is the `(j·C + c)`-th of the run and
//! is due `(j·C + c) / N` seconds after the start. A closed loop (no rate)
//! only measures how fast the signer can go; the schedule shows what
//! latency it gives at a given load.

use std::time::Duration;

/// The schedule of an open-loop run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Requests per second, all clients together.
    pub rate: f64,
    /// How many clients share the rate.
    pub clients: usize,
}

impl Schedule {
    /// A schedule of `rate` requests per second over `clients` clients.
    /// `None` unless the rate is positive and finite and there are clients.
    pub fn new(rate: f64, clients: usize) -> Option<Schedule> {
        (rate.is_finite() && rate > 0.0 && clients > 0).then_some(Schedule { rate, clients })
    }

    /// When request `index` of client `client` is due, after the start.
    pub fn due(&self, client: usize, index: usize) -> Duration {
        let position = index as f64 * self.clients as f64 + client as f64;
        Duration::from_secs_f64(position / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spread_evenly_over_clients() {
        let s = Schedule::new(1000.0, 4).unwrap();
        // Client 0, 1, 2, 3, then client 0 again: one millisecond apart.
        let order: Vec<Duration> = (0..2)
            .flat_map(|j| (0..4).map(move |c| (c, j)))
            .map(|(c, j)| s.due(c, j))
            .collect();
        let expected: Vec<Duration> = (0..8).map(Duration::from_millis).collect();
        assert_eq!(order, expected);
    }

    #[test]
    fn the_rate_holds_over_a_run() {
        let s = Schedule::new(2000.0, 10).unwrap();
        // 10 clients × 200 requests at 2000/s: the last is due just before 1 s.
        let last = s.due(9, 199);
        assert_eq!(last, Duration::from_secs_f64(1999.0 / 2000.0));
        // Each client sends every C/N seconds.
        assert_eq!(s.due(3, 1) - s.due(3, 0), Duration::from_millis(5));
    }

    #[test]
    fn nonsense_rates_are_refused() {
        assert!(Schedule::new(0.0, 1).is_none());
        assert!(Schedule::new(-5.0, 1).is_none());
        assert!(Schedule::new(f64::NAN, 1).is_none());
        assert!(Schedule::new(f64::INFINITY, 1).is_none());
        assert!(Schedule::new(10.0, 0).is_none());
    }
}
