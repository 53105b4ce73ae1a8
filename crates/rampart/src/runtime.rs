//! The tokio runtimes the commands run on: which command gets which, and why.

/// The runtime of `rampart run` and `rampart relay`. The bunker's work is
/// one sequential loop (relay socket → engine → store writer thread → relay
/// socket); on one thread, each request event reaches the engine without a
/// hand-off between threads, which measured as a fifth of the bunker's CPU
/// per request beside the signatures (docs/benchmarks.md). Under `run`, the
/// embedded relay gets a thread of its own (`relay::server::spawn_dedicated`),
/// the store writer has its own, and blocking work (vault unlock, dashboard
/// store access) goes to the blocking pool.
pub fn single_threaded() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The runtime of `rampart client` (requests in flight on several threads).
pub fn multi_threaded() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
