//! Third-party NIP-46 software as real processes: rust-nostr's
//! `NostrConnectRemoteSigner` (the `peer-signer` binary of this workspace)
//! and applesauce's `NostrConnectProvider` (Node, `tests/interop`), and
//! Node client scripts (nostr-tools, NDK, applesauce).
//!
//! Missing software is a skip outside CI and a failure under CI, which
//! installs it (`.ci/install`).

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::process::{ci, skipped, stdout_lines};

/// How long a peer may take to print its URI.
const START_WITHIN: Duration = Duration::from_secs(30);

/// `tests/interop` (the Node packages).
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

/// Whether Node and the npm package `package` are installed; `false` (with
/// a skip message) outside CI, a panic under CI.
pub fn node_package(package: &str) -> bool {
    let installed = interop_dir().join("node_modules").join(package).is_dir()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            !ci(),
            "node or tests/interop/node_modules/{package} is missing, and CI must run this test (see .ci/install)"
        );
        skipped(&format!(
            "node or {package} not installed (run `bash .ci/install`)"
        ));
    }
    installed
}

/// Run a Node script of `tests/interop` that prints one JSON object, and
/// return it; panics (with its stderr) when it fails.
pub fn node_json(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(interop_dir())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}

/// A workspace binary built beside the running test (`target/<profile>/`).
pub fn workspace_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let path = exe.parent()?.parent()?.join(name);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !ci(),
        "{} is not built; `cargo test --workspace` builds it",
        path.display()
    );
    skipped(&format!(
        "{name} is not built (cargo build -p rampart-{name})"
    ));
    None
}

/// A third-party signer process, killed on drop.
pub struct Peer {
    child: Child,
    _stdin: Option<ChildStdin>,
    /// Its `bunker://` token.
    pub uri: String,
    /// What it is, for reports.
    pub name: &'static str,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    /// rust-nostr's `NostrConnectRemoteSigner` (nostr-connect 0.44),
    /// approving every request, on `relay` with `secret`.
    pub fn nostr_connect(relay: &str, secret: &str) -> Option<Peer> {
        let binary = workspace_binary("peer-signer")?;
        let mut child = Command::new(binary)
            .args(["--relay", relay, "--secret", secret])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start peer-signer");
        let uri = stdout_lines(&mut child)
            .recv_timeout(START_WITHIN)
            .expect("peer-signer printed no URI");
        Some(Peer {
            child,
            _stdin: None,
            uri,
            name: "nostr-connect 0.44 (NostrConnectRemoteSigner)",
        })
    }

    /// applesauce-signers' `NostrConnectProvider`, approving everything, on
    /// `relay` with `secret` (extra `args` for the script).
    pub fn applesauce(relay: &str, secret: &str, args: &[&str]) -> Option<Peer> {
        let mut all = vec!["--relay", relay, "--secret", secret];
        all.extend_from_slice(args);
        Self::applesauce_args(&all)
    }

    /// The applesauce provider with the script's own arguments
    /// (`--relay`, `--secret`, `--switch-to`, `--nostrconnect`). It exits
    /// when its stdin closes, so a dead test leaves no process behind.
    pub fn applesauce_args(args: &[&str]) -> Option<Peer> {
        if !node_package("applesauce-signers") {
            return None;
        }
        let mut child = Command::new("node")
            .arg("applesauce-provider.mjs")
            .args(args)
            .current_dir(interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node");
        let stdin = child.stdin.take();
        let uri = stdout_lines(&mut child)
            .recv_timeout(START_WITHIN)
            .expect("the applesauce provider printed no URI");
        Some(Peer {
            child,
            _stdin: stdin,
            uri,
            name: "applesauce-signers (NostrConnectProvider)",
        })
    }
}
