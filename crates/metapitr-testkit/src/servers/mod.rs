//! Real etcd and PostgreSQL servers for the integration tests: at most one of each kind per
//! test process, started on first use on 127.0.0.1 with free ports and data in a temp dir
//! under `$TMPDIR/metapitr-test-servers/`.
//!
//! Servers are spawned from one long-lived thread with `PR_SET_PDEATHSIG` (SIGKILL for
//! etcd, SIGQUIT, PostgreSQL's immediate shutdown, for the postmaster, which runs in the
//! foreground as a direct child), so they die with the test process however it ends; on a
//! normal exit an `atexit` handler also stops them and removes their directories. A server
//! that cannot start panics with the tail of its log: it fails the test, never skips it.

pub mod proc;
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use proc::Server;

pub use proc::free_port;

/// How long a server may take to answer after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a starting server is asked whether it answers.
const START_POLL: Duration = Duration::from_millis(100);
/// Attempts at starting a server when its free ports were taken in between.
const START_ATTEMPTS: usize = 3;

pub struct Etcd {
    /// `127.0.0.1:PORT`, the client port.
    pub endpoint: String,
    /// Set on the server with authentication enabled.
    pub username: Option<String>,
    pub password: Option<String>,
    pub dir: PathBuf,
    pid: u32,
}

impl Etcd {
    /// `etcd://127.0.0.1:PORT/prefix/` (the prefix with its slashes trimmed).
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{}/", self.endpoint, prefix.trim_matches('/'))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

pub struct Postgres {
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dir: PathBuf,
    bin: PathBuf,
    pid: u32,
}

impl Postgres {
    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{db}",
            self.user, self.password, self.port
        )
    }

    /// Creates a database no other test uses and returns its URL.
    pub fn create_db(&self) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "t_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs one SQL command through `psql` as the superuser; panics when it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = proc::psql(&self.bin, self.port, &self.user, &self.password, db)
            .args(["-c", sql])
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql from {}: {e}", self.bin.display()));
        if !out.status.success() {
            panic!(
                "psql {sql:?} on database {db} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// The etcd server without authentication.
pub fn etcd() -> &'static Etcd {
    static E: OnceLock<Etcd> = OnceLock::new();
    E.get_or_init(|| start_etcd(None))
}

/// The etcd server with authentication enabled: user `root`, password `rootpw`.
pub fn etcd_auth() -> &'static Etcd {
    static E: OnceLock<Etcd> = OnceLock::new();
    E.get_or_init(|| start_etcd(Some(("root", "rootpw"))))
}

/// The PostgreSQL server: superuser `postgres`, password `pgpw`, password authentication.
pub fn postgres() -> &'static Postgres {
    static P: OnceLock<Postgres> = OnceLock::new();
    P.get_or_init(start_postgres)
}

/// Runs `etcdctl` (API v3, as the server's user when it has one) against `e`; panics when
/// it fails. Returns its standard output.
pub fn etcdctl(e: &Etcd, args: &[&str]) -> String {
    let out = etcdctl_output(e, args);
    if !out.status.success() {
        panic!(
            "etcdctl {args:?} against {} failed ({}): {}",
            e.endpoint,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every key under `prefix` and its value, in key order, read through `etcdctl`.
pub fn etcdctl_get_prefix(e: &Etcd, prefix: &str) -> Vec<(String, String)> {
    let out = etcdctl(e, &["get", "--prefix", prefix, "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|err| panic!("etcdctl printed something not JSON ({err}): {out}"));
    let decode = |kv: &serde_json::Value, f: &str| {
        let s = kv[f].as_str().unwrap_or_default();
        let b = base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap_or_else(|err| panic!("etcdctl printed a {f} that is not base64 ({err}): {kv}"));
        String::from_utf8(b).unwrap_or_else(|err| panic!("a {f} is not UTF-8: {err}"))
    };
    v["kvs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|kv| (decode(kv, "key"), decode(kv, "value")))
        .collect()
}

fn etcdctl_output(e: &Etcd, args: &[&str]) -> Output {
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=http://{}", e.endpoint))
        .arg("--command-timeout=10s");
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        c.arg(format!("--user={u}:{p}"));
    }
    c.args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run etcdctl (is etcd-client installed?): {err}"))
}

fn start_etcd(auth: Option<(&str, &str)>) -> Etcd {
    let dir = server_dir(if auth.is_some() { "etcd-auth" } else { "etcd" }, None);
    let log = dir.join("etcd.log");
    let spawn = || {
        let (client, peer) = (free_port(), free_port());
        let mut cmd = proc::command("etcd", None, &dir);
        cmd.arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                dir.join(format!("data-{client}")).display()
            ))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=test=http://127.0.0.1:{peer}"))
            .arg("--initial-cluster-state=new");
        Ok((
            Server::spawn(cmd, &log, libc::SIGKILL)?,
            format!("127.0.0.1:{client}"),
        ))
    };
    let (server, endpoint) = start("etcd", &dir, spawn, |e| proc::etcd_healthy(e));
    let mut e = Etcd {
        endpoint,
        username: None,
        password: None,
        pid: keep(server, &dir),
        dir,
    };
    if let Some((u, p)) = auth {
        etcdctl(&e, &["user", "add", &format!("{u}:{p}")]);
        etcdctl(&e, &["auth", "enable"]);
        e.username = Some(u.to_string());
        e.password = Some(p.to_string());
        // Authentication works for the user and is required without one.
        etcdctl(&e, &["get", "--prefix", "/"]);
    }
    e
}

fn start_postgres() -> Postgres {
    let bin = proc::postgres_bin().unwrap_or_else(|e| panic!("{e}"));
    // initdb and postgres refuse to run as root: run them as the `postgres` OS user then.
    let ids = proc::run_as("postgres").unwrap_or_else(|e| panic!("{e}"));
    let dir = server_dir("postgres", ids);
    let (user, password) = ("postgres", "pgpw");
    let pwfile = dir.join("pwfile");
    let data = dir.join("data");
    let sock = dir.join("sock");
    proc::write_file(&pwfile, &format!("{password}\n"), ids)
        .and_then(|()| proc::make_dir(&sock, ids))
        .unwrap_or_else(|e| panic!("{e}"));

    let mut init = proc::command(bin.join("initdb"), ids, &dir);
    init.arg("-D")
        .arg(&data)
        .args(["-U", user, "--auth=scram-sha-256", "-E", "UTF8"])
        .arg("--locale=C")
        .arg(format!("--pwfile={}", pwfile.display()))
        .arg("--no-sync");
    proc::run(init, &dir.join("initdb.log"))
        .unwrap_or_else(|e| panic!("initdb in {} failed: {e}", data.display()));

    let log = dir.join("postgres.log");
    let settings = [
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "max_connections=200",
    ];
    let spawn = || {
        let port = free_port();
        let server =
            proc::spawn_postgres(&bin, ids, &dir, &data, Some(&sock), port, &log, &settings)?;
        Ok((server, port))
    };
    let (server, port) = start("PostgreSQL", &dir, spawn, |&port| {
        proc::pg_isready(&bin, port)
    });
    let pg = Postgres {
        port,
        user: user.to_string(),
        password: password.to_string(),
        pid: keep(server, &dir),
        dir,
        bin,
    };
    // Password authentication over TCP works.
    pg.psql("postgres", "SELECT 1");
    pg
}

/// Starts a server with `spawn`, which returns it and where it listens, and waits until
/// `ready` says it answers there; tries again on new free ports when the last were taken
/// in between. Panics with the tail of its log when it cannot.
fn start<T>(
    what: &str,
    dir: &Path,
    mut spawn: impl FnMut() -> Result<(Server, T), String>,
    ready: impl Fn(&T) -> bool,
) -> (Server, T) {
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let (mut server, at) = spawn().unwrap_or_else(|e| panic!("{e}"));
        match server.wait_until(START_TIMEOUT, START_POLL, || ready(&at)) {
            Ok(()) => return (server, at),
            Err(e) => {
                server.stop();
                last = e;
                if !proc::port_taken(&last) {
                    break;
                }
            }
        }
    }
    panic!("{what} did not start in {}: {last}", dir.display());
}

/// A new directory for one server under `$TMPDIR/metapitr-test-servers/`, owned by `ids`;
/// on first use, directories there older than a day are removed.
fn server_dir(name: &str, ids: proc::Ids) -> PathBuf {
    static CLEANED: OnceLock<()> = OnceLock::new();
    let base = std::env::temp_dir().join("metapitr-test-servers");
    CLEANED.get_or_init(|| {
        let day = Duration::from_secs(24 * 3600);
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > day);
            if old {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    });
    proc::unique_dir(&base, name, ids).unwrap_or_else(|e| panic!("{e}"))
}

/// The servers started, each with its directory, to stop and remove when the process
/// exits normally.
static STARTED: Mutex<Vec<(Server, PathBuf)>> = Mutex::new(Vec::new());

/// Keeps `server` running until the process exits; returns its pid.
fn keep(server: Server, dir: &Path) -> u32 {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: `stop_servers` is an `extern "C" fn()` that does not unwind.
        unsafe {
            libc::atexit(stop_servers);
        }
    });
    let pid = server.pid();
    STARTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((server, dir.to_path_buf()));
    pid
}

extern "C" fn stop_servers() {
    let mut servers = match STARTED.try_lock() {
        Ok(s) => s,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    for (mut server, dir) in servers.drain(..) {
        server.stop();
        let _ = std::fs::remove_dir_all(dir);
    }
}
