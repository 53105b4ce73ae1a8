//! Connection secrets: the `secret` of `bunker://` and `nostrconnect://` URIs.
//!
//! A bunker secret is a bearer credential (whoever presents it first gets a
//! session), so it is wiped on drop, never printed by `Debug`, never cloned by
//! accident, and compared in constant time.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A connection secret. Deliberately neither `Debug` nor `Clone`.
pub struct ConnectSecret(Zeroizing<String>);

impl ConnectSecret {
    /// Wrap a secret received from a peer or read from storage.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// A fresh secret from 16 bytes of caller-supplied randomness (32 hex characters).
    pub fn from_entropy(entropy: [u8; 16]) -> Self {
        let entropy = Zeroizing::new(entropy);
        let mut s = String::with_capacity(32);
        for b in entropy.iter() {
            s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            s.push(char::from_digit(u32::from(b & 0x0f), 16).unwrap_or('0'));
        }
        Self::new(s)
    }

    /// The secret text, for putting on the wire or into storage.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a candidate (only the length may leak).
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }

    /// An explicit copy, for the rare place that must keep the secret twice.
    pub fn duplicate(&self) -> Self {
        Self::new(self.expose())
    }
}

impl PartialEq for ConnectSecret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.expose())
    }
}

impl Eq for ConnectSecret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_by_value() {
        let s = ConnectSecret::new("0s8j2djs");
        assert!(s.matches("0s8j2djs"));
        assert!(!s.matches("0s8j2djS"));
        assert!(!s.matches("0s8j2dj"));
        assert!(!s.matches(""));
    }

    #[test]
    fn from_entropy_is_hex() {
        let s = ConnectSecret::from_entropy([0xab; 16]);
        assert_eq!(s.expose(), "ab".repeat(16));
    }
}
