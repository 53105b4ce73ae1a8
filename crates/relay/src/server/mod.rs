//! A small in-memory NIP-01 relay, so Rampart runs offline and tests are fast.
//!
//! It verifies every event and answers `OK` to each one — ephemeral kinds
//! included, unlike some production relays — stores non-ephemeral events in
//! a bounded memory store, forwards ephemeral kinds (20000–29999) without
//! storing them, serves `REQ`/`CLOSE` with the NIP-01 filters, and can
//! require NIP-42 authentication. It is not a production relay: nothing is
//! persisted.
//!
//! [`serve`] runs it on a listener until a shutdown future completes
//! (mini-redis style); [`spawn`] starts one on `127.0.0.1:0` for tests;
//! [`spawn_dedicated`] on a thread of its own, beside an application that has
//! its own work; [`run`] is what `rampart relay --listen ADDR` calls.
//!
//! Written here rather than taken from crates.io: `nostr-relay-builder`
//! 0.44 pulls a second, older `nostr` (0.44) and tokio-tungstenite 0.26;
//! 0.45 (alpha only) depends on `nostr-sdk` 0.45 pre-releases, whose released
//! line is yanked; the `nostr-relay` crate (rnostr) brings actix-web, LMDB and
//! its own event types, and was last released in 2024.

mod auth;
mod config;
mod connection;
mod error;
mod kinds;
mod router;
mod signature;
mod store;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nostr::prelude::EventId;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

pub use config::ServerConfig;
pub use error::ServerError;
pub use kinds::KindPolicy;

use crate::seen::SeenSet;
use router::Router;
use store::Store;

/// Recent ephemeral event ids remembered to answer re-sends `duplicate:`.
const EPHEMERAL_MEMORY: usize = 16 * 1024;

/// How long connections get to close after shutdown before being aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// State shared by every connection of one relay.
#[derive(Debug)]
pub(crate) struct Relay {
    config: ServerConfig,
    store: Mutex<Store>,
    ephemeral: Mutex<SeenSet<EventId>>,
    router: Mutex<Router>,
}

impl Relay {
    fn new(config: ServerConfig) -> Self {
        Self {
            store: Mutex::new(Store::new(
                config.max_stored_events,
                config.max_stored_bytes,
            )),
            ephemeral: Mutex::new(SeenSet::new(EPHEMERAL_MEMORY)),
            router: Mutex::new(Router::default()),
            config,
        }
    }

    /// Where live events go (see [`router`]).
    fn router(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers an ephemeral event id; `false` if it was seen recently.
    fn remember_ephemeral(&self, id: EventId) -> bool {
        self.ephemeral
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id)
    }
}

/// Serves the relay on `listener` until `shutdown` completes, then closes
/// every connection (waiting a few seconds at most) and returns.
///
/// Accepted sockets get `TCP_NODELAY`. Beyond
/// [`ServerConfig::max_connections`], new connections are closed at once.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(connection_cap(config.max_connections)));
    let relay = Arc::new(Relay::new(config));
    let (stop, stop_rx) = watch::channel(());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Typically out of file descriptors: wait a little
                        // for connections to close rather than spin.
                        error!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    warn!(%peer, "connection limit reached, closing new connection");
                    continue;
                };
                if let Err(error) = stream.set_nodelay(true) {
                    warn!(%peer, %error, "could not set TCP_NODELAY");
                }
                connections.spawn(connection::run(stream, peer, relay.clone(), stop_rx.clone(), permit));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    drop(stop);
    let closing = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, closing).await.is_err() {
        warn!("connections did not close in time; aborting them");
        connections.shutdown().await;
    }
    debug!("relay stopped");
}

/// Descriptors kept free for everything else the process opens (the store,
/// the relay pool's sockets, logs).
const RESERVED_FILES: u64 = 128;

/// The connection cap, kept below the open-files limit: the soft limit is
/// first raised to the hard one, so that a crowd of connections meets the
/// cap (and is closed politely) before the process runs out of descriptors.
pub fn connection_cap(configured: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            debug!(%error, "could not raise the open-files limit");
        }
    }
    let soft = getrlimit(Resource::Nofile).current;
    let fits = soft.map_or(usize::MAX, |soft| {
        usize::try_from(soft.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX)
    });
    if fits < configured {
        warn!(
            configured,
            fits, "the open-files limit lowers the relay's connection cap"
        );
    }
    configured.min(fits).max(1)
}

/// Binds a listener for the relay, with an error that says what to do.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Runs the relay on `addr` until Ctrl-C (or SIGTERM on Unix): the entry
/// point of `rampart relay --listen ADDR`. Logs the URL it serves with
/// `tracing`; use [`bind`] and [`serve`] to report it otherwise.
pub async fn run(addr: SocketAddr, config: ServerConfig) -> Result<(), ServerError> {
    let listener = bind(addr).await?;
    let local = listener.local_addr().map_err(ServerError::LocalAddr)?;
    info!(url = %format!("ws://{local}"), "embedded relay listening");
    serve(listener, config, shutdown_signal()).await;
    Ok(())
}

/// Completes on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    info!("shutting down");
}

/// A relay running in a background task, from [`spawn`] or [`spawn_on`].
/// Dropping it stops the relay; [`RelayHandle::shutdown`] also waits for it.
#[derive(Debug)]
pub struct RelayHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RelayHandle {
    /// The address the relay listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relay's URL, `ws://ADDR`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stops the relay and waits until every connection is closed and the
    /// port is free again.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        // Dropping the sender completes the relay's shutdown future.
        self.stop.take();
    }
}

/// Starts a relay on `127.0.0.1` with a port chosen by the OS.
pub async fn spawn(config: ServerConfig) -> Result<RelayHandle, ServerError> {
    spawn_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
}

/// Starts a relay on `addr` on a thread and runtime of its own (a thread of
/// the caller's blocking pool), so that its work — a signature check for
/// every event — runs beside the caller's tasks instead of queueing with
/// them. `rampart run` serves the bunker on a single-threaded runtime and
/// its embedded relay this way.
pub async fn spawn_dedicated(
    addr: SocketAddr,
    config: ServerConfig,
) -> Result<RelayHandle, ServerError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServerError::Bind { addr, source })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::task::spawn_blocking(move || {
        runtime.block_on(async move {
            // Registered with this runtime's reactor, so made here.
            match TcpListener::from_std(listener) {
                Ok(listener) => {
                    serve(listener, config, async {
                        let _ = stopped.await;
                    })
                    .await
                }
                Err(error) => error!(%error, "the relay's listener could not be registered"),
            }
        });
    });
    Ok(RelayHandle {
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

/// Starts a relay on `addr` (e.g. to restart one on the same port).
pub async fn spawn_on(addr: SocketAddr, config: ServerConfig) -> Result<RelayHandle, ServerError> {
    let listener = bind(addr).await?;
    let addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, config, async {
        let _ = stopped.await;
    }));
    Ok(RelayHandle {
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}
