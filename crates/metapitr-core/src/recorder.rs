//! The recorder a meta service embeds: commit changes at an epoch (durable when the call
//! returns), take snapshots, and archive continuously.
//!
//! A recorder directory is a native meta store:
//!
//! ```text
//! LOCK         the writer's lock
//! CHECKPOINT   the state at some lsn (see crate::snapshot)
//! *.wal[.open] WAL segments after it (see crate::wal)
//! ```
//!
//! Opening one loads the checkpoint and replays the local WAL after it; records the
//! archiver has already shipped and deleted locally are read back from the repo.

use std::path::{Path, PathBuf};

use prost::Message;
use std::sync::Mutex;
use std::time::Duration;

use tracing::info;

use crate::archive::{ArchiveStatus, Archiver};
use crate::clock::SharedClock;
use crate::epoch;
use crate::error::{Error, ErrorKind, Result};
use crate::model_api::Model;
use crate::pb::SnapshotEntry;
use crate::repo::Repo;
use crate::restore::{self, Target};
use crate::snapshot;
use crate::wal::{self, LsnRange, Wal, WalOptions};

/// Recorder settings. Every field states its default.
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    pub wal: WalOptions,
    /// Take a snapshot after this many commits. Default `None` (by time only).
    pub snapshot_every_commits: Option<u64>,
    /// Take a snapshot when the last one is this old by the injected clock. Default 1 hour.
    pub snapshot_every_ms: Option<u64>,
    /// Run the archiver in-process. Default true.
    pub archive: bool,
    /// How often the archiver looks for sealed segments besides being woken by a seal.
    /// Default 500 ms.
    pub archive_poll: Duration,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions {
            wal: WalOptions::default(),
            snapshot_every_commits: None,
            snapshot_every_ms: Some(3_600_000),
            archive: true,
            archive_poll: Duration::from_millis(500),
        }
    }
}

struct Inner<M> {
    state: M,
    commits_since_snapshot: u64,
    last_snapshot_ms: u64,
    /// Set when the WAL failed after a batch was applied to `state`.
    poisoned: Option<String>,
}

/// Records a meta service's commits: validates and applies each batch to the state of
/// model `M`, makes it durable in the WAL and archives it.
pub struct Recorder<M: Model> {
    dir: PathBuf,
    repo: Repo<M>,
    clock: SharedClock,
    opts: RecorderOptions,
    wal: Wal,
    archiver: Option<Archiver>,
    inner: Mutex<Inner<M>>,
}

/// A store that begins mid-history (restored from a snapshot) has nothing in the repo to
/// replay its first records onto. Before its first segment is archived, the repo gets a
/// snapshot of the starting state, and the timeline records the lsn it starts after, so
/// that its first segment chains on and every epoch from the start is restorable.
///
/// A store whose local WAL still starts at lsn 1 holds its whole history, even if none of
/// it was archived yet (the repo was unreachable): the archiver ships it from the start.
async fn register_start<M: Model>(repo: &Repo<M>, dir: &Path, state: &M) -> Result<()> {
    if state.lsn() == 0 {
        return Ok(());
    }
    if wal::list_segments(dir)?
        .first()
        .is_some_and(|s| s.first_lsn == 1)
    {
        return Ok(());
    }
    let m = repo.load_manifest().await?.unwrap_or_default();
    let archived = m
        .timeline(state.timeline())
        .is_some_and(|t| t.first_archived().is_some() || t.fork_lsn > 0);
    if archived {
        return Ok(());
    }
    snapshot::upload(repo, state).await?;
    let (lsn, epoch, tl) = (state.lsn(), state.epoch(), state.timeline());
    repo.update_manifest(|m| {
        let t = m.timeline_mut(tl);
        if t.first_archived().is_some() || t.fork_lsn > 0 {
            return Ok(false);
        }
        t.fork_lsn = lsn;
        t.fork_epoch = epoch;
        Ok(true)
    })
    .await?;
    info!(
        timeline = tl,
        lsn, "registered where this store's history starts in the repo"
    );
    Ok(())
}

/// How far the archive trails the commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLag {
    pub committed_epoch: u64,
    pub archived_epoch: u64,
    /// Distance in epoch time between the newest commit and the newest archived one.
    pub lag_ms: u64,
}

impl<M: Model> Recorder<M> {
    /// Opens (or creates) the meta store directory `dir` recording into `repo`.
    pub async fn open(dir: &Path, repo: Repo<M>, opts: RecorderOptions) -> Result<Self> {
        let clock = repo.clock().clone();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // Lock first so that nothing changes under the reads below.
        let probe = wal::lock_dir(dir)?;
        let mut state = match snapshot::read_checkpoint(dir)? {
            Some(s) => s,
            None => M::empty(1),
        };
        // A restored store goes on on a timeline of its own.
        if let Some(fork) = crate::timeline::read_fork(dir)? {
            state = crate::timeline::start_fork(&repo, dir, state, &fork).await?;
        }
        // One writer per timeline: taking it over fences any earlier writer.
        let repo = if opts.archive {
            repo.claim_timeline(state.timeline()).await?
        } else {
            repo
        };
        // Records past the checkpoint that the archiver shipped and deleted locally are read
        // back from the repo before the WAL decides where to continue.
        let local_first = wal::list_segments(dir)?.first().map(|s| s.first_lsn);
        if local_first.is_none_or(|f| f > state.lsn() + 1) {
            if let Some(m) = repo.load_manifest().await? {
                let repo_last = m.timeline(state.timeline()).map_or(0, |t| t.last().0);
                if repo_last > state.lsn() {
                    let plan =
                        restore::plan(&repo, &m, Some(state.timeline()), Target::Latest).await?;
                    state = restore::replay(&repo, &plan).await?;
                }
            }
        }
        if let Some(f) = local_first.filter(|f| *f > state.lsn() + 1) {
            return Err(Error::not_found(format!(
                "records {}..{} are neither in {} nor archived in {}",
                state.lsn() + 1,
                f,
                dir.display(),
                repo.url()
            )));
        }
        let wal = Wal::open_locked(
            probe,
            dir,
            state.timeline(),
            state.lsn() + 1,
            opts.wal.clone(),
            clock.clone(),
        )?;
        // The state the local WAL continues from.
        let base = state.clone();
        let local = wal::read_local_records(dir, state.lsn())?;
        let base_lsn = state.lsn();
        for r in local.iter().filter(|r| r.lsn > base_lsn) {
            r.apply_to(&mut state)?;
        }
        if state.lsn() + 1 != wal.next_lsn() && state.lsn() != 0 {
            return Err(Error::internal(format!(
                "state ends at lsn {} but the WAL continues at {}",
                state.lsn(),
                wal.next_lsn()
            )));
        }
        if opts.archive {
            register_start(&repo, dir, &base).await?;
        }
        let archiver = opts.archive.then(|| {
            Archiver::spawn(
                repo.clone(),
                dir.to_path_buf(),
                wal.sealed_watch(),
                opts.archive_poll,
            )
        });
        info!(dir = %dir.display(), lsn = state.lsn(), epoch = state.epoch(), "recorder open");
        let now = clock.now_ms();
        Ok(Recorder {
            dir: dir.to_path_buf(),
            repo,
            clock,
            opts,
            wal,
            archiver,
            inner: Mutex::new(Inner {
                state,
                commits_since_snapshot: 0,
                last_snapshot_ms: now,
                poisoned: None,
            }),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner<M>>> {
        self.inner
            .lock()
            .map_err(|_| Error::internal("recorder state lock poisoned"))
    }

    /// Validates and applies `changes` at `epoch`, writes them to the WAL and returns once
    /// they are durable. An invalid batch changes nothing and is reported with the index of
    /// the offending change.
    pub async fn commit(&self, epoch: u64, changes: Vec<M::Change>) -> Result<LsnRange> {
        let durable = self.commit_nowait(epoch, changes)?;
        let range = durable.await?;
        if self.snapshot_due()? {
            self.snapshot().await?;
        }
        Ok(range)
    }

    /// Like [`Recorder::commit`], but returns as soon as the batch is applied and queued;
    /// the returned future resolves when it is durable. Lets a caller keep several commits
    /// in flight so that they share an fsync.
    pub fn commit_nowait(
        &self,
        epoch: u64,
        changes: Vec<M::Change>,
    ) -> Result<impl std::future::Future<Output = Result<LsnRange>>> {
        let mut inner = self.lock()?;
        if let Some(st) = self.archive_status().filter(|s| s.fenced) {
            // The archiver's error already reads "fenced: …"; say it once.
            let why = st.last_error.unwrap_or_default();
            let why = why.strip_prefix("fenced: ").unwrap_or(&why).to_string();
            inner.poisoned = Some(why.clone());
            return Err(Error::fenced(why));
        }
        if let Some(p) = &inner.poisoned {
            return Err(Error::poisoned(p.clone()));
        }
        if changes.is_empty() {
            return Err(Error::invalid_input("a commit needs at least one change"));
        }
        let too_big = changes
            .iter()
            .position(|c| c.encoded_len() + wal::format::BODY_FIXED_LEN > wal::format::MAX_BODY);
        if let Some(index) = too_big {
            return Err(Error::invalid_input(format!(
                "change {index} of the batch at epoch {epoch} is {} bytes, over the {}-byte record limit; nothing was committed",
                changes[index].encoded_len(),
                wal::format::MAX_BODY
            )));
        }
        inner
            .state
            .apply_batch(epoch, &changes)
            .map_err(|(index, source)| Error::invalid_batch(epoch, index, source))?;
        let durable = match self.wal.append(epoch, &changes) {
            Ok(f) => f,
            Err(e) => {
                inner.poisoned = Some(e.to_string());
                return Err(e);
            }
        };
        inner.state.advance_lsn(changes.len() as u64);
        inner.commits_since_snapshot += 1;
        Ok(durable)
    }

    fn snapshot_due(&self) -> Result<bool> {
        let inner = self.lock()?;
        let by_count = self
            .opts
            .snapshot_every_commits
            .is_some_and(|n| inner.commits_since_snapshot >= n);
        let by_time = self
            .opts
            .snapshot_every_ms
            .is_some_and(|ms| self.clock.now_ms().saturating_sub(inner.last_snapshot_ms) >= ms);
        Ok(by_count || by_time)
    }

    /// Takes a snapshot of the committed state: uploads it to the repo and writes the local
    /// checkpoint.
    pub async fn snapshot(&self) -> Result<SnapshotEntry> {
        let state = {
            let mut inner = self.lock()?;
            inner.commits_since_snapshot = 0;
            inner.last_snapshot_ms = self.clock.now_ms();
            inner.state.clone()
        };
        // Everything in `state` was acknowledged durable or is queued ahead of any later
        // commit; wait for the WAL to reach it before publishing a snapshot of it.
        self.wal.flush().await?;
        let entry = snapshot::upload(&self.repo, &state).await?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || snapshot::write_checkpoint(&dir, &state))
            .await
            .map_err(|e| Error::internal(format!("checkpoint task: {e}")))??;
        Ok(entry)
    }

    /// Runs `f` on the committed state.
    pub fn with_state<T>(&self, f: impl FnOnce(&M) -> T) -> Result<T> {
        Ok(f(&self.lock()?.state))
    }

    pub fn archive_status(&self) -> Option<ArchiveStatus> {
        self.archiver.as_ref().map(|a| a.status().borrow().clone())
    }

    pub fn archive_lag(&self) -> Result<ArchiveLag> {
        let committed_epoch = self.lock()?.state.epoch();
        let archived_epoch = self.archive_status().map_or(0, |s| s.archived_epoch);
        let lag_ms = if committed_epoch > archived_epoch && archived_epoch > 0 {
            epoch::to_unix_ms(committed_epoch) - epoch::to_unix_ms(archived_epoch)
        } else if archived_epoch == 0 && committed_epoch > 0 {
            epoch::to_unix_ms(committed_epoch).saturating_sub(epoch::EPOCH_BASE_MS)
        } else {
            0
        };
        Ok(ArchiveLag {
            committed_epoch,
            archived_epoch,
            lag_ms,
        })
    }

    pub fn repo(&self) -> &Repo<M> {
        &self.repo
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Seals the WAL, archives everything, writes the checkpoint and stops.
    pub async fn close(self) -> Result<ArchiveStatus> {
        let Recorder {
            dir,
            wal,
            archiver,
            inner,
            ..
        } = self;
        wal.close().await?;
        let status = match archiver {
            Some(a) => a.stop().await,
            None => ArchiveStatus::default(),
        };
        let state = inner
            .into_inner()
            .map_err(|_| Error::internal("recorder state lock poisoned"))?
            .state;
        snapshot::write_checkpoint(&dir, &state)?;
        if let Some(e) = &status.last_error {
            let why = format!("the last archive pass failed: {e}");
            return Err(match status.last_error_kind {
                Some(ErrorKind::Fenced) => Error::fenced(why),
                Some(kind) => Error::archive(why, kind),
                None => Error::internal(why),
            });
        }
        Ok(status)
    }
}
