//! The dashboard's secrets: one-time login tokens and session ids, drawn from
//! the OS generator, kept only as SHA-256 digests and compared in constant
//! time (`auth` keeps the digests in the store).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::DashboardError;

/// A one-time login token, shown to the user once. Neither `Debug` nor `Clone`.
pub struct LoginToken(Zeroizing<String>);

impl LoginToken {
    /// A fresh token from the OS generator.
    pub fn generate() -> Result<Self, DashboardError> {
        Ok(LoginToken(random_hex()?))
    }

    /// The token text, for the login link.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256, what is kept to check it later.
    pub fn digest(&self) -> [u8; 32] {
        digest(self.expose())
    }
}

/// SHA-256 of a secret.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time equality of two digests.
pub fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// 32 bytes from the OS generator, as 64 hex characters.
pub fn random_hex() -> Result<Zeroizing<String>, DashboardError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *bytes)
        .map_err(|e| DashboardError::Internal(format!("the OS random generator failed: {e}")))?;
    let mut out = Zeroizing::new(String::with_capacity(64));
    for b in bytes.iter() {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0x0f), 16).unwrap_or('0'));
    }
    Ok(out)
}
