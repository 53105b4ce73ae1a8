//! `/metrics` (Prometheus text format) and `/healthz`, on their own
//! listener (`[metrics] listen`, off by default so replicas on one host do
//! not collide). Nothing here is secret: counts, the replica's name, the
//! database URL without its password.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bunker::metrics::Metrics;
use relay::pool::RelayPool;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the endpoints read.
#[derive(Clone)]
pub struct Ops {
    /// The service's counters.
    pub metrics: Arc<Metrics>,
    /// The bunker's relays.
    pub pool: RelayPool,
    /// The store, redacted.
    pub database: String,
    /// This replica's name, when there are several.
    pub replica: Option<String>,
}

/// Bind `addr` (before anything else starts, so a taken port fails early).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr} for /metrics ([metrics] listen)"))
}

/// Serve until `stop` turns true.
pub fn serve(
    listener: TcpListener,
    ops: Ops,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(ops);
    tokio::spawn(async move {
        let shutdown = async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    })
}

async fn metrics(State(ops): State<Ops>) -> Response {
    let text = ops.metrics.render(&ops.pool.status());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Ready when the store answers and at least one relay is connected.
async fn healthz(State(ops): State<Ops>) -> Response {
    let relays = ops.pool.status();
    let connected = relays.iter().filter(|r| r.connected).count();
    let store_up = ops.metrics.store_is_up();
    let ready = store_up && connected > 0;
    let body = serde_json::json!({
        "ready": ready,
        "store": if store_up { "up" } else { "down" },
        "database": ops.database,
        "replica": ops.replica,
        "relays": relays.len(),
        "relays_connected": connected,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
