//! PostgreSQL as a benchmark peer: a server archiving its WAL with pgBackRest, backed up
//! with `pgbackrest backup`, and restored to a point in time with `pgbackrest restore
//! --type=time` into a fresh directory, started, and queried.
//!
//! Everything PostgreSQL-side (initdb, postgres, pgbackrest) runs as the `postgres` OS user
//! when the bench runs as root. The servers die with the bench process and are stopped on
//! drop; each peer keeps its own pgBackRest configuration, repository, lock and log paths
//! under its own directory, so peers never share a stanza.
//!
//! A time-targeted recovery stops before the first commit later than the target, and
//! PostgreSQL refuses to start when the archived WAL ends before such a commit: call
//! [`PgPeer::flush_archive`] after the last commit a restore targets, and before restoring.

use metapitr_testkit::servers::proc;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proc::{Ids, Server};

/// The pgBackRest stanza.
const STANZA: &str = "meta";
/// The database [`PgPeer::url`] names.
const DB: &str = "meta";
const USER: &str = "postgres";
const PASSWORD: &str = "peerpw";
/// How long a server may take to accept connections after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a restored server may take to replay WAL and answer.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a switched WAL segment may take to be archived.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts at starting a server when its free port was taken in between.
const START_ATTEMPTS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupKind {
    Full,
    Diff,
    Incr,
}

impl BackupKind {
    fn as_str(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Diff => "diff",
            BackupKind::Incr => "incr",
        }
    }
}

/// One backup taken by [`PgPeer::backup`].
#[derive(Clone, Debug)]
pub struct PgBackup {
    /// pgBackRest's label, e.g. `20261121-170000F_20261121-170500I`.
    pub label: String,
    /// The type pgBackRest recorded (a diff or incr without a prior full becomes a full).
    pub kind: BackupKind,
    /// Wall time of the `pgbackrest backup` command.
    pub elapsed: Duration,
    /// Size of the repository (backups and archived WAL) after it.
    pub repo_bytes: u64,
    /// The server's clock, in microseconds since the Unix epoch, read once the backup had
    /// ended: a recovery target at or after it can be restored from this backup.
    pub usable_from_us: i64,
}

/// One restore by [`PgPeer::restore_to_time`].
#[derive(Clone, Debug)]
pub struct PgRestore {
    /// The backup set restored.
    pub backup: String,
    /// From the start of `pgbackrest restore` to the query's answer.
    pub total: Duration,
    /// `pgbackrest restore` alone.
    pub restore_cmd: Duration,
    /// From starting the restored server (WAL replay included) to the query's answer.
    pub start_to_answer: Duration,
    /// The query's answer.
    pub value: i64,
}

pub struct PgPeer {
    dir: PathBuf,
    bin: PathBuf,
    pgbackrest: PathBuf,
    ids: Ids,
    conf: PathBuf,
    repo: PathBuf,
    /// Standard output and error of the pgbackrest commands.
    pgbackrest_log: PathBuf,
    port: u16,
    server: Server,
    backups: Mutex<Vec<PgBackup>>,
    restores: AtomicU64,
}

impl PgPeer {
    /// Creates a cluster in a new directory under `work`, which must exist (initdb;
    /// `wal_level=replica`, `archive_mode=on`, `archive_command` pushing to pgBackRest;
    /// `synchronous_commit=off`), writes its own `pgbackrest.conf` (repository, logs and
    /// locks in that directory), starts postgres on a free port on 127.0.0.1 (password
    /// authentication over TCP, trust on its Unix socket, which only pgBackRest uses),
    /// creates the database `meta`, and runs `stanza-create` and `check`. When running as
    /// root, `work` gets o+x so that the `postgres` user can reach its directory.
    pub fn start(work: &Path) -> Result<PgPeer, String> {
        // Canonical, as PostgreSQL reports its data directory.
        let work = &std::fs::canonicalize(work)
            .map_err(|e| format!("cannot resolve {}: {e}", work.display()))?;
        let ids = proc::run_as("postgres")?;
        let bin = proc::postgres_bin()?;
        let pgbackrest = proc::which("pgbackrest")
            .ok_or("no pgbackrest in $PATH (crates/metapitr-bench/benches/peers.sh installs the pgbackrest package)")?;
        proc::let_others_through(work, ids)?;
        let dir = proc::unique_dir(work, "pg", ids)?;
        proc::check_writable(&dir, ids)?;
        let repo = dir.join("repo");
        let sock = dir.join("sock");
        // The socket's path, `sock/.s.PGSQL.PORT`, must fit in sockaddr_un's sun_path.
        if sock.as_os_str().len() + 16 > 107 {
            return Err(format!(
                "{} is too long a path for PostgreSQL's Unix socket: use a shorter work directory",
                sock.display()
            ));
        }
        for d in ["repo", "sock", "pgbackrest-log", "lock", "spool"] {
            proc::make_dir(&dir.join(d), ids)?;
        }
        let pwfile = dir.join("pwfile");
        proc::write_file(&pwfile, &format!("{PASSWORD}\n"), ids)?;
        let data = dir.join("data");
        let conf = dir.join("pgbackrest.conf");

        let mut initdb = proc::command(bin.join("initdb"), ids, &dir);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-E", "UTF8", "--locale=C"])
            .args(["--auth-host=scram-sha-256", "--auth-local=trust"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("--no-sync");
        proc::run(initdb, &dir.join("initdb.log"))?;

        let archive_command = format!(
            "{} --config={} --stanza={STANZA} archive-push %p",
            pgbackrest.display(),
            conf.display()
        );
        let settings = format!(
            "\n# benchmark peer\n\
             wal_level = replica\n\
             archive_mode = on\n\
             archive_command = {}\n\
             synchronous_commit = off\n",
            conf_quote(&archive_command)
        );
        let pgconf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&pgconf)
            .map_err(|e| format!("cannot read {}: {e}", pgconf.display()))?;
        text.push_str(&settings);
        proc::write_file(&pgconf, &text, ids)?;

        let compress = compress_type(&pgbackrest);
        let log = dir.join("postgres.log");
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = proc::free_port();
            let global = format!(
                "[global]\n\
                 repo1-path={}\n\
                 repo1-retention-full=9999999\n\
                 log-path={}\n\
                 lock-path={}\n\
                 spool-path={}\n\
                 compress-type={compress}\n\
                 process-max=2\n\
                 archive-async=n\n\
                 start-fast=y\n\
                 log-level-console=warn\n\
                 log-level-file=info\n\n",
                repo.display(),
                dir.join("pgbackrest-log").display(),
                dir.join("lock").display(),
                dir.join("spool").display(),
            );
            let stanza = format!(
                "[{STANZA}]\npg1-path={}\npg1-port={port}\npg1-socket-path={}\n",
                data.display(),
                sock.display()
            );
            proc::write_file(&conf, &(global + &stanza), ids)?;
            let mut server =
                proc::spawn_postgres(&bin, ids, &dir, &data, Some(&sock), port, &log, &[])?;
            if let Err(e) = server.wait_until(START_TIMEOUT, Duration::from_millis(50), || {
                proc::pg_isready(&bin, port)
            }) {
                server.stop();
                last = e;
                if proc::port_taken(&last) {
                    continue;
                }
                break;
            }
            // A server that took the port in between would answer pg_isready too.
            let serves = psql(&bin, port, &dir, "postgres", &["SHOW data_directory"])?;
            if Path::new(serves.trim()) != data {
                server.stop();
                last = format!(
                    "port {port} answered for {}: address already in use",
                    serves.trim()
                );
                continue;
            }
            let peer = PgPeer {
                pgbackrest_log: dir.join("pgbackrest.log"),
                dir,
                bin,
                pgbackrest,
                ids,
                conf,
                repo,
                port,
                server,
                backups: Mutex::new(Vec::new()),
                restores: AtomicU64::new(0),
            };
            peer.psql("postgres", &[&format!("CREATE DATABASE {DB}")])?;
            peer.pgbackrest_cmd(&["stanza-create"])?;
            peer.pgbackrest_cmd(&["check"])?;
            return Ok(peer);
        }
        Err(format!(
            "PostgreSQL did not start in {}: {last}",
            dir.display()
        ))
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/meta`, for tokio-postgres.
    pub fn url(&self) -> String {
        url(self.port, DB)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The peer's directory: cluster, repository, logs and restores.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `pgbackrest backup --type=KIND`, timed. pgBackRest turns a diff or incr into a full
    /// when there is no full backup yet.
    pub fn backup(&self, kind: BackupKind) -> Result<PgBackup, String> {
        let elapsed = self.pgbackrest_cmd(&["backup", &format!("--type={}", kind.as_str())])?;
        let usable_from_us = self.clock_us()?;
        let info = self.info()?;
        let newest = info[0]["backup"]
            .as_array()
            .and_then(|b| b.last())
            .ok_or_else(|| format!("pgbackrest info lists no backup after a backup: {info}"))?;
        let label = newest["label"]
            .as_str()
            .ok_or_else(|| format!("a backup without a label in pgbackrest info: {newest}"))?
            .to_string();
        let kind = match newest["type"].as_str() {
            Some("full") => BackupKind::Full,
            Some("diff") => BackupKind::Diff,
            Some("incr") => BackupKind::Incr,
            other => return Err(format!("backup {label} has an unknown type {other:?}")),
        };
        let b = PgBackup {
            label,
            kind,
            elapsed,
            repo_bytes: self.repo_bytes(),
            usable_from_us,
        };
        self.backups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(b.clone());
        Ok(b)
    }

    /// The backups taken so far, oldest first.
    pub fn backups(&self) -> Vec<PgBackup> {
        self.backups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `pgbackrest info --output=json`: one element per stanza.
    pub fn info(&self) -> Result<serde_json::Value, String> {
        let out = proc::output(
            self.pgbackrest_command(&["info", "--output=json"]),
            &self.pgbackrest_log,
        )?;
        serde_json::from_str(&out)
            .map_err(|e| format!("pgbackrest info printed bad JSON ({e}): {out}"))
    }

    /// Size on disk of the pgBackRest repository (backups and archived WAL).
    pub fn repo_bytes(&self) -> u64 {
        proc::dir_bytes(&self.repo)
    }

    /// Commits a transaction (so that the archive holds a commit later than any earlier
    /// time, which a time-targeted recovery needs to stop), switches to a new WAL segment,
    /// and waits until `pg_stat_archiver` reports the finished one archived.
    pub fn flush_archive(&self) -> Result<(), String> {
        let out = self.psql(
            "postgres",
            &[
                "SELECT txid_current()",
                "SELECT pg_walfile_name(pg_switch_wal())",
            ],
        )?;
        let segment = out
            .lines()
            .last()
            .map(str::trim)
            .filter(|s| s.len() == 24)
            .ok_or_else(|| format!("pg_switch_wal gave no segment name: {out:?}"))?
            .to_string();
        let start = Instant::now();
        loop {
            let out = self.psql(
                "postgres",
                &["SELECT coalesce(last_archived_wal, ''), failed_count, \
                   coalesce(last_failed_wal, '') FROM pg_stat_archiver"],
            )?;
            let fields: Vec<&str> = out.trim().split('|').collect();
            // A segment's name, or one starting with it (a backup history file's).
            let archived = fields.first().and_then(|f| f.get(..24)).unwrap_or_default();
            if archived.bytes().all(|b| b.is_ascii_hexdigit()) && archived >= segment.as_str() {
                return Ok(());
            }
            if start.elapsed() > ARCHIVE_TIMEOUT {
                return Err(format!(
                    "WAL segment {segment} was not archived within {ARCHIVE_TIMEOUT:?} \
                     (pg_stat_archiver: last archived, failures, last failed = {fields:?}); {}:\n{}",
                    self.server.log().display(),
                    proc::tail(self.server.log())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's clock (`clock_timestamp()`), in microseconds since the Unix epoch.
    pub fn clock_us(&self) -> Result<i64, String> {
        let out = self.psql(
            "postgres",
            &["SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"],
        )?;
        out.trim()
            .parse()
            .map_err(|e| format!("clock_timestamp() gave {out:?}: {e}"))
    }

    /// Restores into a fresh directory with `pgbackrest restore --type=time --target=TARGET
    /// --target-action=promote --archive-mode=off --set=LABEL` (the newest backup that had
    /// ended by the target), starts postgres on it on a new free port and no Unix socket
    /// (`hot_standby=off`, so that it answers only once recovery has ended), and polls
    /// until `query` (one row, one integer column, run in the database `meta`) answers. Then
    /// stops that server and removes its directory, which stays for inspection when the
    /// restore fails.
    ///
    /// `target` is a timestamp with a UTC offset, as [`format_target`] writes it, e.g.
    /// `2026-11-21 17:00:00.123456+00`. Recovery replays every transaction that committed
    /// at or before it.
    pub fn restore_to_time(&self, target: &str, query: &str) -> Result<PgRestore, String> {
        let target_us = parse_target(target)?;
        let backup = self.backup_for(target_us)?;
        let n = self.restores.fetch_add(1, Ordering::Relaxed);
        let rdir = self.dir.join(format!("restore-{n}"));
        let data = rdir.join("data");
        proc::make_dir(&rdir, self.ids)?;
        proc::make_dir(&data, self.ids)?;
        let log = rdir.join("postgres.log");

        let t0 = Instant::now();
        self.pgbackrest_cmd(&[
            "restore",
            &format!("--pg1-path={}", data.display()),
            &format!("--set={}", backup.label),
            "--type=time",
            &format!("--target={target}"),
            "--target-action=promote",
            "--archive-mode=off",
        ])?;
        let t1 = Instant::now();
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = proc::free_port();
            let extra = ["hot_standby=off", "archive_mode=off"];
            let mut server =
                proc::spawn_postgres(&self.bin, self.ids, &rdir, &data, None, port, &log, &extra)?;
            match answer(port, &data, query, &mut server, RECOVERY_TIMEOUT) {
                Ok(value) => {
                    let t2 = Instant::now();
                    server.stop();
                    drop(server);
                    proc::remove_dir(&rdir)?;
                    return Ok(PgRestore {
                        backup: backup.label,
                        total: t2 - t0,
                        restore_cmd: t1 - t0,
                        start_to_answer: t2 - t1,
                        value,
                    });
                }
                Err(e) => {
                    server.stop();
                    last = e;
                    if !proc::port_taken(&last) {
                        break;
                    }
                }
            }
        }
        Err(format!(
            "restoring backup {} to {target} in {}: {last}",
            backup.label,
            rdir.display()
        ))
    }

    /// Stops the server (immediate shutdown) and waits for it.
    pub fn stop(mut self) {
        self.server.stop();
    }

    /// The newest backup whose end the server's clock had passed at `target_us`.
    fn backup_for(&self, target_us: i64) -> Result<PgBackup, String> {
        let backups = self.backups.lock().unwrap_or_else(|e| e.into_inner());
        backups
            .iter()
            .rev()
            .find(|b| b.usable_from_us <= target_us)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no backup had ended by {} (backups: {:?})",
                    format_target(target_us),
                    backups
                        .iter()
                        .map(|b| (b.label.as_str(), format_target(b.usable_from_us)))
                        .collect::<Vec<_>>()
                )
            })
    }

    fn pgbackrest_command(&self, args: &[&str]) -> Command {
        let mut c = proc::command(&self.pgbackrest, self.ids, &self.dir);
        c.arg(format!("--config={}", self.conf.display()))
            .arg(format!("--stanza={STANZA}"))
            .args(args);
        c
    }

    /// Runs a pgbackrest command; fails with its output and the tail of pgBackRest's own log.
    fn pgbackrest_cmd(&self, args: &[&str]) -> Result<Duration, String> {
        proc::run(self.pgbackrest_command(args), &self.pgbackrest_log).map_err(|e| {
            let own = self
                .dir
                .join("pgbackrest-log")
                .join(format!("{STANZA}-{}.log", args[0]));
            format!("{e}\n{}:\n{}", own.display(), proc::tail(&own))
        })
    }

    fn psql(&self, db: &str, sqls: &[&str]) -> Result<String, String> {
        psql(&self.bin, self.port, &self.dir, db, sqls)
    }
}

/// A recovery target for [`PgPeer::restore_to_time`]: `YYYY-MM-DD HH:MM:SS.ffffff+00`.
pub fn format_target(unix_us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(unix_us) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        None => format!("(out of range: {unix_us} µs)"),
    }
}

/// Microseconds since the Unix epoch of a target with a UTC offset.
pub fn parse_target(target: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_str(target, "%Y-%m-%d %H:%M:%S%.f%#z")
        .map(|t| t.timestamp_micros())
        .map_err(|e| {
            format!("recovery target {target:?} is not YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM] ({e})")
        })
}

/// Runs each SQL command through `psql` (separately, so each commits on its own) as the
/// superuser over TCP; returns the unaligned, tuples-only output. Its standard error goes
/// to `dir/psql.log`.
fn psql(bin: &Path, port: u16, dir: &Path, db: &str, sqls: &[&str]) -> Result<String, String> {
    let mut c = proc::psql(bin, port, USER, PASSWORD, db);
    for sql in sqls {
        c.args(["-c", sql]);
    }
    proc::output(c, &dir.join("psql.log"))
}

fn url(port: u16, db: &str) -> String {
    format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/{db}")
}

/// Polls `query` on the server on 127.0.0.1:`port` until it answers once recovery has
/// ended; fails when the server exits, when the query fails for another reason than the
/// server still starting, or after `timeout`.
fn answer(
    port: u16,
    data: &Path,
    query: &str,
    server: &mut Server,
    timeout: Duration,
) -> Result<i64, String> {
    let url = url(port, DB);
    // On a thread of its own, so that it works whether or not the caller is inside a runtime.
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
            rt.block_on(async {
                let start = Instant::now();
                loop {
                    if let Some(v) = try_answer(&url, data, query).await? {
                        return Ok(v);
                    }
                    if let Some(status) = server.exited() {
                        return Err(server.exit_error(status));
                    }
                    if start.elapsed() > timeout {
                        return Err(format!(
                            "{query:?} got no answer within {timeout:?}; {}:\n{}",
                            server.log().display(),
                            proc::tail(server.log())
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the thread polling the restored server panicked".into()))
    })
}

/// `Some(answer)` once the server is out of recovery; `None` while it does not accept
/// connections yet.
async fn try_answer(url: &str, data: &Path, query: &str) -> Result<Option<i64>, String> {
    use tokio_postgres::error::SqlState;
    let not_yet = |e: &tokio_postgres::Error| match e.code() {
        None => true,
        Some(code) => *code == SqlState::CANNOT_CONNECT_NOW,
    };
    let (client, conn) = match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) if not_yet(&e) => return Ok(None),
        Err(e) => return Err(format!("cannot connect to {url}: {e}")),
    };
    let conn = tokio::spawn(conn);
    let result = async {
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(), current_setting('data_directory')",
                &[],
            )
            .await?;
        let (in_recovery, serves): (bool, String) = (row.get(0), row.get(1));
        if Path::new(&serves) != data {
            // A server that took the port in between.
            return Ok(Err(format!(
                "{url} answered for {serves}: address already in use"
            )));
        }
        if in_recovery {
            return Ok(Ok(None));
        }
        let row = client.query_one(query, &[]).await?;
        Ok(Ok(Some(match row.try_get::<_, i64>(0) {
            Ok(v) => v,
            Err(_) => i64::from(row.try_get::<_, i32>(0)?),
        })))
    }
    .await;
    drop(client);
    let _ = conn.await;
    match result {
        Ok(r) => r,
        Err(e) if not_yet(&e) => Ok(None),
        Err(e) => Err(format!("{query:?} failed on {url}: {e}")),
    }
}

/// `zst` when pgbackrest links libzstd, else `lz4` when it links liblz4, else `gz`.
fn compress_type(pgbackrest: &Path) -> &'static str {
    let libs = Command::new("ldd")
        .arg(pgbackrest)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if libs.is_empty() || libs.contains("libzstd") {
        "zst"
    } else if libs.contains("liblz4") {
        "lz4"
    } else {
        "gz"
    }
}

/// A postgresql.conf string literal.
fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
