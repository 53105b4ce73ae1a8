//! Reading the vault passphrase: from `RAMPART_PASSPHRASE` for unattended
//! runs, else from a hidden terminal prompt. Never from argv or a file.

use std::io::IsTerminal;

use anyhow::{Result, bail};

use crate::env::Env;
use bunker::vault::Passphrase;

/// Get the passphrase; `confirm` asks twice (when creating the vault).
pub fn read(env: &Env, confirm: bool) -> Result<Passphrase> {
    if let Some(p) = env.get("RAMPART_PASSPHRASE").filter(|p| !p.is_empty()) {
        return Ok(Passphrase::new(p.as_str()));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no vault passphrase: set RAMPART_PASSPHRASE or run in a terminal");
    }
    let first = zeroize::Zeroizing::new(rpassword::prompt_password("Vault passphrase: ")?);
    if first.is_empty() {
        bail!("the passphrase may not be empty");
    }
    if confirm {
        let again = zeroize::Zeroizing::new(rpassword::prompt_password("Repeat passphrase: ")?);
        if *again != *first {
            bail!("the passphrases differ");
        }
    }
    Ok(Passphrase::new(first.as_str()))
}
