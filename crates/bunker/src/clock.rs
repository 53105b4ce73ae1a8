//! Time as the engine sees it: passed in, never read.

use nip46::nostr::prelude::Timestamp;

/// Milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// Whole seconds, as Nostr timestamps are.
    pub fn timestamp(self) -> Timestamp {
        Timestamp::from_secs(self.0 / 1000)
    }

    /// From a Nostr timestamp.
    pub fn from_timestamp(t: Timestamp) -> Self {
        Millis(t.as_secs().saturating_mul(1000))
    }

    /// This time plus `ms` milliseconds.
    pub fn plus_ms(self, ms: u64) -> Self {
        Millis(self.0.saturating_add(ms))
    }

    /// The wall clock (only the driver calls this; the engine is given time).
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Millis(ms)
    }
}
