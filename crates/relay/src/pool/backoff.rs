//! Reconnect delays: exponential, capped, with jitter.
//!
//! When a relay restarts, every client notices at the same instant; without
//! jitter they would all knock again in lockstep.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The delay before each reconnect attempt to one relay.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    random: RandomState,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            attempt: 0,
            random: RandomState::new(),
        }
    }

    /// Starts over from `min` (after a connection that worked).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay: `min * 2^attempt` capped at `max`, then drawn
    /// uniformly from its upper half so that clients spread out.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = self.min.saturating_mul(factor).min(self.max);
        let half = ceiling / 2;
        let half_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        if half_nanos == 0 {
            return ceiling;
        }
        let mut hasher = self.random.build_hasher();
        hasher.write_u32(self.attempt);
        half + Duration::from_nanos(hasher.finish() % half_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn grows_exponentially_and_stays_in_range() {
        let min = Duration::from_millis(10);
        let max = Duration::from_millis(100);
        let mut backoff = Backoff::new(min, max);
        let mut ceiling = min;
        for _ in 0..10 {
            let delay = backoff.next_delay();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} vs {ceiling:?}"
            );
            ceiling = (ceiling * 2).min(max);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= min);
    }
}
