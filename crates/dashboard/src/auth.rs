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

use std::time::Duration;

use nip46::nostr::prelude::Timestamp;
use sha2::{Digest, Sha256};
use store::{DashboardSecret, Store};
use zeroize::Zeroizing;

use crate::error::DashboardError;
use crate::secret::{LoginToken, ct_eq, digest, random_hex};

/// A logged-in browser, as the handlers see it.
#[derive(Clone)]
pub struct AdminSession {
    csrf: String,
}

impl AdminSession {
    /// The session of `cookie` (its CSRF token derived from it).
    fn of(cookie: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"rampart dashboard csrf\0");
        hasher.update(cookie.as_bytes());
        let csrf = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        AdminSession { csrf }
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

/// Mint a one-time login link's token valid for `ttl` (blocking: the
/// store's own thread, or a CLI command).
pub fn issue_login(store: &mut dyn Store, ttl: Duration) -> Result<LoginToken, DashboardError> {
    let token = LoginToken::generate()?;
    store.put_dashboard_secret(DashboardSecret::Login, &token.digest(), expiry(ttl))?;
    Ok(token)
}

/// Use up a login token: whether it was unused and unexpired.
pub fn redeem_login(store: &mut dyn Store, candidate: &str) -> Result<bool, DashboardError> {
    let candidate = candidate.trim();
    if candidate.is_empty() {
        return Ok(false);
    }
    Ok(store.check_dashboard_secret(
        DashboardSecret::Login,
        &digest(candidate),
        Timestamp::now(),
    )?)
}

/// Start a session lasting `ttl`: returns the cookie value (given to the
/// browser once).
pub fn open_session(
    store: &mut dyn Store,
    ttl: Duration,
) -> Result<Zeroizing<String>, DashboardError> {
    let cookie = random_hex()?;
    store.put_dashboard_secret(DashboardSecret::Session, &digest(&cookie), expiry(ttl))?;
    Ok(cookie)
}

/// The live session a cookie value belongs to.
pub fn session(
    store: &mut dyn Store,
    cookie: &str,
) -> Result<Option<AdminSession>, DashboardError> {
    let live = store.check_dashboard_secret(
        DashboardSecret::Session,
        &digest(cookie),
        Timestamp::now(),
    )?;
    Ok(live.then(|| AdminSession::of(cookie)))
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
        let token = issue_login(&mut store, Duration::from_secs(60)).unwrap();
        assert_eq!(token.expose().len(), 64);
        assert!(!redeem_login(&mut store, "wrong").unwrap());
        assert!(!redeem_login(&mut store, "").unwrap());
        assert!(redeem_login(&mut store, token.expose()).unwrap());
        assert!(
            !redeem_login(&mut store, token.expose()).unwrap(),
            "one-time"
        );
        let expired = issue_login(&mut store, Duration::ZERO).unwrap();
        assert!(
            !redeem_login(&mut store, expired.expose()).unwrap(),
            "expired"
        );
    }

    #[test]
    fn sessions_are_found_by_cookie_until_closed_with_a_csrf_token_of_their_own() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let cookie = open_session(&mut store, Duration::from_secs(60)).unwrap();
        let found = session(&mut store, &cookie).unwrap().unwrap();
        assert!(found.csrf_matches(found.csrf()));
        assert!(!found.csrf_matches("nope"));
        assert!(!found.csrf().contains(cookie.as_str()));
        let other = open_session(&mut store, Duration::from_secs(60)).unwrap();
        let other = session(&mut store, &other).unwrap().unwrap();
        assert_ne!(found.csrf(), other.csrf());
        assert!(session(&mut store, "not-a-cookie").unwrap().is_none());
        close_session(&mut store, &cookie).unwrap();
        assert!(
            session(&mut store, &cookie).unwrap().is_none(),
            "logged out"
        );
        let expired = open_session(&mut store, Duration::ZERO).unwrap();
        assert!(session(&mut store, &expired).unwrap().is_none(), "expired");
    }
}
