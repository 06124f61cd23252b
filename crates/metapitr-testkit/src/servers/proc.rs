//! Process plumbing shared by the integration tests' servers and the benchmark peers:
//! commands run (as another OS user when needed) with their output appended to a log,
//! long-lived servers that die with the process, small file-system helpers, and the probes
//! that say when PostgreSQL and etcd answer.
//!
//! Servers are spawned from one long-lived thread with `PR_SET_PDEATHSIG`, so they get
//! their signal when the process ends however it ends (a parent-death signal fires when
//! the spawning thread exits); [`Server`] also stops them when dropped.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// A uid and gid to run commands as; `None` runs them as this process's user.
pub type Ids = Option<(u32, u32)>;

/// The OS user `name` when this process runs as root (initdb and postgres refuse root),
/// else `None`: everything then runs as the current user.
pub fn run_as(name: &str) -> Result<Ids, String> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let cname = std::ffi::CString::new(name).map_err(|e| format!("bad user name {name}: {e}"))?;
    // getpwnam returns a pointer into static storage or null; it is read at once.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        return Err(format!(
            "running as root, and there is no OS user {name} to run PostgreSQL as \
             (the postgresql package creates it)"
        ));
    }
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

/// A command for `program` running in `cwd`, as `ids` when given.
pub fn command(program: impl AsRef<OsStr>, ids: Ids, cwd: &Path) -> Command {
    let mut c = Command::new(program);
    if let Some((uid, gid)) = ids {
        c.uid(uid).gid(gid);
    }
    c.current_dir(cwd);
    c
}

/// `program arg…`, each part quoted when it needs to be, for messages and logs.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let s = a.to_string_lossy();
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c))
            {
                s.into_owned()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to its end with its output appended to `log`; returns how long it ran.
/// Fails with the command and the tail of the log when it does not succeed.
pub fn run(mut cmd: Command, log: &Path) -> Result<Duration, String> {
    let what = log_to(&mut cmd, log, libc::SIGTERM)?;
    let start = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(format!(
            "{what} failed ({status}); {}:\n{}",
            log.display(),
            tail(log)
        ));
    }
    Ok(elapsed)
}

/// Runs `cmd` to its end with its standard error appended to `log`; returns its standard
/// output. Fails with the command and the tail of the log when it does not succeed.
pub fn output(mut cmd: Command, log: &Path) -> Result<String, String> {
    let what = log_to(&mut cmd, log, libc::SIGTERM)?;
    cmd.stdout(Stdio::piped());
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}); output: {}\n{}:\n{}",
            out.status,
            stdout.trim(),
            log.display(),
            tail(log)
        ));
    }
    Ok(stdout)
}

/// A long-running server process; stopped (its signal, then SIGKILL after a grace period)
/// when dropped.
pub struct Server {
    child: Child,
    what: String,
    log: PathBuf,
    signal: libc::c_int,
    status: Option<ExitStatus>,
}

impl Server {
    /// Spawns `cmd` with its output appended to `log`; `signal` is both the parent-death
    /// signal and the one [`Server::stop`] sends first.
    pub fn spawn(mut cmd: Command, log: &Path, signal: libc::c_int) -> Result<Server, String> {
        let what = log_to(&mut cmd, log, signal)?;
        let child = on_spawner_thread(move || cmd.spawn())
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        Ok(Server {
            child,
            what,
            log: log.to_path_buf(),
            signal,
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The command line it was started with.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Its exit status once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// A message saying it exited with `status`, with the tail of its log.
    pub fn exit_error(&self, status: ExitStatus) -> String {
        format!(
            "{} exited ({status}); {}:\n{}",
            self.what,
            self.log.display(),
            tail(&self.log)
        )
    }

    /// Polls `ready` every `every` until it holds; fails when the server exits or after
    /// `timeout`, with the tail of its log.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        every: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(self.exit_error(status));
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "{} did not answer within {timeout:?}; {}:\n{}",
                    self.what,
                    self.log.display(),
                    tail(&self.log)
                ));
            }
            std::thread::sleep(every);
        }
    }

    /// Sends its signal and waits for it to exit, SIGKILL after 10 seconds.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        unsafe {
            libc::kill(pid, self.signal);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exited().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

/// Whether a failed start looks like a port that was taken in between.
pub fn port_taken(err: &str) -> bool {
    err.to_lowercase().contains("address already in use")
}

/// A new directory `parent/name-PID-N`, mode 0700, owned by `ids`.
pub fn unique_dir(parent: &Path, name: &str, ids: Ids) -> Result<PathBuf, String> {
    static N: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    loop {
        let dir = parent.join(format!(
            "{name}-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                chmod(&dir, 0o700)?;
                chown(&dir, ids)?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
}

/// Creates the directory `path` (not its parents), mode 0700, owned by `ids`.
pub fn make_dir(path: &Path, ids: Ids) -> Result<(), String> {
    std::fs::create_dir(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    chmod(path, 0o700)?;
    chown(path, ids)
}

/// Writes `contents` to the file `path`, owned by `ids`.
pub fn write_file(path: &Path, contents: &str, ids: Ids) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    chown(path, ids)
}

pub fn chown(path: &Path, ids: Ids) -> Result<(), String> {
    match ids {
        Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| format!("cannot chown {} to {uid}:{gid}: {e}", path.display())),
        None => Ok(()),
    }
}

pub fn chmod(path: &Path, mode: u32) -> Result<(), String> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {} to {mode:o}: {e}", path.display()))
}

/// Lets other users through `dir` (adds o+x) when commands run as another user, so that
/// they reach the directories made for them inside it.
pub fn let_others_through(dir: &Path, ids: Ids) -> Result<(), String> {
    if ids.is_none() {
        return Ok(());
    }
    let mode = std::fs::metadata(dir)
        .map_err(|e| format!("cannot stat {}: {e}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o001 == 0 {
        chmod(dir, (mode & 0o7777) | 0o001)?;
    }
    Ok(())
}

/// Fails with a hint when `ids` cannot write in `dir` (a directory above it not searchable
/// by that user, typically).
pub fn check_writable(dir: &Path, ids: Ids) -> Result<(), String> {
    let Some((uid, gid)) = ids else {
        return Ok(());
    };
    let mut c = command("/bin/sh", ids, Path::new("/"));
    c.args(["-c", r#"test -w "$1" && test -x "$1""#, "sh"])
        .arg(dir);
    let ok = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", describe(&c)))?
        .success();
    if ok {
        return Ok(());
    }
    Err(format!(
        "uid {uid} (gid {gid}) cannot write in {}: every directory above it must be \
         searchable by others",
        dir.display()
    ))
}

/// `path` made absolute against the current directory (the peers run commands elsewhere).
pub fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("cannot make {} absolute: {e}", path.display()))
}

/// Removes a directory tree, ignoring a missing one.
pub fn remove_dir(path: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

/// The total size of the files under `path` (symbolic links not followed).
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| dir_bytes(&e.path()))
        .sum()
}

/// `program` found in `$PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The last lines of a log file.
pub fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Appends `cmd`'s output to `log`, after a `$ command` line, and gives it `signal` as its
/// parent-death signal; returns the command line.
fn log_to(cmd: &mut Command, log: &Path, signal: libc::c_int) -> Result<String, String> {
    let what = describe(cmd);
    let out = open_log(log, &what)?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot reopen {}: {e}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // Runs in the child after the uid change (which would clear the setting) and before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(what)
}

/// Opens `path` for appending and writes a `$ command` line to it.
fn open_log(path: &Path, what: &str) -> Result<File, String> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    writeln!(f, "$ {what}").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(f)
}

/// Runs `f` on one thread that lives as long as the process, so that a parent-death signal
/// set in a child it spawns fires when the process exits, not when another thread ends.
fn on_spawner_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    type Job = Box<dyn FnOnce() + Send>;
    static TX: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("servers".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("cannot start the thread that spawns servers");
        Mutex::new(tx)
    });
    let (rtx, rrx) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(Box::new(move || {
            let _ = rtx.send(f());
        }))
        .expect("the thread that spawns servers is gone");
    rrx.recv().expect("the thread that spawns servers is gone")
}

/// The bin directory of the newest PostgreSQL under /usr/lib/postgresql.
pub fn postgres_bin() -> Result<PathBuf, String> {
    let root = Path::new("/usr/lib/postgresql");
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, bin)| bin)
        .ok_or_else(|| {
            format!(
                "no PostgreSQL under {}/*/bin (scripts/install-servers and crates/metapitr-bench/benches/peers.sh \
                 install the postgresql package)",
                root.display()
            )
        })
}

/// Spawns `bin/postgres` on `data` in the foreground, as `ids`, listening on
/// 127.0.0.1:`port` and, when given, in `sock` (else on no Unix socket), with extra `-c`
/// settings. SIGQUIT, its immediate shutdown, stops it: the postmaster takes its children
/// down with it.
#[allow(clippy::too_many_arguments)]
pub fn spawn_postgres(
    bin: &Path,
    ids: Ids,
    dir: &Path,
    data: &Path,
    sock: Option<&Path>,
    port: u16,
    log: &Path,
    extra: &[&str],
) -> Result<Server, String> {
    let mut cmd = command(bin.join("postgres"), ids, dir);
    cmd.arg("-D")
        .arg(data)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!(
            "unix_socket_directories={}",
            sock.map(|s| s.display().to_string()).unwrap_or_default()
        ));
    for setting in extra {
        cmd.args(["-c", setting]);
    }
    Server::spawn(cmd, log, libc::SIGQUIT)
}

/// A `bin/psql` command for `db` on 127.0.0.1:`port` as `user` with `password`, printing
/// unaligned tuples only and stopping at the first error; add `-c SQL` arguments.
pub fn psql(bin: &Path, port: u16, user: &str, password: &str, db: &str) -> Command {
    let mut c = Command::new(bin.join("psql"));
    c.args(["-X", "-w", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", user, "-d", db])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10");
    c
}

/// Whether `bin/pg_isready` says the server on 127.0.0.1:`port` accepts connections.
pub fn pg_isready(bin: &Path, port: u16) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `GET /health` on etcd's client port `endpoint` says the member is healthy.
pub fn etcd_healthy(endpoint: &str) -> bool {
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
