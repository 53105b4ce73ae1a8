//! Child processes for tests: nostr-rs-relay and `rampart`, on free loopback
//! ports, waited for by their port or their output (never by sleeping).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The lines a child prints on stdout (piped), read on a thread of their own
/// and handed over as they come; the channel closes when stdout does.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child
        .stdout
        .take()
        .expect("the child's stdout is piped (Stdio::piped())");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Whether we run under CI (`CI` set to anything but `false`/empty).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Tell the developer a test was skipped, past the test harness's output
/// capture (which only catches the `print!` macros), so it shows in a passing run.
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Wait until something accepts connections on the port.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn find_binary(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env)
        .map(PathBuf::from)
        .filter(|p| p.exists())
    {
        return Some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A nostr-rs-relay child process with its own data directory.
pub struct NostrRsRelay {
    child: Option<Child>,
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl NostrRsRelay {
    /// Start one, or `None` when the binary is not installed. Under CI a
    /// missing binary is a failure, so CI never skips these tests silently.
    pub fn start() -> Option<Self> {
        Self::start_with(false)
    }

    /// Start one with NIP-42 enabled (`nip42_auth` and `nip42_dms`: this
    /// relay withholds kind-4 DMs from unauthenticated clients; it never
    /// refuses anything else).
    pub fn start_with_auth() -> Option<Self> {
        Self::start_with(true)
    }

    /// Start one taking events and websocket messages of up to `bytes`
    /// (its defaults are 128 KB).
    pub fn start_with_size_limit(bytes: usize) -> Option<Self> {
        Self::start_configured(false, Some(bytes))
    }

    fn start_with(auth: bool) -> Option<Self> {
        Self::start_configured(auth, None)
    }

    fn start_configured(auth: bool, size_limit: Option<usize>) -> Option<Self> {
        let Some(binary) = find_binary("NOSTR_RS_RELAY", "nostr-rs-relay") else {
            assert!(
                !ci(),
                "nostr-rs-relay is not installed, and CI must run these tests (see .ci/install)"
            );
            skipped("nostr-rs-relay not found (set NOSTR_RS_RELAY or run `bash .ci/install`)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = format!(
            "[info]\nrelay_url = \"ws://127.0.0.1:{port}/\"\nname = \"rampart test relay\"\n\n\
             [database]\ndata_directory = \"{dir}\"\n\n\
             [network]\naddress = \"127.0.0.1\"\nport = {port}\n\n\
             [limits]\nmessages_per_sec = 0\n{sizes}\n\
             [authorization]\nnip42_auth = {auth}\nnip42_dms = {auth}\n",
            dir = dir.path().display(),
            sizes = size_limit
                .map(|b| {
                    format!(
                        "max_event_bytes = {b}\nmax_ws_message_bytes = {b}\nmax_ws_frame_bytes = {b}\n"
                    )
                })
                .unwrap_or_default(),
        );
        std::fs::write(dir.path().join("config.toml"), config)
            .expect("write nostr-rs-relay config");
        let mut relay = NostrRsRelay {
            child: None,
            binary,
            dir,
            port,
        };
        relay.resume();
        Some(relay)
    }

    /// Start the process (again, after [`stop`](Self::stop): same port, same
    /// data) and wait until its port accepts connections.
    pub fn resume(&mut self) {
        let log_path = self.dir.path().join("relay.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .arg("--db")
            .arg(self.dir.path())
            .env("RUST_LOG", "warn,nostr_rs_relay=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nostr-rs-relay");
        self.child = Some(child);
        if !wait_for_port(self.port, Duration::from_secs(30)) {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            panic!(
                "nostr-rs-relay did not open port {}; its log:\n{log}",
                self.port
            );
        }
    }

    /// Its websocket URL.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Kill it (its data stays for [`resume`](Self::resume)).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop and start again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.resume();
    }
}

impl Drop for NostrRsRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `rampart run` child process with its own data directory.
pub struct RampartProcess {
    child: Option<Child>,
    binary: PathBuf,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    /// The `bunker://` lines it printed at start.
    pub uris: Vec<String>,
    /// The relay it serves on.
    pub relay_url: String,
    /// Whether its embedded relay's port is settled (moved once already, or
    /// started on): restarts never move it, clients know it.
    relay_settled: bool,
}

impl RampartProcess {
    /// Start `binary run` with a fresh data dir. With `relay` = `None` it
    /// starts the embedded relay on a free port. `env` adds `RAMPART_*`
    /// settings; the passphrase and a cheap key-encryption cost are set here.
    pub fn start(binary: &Path, relay: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().to_path_buf();
        Self::start_in(binary, data_dir, Some(temp), relay, env, args)
    }

    /// Start on an existing data dir (a restart).
    pub fn start_in(
        binary: &Path,
        data_dir: PathBuf,
        temp: Option<tempfile::TempDir>,
        relay: Option<&str>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Self {
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("RAMPART_PASSPHRASE".into(), "test passphrase".into()));
        env.push(("RAMPART_VAULT_LOG_N".into(), "4".into()));
        // Every bunker serves a dashboard: on a free port unless the test
        // chose one, so bunkers can run side by side.
        if !env.iter().any(|(k, _)| k == "RAMPART_DASHBOARD_LISTEN") {
            env.push(("RAMPART_DASHBOARD_LISTEN".into(), "127.0.0.1:0".into()));
        }
        let relay_url = match relay {
            Some(r) => {
                env.push(("RAMPART_RELAYS".into(), r.to_string()));
                r.to_string()
            }
            None => {
                let port = free_port();
                env.push(("RAMPART_EMBEDDED_RELAY".into(), format!("127.0.0.1:{port}")));
                format!("ws://127.0.0.1:{port}")
            }
        };
        let mut process = RampartProcess {
            child: None,
            binary: binary.to_path_buf(),
            data_dir,
            _temp: temp,
            env,
            uris: Vec::new(),
            relay_url,
            relay_settled: false,
        };
        process.spawn(args);
        process
    }

    fn spawn(&mut self, args: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("rampart-test.log"))
            .expect("log file");
        let mut child = Command::new(&self.binary)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("run")
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info,bunker=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start rampart");
        let rx = stdout_lines(&mut child);
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        self.uris.clear();
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if line.starts_with("bunker://") {
                self.uris.push(line);
                break;
            }
        }
        if self.uris.is_empty() && self.lost_port_race() {
            // Another test took the free port we picked before the bunker
            // bound it: pick another and start again (first starts only).
            let port = free_port();
            self.relay_url = format!("ws://127.0.0.1:{port}");
            for (k, v) in &mut self.env {
                if k == "RAMPART_EMBEDDED_RELAY" {
                    *v = format!("127.0.0.1:{port}");
                }
            }
            self.relay_settled = true;
            return self.spawn(args);
        }
        assert!(
            !self.uris.is_empty(),
            "rampart printed no bunker:// line; see {}",
            self.log_path().display()
        );
        self.relay_settled = true;
    }

    /// Whether the bunker just exited because its embedded relay's port was
    /// taken, on a first start whose port the kit chose (once).
    fn lost_port_race(&mut self) -> bool {
        if self.relay_settled || !self.env.iter().any(|(k, _)| k == "RAMPART_EMBEDDED_RELAY") {
            return false;
        }
        let exited = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        exited && log.contains("could not start the embedded relay")
    }

    /// The first `bunker://` URI printed.
    pub fn uri(&self) -> &str {
        &self.uris[0]
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The dashboard's one-time login link printed at the latest start
    /// (`dashboard: http://…/login?token=…` on stderr, in the log file).
    pub fn dashboard_login_url(&self) -> Option<String> {
        let log = std::fs::read_to_string(self.log_path()).ok()?;
        log.lines()
            .filter_map(|line| line.strip_prefix("dashboard: "))
            .filter_map(|rest| rest.split_whitespace().next())
            .next_back()
            .map(str::to_owned)
    }

    /// Where its stderr goes.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("rampart-test.log")
    }

    /// Run another `rampart` command on the same data dir and environment.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, "")
    }

    /// Same, feeding `stdin`.
    pub fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(&self.binary)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run rampart");
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        child.wait_with_output().expect("rampart output")
    }

    /// Run another `rampart` command that must succeed; its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "rampart {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Mint a token with `grant` while the bunker runs.
    pub fn mint(&self, grant: &str, extra: &[&str]) -> String {
        let mut args = vec!["uri", "--grant", grant, "--relay", &self.relay_url];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "rampart uri failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Start again on the same data dir (after `stop` or `kill9`).
    pub fn restart(&mut self, args: &[&str]) {
        self.spawn(args);
    }
}

impl Drop for RampartProcess {
    fn drop(&mut self) {
        self.kill9();
        // A failing test loses its temp dir: show the end of the bunker's log first.
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(self.log_path())
        {
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "--- rampart log ({}):\n{}\n---\n",
                    self.log_path().display(),
                    tail.join("\n")
                )
                .as_bytes(),
            );
        }
    }
}
