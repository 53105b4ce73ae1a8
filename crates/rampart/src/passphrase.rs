//! Reading the vault passphrase: from `RAMPART_PASSPHRASE` for unattended
//! runs, else from a hidden terminal prompt. Never from argv or a file.

use std::io::IsTerminal;

use anyhow::{Result, bail};

use crate::env::Env;
use bunker::vault::Passphrase;

/// Get the passphrase; `confirm` asks twice (when creating the vault).
pub fn read(env: &Env, confirm: bool) -> Result<Passphrase> {
    read_from(env, "RAMPART_PASSPHRASE", "Vault passphrase: ", confirm)
}

/// The new passphrase of `rampart vault passphrase`: `RAMPART_NEW_PASSPHRASE`,
/// else asked twice.
pub fn read_new(env: &Env) -> Result<Passphrase> {
    read_from(
        env,
        "RAMPART_NEW_PASSPHRASE",
        "New vault passphrase: ",
        true,
    )
}

fn read_from(env: &Env, var: &str, prompt: &str, confirm: bool) -> Result<Passphrase> {
    if let Some(p) = env.get(var).filter(|p| !p.is_empty()) {
        return Ok(Passphrase::new(p.as_str()));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no vault passphrase: set {var} or run in a terminal");
    }
    let first = zeroize::Zeroizing::new(rpassword::prompt_password(prompt)?);
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
