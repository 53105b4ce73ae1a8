//! Token buckets: a burst allowance refilled at a steady rate (per session,
//! and for strangers per sender and in total).

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// Rate limit settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests a session may make at once.
    pub burst: u32,
    /// Requests per second refilled.
    pub per_second: f64,
}

impl Default for RateLimit {
    /// Generous enough for a client decrypting a DM backlog at login.
    fn default() -> Self {
        RateLimit {
            burst: 200,
            per_second: 50.0,
        }
    }
}

/// One session's bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Millis,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: &RateLimit, now: Millis) -> Self {
        TokenBucket {
            tokens: f64::from(limit.burst),
            last: now,
        }
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, limit: &RateLimit, now: Millis) -> bool {
        self.refill(limit, now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Whether a token would be there at `now`, without taking it.
    pub fn has_token(&self, limit: &RateLimit, now: Millis) -> bool {
        let mut probe = self.clone();
        probe.refill(limit, now);
        probe.tokens >= 1.0
    }

    /// Whether the bucket is full again at `now` (its owner is idle).
    pub fn is_full(&self, limit: &RateLimit, now: Millis) -> bool {
        let mut probe = self.clone();
        probe.refill(limit, now);
        probe.tokens >= f64::from(limit.burst)
    }

    fn refill(&mut self, limit: &RateLimit, now: Millis) {
        let elapsed = now.0.saturating_sub(self.last.0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        self.last = now.max(self.last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limit = RateLimit {
            burst: 3,
            per_second: 2.0,
        };
        let mut b = TokenBucket::new(&limit, Millis(0));
        assert!(b.try_take(&limit, Millis(0)));
        assert!(b.try_take(&limit, Millis(0)));
        assert!(b.try_take(&limit, Millis(0)));
        assert!(!b.try_take(&limit, Millis(0)));
        assert!(!b.try_take(&limit, Millis(400)));
        assert!(b.try_take(&limit, Millis(500)));
        // Never more than the burst, however long idle.
        for _ in 0..3 {
            assert!(b.try_take(&limit, Millis(1_000_000)));
        }
        assert!(!b.try_take(&limit, Millis(1_000_000)));
        // A clock going backwards refunds nothing and does not panic.
        assert!(!b.try_take(&limit, Millis(10)));
    }
}
