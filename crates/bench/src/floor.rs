//! The cryptographic floor of a `sign_event` request, measured on this
//! machine while the load runs.
//!
//! A signer cannot answer `sign_event` with less than three schnorr
//! operations: verify the request event, sign the user's event, sign the
//! response. How much CPU those take depends on the processor and on what
//! else runs on it — on a shared virtual machine, by a factor of two or
//! three from one minute to the next, and more while the load generator and
//! the relay share the cores with the signer. So a CPU-per-request figure
//! alone cannot be compared across runs or machines; divided by the floor
//! measured at the same time, under the same load, it can.
//!
//! A thread of the load generator does the three operations exactly as the
//! bunker does them (`nip46::envelope`) in small batches all through the
//! load phase, a few percent of one core, and reads its own CPU time around
//! each batch (`CLOCK_THREAD_CPUTIME_ID`, in nanoseconds, so time the thread
//! spent waiting for a core is not counted). The floor is the median over
//! the batches.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nip46::envelope;
use nip46::nostr::prelude::{Event, Keys, Kind, Tag, Timestamp, UnsignedEvent};
use serde::{Deserialize, Serialize};

/// Requests' worth of operations per batch.
const PER_BATCH: u32 = 4;

/// Pause between batches (keeps the sampler at a few percent of a core).
const PAUSE: Duration = Duration::from_millis(25);

/// The three operations, in CPU microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Floor {
    /// One schnorr verification of an event (id and signature).
    pub verify_us: f64,
    /// One schnorr signature of an event (id and signature).
    pub sign_us: f64,
    /// `verify + 2 × sign`: the least CPU a `sign_event` request can cost.
    pub request_us: f64,
    /// Batches measured.
    pub batches: usize,
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn note(keys: &Keys, n: u64) -> UnsignedEvent {
    UnsignedEvent::new(
        keys.public_key(),
        Timestamp::now(),
        Kind::TextNote,
        [Tag::hashtag("rampart")],
        format!("rampart bench floor {n}"),
    )
}

/// One batch: CPU per verification and per signature.
fn batch(keys: &Keys, event: &Event, n: &mut u64) -> Result<(Duration, Duration)> {
    let start = thread_cpu();
    for _ in 0..PER_BATCH {
        black_box(envelope::verify(black_box(event)))?;
    }
    let verified = thread_cpu();
    for _ in 0..2 * PER_BATCH {
        *n += 1;
        black_box(envelope::sign(keys, note(keys, *n), &[2; 32]))?;
    }
    let signed = thread_cpu();
    Ok((
        (verified - start) / PER_BATCH,
        (signed - verified) / (2 * PER_BATCH),
    ))
}

/// The median of per-batch figures.
fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Summarize batches into a floor (`None` without batches).
pub fn summarize(batches: &[(Duration, Duration)]) -> Option<Floor> {
    if batches.is_empty() {
        return None;
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let verify = us(median(batches.iter().map(|b| b.0).collect()));
    let sign = us(median(batches.iter().map(|b| b.1).collect()));
    Some(Floor {
        verify_us: verify,
        sign_us: sign,
        request_us: verify + 2.0 * sign,
        batches: batches.len(),
    })
}

/// The sampling thread.
pub struct FloorSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Vec<(Duration, Duration)>>>,
}

impl FloorSampler {
    /// Start sampling (at least one batch is taken, even if stopped at once).
    pub fn start() -> Result<FloorSampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("floor-sampler".into())
            .spawn(move || {
                let keys = Keys::generate();
                let event = envelope::sign(&keys, note(&keys, 0), &[1; 32])?;
                let mut n = 0;
                let mut batches = Vec::new();
                loop {
                    batches.push(batch(&keys, &event, &mut n)?);
                    if stopped.load(Ordering::Relaxed) {
                        return Ok(batches);
                    }
                    std::thread::sleep(PAUSE);
                }
            })
            .context("cannot start the floor sampler")?;
        Ok(FloorSampler { stop, thread })
    }

    /// Stop and summarize.
    pub fn finish(self) -> Result<Floor> {
        self.stop.store(true, Ordering::Relaxed);
        let Ok(batches) = self.thread.join() else {
            bail!("the floor sampler panicked");
        };
        summarize(&batches?).context("no floor batch measured")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_median_batch() {
        let us = Duration::from_micros;
        let batches = [(us(20), us(10)), (us(90), us(50)), (us(22), us(12))];
        let floor = summarize(&batches).unwrap();
        assert_eq!(floor.verify_us, 22.0);
        assert_eq!(floor.sign_us, 12.0);
        assert_eq!(floor.request_us, 46.0);
        assert_eq!(floor.batches, 3);
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn a_short_run_still_measures() {
        let sampler = FloorSampler::start().unwrap();
        let floor = sampler.finish().unwrap();
        assert!(floor.verify_us > 0.0 && floor.sign_us > 0.0);
    }
}
