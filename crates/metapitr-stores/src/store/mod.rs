//! Meta stores a restore writes into, and an export reads back from.
//!
//! - `dir:PATH`: a native meta store directory (a `CHECKPOINT` of the state, a `FORK`
//!   marker and an empty WAL) that [`crate::recorder::Recorder`] opens to go on recording
//!   on a new timeline ([`crate::timeline`]);
//! - `jsonl:PATH` / `jsonl:-`: the JSONL export ([`crate::jsonl`]) to a file or stdout;
//! - `sqlite:PATH`: the SQL schema of [`sql`] in a SQLite file;
//! - `postgres://USER:PASSWORD@HOST:PORT/DB`: the same schema in PostgreSQL;
//! - `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`: one key per export line ([`etcd`]).
//!
//! Every store writes a whole state or nothing a reader mistakes for one, refuses to
//! overwrite what it holds unless forced, and reads back the state it was given, so
//! export → import → export gives the same bytes through any of them.

pub mod etcd;
pub mod postgres;
pub mod sql;
pub mod sqlite;

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::model::State;
use crate::snapshot;

pub use etcd::{EtcdCredentials, EtcdTarget};
pub use postgres::PgTarget;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetStore {
    Dir(PathBuf),
    Jsonl(PathBuf),
    Stdout,
    Sqlite(PathBuf),
    /// A `postgres://` (or `postgresql://`) connection URL.
    Postgres(PgTarget),
    Etcd(EtcdTarget),
}

impl std::fmt::Display for TargetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetStore::Dir(p) => write!(f, "dir:{}", p.display()),
            TargetStore::Jsonl(p) => write!(f, "jsonl:{}", p.display()),
            TargetStore::Stdout => write!(f, "jsonl:-"),
            TargetStore::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            TargetStore::Postgres(t) => t.fmt(f),
            TargetStore::Etcd(e) => e.fmt(f),
        }
    }
}

impl std::str::FromStr for TargetStore {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid_input(format!(
                "target store '{s}' is not understood; use dir:PATH, jsonl:PATH, jsonl:-, \
                 sqlite:PATH, postgres://USER:PASSWORD@HOST:PORT/DB or \
                 etcd://HOST:PORT[,HOST:PORT...][/PREFIX]"
            ))
        };
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(TargetStore::Postgres(PgTarget::new(s)));
        }
        if let Some(rest) = s.strip_prefix("etcd://") {
            return Ok(TargetStore::Etcd(EtcdTarget::parse(rest)?));
        }
        let (scheme, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match scheme {
            "dir" => Ok(TargetStore::Dir(rest.into())),
            "jsonl" if rest == "-" => Ok(TargetStore::Stdout),
            "jsonl" => Ok(TargetStore::Jsonl(rest.into())),
            "sqlite" => Ok(TargetStore::Sqlite(rest.into())),
            _ => Err(bad()),
        }
    }
}

/// Builds a state from export lines read back out of `store`; what does not read back is
/// corruption of the store.
pub(crate) fn state_from_lines(store: &str, lines: Vec<serde_json::Value>) -> Result<State> {
    crate::jsonl::from_lines(lines.into_iter().enumerate().map(|(i, v)| (i + 1, v))).map_err(|e| {
        Error::meta_store(
            store,
            ErrorKind::Corruption,
            format!("what it holds is not a state ({e}); restore into it again with --force"),
        )
    })
}

/// The state a native meta store directory (CHECKPOINT plus WAL) holds, read without
/// taking its lock or changing it: the checkpoint (or, without one, an empty state) with
/// every complete local batch after it whose epoch is at most `at_epoch` (default: all).
/// An epoch before the checkpoint or after the newest record is refused, and so is one
/// the directory cannot give whole because records after the checkpoint were archived
/// and deleted locally: read those from the repo.
pub fn read_wal_dir(dir: &Path, at_epoch: Option<u64>) -> Result<State> {
    if !dir.is_dir() {
        return Err(Error::not_found(format!(
            "WAL directory {} does not exist",
            dir.display()
        )));
    }
    let checkpoint = snapshot::read_checkpoint(dir)?;
    let segments = crate::wal::list_segments(dir)?;
    let mut state = match (checkpoint, segments.first()) {
        (Some(s), _) => s,
        (None, Some(seg)) => State::new(seg.timeline),
        (None, None) => {
            return Err(Error::not_found(format!(
                "{} holds no metapitr WAL (no {} and no WAL segment); give the meta store's \
                 directory, or export from the repo (--repo)",
                dir.display(),
                snapshot::CHECKPOINT_FILE
            )))
        }
    };
    let records = crate::wal::read_local_records(dir, state.lsn)?;
    if let Some(e) = at_epoch {
        let newest = records.last().map_or(state.epoch, |r| r.epoch);
        if e < state.epoch || e > newest {
            return Err(Error::out_of_range(
                format!("{e} ({})", crate::epoch::format(e)),
                format!("WAL directory {}", dir.display()),
                format!(
                    "{}, from its checkpoint to its newest record; export other epochs from \
                     the repo (--repo)",
                    crate::restore::format_ranges(&[(state.epoch, newest)])
                ),
            ));
        }
    }
    for r in records {
        // Before the epoch test: the missing records may hold epochs up to the target.
        if r.lsn != state.lsn + 1 {
            return Err(Error::not_found(format!(
                "{}: records {}..{} were archived and removed locally; export from the repo \
                 (--repo) instead",
                dir.display(),
                state.lsn + 1,
                r.lsn - 1
            )));
        }
        if at_epoch.is_some_and(|e| r.epoch > e) {
            break;
        }
        r.apply_to(&mut state)?;
    }
    if let Some(e) = at_epoch {
        state.epoch = e;
    }
    Ok(state)
}

impl TargetStore {
    /// Sets the credentials of an etcd target (other targets ignore them).
    pub fn with_etcd_auth(mut self, auth: Option<EtcdCredentials>) -> Self {
        if let TargetStore::Etcd(e) = &mut self {
            e.auth = auth;
        }
        self
    }

    /// Sets the connect and request timeouts of a PostgreSQL or etcd target (others make
    /// no network calls).
    pub fn with_network(mut self, timeouts: crate::net::Timeouts) -> Self {
        match &mut self {
            TargetStore::Postgres(t) => t.timeouts = timeouts,
            TargetStore::Etcd(e) => e.timeouts = timeouts,
            _ => {}
        }
        self
    }

    /// Whether the target holds anything a restore would overwrite.
    pub async fn is_empty(&self) -> Result<bool> {
        match self {
            TargetStore::Dir(p) => match std::fs::read_dir(p) {
                Ok(mut rd) => Ok(rd.next().is_none()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
                Err(e) => Err(Error::io(p, e)),
            },
            TargetStore::Jsonl(p) => Ok(match JsonlPath::of(p)? {
                JsonlPath::File { len, .. } => len == 0,
                // Written through, never replaced: nothing there is lost.
                JsonlPath::Stream(_) => true,
            }),
            TargetStore::Stdout => Ok(true),
            TargetStore::Sqlite(p) => sqlite::is_empty(p).await,
            TargetStore::Postgres(u) => postgres::is_empty(u).await,
            TargetStore::Etcd(e) => e.is_empty().await,
        }
    }

    /// Writes a state into the target. A non-empty target is refused unless `force`, in
    /// which case what it holds is replaced; a `dir:` target holding anything a meta store
    /// does not is refused even then ([`Self::write_with`]).
    pub async fn write(&self, state: &State, force: bool) -> Result<()> {
        self.write_with(state, force, false).await
    }

    /// [`Self::write`], where `force_clear` lets `force` clear a `dir:` target that holds
    /// anything a meta store does not ([`Self::check_clearable`]).
    pub async fn write_with(&self, state: &State, force: bool, force_clear: bool) -> Result<()> {
        match self {
            TargetStore::Sqlite(p) => return sqlite::write(p, state, force).await,
            TargetStore::Postgres(u) => return postgres::write(u, state, force).await,
            _ => {}
        }
        self.make_room(force, force_clear).await?;
        match self {
            TargetStore::Dir(p) => {
                let _lock = crate::wal::lock_dir(p)?;
                snapshot::write_checkpoint(p, state)?;
                // Whoever records on this store next does so on a new timeline.
                let fork = crate::timeline::Fork::of(state, rand::random::<u64>() | 1);
                crate::timeline::write_fork(p, &fork)
            }
            TargetStore::Jsonl(p) => write_jsonl_file(p, &crate::jsonl::lines(state)),
            TargetStore::Stdout => write_stdout(&crate::jsonl::lines(state)),
            TargetStore::Etcd(e) => e.write(&crate::jsonl::lines(state)).await,
            TargetStore::Sqlite(_) | TargetStore::Postgres(_) => Ok(()),
        }
    }

    /// Writes an export (`metapitr export`, a JSONL file or stdout): as [`Self::write`], but
    /// with every password hash redacted unless `include_secrets`.
    pub async fn write_export(
        &self,
        state: &State,
        force: bool,
        include_secrets: bool,
    ) -> Result<()> {
        if include_secrets {
            return self.write(state, force).await;
        }
        let mut lines = crate::jsonl::lines(state);
        crate::jsonl::redact(&mut lines);
        match self {
            TargetStore::Jsonl(p) => {
                self.make_room(force, false).await?;
                write_jsonl_file(p, &lines)
            }
            TargetStore::Stdout => write_stdout(&lines),
            other => Err(Error::invalid_input(format!(
                "an export goes to a JSONL file or stdout, not {other}"
            ))),
        }
    }

    /// Refuses a non-empty target unless `force`, in which case it is cleared (a `dir:`
    /// target only if [`Self::check_clearable`]).
    async fn make_room(&self, force: bool, force_clear: bool) -> Result<()> {
        if !self.is_empty().await? {
            if !force {
                return Err(Error::target_not_empty(self.to_string()));
            }
            self.check_clearable(force_clear)?;
            self.clear().await?;
        }
        Ok(())
    }

    /// Refuses, unless `force_clear`, a `dir:` target holding anything a meta store does
    /// not (only `LOCK`, `CHECKPOINT`, `FORK`, their `.tmp` files and WAL segments belong),
    /// so that `--force` never empties a directory given by mistake. Other targets pass.
    pub fn check_clearable(&self, force_clear: bool) -> Result<()> {
        let TargetStore::Dir(p) = self else {
            return Ok(());
        };
        if force_clear {
            return Ok(());
        }
        let rd = match std::fs::read_dir(p) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(p, e)),
        };
        let mut foreign = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(p, e))?;
            let file = ent
                .file_type()
                .map_err(|e| Error::io(ent.path(), e))?
                .is_file();
            let name = ent.file_name().to_string_lossy().into_owned();
            if !(file && is_meta_store_file(&name)) {
                foreign.push(name);
            }
        }
        if foreign.is_empty() {
            return Ok(());
        }
        foreign.sort();
        const SHOWN: usize = 5;
        let more = match foreign.len().saturating_sub(SHOWN) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        Err(Error::invalid_input(format!(
            "{self} does not look like a meta store: it holds {}{more}, which a meta store \
             does not; choose another directory, or pass --force-clear as well to delete \
             everything in it",
            foreign
                .iter()
                .take(SHOWN)
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Removes what the target holds; from a `dir:`, every entry but `LOCK`, each named on
    /// stderr as it goes.
    async fn clear(&self) -> Result<()> {
        match self {
            TargetStore::Dir(p) => {
                use std::io::Write;
                // Refuse to clear a directory a live writer holds.
                let lock = crate::wal::lock_dir(p)?;
                let mut entries = Vec::new();
                for ent in std::fs::read_dir(p).map_err(|e| Error::io(p, e))? {
                    let ent = ent.map_err(|e| Error::io(p, e))?;
                    if ent.file_name() != crate::wal::LOCK_FILE {
                        let dir = ent.file_type().map_err(|e| Error::io(ent.path(), e))?;
                        entries.push((ent.path(), dir.is_dir()));
                    }
                }
                entries.sort();
                for (path, is_dir) in entries {
                    // Told, not required: a closed stderr does not stop the clearing.
                    let _ = writeln!(
                        std::io::stderr(),
                        "removing {}{}",
                        path.display(),
                        if is_dir { "/ and everything in it" } else { "" }
                    );
                    let r = if is_dir {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    r.map_err(|e| Error::io(&path, e))?;
                }
                drop(lock);
                Ok(())
            }
            // The write replaces the file whole (or writes through a device or FIFO):
            // removing it first would lose it if the write failed, and would remove a
            // symlink rather than what it points to.
            TargetStore::Jsonl(_) | TargetStore::Stdout => Ok(()),
            TargetStore::Sqlite(p) => sqlite::clear(p).await,
            TargetStore::Postgres(u) => postgres::clear(u).await,
            TargetStore::Etcd(e) => e.clear().await,
        }
    }

    /// Reads an export back from a JSONL file or stdin (import): its end line must cover
    /// it, unless `allow_untrailed` lets a format_version 1 export, which has none, in.
    pub fn read_export(&self, allow_untrailed: bool) -> Result<State> {
        let (what, parsed) = match self {
            TargetStore::Jsonl(p) => {
                let f = std::fs::File::open(p).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        Error::not_found(format!("export file {} does not exist", p.display()))
                    }
                    _ => Error::io(p, e),
                })?;
                let r = std::io::BufReader::new(f);
                (
                    p.display().to_string(),
                    crate::jsonl::read(r, allow_untrailed),
                )
            }
            TargetStore::Stdout => (
                "<stdin>".to_string(),
                crate::jsonl::read(std::io::stdin().lock(), allow_untrailed),
            ),
            other => {
                return Err(Error::invalid_input(format!(
                    "an export is read from a JSONL file or stdin, not {other}"
                )))
            }
        };
        parsed.map_err(|source| Error::export(format!("export {what}"), source.kind, source))
    }

    /// Reads back the state the target holds.
    pub async fn read(&self) -> Result<State> {
        match self {
            TargetStore::Dir(p) => read_wal_dir(p, None),
            TargetStore::Jsonl(_) | TargetStore::Stdout => self.read_export(false),
            TargetStore::Sqlite(p) => sqlite::read(p).await,
            TargetStore::Postgres(u) => postgres::read(u).await,
            TargetStore::Etcd(e) => state_from_lines(&e.to_string(), e.read().await?),
        }
    }
}

fn write_stdout(lines: &[serde_json::Value]) -> Result<()> {
    let out = std::io::stdout();
    let mut lock = std::io::BufWriter::new(out.lock());
    crate::jsonl::write_lines(lines, &mut lock).map_err(|e| Error::io("<stdout>", e))
}

/// Whether a meta store directory holds files named so (see [`TargetStore::check_clearable`]).
fn is_meta_store_file(name: &str) -> bool {
    let base = name.strip_suffix(".tmp").unwrap_or(name);
    name == crate::wal::LOCK_FILE
        || base == snapshot::CHECKPOINT_FILE
        || base == crate::timeline::FORK_FILE
        || crate::wal::is_segment_name(name)
}

/// What a `jsonl:` path (or `export -o PATH`) names, symlinks followed.
#[derive(Debug, PartialEq, Eq)]
enum JsonlPath {
    /// A regular file, or nothing yet (`len` 0), at this path with every symlink resolved:
    /// written to a temporary file beside it and renamed over it.
    File { path: PathBuf, len: u64 },
    /// A character device (`/dev/null`, a terminal) or a FIFO: written through, never
    /// replaced.
    Stream(PathBuf),
}

impl JsonlPath {
    fn of(p: &Path) -> Result<JsonlPath> {
        // As many links as Linux follows in one path (MAXSYMLINKS).
        const MAX_LINKS: usize = 40;
        let mut cur = p.to_path_buf();
        for _ in 0..=MAX_LINKS {
            let m = match std::fs::symlink_metadata(&cur) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(JsonlPath::File { path: cur, len: 0 })
                }
                Err(e) => return Err(Error::io(&cur, e)),
            };
            let t = m.file_type();
            if t.is_symlink() {
                let to = std::fs::read_link(&cur).map_err(|e| Error::io(&cur, e))?;
                cur = match cur.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
                continue;
            }
            if t.is_file() {
                return Ok(JsonlPath::File {
                    path: cur,
                    len: m.len(),
                });
            }
            if is_stream(&t) {
                return Ok(JsonlPath::Stream(cur));
            }
            let what = if t.is_dir() {
                "a directory"
            } else {
                "a special file (neither a regular file, a character device nor a FIFO)"
            };
            return Err(Error::invalid_input(format!(
                "{} is {what}; an export goes to a file path, a FIFO, a character device such \
                 as /dev/null, or - for stdout",
                p.display()
            )));
        }
        Err(Error::invalid_input(format!(
            "{}: more than {MAX_LINKS} symlinks to follow; point it at the file directly",
            p.display()
        )))
    }
}

#[cfg(unix)]
fn is_stream(t: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    t.is_char_device() || t.is_fifo()
}

#[cfg(not(unix))]
fn is_stream(_: &std::fs::FileType) -> bool {
    false
}

/// Writes the export to a regular file the safe way (a temporary file beside it, synced,
/// renamed over it, the directory synced), or through a device or FIFO. Never replaces
/// a symlink (its target is written) nor a special file.
fn write_jsonl_file(p: &Path, lines: &[serde_json::Value]) -> Result<()> {
    let path = match JsonlPath::of(p)? {
        JsonlPath::Stream(path) => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            let mut w = std::io::BufWriter::new(f);
            return crate::jsonl::write_lines(lines, &mut w).map_err(|e| Error::io(&path, e));
        }
        JsonlPath::File { path, .. } => path,
    };
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut b = tempfile::Builder::new();
    b.prefix(".metapitr-export-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The mode File::create gives (the umask decides), not a temporary file's 0600.
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    // Removed when dropped, so a failed write leaves nothing behind.
    let tmp = b.tempfile_in(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut w = std::io::BufWriter::new(tmp);
    crate::jsonl::write_lines(lines, &mut w).map_err(|e| Error::io(&path, e))?;
    let tmp = w
        .into_inner()
        .map_err(|e| Error::io(&path, e.into_error()))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(&path, e))?;
    tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
    crate::wal::fsync_dir(&dir)
}

/// Re-initialises cluster membership for a new cluster, as `databend-metactl import
/// --id N --initial-cluster ...` does: the meta nodes the state lists are replaced by
/// `nodes`, and `id` (which must be one of them) is recorded as the `meta_node_id` system
/// parameter, the node this store belongs to.
pub fn reinitialize_cluster(
    state: &mut State,
    id: u32,
    nodes: Vec<crate::model::WorkerNode>,
) -> Result<()> {
    use crate::model::WorkerType;
    if !nodes.iter().any(|n| n.id == id) {
        return Err(Error::invalid_input(format!(
            "--id {id} is not one of the --initial-cluster nodes ({})",
            nodes
                .iter()
                .map(|n| n.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for n in &nodes {
        if let Some(w) = state.workers.get(&n.id) {
            if w.worker_type() != WorkerType::Meta {
                return Err(Error::invalid_input(format!(
                    "--initial-cluster node {} has the id of a {} worker ({}:{}); choose \
                     another id",
                    n.id,
                    w.worker_type().as_str_name(),
                    w.host,
                    w.port
                )));
            }
        }
    }
    state
        .workers
        .retain(|_, w| w.worker_type() != WorkerType::Meta);
    for n in nodes {
        state.workers.insert(n.id, n);
    }
    state.params.insert("meta_node_id".into(), id.to_string());
    Ok(())
}
