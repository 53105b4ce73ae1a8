//! The `RAMPART_*` environment, read once at start.
//!
//! Values are held in zeroizing strings, because two of them are secrets
//! (`RAMPART_PASSPHRASE`, `RAMPART_IMPORT_PASSPHRASE`): the copy this
//! process keeps is wiped when it is dropped, and `rampart run` drops the
//! secrets once the vault is unlocked ([`forget_secrets`]). The process's
//! own environment block cannot be wiped without `unsafe` code (forbidden
//! here), which is why the docs recommend the prompt or stdin over the
//! variable for interactive use.

use std::collections::HashMap;

use zeroize::Zeroizing;

/// The variables that hold secrets.
const SECRETS: [&str; 2] = ["RAMPART_PASSPHRASE", "RAMPART_IMPORT_PASSPHRASE"];

/// `RAMPART_*` variables by name.
pub type Env = HashMap<String, Zeroizing<String>>;

/// The `RAMPART_*` variables of this process.
pub fn from_process() -> Env {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("RAMPART_"))
        .map(|(k, v)| (k, Zeroizing::new(v)))
        .collect()
}

/// Drop (and wipe) the secrets: nothing needs them once the vault is open.
pub fn forget_secrets(env: &mut Env) {
    for name in SECRETS {
        env.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_forgotten_and_the_rest_kept() {
        let mut env: Env = [
            ("RAMPART_PASSPHRASE", "hunter2"),
            ("RAMPART_IMPORT_PASSPHRASE", "other"),
            ("RAMPART_DATA_DIR", "/tmp/x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Zeroizing::new(v.to_owned())))
        .collect();
        forget_secrets(&mut env);
        assert!(!env.contains_key("RAMPART_PASSPHRASE"));
        assert!(!env.contains_key("RAMPART_IMPORT_PASSPHRASE"));
        assert_eq!(
            env.get("RAMPART_DATA_DIR").map(|v| v.as_str()),
            Some("/tmp/x")
        );
    }
}
