//! A connection that survives an app restart.
//!
//! Bunker secrets are single-use, so an app that forgot its client key after
//! a restart needs a new token from the user — the "lost session" complaint.
//! A [`Session`] is everything needed to talk to the same signer again: the
//! client's secret key, the signer's pubkey, the relays and the user's
//! pubkey. It is stored as JSON; files are written with mode 0600 because the
//! client key is a credential (whoever holds it can use the session).

use std::fmt;
use std::io::Write;
use std::path::Path;

use nip46::nostr::prelude::{Keys, PublicKey, RelayUrl, SecretKey};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// The version written by this code.
const VERSION: u32 = 1;

/// Why a session could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The file could not be read or written.
    #[error("session file {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The system's reason.
        reason: String,
    },
    /// The text is not a session.
    #[error("not a valid session ({0}); connect again to create one")]
    Invalid(String),
    /// Written by a newer version.
    #[error("session version {0} is not supported (expected {VERSION}); connect again")]
    Version(u32),
}

/// What it takes to talk to the same signer again.
///
/// Holds the client's secret key: not `Debug`-printed, wiped with its
/// [`Keys`] on drop.
#[derive(Clone)]
pub struct Session {
    /// The client's key pair (its secret is the credential).
    pub client_keys: Keys,
    /// The remote signer's pubkey.
    pub signer: PublicKey,
    /// The user's pubkey, as `get_public_key` returned it.
    pub user: PublicKey,
    /// The relays the signer listens on.
    pub relays: Vec<RelayUrl>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client", &self.client_keys.public_key())
            .field("signer", &self.signer)
            .field("user", &self.user)
            .field("relays", &self.relays)
            .finish()
    }
}

impl PartialEq for Session {
    fn eq(&self, other: &Self) -> bool {
        self.client_keys.secret_key() == other.client_keys.secret_key()
            && self.signer == other.signer
            && self.user == other.user
            && self.relays == other.relays
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    version: u32,
    client_secret_key: String,
    signer_pubkey: String,
    user_pubkey: String,
    relays: Vec<String>,
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.client_secret_key.zeroize();
    }
}

impl Session {
    /// The session as JSON text.
    pub fn to_json(&self) -> Zeroizing<String> {
        let wire = Wire {
            version: VERSION,
            client_secret_key: self.client_keys.secret_key().to_secret_hex(),
            signer_pubkey: self.signer.to_hex(),
            user_pubkey: self.user.to_hex(),
            relays: self.relays.iter().map(ToString::to_string).collect(),
        };
        // Serializing strings cannot fail.
        Zeroizing::new(serde_json::to_string_pretty(&wire).unwrap_or_default())
    }

    /// Read a session from JSON text.
    pub fn from_json(json: &str) -> Result<Session, SessionError> {
        let wire: Wire =
            serde_json::from_str(json).map_err(|e| SessionError::Invalid(e.to_string()))?;
        if wire.version != VERSION {
            return Err(SessionError::Version(wire.version));
        }
        let secret = SecretKey::from_hex(&wire.client_secret_key)
            .map_err(|_| SessionError::Invalid("client_secret_key is not a secret key".into()))?;
        let pubkey = |name: &str, hex: &str| {
            PublicKey::from_hex(hex)
                .map_err(|_| SessionError::Invalid(format!("{name} is not a public key")))
        };
        let relays = wire
            .relays
            .iter()
            .map(|r| {
                RelayUrl::parse(r)
                    .map_err(|_| SessionError::Invalid(format!("`{r}` is not a relay URL")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if relays.is_empty() {
            return Err(SessionError::Invalid("no relays".into()));
        }
        Ok(Session {
            client_keys: Keys::new(secret),
            signer: pubkey("signer_pubkey", &wire.signer_pubkey)?,
            user: pubkey("user_pubkey", &wire.user_pubkey)?,
            relays,
        })
    }

    /// Read a session file.
    pub fn load(path: &Path) -> Result<Session, SessionError> {
        let text = std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|e| io(path, &e))?;
        Session::from_json(&text)
    }

    /// Write a session file readable by its owner only (0600 on Unix),
    /// replacing any previous one atomically.
    pub fn save(&self, path: &Path) -> Result<(), SessionError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("session");
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = write_private(&temp, self.to_json().as_bytes())
            .and_then(|()| std::fs::rename(&temp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io(path, &e));
        }
        Ok(())
    }

    /// Delete a session file (after logout). A missing file is not an error.
    pub fn delete(path: &Path) -> Result<(), SessionError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(path, &e)),
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // `mode` only applies when the file is created.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

fn io(path: &Path, e: &std::io::Error) -> SessionError {
    SessionError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            client_keys: Keys::generate(),
            signer: Keys::generate().public_key(),
            user: Keys::generate().public_key(),
            relays: vec![
                RelayUrl::parse("wss://relay.example.com").unwrap(),
                RelayUrl::parse("ws://127.0.0.1:7447").unwrap(),
            ],
        }
    }

    #[test]
    fn json_round_trip() {
        let s = session();
        assert_eq!(Session::from_json(&s.to_json()).unwrap(), s);
        assert!(!format!("{s:?}").contains(&s.client_keys.secret_key().to_secret_hex()));
    }

    #[test]
    fn bad_sessions_are_refused() {
        let s = session();
        let mut v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        v["version"] = 9.into();
        assert_eq!(
            Session::from_json(&v.to_string()),
            Err(SessionError::Version(9))
        );
        v["version"] = 1.into();
        v["relays"] = serde_json::json!([]);
        assert!(matches!(
            Session::from_json(&v.to_string()),
            Err(SessionError::Invalid(_))
        ));
        v["relays"] = serde_json::json!(["https://not-a-relay"]);
        assert!(matches!(
            Session::from_json(&v.to_string()),
            Err(SessionError::Invalid(_))
        ));
        assert!(matches!(
            Session::from_json("{}"),
            Err(SessionError::Invalid(_))
        ));
    }

    #[test]
    fn files_are_private_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/session.json");
        let first = session();
        first.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = session();
        second.save(&path).unwrap();
        assert_eq!(Session::load(&path).unwrap(), second);
        Session::delete(&path).unwrap();
        Session::delete(&path).unwrap();
        assert!(matches!(Session::load(&path), Err(SessionError::Io { .. })));
    }
}
