//! Logins and sessions: one-time login links, the session cookies they are
//! exchanged for, and their CSRF tokens — kept in the store, so a link
//! minted on one host (`rampart dashboard login`, or printed at start)
//! works on the dashboard of any replica, once, and a logged-in browser
//! stays logged in whichever replica answers it.
//!
//! Everything secret is 32 random bytes from the OS, kept only as a SHA-256
//! (a database dump or a log line cannot replay it) and found by that
//! digest. The CSRF token of a session is derived from its cookie, so every
//! replica computes the same one without storing it. Sessions expire after
//! a fixed lifetime; expired rows are dropped as new ones are written.
//!
//! Each link and session belongs to someone ([`Viewer`]): the store's owner
//! (`rampart dashboard login`, the link printed at start) or an operator
//! (`rampart operator add` / `login`), whose role and keys scope every page
//! and API call. An operator removed is logged out at its next request: its
//! sessions go with it, and a session whose operator is gone is no session.

use std::time::Duration;

use nip46::nostr::prelude::Timestamp;
use sha2::{Digest, Sha256};
use store::{DashboardSecret, DashboardUser, KeyId, Operator, Role, Store};
use zeroize::Zeroizing;

use crate::error::DashboardError;
use crate::secret::{LoginToken, ct_eq, digest, random_hex};

/// Who is logged in, and so what they may see and do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// The store's owner: everything.
    Owner,
    /// An operator: its role, for its keys.
    Operator(Operator),
}

impl Viewer {
    /// The name its answers and actions are recorded under.
    pub fn name(&self) -> &str {
        match self {
            Viewer::Owner => store::OWNER,
            Viewer::Operator(o) => &o.name,
        }
    }

    /// How it is shown.
    pub fn label(&self) -> String {
        match self {
            Viewer::Owner => "owner".to_owned(),
            Viewer::Operator(o) => format!("{} ({})", o.name, o.role),
        }
    }

    /// Its role (the store's owner is an owner).
    pub fn role(&self) -> Role {
        match self {
            Viewer::Owner => Role::Owner,
            Viewer::Operator(o) => o.role,
        }
    }

    /// Whether it sees what concerns `key` (its requests, sessions, audit rows).
    pub fn covers(&self, key: KeyId) -> bool {
        match self {
            Viewer::Owner => true,
            Viewer::Operator(o) => o.covers(key),
        }
    }

    /// Whether it covers every key (an owner, or `--all-keys`): rows about
    /// no key or every key (logins, "lock every key") are shown to it.
    pub fn covers_all(&self) -> bool {
        match self {
            Viewer::Owner => true,
            Viewer::Operator(o) => o.role == Role::Owner || o.keys == store::KeyScope::All,
        }
    }

    /// Whether it may answer `key`'s held requests, manage its sessions and
    /// mint its tokens (owners and approvers of the key).
    pub fn manages(&self, key: KeyId) -> bool {
        matches!(self.role(), Role::Owner | Role::Approver) && self.covers(key)
    }

    /// Whether it decides held requests at all (owners and approvers).
    pub fn decides(&self) -> bool {
        matches!(self.role(), Role::Owner | Role::Approver)
    }

    /// Whether it reads the audit log (owners and auditors).
    pub fn reads_audit(&self) -> bool {
        matches!(self.role(), Role::Owner | Role::Auditor)
    }

    /// Whether it manages keys: locks, unlocks (owners).
    pub fn owns(&self) -> bool {
        self.role() == Role::Owner
    }

    /// Refuse unless it may change what concerns `key`: another key's
    /// things are not found (`missing` says what), an auditor is forbidden.
    pub fn must_manage(&self, key: KeyId, missing: &str) -> Result<(), DashboardError> {
        if !self.covers(key) {
            return Err(DashboardError::NotFound(missing.to_owned()));
        }
        if !self.manages(key) {
            return Err(DashboardError::Forbidden(
                "an auditor reads; it changes nothing",
            ));
        }
        Ok(())
    }
}

/// A logged-in browser, as the handlers see it.
#[derive(Clone)]
pub struct AdminSession {
    csrf: String,
    viewer: Viewer,
}

impl AdminSession {
    /// The session of `cookie` (its CSRF token derived from it), for `viewer`.
    fn of(cookie: &str, viewer: Viewer) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"rampart dashboard csrf\0");
        hasher.update(cookie.as_bytes());
        let csrf = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        AdminSession { csrf, viewer }
    }

    /// Who is logged in.
    pub fn viewer(&self) -> &Viewer {
        &self.viewer
    }

    /// The token every state-changing request of this session must carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `candidate` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, candidate: &str) -> bool {
        ct_eq(&digest(candidate), &digest(&self.csrf))
    }
}

/// `ttl` from now, as a store timestamp.
fn expiry(ttl: Duration) -> Timestamp {
    Timestamp::from_secs(Timestamp::now().as_secs().saturating_add(ttl.as_secs()))
}

/// Mint a one-time login link's token for `user`, valid for `ttl`
/// (blocking: the store's own thread, or a CLI command).
pub fn issue_login(
    store: &mut dyn Store,
    ttl: Duration,
    user: DashboardUser,
) -> Result<LoginToken, DashboardError> {
    let token = LoginToken::generate()?;
    store.put_dashboard_secret(DashboardSecret::Login, &token.digest(), expiry(ttl), user)?;
    Ok(token)
}

/// Use up a login token: whose it was, if it was unused and unexpired.
pub fn redeem_login(
    store: &mut dyn Store,
    candidate: &str,
) -> Result<Option<DashboardUser>, DashboardError> {
    let candidate = candidate.trim();
    if candidate.is_empty() {
        return Ok(None);
    }
    Ok(store.check_dashboard_secret(
        DashboardSecret::Login,
        &digest(candidate),
        Timestamp::now(),
    )?)
}

/// Start a session of `user` lasting `ttl`: returns the cookie value
/// (given to the browser once).
pub fn open_session(
    store: &mut dyn Store,
    ttl: Duration,
    user: DashboardUser,
) -> Result<Zeroizing<String>, DashboardError> {
    let cookie = random_hex()?;
    store.put_dashboard_secret(
        DashboardSecret::Session,
        &digest(&cookie),
        expiry(ttl),
        user,
    )?;
    Ok(cookie)
}

/// Who `user` is now: the owner, or the operator as stored (none when it
/// was removed).
pub fn viewer(store: &dyn Store, user: DashboardUser) -> Result<Option<Viewer>, DashboardError> {
    match user {
        DashboardUser::Owner => Ok(Some(Viewer::Owner)),
        DashboardUser::Operator(id) => Ok(store
            .operators()?
            .into_iter()
            .find(|o| o.id == id)
            .map(Viewer::Operator)),
    }
}

/// The live session a cookie value belongs to, with its viewer as stored
/// now (an operator's role or keys changed apply at once).
pub fn session(
    store: &mut dyn Store,
    cookie: &str,
) -> Result<Option<AdminSession>, DashboardError> {
    let Some(user) = store.check_dashboard_secret(
        DashboardSecret::Session,
        &digest(cookie),
        Timestamp::now(),
    )?
    else {
        return Ok(None);
    };
    Ok(viewer(store, user)?.map(|v| AdminSession::of(cookie, v)))
}

/// End the session a cookie value belongs to.
pub fn close_session(store: &mut dyn Store, cookie: &str) -> Result<(), DashboardError> {
    Ok(store.remove_dashboard_secret(DashboardSecret::Session, &digest(cookie))?)
}

#[cfg(test)]
mod tests {
    use store_sqlite::SqliteStore;

    use super::*;

    #[test]
    fn login_tokens_work_once() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let token = issue_login(&mut store, Duration::from_secs(60), DashboardUser::Owner).unwrap();
        assert_eq!(token.expose().len(), 64);
        assert!(redeem_login(&mut store, "wrong").unwrap().is_none());
        assert!(redeem_login(&mut store, "").unwrap().is_none());
        assert_eq!(
            redeem_login(&mut store, token.expose()).unwrap(),
            Some(DashboardUser::Owner)
        );
        assert!(
            redeem_login(&mut store, token.expose()).unwrap().is_none(),
            "one-time"
        );
        let expired = issue_login(&mut store, Duration::ZERO, DashboardUser::Owner).unwrap();
        assert!(
            redeem_login(&mut store, expired.expose())
                .unwrap()
                .is_none(),
            "expired"
        );
    }

    #[test]
    fn sessions_are_found_by_cookie_until_closed_with_a_csrf_token_of_their_own() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let cookie =
            open_session(&mut store, Duration::from_secs(60), DashboardUser::Owner).unwrap();
        let found = session(&mut store, &cookie).unwrap().unwrap();
        assert!(found.csrf_matches(found.csrf()));
        assert!(!found.csrf_matches("nope"));
        assert!(!found.csrf().contains(cookie.as_str()));
        let other =
            open_session(&mut store, Duration::from_secs(60), DashboardUser::Owner).unwrap();
        let other = session(&mut store, &other).unwrap().unwrap();
        assert_ne!(found.csrf(), other.csrf());
        assert!(session(&mut store, "not-a-cookie").unwrap().is_none());
        close_session(&mut store, &cookie).unwrap();
        assert!(
            session(&mut store, &cookie).unwrap().is_none(),
            "logged out"
        );
        let expired = open_session(&mut store, Duration::ZERO, DashboardUser::Owner).unwrap();
        assert!(session(&mut store, &expired).unwrap().is_none(), "expired");
    }
}
