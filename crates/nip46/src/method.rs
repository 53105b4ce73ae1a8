//! The names of the NIP-46 methods.
//!
//! One enum is shared by requests, permissions and the audit trail so that a
//! method name is spelled in exactly one place.

use core::fmt;
use core::str::FromStr;

/// A method the NIP-46 text defines.
///
/// An unknown name is not a `Method`: requests carry it as
/// `Command::Unknown` so the signer can answer
/// `method_not_found` instead of dropping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// `connect`: establish a session.
    Connect,
    /// `get_public_key`: the user's public key.
    GetPublicKey,
    /// `sign_event`: sign an event template with the user's key.
    SignEvent,
    /// `ping`: liveness check, answered `pong`.
    Ping,
    /// `get_relays`: the signer's relay map (NIP-07 style).
    GetRelays,
    /// `nip04_encrypt`: legacy encryption to a third party.
    Nip04Encrypt,
    /// `nip04_decrypt`: legacy decryption from a third party.
    Nip04Decrypt,
    /// `nip44_encrypt`: NIP-44 encryption to a third party.
    Nip44Encrypt,
    /// `nip44_decrypt`: NIP-44 decryption from a third party.
    Nip44Decrypt,
    /// `switch_relays`: ask the signer which relays to use from now on.
    SwitchRelays,
    /// `logout`: end the session.
    Logout,
}

impl Method {
    /// Every method, in the order the NIP lists them.
    pub const ALL: [Method; 11] = [
        Method::Connect,
        Method::GetPublicKey,
        Method::SignEvent,
        Method::Ping,
        Method::GetRelays,
        Method::Nip04Encrypt,
        Method::Nip04Decrypt,
        Method::Nip44Encrypt,
        Method::Nip44Decrypt,
        Method::SwitchRelays,
        Method::Logout,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Connect => "connect",
            Method::GetPublicKey => "get_public_key",
            Method::SignEvent => "sign_event",
            Method::Ping => "ping",
            Method::GetRelays => "get_relays",
            Method::Nip04Encrypt => "nip04_encrypt",
            Method::Nip04Decrypt => "nip04_decrypt",
            Method::Nip44Encrypt => "nip44_encrypt",
            Method::Nip44Decrypt => "nip44_decrypt",
            Method::SwitchRelays => "switch_relays",
            Method::Logout => "logout",
        }
    }

    /// Methods that manage the session itself rather than use the user's key.
    ///
    /// They are never subject to a grant: a client must always be able to
    /// connect and to log out.
    pub const fn is_session_control(self) -> bool {
        matches!(self, Method::Connect | Method::Logout)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A method name that NIP-46 does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown NIP-46 method `{0}`")]
pub struct UnknownMethod(pub String);

impl FromStr for Method {
    type Err = UnknownMethod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownMethod(truncate_for_display(s)))
    }
}

/// Peer-supplied names end up in error messages and logs; keep them short.
pub(crate) fn truncate_for_display(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.as_str().parse::<Method>().unwrap(), m);
        }
    }

    #[test]
    fn unknown_name_is_an_error() {
        assert_eq!(
            "sign_events".parse::<Method>(),
            Err(UnknownMethod("sign_events".into()))
        );
        let long = "x".repeat(500);
        let err = long.parse::<Method>().unwrap_err();
        assert!(err.0.chars().count() <= 65);
    }
}
