//! Rampart's web dashboard and JSON admin API, served by `rampart run`.
//!
//! The user decides here: pending requests (allow once, always allow, deny,
//! always deny), connections (grants, use, revoke, edit), pairing (mint a
//! `bunker://` token with its QR code, accept a `nostrconnect://` URI) and
//! the audit log. `/approve/<id>` is the target of `auth_url` challenges;
//! `/.well-known/nostr.json` is the public NIP-05 document of the signer
//! announcement, and `/pair?uri=` the announcement's `nostrconnect_url`.
//!
//! Pages are rendered on the server (no build step); a little vanilla JS adds
//! countdowns and live refresh. Every action exists twice, as an HTML form
//! and under `/api/…` as JSON, and both call the same function.
//!
//! Access ([`guard`], [`auth`]): a one-time login link printed at start is
//! exchanged for a random, server-side, expiring session cookie (HttpOnly,
//! SameSite=Strict); every state change needs the session's CSRF token and a
//! same-origin `Origin`/`Sec-Fetch-Site`; the `Host` must be one the
//! dashboard answers to (no DNS rebinding). Holding an `auth_url` grants
//! nothing: without a session the page only says "log in first".
//!
//! Like mini-redis, the server is a function, [`serve`], that tests drive
//! with their own listener and shutdown future.

pub mod app;
pub mod approvals;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod connections;
pub mod discovery;
pub mod error;
pub mod guard;
pub mod html;
pub mod keys;
pub mod login;
pub mod pairing;
pub mod secret;
pub mod site;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use app::App;
pub use error::DashboardError;
pub use secret::LoginToken;
pub use state::{Counted, Dashboard, DashboardConfig, Recorded};

/// Serve the dashboard on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    dashboard: Dashboard,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let app = router(dashboard, local);
    tracing::info!(address = %local, "dashboard serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Every route, for a dashboard reached at `local`.
pub fn router(dashboard: Dashboard, local: SocketAddr) -> Router {
    let site = Arc::new(site::Site::new(local, &dashboard.config().allowed_origins));
    let app = App { dashboard, site };
    let protected = Router::new()
        .route("/", get(approvals::pending_page))
        .route(
            "/approve/{id}",
            get(approvals::approve_page).post(approvals::decide_form),
        )
        .route("/connections", get(connections::list_page))
        .route("/connections/revoke", post(connections::revoke_form))
        .route(
            "/connections/{key_id}/{client}",
            get(connections::edit_page).post(connections::rule_form),
        )
        .route("/pair", get(pairing::pair_page))
        .route("/pair/token", post(pairing::mint_form))
        .route("/pair/nostrconnect", post(pairing::nostrconnect_form))
        .route("/audit", get(audit::audit_page))
        .route("/keys", get(keys::list_page))
        .route("/keys/lock", post(keys::lock_form))
        .route("/keys/quorum", post(keys::quorum_form))
        .route("/logout", post(login::logout))
        .route("/api/csrf", get(login::csrf_api))
        .route("/api/pending", get(approvals::pending_api))
        .route("/api/approvals/{id}", post(approvals::decide_api))
        .route("/api/sessions", get(connections::list_api))
        .route(
            "/api/sessions/{key_id}/{client}/revoke",
            post(connections::revoke_api),
        )
        .route(
            "/api/sessions/{key_id}/{client}/rules",
            post(connections::rule_api),
        )
        .route("/api/tokens", post(pairing::mint_api))
        .route("/api/nostrconnect", post(pairing::nostrconnect_api))
        .route("/api/audit", get(audit::audit_api))
        .route("/api/keys", get(keys::list_api))
        .route("/api/keys/lock", post(keys::lock_api))
        .route("/api/keys/quorum", post(keys::quorum_api))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::require_session,
        ));
    let public = Router::new()
        .route("/login", get(login::login_link).post(login::login_form))
        .route("/.well-known/nostr.json", get(discovery::nostr_json))
        .route("/static/app.css", get(assets::css))
        .route("/static/app.js", get(assets::js))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::check_origin,
        ));
    Router::new()
        .merge(protected)
        .merge(public)
        .fallback(guard::not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::check_host,
        ))
        .layer(axum::middleware::from_fn(guard::security_headers))
        .with_state(app)
}
