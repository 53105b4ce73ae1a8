//! Command-line values that may carry a secret (a `bunker://` token with its
//! secret, a `nostrconnect://` URI with the app's): given as `-`, they are
//! read from stdin instead, so they need not appear in argv (visible to
//! every local user in `ps` and kept in shell history). A value given
//! directly still works: apps and scripts pass URIs that way.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

/// `value`, or with `-` the first line of stdin (trimmed).
pub fn or_stdin(value: &str) -> Result<Zeroizing<String>> {
    if value != "-" {
        return Ok(Zeroizing::new(value.to_owned()));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("paste it here and press Enter: ");
    }
    let mut line = Zeroizing::new(String::new());
    stdin
        .lock()
        .read_line(&mut line)
        .context("could not read the value from stdin")?;
    let value = Zeroizing::new(line.trim().to_owned());
    if value.is_empty() {
        bail!("`-` reads the value from stdin, but stdin was empty");
    }
    Ok(value)
}
