//! Extra one-time login tokens, handed to the running dashboard through a
//! file in the data directory (`rampart dashboard login`).
//!
//! The token printed at start works once; a user who logs in from another
//! browser later needs another. Whoever can write the data directory can
//! already change every session in the database, so a file there grants no
//! more than that. The file holds one `<sha256 hex> <expiry unix secs>` line
//! per token (never the token itself), is created owner-only, and a line is
//! removed when used or expired.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;
use std::time::Duration;

use crate::error::DashboardError;
use crate::secret::{self, LoginToken};

/// The file's name inside the data directory.
pub const FILE_NAME: &str = "dashboard-logins";

/// Why a login token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// No randomness.
    #[error(transparent)]
    Random(#[from] DashboardError),
    /// The file could not be written.
    #[error("could not write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// Add a fresh token valid for `ttl` to the file at `path`, and return it.
pub fn issue(path: &Path, ttl: Duration, now: u64) -> Result<LoginToken, IssueError> {
    let token = LoginToken::generate()?;
    let line = format!(
        "{} {}\n",
        hex(&token.digest()),
        now.saturating_add(ttl.as_secs())
    );
    let io = |source| IssueError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = open_private(path, true).map_err(io)?;
    file.write_all(line.as_bytes()).map_err(io)?;
    Ok(token)
}

/// Whether `candidate` is an unexpired token in the file; if so it is used up.
/// Expired lines are dropped on the way.
pub fn redeem(path: &Path, candidate: &str, now: u64) -> io::Result<bool> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let wanted = secret::digest(candidate);
    let mut found = false;
    let mut keep = String::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(digest), Some(expiry)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(expiry) = expiry.parse::<u64>() else {
            continue;
        };
        if expiry <= now {
            continue;
        }
        let matches = unhex(digest).is_some_and(|d| secret::ct_eq(&d, &wanted));
        if matches && !found {
            found = true;
        } else {
            keep.push_str(line);
            keep.push('\n');
        }
    }
    if keep.len() != text.len() {
        let mut file = open_private(path, false)?;
        file.write_all(keep.as_bytes())?;
    }
    Ok(found)
}

fn open_private(path: &Path, append: bool) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.create(true);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_work_once_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(
            !redeem(&path, "anything", 100).unwrap(),
            "no file, no token"
        );
        let a = issue(&path, Duration::from_secs(60), 100).unwrap();
        let b = issue(&path, Duration::from_secs(60), 100).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(a.expose()), "only digests are written");
        assert!(!redeem(&path, "wrong", 110).unwrap());
        assert!(redeem(&path, a.expose(), 110).unwrap());
        assert!(!redeem(&path, a.expose(), 110).unwrap(), "one-time");
        assert!(!redeem(&path, b.expose(), 160).unwrap(), "expired");
        assert!(
            fs::read_to_string(&path).unwrap().is_empty(),
            "used and expired lines are gone"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "owner-only");
        }
    }
}
