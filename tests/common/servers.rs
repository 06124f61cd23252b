//! Real etcd and PostgreSQL servers for the integration tests: at most one of each kind per
//! test process, started on first use on 127.0.0.1 with free ports and data in a temp dir
//! under `$TMPDIR/metapitr-test-servers/`.
//!
//! Servers are spawned from one long-lived thread with `PR_SET_PDEATHSIG` (SIGKILL for
//! etcd, SIGQUIT, PostgreSQL's immediate shutdown, for the postmaster, which runs in the
//! foreground as a direct child), so they die with the test process however it ends; on a
//! normal exit an `atexit` handler also stops them and removes their directories. A server
//! that cannot start panics with the tail of its log: it fails the test, never skips it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;

/// How long a server may take to answer after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at starting a server when its free ports were taken in between.
const START_ATTEMPTS: usize = 3;

pub struct Etcd {
    /// `127.0.0.1:PORT`, the client port.
    pub endpoint: String,
    /// Set on the server with authentication enabled.
    pub username: Option<String>,
    pub password: Option<String>,
    pub dir: PathBuf,
    child: Mutex<Child>,
}

impl Etcd {
    /// `etcd://127.0.0.1:PORT/prefix/` (the prefix with its slashes trimmed).
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{}/", self.endpoint, prefix.trim_matches('/'))
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }
}

pub struct Postgres {
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dir: PathBuf,
    bin: PathBuf,
    child: Mutex<Child>,
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
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-w", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", &self.user, "-d", db, "-c", sql])
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10")
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
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
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

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
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
    let name = if auth.is_some() { "etcd-auth" } else { "etcd" };
    let dir = server_dir(name);
    let log = dir.join("etcd.log");
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let (client, peer) = (free_port(), free_port());
        let data = dir.join(format!("data-{client}"));
        let mut cmd = Command::new("etcd");
        cmd.arg("--name=test")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=test=http://127.0.0.1:{peer}"))
            .arg("--initial-cluster-state=new");
        let mut child = spawn(cmd, &log, libc::SIGKILL, None, &dir, "etcd");
        let endpoint = format!("127.0.0.1:{client}");
        let ready = wait_until(&mut child, &log, || etcd_healthy(&endpoint));
        match ready {
            Ok(()) => {
                let mut e = Etcd {
                    endpoint,
                    username: None,
                    password: None,
                    dir: dir.clone(),
                    child: Mutex::new(child),
                };
                if let Some((u, p)) = auth {
                    etcdctl(&e, &["user", "add", &format!("{u}:{p}")]);
                    etcdctl(&e, &["auth", "enable"]);
                    e.username = Some(u.to_string());
                    e.password = Some(p.to_string());
                    // Authentication works for the user and is required without one.
                    etcdctl(&e, &["get", "--prefix", "/"]);
                }
                return e;
            }
            Err(why) => {
                stop(&mut child);
                last = why;
                if !last.contains("address already in use") {
                    break;
                }
            }
        }
    }
    panic!("etcd did not start in {}: {last}", dir.display());
}

/// Whether `GET /health` on the client port says the member is healthy.
fn etcd_healthy(endpoint: &str) -> bool {
    let Ok(addr) = endpoint.parse() else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.contains("\"health\":\"true\"")
}

fn start_postgres() -> Postgres {
    let bin = postgres_bin();
    let dir = server_dir("postgres");
    let (user, password) = ("postgres", "pgpw");
    // initdb and postgres refuse to run as root: run them as the `postgres` OS user then.
    let ids = if unsafe { libc::geteuid() } == 0 {
        let ids = os_user("postgres");
        std::os::unix::fs::chown(&dir, Some(ids.0), Some(ids.1))
            .unwrap_or_else(|e| panic!("cannot chown {} to postgres: {e}", dir.display()));
        Some(ids)
    } else {
        None
    };
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, format!("{password}\n")).unwrap();
    let data = dir.join("data");
    let sock = dir.join("sock");
    std::fs::create_dir(&sock).unwrap();
    if let Some((uid, gid)) = ids {
        for p in [&pwfile, &sock] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        }
    }

    let initlog = dir.join("initdb.log");
    let mut init = Command::new(bin.join("initdb"));
    init.arg("-D")
        .arg(&data)
        .args([
            "-U",
            user,
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .arg("--no-sync")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log_file(&initlog))
        .stderr(log_file(&initlog));
    if let Some((uid, gid)) = ids {
        init.uid(uid).gid(gid);
    }
    let status = init
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.join("initdb").display()));
    if !status.success() {
        panic!(
            "initdb in {} failed ({status}):\n{}",
            data.display(),
            tail(&initlog)
        );
    }

    let log = dir.join("postgres.log");
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", sock.display()))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"]);
        let mut child = spawn(cmd, &log, libc::SIGQUIT, ids, &dir, "postgres");
        let isready = bin.join("pg_isready");
        let ready = wait_until(&mut child, &log, || {
            Command::new(&isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        });
        match ready {
            Ok(()) => {
                let pg = Postgres {
                    port,
                    user: user.to_string(),
                    password: password.to_string(),
                    dir: dir.clone(),
                    bin: bin.clone(),
                    child: Mutex::new(child),
                };
                // Password authentication over TCP works.
                pg.psql("postgres", "SELECT 1");
                return pg;
            }
            Err(why) => {
                stop(&mut child);
                last = why;
                if !last.to_lowercase().contains("address already in use") {
                    break;
                }
            }
        }
    }
    panic!("PostgreSQL did not start in {}: {last}", dir.display());
}

/// The bin directory of the newest PostgreSQL under /usr/lib/postgresql.
fn postgres_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .max_by_key(|(v, _)| *v);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL under {}/*/bin (scripts/test installs the postgresql package)",
            root.display()
        ),
    }
}

/// The uid and gid of an OS user.
fn os_user(name: &str) -> (u32, u32) {
    let cname = std::ffi::CString::new(name).unwrap();
    // getpwnam returns a pointer into static storage or null; it is read at once.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        panic!(
            "there is no OS user {name} to run PostgreSQL as (the postgresql package creates it)"
        );
    }
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

/// Spawns `cmd` on the spawner thread with its output to `log` and `signal` as its
/// parent-death signal, optionally as another OS user; registers it for the exit handler.
fn spawn(
    mut cmd: Command,
    log: &Path,
    signal: libc::c_int,
    ids: Option<(u32, u32)>,
    dir: &Path,
    what: &str,
) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(log_file(log))
        .stderr(log_file(log))
        .current_dir(dir);
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    // Runs in the child after the uid change (which would clear the setting) and before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let program = format!("{:?}", cmd.get_program());
    let child = on_spawner_thread(move || cmd.spawn())
        .unwrap_or_else(|e| panic!("cannot start {what} ({program}): {e}"));
    register_for_exit(child.id() as libc::pid_t, signal, dir.to_path_buf());
    child
}

/// Runs `f` on one thread that lives as long as the process, so that a parent-death signal
/// set in a child it spawns fires when the process exits, not when a test thread ends.
fn on_spawner_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    type Job = Box<dyn FnOnce() + Send>;
    static TX: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("test-servers".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .unwrap();
        Mutex::new(tx)
    });
    let (rtx, rrx) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(Box::new(move || {
            let _ = rtx.send(f());
        }))
        .unwrap();
    rrx.recv().unwrap()
}

/// Polls `ready` until it holds; fails early when the child exits, and after
/// [`START_TIMEOUT`], with the tail of the log.
fn wait_until(
    child: &mut Child,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited ({status}); log:\n{}", tail(log)));
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(format!(
                "it did not answer within {START_TIMEOUT:?}; log:\n{}",
                tail(log)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A new directory for one server under `$TMPDIR/metapitr-test-servers/`; on first use,
/// directories there older than a day are removed.
fn server_dir(name: &str) -> PathBuf {
    static CLEANED: OnceLock<()> = OnceLock::new();
    static N: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir().join("metapitr-test-servers");
    std::fs::create_dir_all(&base)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", base.display()));
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
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = base.join(format!(
        "{name}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A server to stop, and its directory to remove, when the process exits normally.
struct AtExit {
    pid: libc::pid_t,
    signal: libc::c_int,
    dir: PathBuf,
}

static AT_EXIT: Mutex<Vec<AtExit>> = Mutex::new(Vec::new());

fn register_for_exit(pid: libc::pid_t, signal: libc::c_int, dir: PathBuf) {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: `stop_servers` is an `extern "C" fn()` that does not unwind.
        unsafe {
            libc::atexit(stop_servers);
        }
    });
    AT_EXIT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(AtExit { pid, signal, dir });
}

/// Kills a server that failed to start and forgets it for the exit handler.
fn stop(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    AT_EXIT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|s| s.pid != pid);
    let _ = child.kill();
    let _ = child.wait();
}

extern "C" fn stop_servers() {
    let mut servers = match AT_EXIT.try_lock() {
        Ok(s) => s,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    for s in servers.iter() {
        unsafe {
            libc::kill(s.pid, s.signal);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for s in servers.iter() {
        loop {
            let r = unsafe { libc::waitpid(s.pid, std::ptr::null_mut(), libc::WNOHANG) };
            if r != 0 {
                break;
            }
            if Instant::now() > deadline {
                unsafe {
                    libc::kill(s.pid, libc::SIGKILL);
                    libc::waitpid(s.pid, std::ptr::null_mut(), 0);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for s in servers.drain(..) {
        let _ = std::fs::remove_dir_all(s.dir);
    }
}
