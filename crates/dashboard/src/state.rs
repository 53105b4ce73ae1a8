//! What the dashboard holds: its settings, a link to the running engine (the
//! admin channel) and its own connection to the store, which also keeps the
//! login links and sessions.
//!
//! Decisions go to the engine over the channel, so the waiting client is
//! answered at once. Everything else is read from and written to the store
//! through [`bunker::admin`], exactly as the CLI does; the bunker takes the
//! edits on its next reload (~200 ms).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunker::admin;
use bunker::engine::DecideError;
use bunker::engine::VoteOutcome;
use bunker::service::{AdminCommand, AdminSender};
use nip46::PermissionSet;
use nip46::nostr::prelude::PublicKey;
use nip46::nostr::prelude::{RelayUrl, Timestamp};
use store::{ApprovalId, DashboardUser, KeyId, PendingApproval, Store, Vote};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::auth::{self, AdminSession, Viewer};
use crate::error::DashboardError;
use crate::secret::LoginToken;

/// Dashboard settings.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Other replicas share the store: a request this engine does not hold
    /// may be held by one of them (decided through the store).
    pub replicated: bool,
    /// Relays written into `bunker://` tokens minted here.
    pub relays: Vec<RelayUrl>,
    /// The grant offered first when minting or accepting.
    pub default_grant: PermissionSet,
    /// Origins the dashboard is also reached at (`https://signer.example`,
    /// behind a proxy), besides its loopback address.
    pub allowed_origins: Vec<String>,
    /// A file of extra one-time login tokens (`rampart dashboard login`).
    /// How long the login link printed at start works (once).
    pub start_link_ttl: Duration,
    /// Seconds a held request waits (shown to the user).
    pub approval_timeout_secs: u64,
    /// What `/.well-known/nostr.json` serves (NIP-05 for the signer
    /// announcement); `None`: not found.
    pub discovery: Option<nip46::discovery::Nip05Document>,
    /// The kinds a key without its own list always asks to sign (shown on
    /// the Keys page).
    pub sensitive_kinds: Vec<u16>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            session_ttl: Duration::from_secs(12 * 3600),
            replicated: false,
            relays: Vec::new(),
            default_grant: nip46::Preset::Write.permissions(),
            allowed_origins: Vec::new(),
            start_link_ttl: Duration::from_secs(15 * 60),
            approval_timeout_secs: 60,
            discovery: None,
            sensitive_kinds: bunker::engine::DEFAULT_SENSITIVE_KINDS.to_vec(),
        }
    }
}

/// What a vote did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// The request was answered.
    Settled,
    /// It waits for more allows: `allowed` of `needed` so far.
    Waiting {
        /// Distinct people who allowed it.
        allowed: u32,
        /// How many must.
        needed: u32,
    },
    /// Another replica holds it: the vote is in the store, counted there
    /// on its next reload.
    Elsewhere,
}

/// A dashboard action for the audit log ([`Dashboard::audit`]).
pub struct Recorded {
    /// What (`session.revoke`, `token.mint`, …).
    pub method: &'static str,
    /// On which key (`KeyId(0)`: none, or every key).
    pub key_id: KeyId,
    /// On which app.
    pub client: Option<PublicKey>,
    /// About what.
    pub detail: String,
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
}

impl Dashboard {
    /// A dashboard on its own store connection, deciding through `admin`.
    pub fn new(config: DashboardConfig, store: Box<dyn Store>, admin: AdminSender) -> Self {
        let inner = Inner {
            config,
            admin,
            store: Mutex::new(store),
        };
        Dashboard {
            inner: Arc::new(inner),
        }
    }

    /// Mint the one-time login link's token shown at start (valid for the
    /// configured `start_link_ttl`, on every replica's dashboard).
    pub async fn start_link(&self) -> Result<LoginToken, DashboardError> {
        let ttl = self.inner.config.start_link_ttl;
        self.with_store(move |store| auth::issue_login(store, ttl, DashboardUser::Owner))
            .await
    }

    /// Use up a login token: whose it was, if it works.
    pub async fn redeem_login(
        &self,
        candidate: &str,
    ) -> Result<Option<DashboardUser>, DashboardError> {
        let candidate = Zeroizing::new(candidate.to_owned());
        self.with_store(move |store| auth::redeem_login(store, &candidate))
            .await
    }

    /// Start a session of `user`; the cookie value and who it is.
    pub async fn open_session(
        &self,
        user: DashboardUser,
    ) -> Result<(Zeroizing<String>, Option<Viewer>), DashboardError> {
        let ttl = self.inner.config.session_ttl;
        self.with_store(move |store| {
            let viewer = auth::viewer(store, user)?;
            Ok((auth::open_session(store, ttl, user)?, viewer))
        })
        .await
    }

    /// Append `viewer`'s action to the audit log. A failure is logged, not
    /// returned: the action itself is done.
    pub async fn audit(&self, viewer: &Viewer, action: Recorded) {
        let by = viewer.name().to_owned();
        let result = self
            .with_store(move |store| {
                let entry = admin::Action {
                    method: action.method,
                    by: &by,
                    key_id: action.key_id,
                    client: action.client,
                    detail: &action.detail,
                };
                Ok(admin::audit_action(store, &entry, Timestamp::now())?)
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "could not audit a dashboard action");
        }
    }

    /// The live session of a cookie value.
    pub async fn session(&self, cookie: &str) -> Result<Option<AdminSession>, DashboardError> {
        let cookie = Zeroizing::new(cookie.to_owned());
        self.with_store(move |store| auth::session(store, &cookie))
            .await
    }

    /// End the session of a cookie value.
    pub async fn close_session(&self, cookie: &str) -> Result<(), DashboardError> {
        let cookie = Zeroizing::new(cookie.to_owned());
        self.with_store(move |store| auth::close_session(store, &cookie))
            .await
    }

    /// The settings.
    pub fn config(&self) -> &DashboardConfig {
        &self.inner.config
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

    /// Requests waiting for the user, oldest first: the ones this process's
    /// engine holds, and with replicas those the others hold (from the
    /// store).
    pub async fn pending(&self) -> Result<Vec<PendingApproval>, DashboardError> {
        let (reply, answer) = oneshot::channel();
        self.send(AdminCommand::Pending { reply }).await?;
        let mut pending = answer.await.map_err(|_| DashboardError::BunkerStopped)?;
        if !self.inner.config.replicated {
            return Ok(pending);
        }
        let elsewhere = self
            .with_store(|store| Ok(admin::pending_approvals(store, Timestamp::now())?))
            .await?;
        for approval in elsewhere {
            if !pending.iter().any(|p| p.id == approval.id) {
                pending.push(approval);
            }
        }
        pending.sort_by_key(|a| a.created_at);
        Ok(pending)
    }

    /// Count a vote in the engine; a settled request's client is answered
    /// at once.
    pub async fn decide(&self, id: ApprovalId, vote: Vote) -> Result<Counted, DashboardError> {
        let (reply, answer) = oneshot::channel();
        self.send(AdminCommand::Decide {
            id: id.clone(),
            vote: vote.clone(),
            reply,
        })
        .await?;
        let result: Result<VoteOutcome, DecideError> =
            answer.await.map_err(|_| DashboardError::BunkerStopped)?;
        match result {
            Ok(VoteOutcome::Settled) => Ok(Counted::Settled),
            Ok(VoteOutcome::Waiting { allowed, needed }) => {
                Ok(Counted::Waiting { allowed, needed })
            }
            // Held by another replica: the decision goes through the store,
            // as the CLI's does; that replica answers on its next reload.
            Err(DecideError::NotPending(missing)) if self.inner.config.replicated => {
                let recorded = self
                    .with_store(move |store| {
                        let now = Timestamp::now();
                        let waiting = admin::pending_approvals(store, now)?
                            .into_iter()
                            .any(|a| a.id == id);
                        if waiting {
                            admin::record_vote(store, &id, vote)?;
                        }
                        Ok(waiting)
                    })
                    .await?;
                if recorded {
                    // Counted by the holder on its next reload.
                    Ok(Counted::Elsewhere)
                } else {
                    Err(DecideError::NotPending(missing).into())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn send(&self, command: AdminCommand) -> Result<(), DashboardError> {
        self.inner
            .admin
            .send(command)
            .await
            .map_err(|_| DashboardError::BunkerStopped)
    }
}
