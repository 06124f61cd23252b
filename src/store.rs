//! Target meta stores a restore writes into.
//!
//! - `dir:PATH`: a native meta store directory (a `CHECKPOINT` of the state plus an empty
//!   WAL) that [`crate::recorder::Recorder`] opens to go on recording;
//! - `jsonl:PATH` / `jsonl:-`: the JSONL export ([`crate::jsonl`]) to a file or stdout.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::model::State;
use crate::snapshot;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetStore {
    Dir(PathBuf),
    Jsonl(PathBuf),
    Stdout,
}

impl std::fmt::Display for TargetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetStore::Dir(p) => write!(f, "dir:{}", p.display()),
            TargetStore::Jsonl(p) => write!(f, "jsonl:{}", p.display()),
            TargetStore::Stdout => write!(f, "jsonl:-"),
        }
    }
}

impl std::str::FromStr for TargetStore {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidInput(format!(
                "target store '{s}' is not understood; use dir:PATH, jsonl:PATH or jsonl:-"
            ))
        };
        let (scheme, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match scheme {
            "dir" => Ok(TargetStore::Dir(rest.into())),
            "jsonl" if rest == "-" => Ok(TargetStore::Stdout),
            "jsonl" => Ok(TargetStore::Jsonl(rest.into())),
            _ => Err(bad()),
        }
    }
}

impl TargetStore {
    /// Whether the target holds anything a restore would overwrite.
    pub fn is_empty(&self) -> Result<bool> {
        match self {
            TargetStore::Dir(p) => match std::fs::read_dir(p) {
                Ok(mut rd) => Ok(rd.next().is_none()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
                Err(e) => Err(Error::io(p, e)),
            },
            TargetStore::Jsonl(p) => match std::fs::metadata(p) {
                Ok(m) => Ok(m.len() == 0),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
                Err(e) => Err(Error::io(p, e)),
            },
            TargetStore::Stdout => Ok(true),
        }
    }

    /// Refuses a non-empty target unless `force`, in which case it is cleared.
    pub fn prepare(&self, force: bool) -> Result<()> {
        if self.is_empty()? {
            return Ok(());
        }
        if !force {
            return Err(Error::TargetNotEmpty(self.to_string()));
        }
        match self {
            TargetStore::Dir(p) => {
                // Refuse to clear a directory a live writer holds.
                let lock = crate::wal::lock_dir(p)?;
                for ent in std::fs::read_dir(p).map_err(|e| Error::io(p, e))? {
                    let ent = ent.map_err(|e| Error::io(p, e))?;
                    if ent.file_name() == crate::wal::LOCK_FILE {
                        continue;
                    }
                    let path = ent.path();
                    let r = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    r.map_err(|e| Error::io(&path, e))?;
                }
                drop(lock);
                Ok(())
            }
            TargetStore::Jsonl(p) => std::fs::remove_file(p).map_err(|e| Error::io(p, e)),
            TargetStore::Stdout => Ok(()),
        }
    }

    /// Writes a state into the (prepared) target.
    pub fn write(&self, state: &State) -> Result<()> {
        match self {
            TargetStore::Dir(p) => {
                let _lock = crate::wal::lock_dir(p)?;
                snapshot::write_checkpoint(p, state)
            }
            TargetStore::Jsonl(p) => {
                if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                }
                let tmp = p.with_extension("jsonl.tmp");
                let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
                let mut w = std::io::BufWriter::new(f);
                crate::jsonl::write(state, &mut w).map_err(|e| Error::io(&tmp, e))?;
                w.into_inner()
                    .map_err(|e| Error::io(&tmp, e.into_error()))?
                    .sync_all()
                    .map_err(|e| Error::io(&tmp, e))?;
                std::fs::rename(&tmp, p).map_err(|e| Error::io(p, e))
            }
            TargetStore::Stdout => {
                let out = std::io::stdout();
                let mut lock = std::io::BufWriter::new(out.lock());
                crate::jsonl::write(state, &mut lock).map_err(|e| Error::io("<stdout>", e))
            }
        }
    }
}
