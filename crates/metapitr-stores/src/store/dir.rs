//! `dir:PATH`: a native meta store directory, a `CHECKPOINT` of the state, a `FORK`
//! marker and an empty WAL, that [`crate::recorder::Recorder`] opens to go on recording on
//! a new timeline ([`crate::timeline`]); and [`read_wal_dir`], reading such a directory
//! offline.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::MetaStore;
use crate::error::{Error, Result};
use crate::model::State;
use crate::snapshot;

/// A native meta store directory (`dir:PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirStore(pub PathBuf);

impl DirStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DirStore(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::fmt::Display for DirStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dir:{}", self.0.display())
    }
}

#[async_trait]
impl MetaStore for DirStore {
    /// Empty: absent, or holding nothing but a `LOCK` (which a clear keeps, and which
    /// holds no data).
    async fn is_empty(&self) -> Result<bool> {
        let p = &self.0;
        let rd = match std::fs::read_dir(p) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(Error::io(p, e)),
        };
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(p, e))?;
            if ent.file_name() != crate::wal::LOCK_FILE {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Refuses, unless `force_clear`, a directory holding anything a meta store does not
    /// (only `LOCK`, `CHECKPOINT`, `FORK`, their `.tmp` files and WAL segments belong), so
    /// that `--force` never empties a directory given by mistake.
    fn check_clearable(&self, force_clear: bool) -> Result<()> {
        if force_clear {
            return Ok(());
        }
        let p = &self.0;
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

    /// Removes every entry but `LOCK`, each named on stderr as it goes. A directory that
    /// does not exist is left so.
    async fn clear(&self) -> Result<()> {
        use std::io::Write;
        let p = &self.0;
        if !p.exists() {
            return Ok(());
        }
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

    async fn write_with(&self, state: &State, force: bool, force_clear: bool) -> Result<()> {
        super::make_room(self, force, force_clear).await?;
        let p = &self.0;
        let _lock = crate::wal::lock_dir(p)?;
        snapshot::write_checkpoint(p, state)?;
        // Whoever records on this store next does so on a new timeline.
        let fork = crate::timeline::Fork::of(state, rand::random::<u64>() | 1);
        crate::timeline::write_fork(p, &fork)
    }

    async fn read(&self) -> Result<State> {
        read_wal_dir(&self.0, None)
    }
}

/// Whether a meta store directory holds files named so (see
/// [`DirStore::check_clearable`](MetaStore::check_clearable)).
fn is_meta_store_file(name: &str) -> bool {
    let base = name.strip_suffix(".tmp").unwrap_or(name);
    name == crate::wal::LOCK_FILE
        || base == snapshot::CHECKPOINT_FILE
        || base == crate::timeline::FORK_FILE
        || crate::wal::is_segment_name(name)
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
