//! Timelines: a store restored to epoch E goes on recording on a new timeline that forks
//! from the restored one at E, so that the abandoned branch stays restorable and the two
//! histories never mix.
//!
//! A restore into a `dir:` store leaves a `FORK` file beside its `CHECKPOINT`. The first
//! [`crate::recorder::Recorder`] that opens the store registers the fork in the repo's
//! manifest (a new [`TimelineEntry`] with its parent, fork epoch and lsn), uploads the
//! starting state as the new timeline's first snapshot, rewrites the checkpoint on the new
//! timeline and removes `FORK`. Every step can be repeated after a crash: the fork's
//! nonce finds the timeline registered before.
//!
//! `FORK` (40 bytes, little-endian):
//!
//! ```text
//! [0,4)   magic "MPFK"
//! [4]     version 1
//! [5,8)   zero
//! [8,12)  parent timeline            u32
//! [12,20) fork lsn (last record kept) u64
//! [20,28) fork epoch                 u64
//! [28,36) nonce                      u64 (random, chosen by the restore)
//! [36,40) crc32 of [0,36)
//! ```

use std::path::Path;

use tracing::info;

use crate::error::{Error, Result};
use crate::model_api::Model;
use crate::pb::{Manifest, TimelineEntry};
use crate::repo::Repo;
use crate::snapshot;

pub const FORK_FILE: &str = "FORK";
const FORK_MAGIC: [u8; 4] = *b"MPFK";
const FORK_VERSION: u8 = 1;
const FORK_LEN: usize = 40;

/// Where a restored store's history leaves its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fork {
    pub parent: u32,
    pub fork_lsn: u64,
    pub fork_epoch: u64,
    pub nonce: u64,
}

impl Fork {
    /// The fork a store restored to `state` starts from.
    pub fn of<M: Model>(state: &M, nonce: u64) -> Fork {
        Fork {
            parent: state.timeline(),
            fork_lsn: state.lsn(),
            fork_epoch: state.epoch(),
            nonce,
        }
    }

    pub fn encode(&self) -> [u8; FORK_LEN] {
        let mut b = [0u8; FORK_LEN];
        b[0..4].copy_from_slice(&FORK_MAGIC);
        b[4] = FORK_VERSION;
        b[8..12].copy_from_slice(&self.parent.to_le_bytes());
        b[12..20].copy_from_slice(&self.fork_lsn.to_le_bytes());
        b[20..28].copy_from_slice(&self.fork_epoch.to_le_bytes());
        b[28..36].copy_from_slice(&self.nonce.to_le_bytes());
        let crc = crc32fast::hash(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8], what: &str) -> Result<Fork> {
        if b.len() != FORK_LEN {
            return Err(Error::corrupt(
                what,
                0,
                format!("{} bytes where {FORK_LEN} are expected", b.len()),
            ));
        }
        let u64_at = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        let stored = u32::from_le_bytes([b[36], b[37], b[38], b[39]]);
        if crc32fast::hash(&b[..36]) != stored {
            return Err(Error::corrupt(what, 36, "checksum mismatch"));
        }
        if b[0..4] != FORK_MAGIC {
            return Err(Error::corrupt(what, 0, "not a FORK file (bad magic)"));
        }
        if b[4] != FORK_VERSION {
            return Err(Error::corrupt(
                what,
                4,
                format!(
                    "version {} is not supported (this build reads {FORK_VERSION})",
                    b[4]
                ),
            ));
        }
        Ok(Fork {
            parent: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            fork_lsn: u64_at(12),
            fork_epoch: u64_at(20),
            nonce: u64_at(28),
        })
    }
}

/// Writes `FORK` atomically (temp file, fsync, rename, directory fsync).
pub fn write_fork(dir: &Path, fork: &Fork) -> Result<()> {
    let tmp = dir.join(format!("{FORK_FILE}.tmp"));
    let path = dir.join(FORK_FILE);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&fork.encode())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    crate::wal::fsync_dir(dir)
}

pub fn read_fork(dir: &Path) -> Result<Option<Fork>> {
    let path = dir.join(FORK_FILE);
    match std::fs::read(&path) {
        Ok(b) => Fork::decode(&b, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Registers a restored store's fork in the repo and moves the store onto the new
/// timeline; returns the state on it. Repeatable: see the module docs.
pub async fn start_fork<M: Model>(
    repo: &Repo<M>,
    dir: &Path,
    mut state: M,
    fork: &Fork,
) -> Result<M> {
    let mut id = 0;
    let m = repo
        .update_manifest(|m| {
            if let Some(t) = m.timelines.iter().find(|t| t.fork_nonce == fork.nonce) {
                id = t.id;
                return Ok(false);
            }
            id = next_timeline_id(m, fork.parent);
            let t = m.timeline_mut(id);
            t.parent = fork.parent;
            t.fork_lsn = fork.fork_lsn;
            t.fork_epoch = fork.fork_epoch;
            t.fork_nonce = fork.nonce;
            Ok(true)
        })
        .await?;
    state.set_timeline(id);
    // The starting state, as the snapshot the new timeline's first segment chains onto.
    if !m
        .snapshots
        .iter()
        .any(|s| s.timeline == id && s.lsn == state.lsn())
    {
        snapshot::upload(repo, &state).await?;
    }
    snapshot::write_checkpoint(dir, &state)?;
    let path = dir.join(FORK_FILE);
    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    crate::wal::fsync_dir(dir)?;
    info!(
        timeline = id,
        parent = fork.parent,
        fork_epoch = fork.fork_epoch,
        "the restored store records on a new timeline"
    );
    Ok(state)
}

/// One more than every timeline id the manifest or the fork knows.
fn next_timeline_id(m: &Manifest, parent: u32) -> u32 {
    m.timelines
        .iter()
        .map(|t| t.id)
        .chain(m.snapshots.iter().map(|s| s.timeline))
        .chain(m.pins.iter().map(|p| p.timeline))
        .chain([parent])
        .max()
        .unwrap_or(0)
        + 1
}

/// Makes `dir` the meta store directory that goes on from the native store `src` (one a
/// restore wrote: its `CHECKPOINT`, its `FORK`, any WAL): a copy of `src`'s files but its
/// lock, fsynced, unless `dir` is `src` itself. The first recorder opened on `dir` then
/// registers the fork and records on a new timeline ([`start_fork`]).
///
/// Fails with [`Error::NotFound`] when `src` holds no `CHECKPOINT` (restore into it
/// first) and with [`Error::TargetNotEmpty`] when `dir` is another directory that is not
/// empty; nothing is copied then.
pub fn prepare_resume<M: Model>(src: &Path, dir: &Path) -> Result<()> {
    if snapshot::read_checkpoint::<M>(src)?.is_none() {
        return Err(Error::not_found(format!(
            "{} holds no CHECKPOINT; restore into it first",
            src.display()
        )));
    }
    let same = match (std::fs::canonicalize(src), std::fs::canonicalize(dir)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Ok(());
    }
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::target_not_empty(format!(
            "{} (to resume from dir:{}, give an empty directory or the store itself)",
            dir.display(),
            src.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for ent in std::fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let ent = ent.map_err(|e| Error::io(src, e))?;
        let name = ent.file_name();
        if name == crate::wal::LOCK_FILE || !ent.path().is_file() {
            continue;
        }
        let to = dir.join(&name);
        std::fs::copy(ent.path(), &to).map_err(|e| Error::io(&to, e))?;
    }
    crate::wal::fsync_dir(dir)
}

/// The timelines of a repo, parents before children.
pub fn tree(m: &Manifest) -> Vec<&TimelineEntry> {
    let mut v: Vec<&TimelineEntry> = m.timelines.iter().collect();
    v.sort_by_key(|t| t.id);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_file_round_trips_and_every_flipped_byte_is_detected() {
        let f = Fork {
            parent: 3,
            fork_lsn: 77,
            fork_epoch: 9_800_000 << 16,
            nonce: 0xdead_beef_1234,
        };
        let b = f.encode();
        assert_eq!(Fork::decode(&b, "FORK").unwrap(), f);
        for i in 0..b.len() {
            let mut d = b;
            d[i] ^= 0x01;
            let e = Fork::decode(&d, "FORK").unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Corruption, "byte {i}");
        }
        assert!(Fork::decode(&b[..39], "FORK").is_err());
    }
}
