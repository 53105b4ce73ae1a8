//! What the dashboard holds: its settings, a link to the running engine (the
//! admin channel), its own connection to the store, and the login state.
//!
//! Decisions go to the engine over the channel, so the waiting client is
//! answered at once. Everything else is read from and written to the store
//! through [`bunker::admin`], exactly as the CLI does; the bunker takes the
//! edits on its next reload (~200 ms).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunker::engine::DecideError;
use bunker::service::{AdminCommand, AdminSender};
use nip46::PermissionSet;
use nip46::nostr::prelude::RelayUrl;
use store::{ApprovalDecision, ApprovalId, PendingApproval, Store};
use tokio::sync::oneshot;

use crate::auth::Auth;
use crate::error::DashboardError;
use crate::secret::LoginToken;

/// Dashboard settings.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Relays written into `bunker://` tokens minted here.
    pub relays: Vec<RelayUrl>,
    /// The grant offered first when minting or accepting.
    pub default_grant: PermissionSet,
    /// Origins the dashboard is also reached at (`https://signer.example`,
    /// behind a proxy), besides its loopback address.
    pub allowed_origins: Vec<String>,
    /// A file of extra one-time login tokens (`rampart dashboard login`).
    pub login_drop: Option<PathBuf>,
    /// How long the login link printed at start works (once).
    pub start_link_ttl: Duration,
    /// Seconds a held request waits (shown to the user).
    pub approval_timeout_secs: u64,
    /// What `/.well-known/nostr.json` serves (NIP-05 for the signer
    /// announcement); `None`: not found.
    pub discovery: Option<nip46::discovery::Nip05Document>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            session_ttl: Duration::from_secs(12 * 3600),
            relays: Vec::new(),
            default_grant: nip46::Preset::Write.permissions(),
            allowed_origins: Vec::new(),
            login_drop: None,
            start_link_ttl: Duration::from_secs(15 * 60),
            approval_timeout_secs: 60,
            discovery: None,
        }
    }
}

/// The dashboard: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

struct Inner {
    config: DashboardConfig,
    admin: AdminSender,
    store: Mutex<Box<dyn Store>>,
    auth: Auth,
}

impl Dashboard {
    /// A dashboard on its own store connection, deciding through `admin`.
    /// Returns the one-time login token to show the user (once).
    pub fn new(
        config: DashboardConfig,
        store: Box<dyn Store>,
        admin: AdminSender,
    ) -> Result<(Self, LoginToken), DashboardError> {
        let (auth, token) = Auth::new(
            config.session_ttl,
            config.start_link_ttl,
            config.login_drop.clone(),
        )?;
        let inner = Inner {
            config,
            admin,
            store: Mutex::new(store),
            auth,
        };
        Ok((
            Dashboard {
                inner: Arc::new(inner),
            },
            token,
        ))
    }

    /// The settings.
    pub fn config(&self) -> &DashboardConfig {
        &self.inner.config
    }

    /// Logins and sessions.
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// Run `f` on the store, off the async threads.
    pub async fn with_store<T, F>(&self, f: F) -> Result<T, DashboardError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Store) -> Result<T, DashboardError> + Send + 'static,
    {
        let dashboard = self.clone();
        tokio::task::spawn_blocking(move || {
            // A panic mid-operation cannot leave SQLite half-written (every
            // write is one transaction), so a poisoned lock is still usable.
            let mut store = dashboard
                .inner
                .store
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            f(&mut **store)
        })
        .await
        .map_err(|e| DashboardError::Internal(format!("store task failed: {e}")))?
    }

    /// Requests the engine holds right now, oldest first.
    pub async fn pending(&self) -> Result<Vec<PendingApproval>, DashboardError> {
        let (reply, answer) = oneshot::channel();
        self.send(AdminCommand::Pending { reply }).await?;
        answer.await.map_err(|_| DashboardError::BunkerStopped)
    }

    /// Apply a decision in the engine; the client is answered at once.
    pub async fn decide(
        &self,
        id: ApprovalId,
        decision: ApprovalDecision,
    ) -> Result<(), DashboardError> {
        let (reply, answer) = oneshot::channel();
        self.send(AdminCommand::Decide {
            id,
            decision,
            reply,
        })
        .await?;
        let result: Result<(), DecideError> =
            answer.await.map_err(|_| DashboardError::BunkerStopped)?;
        Ok(result?)
    }

    async fn send(&self, command: AdminCommand) -> Result<(), DashboardError> {
        self.inner
            .admin
            .send(command)
            .await
            .map_err(|_| DashboardError::BunkerStopped)
    }
}
