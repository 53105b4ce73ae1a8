//! Logins and sessions: the one-time login token, the session cookies it is
//! exchanged for, and their CSRF tokens.
//!
//! Everything secret is 32 random bytes from the OS, kept server-side only as
//! a SHA-256 (a memory dump or a log line cannot replay it), and compared in
//! constant time against every candidate, without stopping early. Sessions
//! expire after a fixed lifetime and are capped in number.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::error::DashboardError;
use crate::login_drop;
use crate::secret::{LoginToken, ct_eq, digest, random_hex};

/// Sessions kept at most; logging in again drops the oldest.
const MAX_SESSIONS: usize = 32;

/// A logged-in browser, as the handlers see it.
#[derive(Clone)]
pub struct AdminSession {
    csrf: String,
}

impl AdminSession {
    /// The token every state-changing request of this session must carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `candidate` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, candidate: &str) -> bool {
        ct_eq(&digest(candidate), &digest(&self.csrf))
    }
}

struct Entry {
    cookie_digest: [u8; 32],
    session: AdminSession,
    expires: Instant,
}

/// Login tokens and sessions.
pub struct Auth {
    /// The token printed at start, until it is used or expires.
    start_token: Mutex<Option<([u8; 32], Instant)>>,
    sessions: Mutex<Vec<Entry>>,
    ttl: Duration,
    drop_file: Option<PathBuf>,
}

impl Auth {
    /// Fresh login state with sessions lasting `ttl`; returns the start
    /// token, which works once within `start_ttl`.
    pub fn new(
        ttl: Duration,
        start_ttl: Duration,
        drop_file: Option<PathBuf>,
    ) -> Result<(Self, LoginToken), DashboardError> {
        let token = LoginToken::generate()?;
        let auth = Auth {
            // A TTL too large for the clock means "until used".
            start_token: Mutex::new(Some((
                token.digest(),
                Instant::now()
                    .checked_add(start_ttl)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600)),
            ))),
            sessions: Mutex::new(Vec::new()),
            ttl,
            drop_file,
        };
        Ok((auth, token))
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Use up a login token: the start token, or one from the drop file.
    pub fn redeem(&self, candidate: &str) -> bool {
        let candidate_digest = digest(candidate.trim());
        {
            let mut start = self.start_token.lock().unwrap_or_else(|p| p.into_inner());
            if start.is_some_and(|(_, expires)| expires <= Instant::now()) {
                *start = None;
            }
            if let Some((expected, _)) = *start
                && ct_eq(&expected, &candidate_digest)
            {
                *start = None;
                return true;
            }
        }
        match &self.drop_file {
            Some(path) => match login_drop::redeem(path, candidate.trim(), unix_now()) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, file = %path.display(), "could not read dashboard login tokens");
                    false
                }
            },
            None => false,
        }
    }

    /// Start a session: returns the cookie value (given to the browser once).
    pub fn open_session(&self) -> Result<Zeroizing<String>, DashboardError> {
        let cookie = random_hex()?;
        let csrf = random_hex()?.to_string();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|e| e.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            sessions.remove(0);
        }
        sessions.push(Entry {
            cookie_digest: digest(&cookie),
            session: AdminSession { csrf },
            expires: now + self.ttl,
        });
        Ok(cookie)
    }

    /// The live session a cookie value belongs to.
    pub fn session(&self, cookie: &str) -> Option<AdminSession> {
        let candidate = digest(cookie);
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|e| e.expires > now);
        let mut found = None;
        for entry in sessions.iter() {
            if ct_eq(&entry.cookie_digest, &candidate) {
                found = Some(entry.session.clone());
            }
        }
        found
    }

    /// End the session a cookie value belongs to.
    pub fn close_session(&self, cookie: &str) {
        let candidate = digest(cookie);
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|e| !ct_eq(&e.cookie_digest, &candidate));
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_token_works_once() {
        let (auth, token) =
            Auth::new(Duration::from_secs(60), Duration::from_secs(60), None).unwrap();
        assert_eq!(token.expose().len(), 64);
        assert!(!auth.redeem("wrong"));
        assert!(!auth.redeem(""));
        assert!(auth.redeem(token.expose()));
        assert!(!auth.redeem(token.expose()), "one-time");
    }

    #[test]
    fn the_start_token_expires() {
        let (auth, token) =
            Auth::new(Duration::from_secs(60), Duration::from_millis(30), None).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert!(!auth.redeem(token.expose()), "expired unused");
    }

    #[test]
    fn sessions_are_found_by_cookie_and_expire() {
        let (auth, _) =
            Auth::new(Duration::from_millis(50), Duration::from_secs(60), None).unwrap();
        let cookie = auth.open_session().unwrap();
        let session = auth.session(&cookie).unwrap();
        assert!(session.csrf_matches(session.csrf()));
        assert!(!session.csrf_matches("nope"));
        assert!(auth.session("not-a-cookie").is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(auth.session(&cookie).is_none(), "expired");

        let (auth, _) = Auth::new(Duration::from_secs(60), Duration::from_secs(60), None).unwrap();
        let cookie = auth.open_session().unwrap();
        auth.close_session(&cookie);
        assert!(auth.session(&cookie).is_none(), "logged out");
        let first = auth.open_session().unwrap();
        for _ in 0..MAX_SESSIONS {
            auth.open_session().unwrap();
        }
        assert!(
            auth.session(&first).is_none(),
            "the oldest is dropped at the cap"
        );
    }
}
