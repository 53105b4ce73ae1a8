//! The processes `rampart bench --spawn` starts: an embedded relay
//! (`rampart relay`) and a bunker (`rampart run`) on a fresh data directory.
//!
//! They are separate processes, not tasks in the load generator, so the
//! bunker's CPU time in `/proc` is the bunker's alone (not the relay's, not
//! the clients'). Every child is killed when its handle is dropped; its
//! stderr goes to a log file whose tail is shown if it fails to start.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nip46::nostr::prelude::PublicKey;

/// How long a child may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process, killed (by its own pid) when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl ChildProcess {
    fn start(name: &'static str, mut command: Command, log: PathBuf) -> Result<ChildProcess> {
        let stderr = std::fs::File::create(&log)
            .with_context(|| format!("cannot create the log file {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        Ok(ChildProcess { child, name, log })
    }

    /// Its process id (for `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its stderr, to explain a failure.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Fail with the log's tail if the process has exited.
    fn check_alive(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!(
                "the {} exited ({status}) while starting:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `rampart` command without the parent's `RAMPART_*` settings (the
/// child gets only those it is given).
fn rampart_command(exe: &Path) -> Command {
    let mut command = Command::new(exe);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("RAMPART_")) {
        command.env_remove(key);
    }
    command
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Start `rampart relay` on a free loopback port; returns it and its URL.
pub fn spawn_relay(
    exe: &Path,
    logs: &Path,
    trusted: &[PublicKey],
) -> Result<(ChildProcess, String)> {
    let port = free_port()?;
    let mut command = rampart_command(exe);
    command
        .arg("relay")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    // The bunker's signer answers every request: never rate-limited.
    for signer in trusted {
        command.arg("--trust").arg(signer.to_hex());
    }
    let mut relay = ChildProcess::start("relay", command, logs.join("relay.log"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        relay.check_alive()?;
        if Instant::now() > deadline {
            bail!("the relay did not open port {port}:\n{}", relay.log_tail());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((relay, format!("ws://127.0.0.1:{port}")))
}

/// What a bunker child is started with.
pub struct BunkerSpec<'a> {
    /// The `rampart` executable.
    pub exe: &'a Path,
    /// Its data directory (created if missing).
    pub data_dir: &'a Path,
    /// The relay to serve on.
    pub relay_url: &'a str,
    /// The vault passphrase.
    pub passphrase: &'a str,
    /// What the token it prints grants.
    pub grant: &'a str,
    /// A shared store (`RAMPART_DATABASE`) instead of the data directory's
    /// SQLite file, and the replica name to serve under.
    pub shared: Option<(&'a str, &'a str)>,
}

/// Start `rampart run` and wait until it prints its `bunker://` line (it
/// does once its subscription is live). Returns it and that URI.
///
/// The rate limit is raised out of the way (a load test is not abuse),
/// requests no rule covers are refused at once (a missing grant shows as an
/// error, not as a request waiting for its user), the dashboard is off, and
/// the vault uses a cheap key-derivation cost ([`super::data_dir::LOG_N`]).
pub fn spawn_bunker(spec: &BunkerSpec<'_>) -> Result<(ChildProcess, String)> {
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(spec.data_dir)
        .with_context(|| format!("cannot create {}", spec.data_dir.display()))?;
    let mut command = rampart_command(spec.exe);
    command
        .arg("--data-dir")
        .arg(spec.data_dir)
        .arg("run")
        .arg("--no-prompt")
        .arg("--grant")
        .arg(spec.grant)
        .env("RAMPART_PASSPHRASE", spec.passphrase)
        .env("RAMPART_VAULT_LOG_N", super::data_dir::LOG_N.to_string())
        .env("RAMPART_RELAYS", spec.relay_url)
        .env("RAMPART_DASHBOARD_ENABLED", "false")
        .env("RAMPART_UNLISTED", "deny")
        .env("RAMPART_RATE_BURST", "1000000000")
        .env("RAMPART_RATE_PER_SECOND", "1000000000");
    if let Some((database, replica)) = spec.shared {
        command
            .env("RAMPART_DATABASE", database)
            .env("RAMPART_REPLICA", replica);
    }
    let mut bunker = ChildProcess::start("bunker", command, spec.data_dir.join("bunker.log"))?;
    let stdout = bunker
        .child
        .stdout
        .take()
        .context("the bunker's stdout is not piped")?;
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end, so the pipe never closes under the bunker.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(wait.min(Duration::from_millis(200))) {
            Ok(line) if line.starts_with("bunker://") => return Ok((bunker, line)),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) if !wait.is_zero() => bunker.check_alive()?,
            Err(_) => {
                bunker.check_alive()?;
                bail!(
                    "the bunker printed no bunker:// line within {START_TIMEOUT:?}:\n{}",
                    bunker.log_tail()
                );
            }
        }
    }
}
