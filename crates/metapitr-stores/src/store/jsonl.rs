//! `jsonl:PATH` and `jsonl:-`: the JSONL export ([`crate::jsonl`]) as a meta store, a file
//! (or a device or FIFO, written through) or stdout and stdin.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::MetaStore;
use crate::error::{Error, Result};
use crate::model::State;

/// A JSONL export as a meta store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonlStore {
    /// `jsonl:PATH`: a file, or a character device or FIFO.
    File(PathBuf),
    /// `jsonl:-`: written to stdout, read from stdin.
    Stdio,
}

impl std::fmt::Display for JsonlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonlStore::File(p) => write!(f, "jsonl:{}", p.display()),
            JsonlStore::Stdio => write!(f, "jsonl:-"),
        }
    }
}

#[async_trait]
impl MetaStore for JsonlStore {
    async fn is_empty(&self) -> Result<bool> {
        match self {
            JsonlStore::File(p) => Ok(match JsonlPath::of(p)? {
                JsonlPath::File { len, .. } => len == 0,
                // Written through, never replaced: nothing there is lost.
                JsonlPath::Stream(_) => true,
            }),
            JsonlStore::Stdio => Ok(true),
        }
    }

    /// Nothing to do: the write replaces the file whole (or writes through a device or
    /// FIFO); removing it first would lose it if the write failed, and would remove a
    /// symlink rather than what it points to.
    async fn clear(&self) -> Result<()> {
        Ok(())
    }

    async fn write_with(&self, state: &State, force: bool, force_clear: bool) -> Result<()> {
        super::make_room(self, force, force_clear).await?;
        let lines = crate::jsonl::lines(state);
        match self {
            JsonlStore::File(p) => write_jsonl_file(p, &lines),
            JsonlStore::Stdio => write_stdout(&lines),
        }
    }

    async fn write_export(&self, state: &State, force: bool, include_secrets: bool) -> Result<()> {
        if include_secrets {
            return self.write(state, force).await;
        }
        let mut lines = crate::jsonl::lines(state);
        crate::jsonl::redact(&mut lines);
        match self {
            JsonlStore::File(p) => {
                super::make_room(self, force, false).await?;
                write_jsonl_file(p, &lines)
            }
            JsonlStore::Stdio => write_stdout(&lines),
        }
    }

    fn read_export(&self, allow_untrailed: bool) -> Result<State> {
        let (what, parsed) = match self {
            JsonlStore::File(p) => {
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
            JsonlStore::Stdio => (
                "<stdin>".to_string(),
                crate::jsonl::read(std::io::stdin().lock(), allow_untrailed),
            ),
        };
        parsed.map_err(|source| Error::export(format!("export {what}"), source.kind, source))
    }

    async fn read(&self) -> Result<State> {
        self.read_export(false)
    }
}

fn write_stdout(lines: &[serde_json::Value]) -> Result<()> {
    let out = std::io::stdout();
    let mut lock = std::io::BufWriter::new(out.lock());
    crate::jsonl::write_lines(lines, &mut lock).map_err(|e| Error::io("<stdout>", e))
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
