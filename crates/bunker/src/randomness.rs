//! Where the engine's randomness comes from: passed in, like time
//! ([`crate::clock`]), so the engine stays deterministic under test.
//!
//! The daemon, the dashboard and the CLI draw from the operating system
//! ([`OsRandomness`]); tests and benches use a counter.

/// A source of randomness (the OS in the daemon, a counter in tests).
pub trait Randomness {
    /// Fill `out` with random bytes.
    fn fill(&mut self, out: &mut [u8]);

    /// 32 random bytes.
    fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        self.fill(&mut b);
        b
    }
}

/// Randomness from the operating system, drawn in blocks to keep system
/// calls off the per-request path.
pub struct OsRandomness {
    buf: [u8; 4096],
    used: usize,
}

impl OsRandomness {
    /// A fresh, empty buffer (filled on first use).
    pub fn new() -> Self {
        OsRandomness {
            buf: [0; 4096],
            used: 4096,
        }
    }
}

impl Default for OsRandomness {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OsRandomness {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

impl Randomness for OsRandomness {
    fn fill(&mut self, out: &mut [u8]) {
        for byte in out.iter_mut() {
            if self.used == self.buf.len() {
                // The OS generator failing is unrecoverable for a signer:
                // signing with predictable nonces would leak keys.
                if let Err(e) = getrandom::fill(&mut self.buf) {
                    panic!("the operating system's random number generator failed: {e}");
                }
                self.used = 0;
            }
            *byte = self.buf[self.used];
            self.buf[self.used] = 0;
            self.used += 1;
        }
    }
}

/// Deterministic "randomness": a counter, so no two draws repeat and two
/// runs draw the same bytes. For tests, benches and fuzzing only — never for
/// signing anything real.
#[derive(Debug, Default)]
pub struct Counter(pub u64);

impl Randomness for Counter {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 += 1;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}
