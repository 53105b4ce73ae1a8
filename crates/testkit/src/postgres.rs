//! A throwaway PostgreSQL cluster for a test run: `initdb` in a temporary
//! directory, started on a free loopback port, stopped (immediately) on
//! drop. Never the system's service.
//!
//! `initdb` refuses to run as root, so as root the cluster is created and
//! run as the `postgres` user (`runuser`), which Debian's package creates.
//! Missing binaries are a skip outside CI and a failure under CI, which
//! installs them (`.ci/install`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::process::{ci, free_port, skipped};

/// A running cluster.
pub struct PostgresCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
    databases: AtomicU32,
    /// The server options it was started with (for a restart).
    options: String,
}

/// The directory of Debian's PostgreSQL binaries (`/usr/lib/postgresql/<v>/bin`),
/// or `RAMPART_PG_BIN`.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RAMPART_PG_BIN").map(PathBuf::from) {
        return dir.join("initdb").is_file().then_some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PostgresCluster {
    /// Start one, or `None` (skip) when PostgreSQL is not installed.
    pub fn start() -> Option<Self> {
        Self::start_configured(false)
    }

    /// Start one that takes TLS connections only (`hostssl`), with a
    /// server certificate for 127.0.0.1 from a fresh test CA, whose
    /// certificate is at [`ca_certificate`](Self::ca_certificate).
    pub fn start_with_tls() -> Option<Self> {
        Self::start_configured(true)
    }

    /// The test CA's certificate (PEM), for `sslrootcert`.
    pub fn ca_certificate(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn start_configured(tls: bool) -> Option<Self> {
        let Some(bin) = bin_dir() else {
            assert!(
                !ci(),
                "PostgreSQL is not installed, and CI must run these tests (see .ci/install)"
            );
            skipped("PostgreSQL not found (apt-get install postgresql, or set RAMPART_PG_BIN)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "could not hand the cluster directory to postgres"
            );
        }
        let mut cluster = PostgresCluster {
            bin,
            port: free_port(),
            as_postgres,
            databases: AtomicU32::new(0),
            dir,
            options: String::new(),
        };
        let data = cluster.data();
        let out = cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            cluster.port,
            cluster.dir.path().display()
        );
        if tls {
            cluster.make_certificates();
            let dir = cluster.dir.path().display().to_string();
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key"
            ));
            // TCP only over TLS.
            let hba = cluster.dir.path().join("data/pg_hba.conf");
            let rules = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";
            std::fs::write(&hba, rules).expect("write pg_hba.conf");
        }
        cluster.options = options;
        cluster.start_server();
        Some(cluster)
    }

    fn start_server(&self) {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-o",
                &self.options,
                "-l",
                &log.display().to_string(),
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            text(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stop the server at once (`-m immediate`: like a crash; every
    /// connection breaks) and wait.
    pub fn stop(&self) {
        let data = self.data();
        let out = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop failed: {}", text(&out));
    }

    /// Start the server again after [`PostgresCluster::stop`] (same port).
    pub fn start_again(&self) {
        self.start_server();
    }

    /// A test CA and a server certificate for 127.0.0.1 signed by it
    /// (openssl; P-256 keys), readable by the server only.
    fn make_certificates(&self) {
        let dir = self.dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("run openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=rampart test CA",
        ]);
        openssl(&ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(&csr);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write server.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        if self.as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres", "server.key", "server.crt"])
                .current_dir(dir)
                .status()
                .expect("chown");
            assert!(status.success());
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod server.key");
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        command
            .args(args)
            .current_dir(Path::new("/"))
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` (no password: the cluster trusts loopback).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A fresh, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("rampart_test_{n}");
        let port = self.port.to_string();
        let out = self.run(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", &name],
        );
        assert!(out.status.success(), "createdb failed: {}", text(&out));
        self.url(&name)
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
