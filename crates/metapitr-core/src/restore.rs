//! Restore: plan which snapshot and segments reach a target epoch, fetch them
//! concurrently, verify every checksum, replay, and raise the id generators to the largest
//! value the repo has ever recorded.

use futures::StreamExt;
use tracing::info;

use crate::epoch;
use crate::error::{Error, Result};
use crate::model_api::{IdMarks, Model};
use crate::pb::{Manifest, SegmentEntry, SnapshotEntry};
use crate::progress::{human_bytes, Progress};
use crate::repo::Repo;
use crate::snapshot;

/// Segments fetched at once.
pub const FETCH_CONCURRENCY: usize = 16;

/// What a restore aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every record with an epoch at or below this one.
    Epoch(u64),
    /// Every epoch whose time is at or before this unix time in milliseconds.
    Time(u64),
    /// Exactly the state of one snapshot.
    Snapshot(u64),
    /// The newest archived epoch.
    Latest,
}

/// What a restore will read.
#[derive(Debug, Clone)]
pub struct Plan {
    pub timeline: u32,
    pub target_epoch: u64,
    pub snapshot: Option<SnapshotEntry>,
    pub segments: Vec<SegmentEntry>,
    /// Bytes to fetch (stored sizes).
    pub fetch_bytes: u64,
    /// The largest value of each id generator in the repo.
    pub id_high_water: IdMarks,
}

impl Plan {
    pub fn describe(&self) -> String {
        let snap = match &self.snapshot {
            Some(s) => format!(
                "snapshot {} (epoch {}, {}, {})",
                s.id,
                s.max_committed_epoch,
                epoch::format(s.max_committed_epoch),
                human_bytes(s.stored_size)
            ),
            None => "no snapshot (replay from the first record)".into(),
        };
        let segs = match (self.segments.first(), self.segments.last()) {
            (Some(f), Some(l)) => format!(
                "{} WAL segments (lsn {}..={}, {})",
                self.segments.len(),
                f.first_lsn,
                l.last_lsn,
                human_bytes(self.segments.iter().map(|s| s.stored_size).sum::<u64>())
            ),
            _ => "no WAL segments".into(),
        };
        format!(
            "restore timeline {} to epoch {} ({} UTC)\n  base: {snap}\n  replay: {segs}\n  fetch: {} ({} bytes)",
            self.timeline,
            self.target_epoch,
            epoch::format(self.target_epoch),
            human_bytes(self.fetch_bytes),
            self.fetch_bytes
        )
    }
}

pub use crate::manifest::{format_ranges, restorable_ranges};

/// Resolves a target against the manifest and decides what to read.
pub async fn plan<M: Model>(
    repo: &Repo<M>,
    m: &Manifest,
    timeline: Option<u32>,
    target: Target,
) -> Result<Plan> {
    let timeline = timeline.unwrap_or_else(|| m.newest_timeline());
    if m.timeline(timeline).is_none() && !m.snapshots.iter().any(|s| s.timeline == timeline) {
        let known: Vec<String> = m.timelines.iter().map(|t| t.id.to_string()).collect();
        return Err(Error::invalid_input(format!(
            "timeline {timeline} does not exist in {} (timelines: {})",
            repo.url(),
            known.join(", ")
        )));
    }
    let ranges = restorable_ranges(m, timeline);
    let (target_epoch, forced_snapshot) = match target {
        Target::Epoch(e) => (e, None),
        Target::Time(ms) => (epoch::last_of_ms(ms), None),
        Target::Latest => match ranges.last() {
            Some(r) => (r.1, None),
            None => {
                return Err(Error::out_of_range(
                    "latest",
                    "the repo",
                    format_ranges(&ranges),
                ))
            }
        },
        Target::Snapshot(id) => {
            let s = m.snapshot(id).ok_or_else(|| {
                Error::not_found(format!(
                    "snapshot {id} is not in {}; see metapitr snapshot list",
                    repo.url()
                ))
            })?;
            (s.max_committed_epoch, Some(*s))
        }
    };
    let id_high_water = m.id_high_water();
    if let Some(s) = forced_snapshot {
        return Ok(Plan {
            timeline: s.timeline,
            target_epoch,
            fetch_bytes: s.stored_size,
            snapshot: Some(s),
            segments: Vec::new(),
            id_high_water,
        });
    }
    let holds = |ranges: &[(u64, u64)]| {
        ranges
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&target_epoch))
    };
    if !holds(&ranges) {
        // The epoch may be on another branch of the history: say which.
        let others: Vec<String> = m
            .timelines
            .iter()
            .map(|t| t.id)
            .filter(|id| *id != timeline && holds(&restorable_ranges(m, *id)))
            .map(|id| id.to_string())
            .collect();
        let mut ranges_text = format!("{} on timeline {timeline}", format_ranges(&ranges));
        if !others.is_empty() {
            ranges_text.push_str(&format!(
                "; the epoch is restorable on timeline {}: pass --timeline {}",
                others.join(", "),
                others[0]
            ));
        }
        return Err(Error::out_of_range(
            format!("{target_epoch} ({})", epoch::format(target_epoch)),
            "the repo",
            ranges_text,
        ));
    }
    let tl = m.timeline(timeline);
    let first_archived = tl.and_then(|t| t.first_archived()).map(|(l, _)| l);
    let last_lsn = tl.map_or(0, |t| t.last().0);
    // The newest snapshot at or before the target from which the WAL chains on.
    let snapshot = m
        .snapshots
        .iter()
        .filter(|s| s.timeline == timeline && s.max_committed_epoch <= target_epoch)
        .filter(|s| {
            s.max_committed_epoch == target_epoch
                || (first_archived.is_some_and(|f| s.lsn + 1 >= f) && s.lsn <= last_lsn)
        })
        .max_by_key(|s| (s.lsn, s.max_committed_epoch))
        .cloned();
    let base_lsn = snapshot.as_ref().map_or(0, |s| s.lsn);
    let segments =
        crate::segments::segment_entries(repo, m, timeline, base_lsn, target_epoch).await?;
    if let Some(first) = segments.first() {
        if first.first_lsn > base_lsn + 1 {
            return Err(Error::not_found(format!(
                "the archive of timeline {timeline} starts at lsn {} but the restore needs lsn {}; choose a target in {}",
                first.first_lsn,
                base_lsn + 1,
                format_ranges(&ranges)
            )));
        }
    }
    let fetch_bytes = snapshot.as_ref().map_or(0, |s| s.stored_size)
        + segments.iter().map(|s| s.stored_size).sum::<u64>();
    Ok(Plan {
        timeline,
        target_epoch,
        snapshot,
        segments,
        fetch_bytes,
        id_high_water,
    })
}

/// Fetches and replays a plan, returning the state as of its target epoch with every id
/// generator raised to the repo's high-water mark (a restored cluster must never hand out
/// an id the history already used).
pub async fn execute<M: Model>(repo: &Repo<M>, plan: &Plan) -> Result<M> {
    execute_with(repo, plan, &Progress::hidden()).await
}

/// [`execute`], advancing `progress` by one per object fetched (the snapshot, then each
/// segment).
pub async fn execute_with<M: Model>(repo: &Repo<M>, plan: &Plan, progress: &Progress) -> Result<M> {
    let mut state = replay_with(repo, plan, progress).await?;
    state.raise_ids(&plan.id_high_water);
    Ok(state)
}

/// Fetches and replays a plan, returning exactly the recorded state as of its target epoch,
/// id generators included, for callers that go on replaying the history after it.
pub async fn replay<M: Model>(repo: &Repo<M>, plan: &Plan) -> Result<M> {
    replay_with(repo, plan, &Progress::hidden()).await
}

/// [`replay`] with progress: one unit per object fetched.
pub async fn replay_with<M: Model>(repo: &Repo<M>, plan: &Plan, progress: &Progress) -> Result<M> {
    progress.set_length(plan.segments.len() as u64 + u64::from(plan.snapshot.is_some()));
    // Segments are fetched and decoded in a task of their own while the snapshot is, up
    // to FETCH_CONCURRENCY ahead of the replay; dropping the guard stops it.
    let (tx, mut fetched) = tokio::sync::mpsc::channel(FETCH_CONCURRENCY);
    let segments = plan.segments.clone();
    let from = repo.clone();
    let _fetcher = AbortOnDrop(tokio::spawn(async move {
        let mut fetches = futures::stream::iter(segments.into_iter().map(|s| {
            let repo = from.clone();
            async move { crate::segments::fetch_segment(&repo, &s).await }
        }))
        .buffered(FETCH_CONCURRENCY);
        while let Some(records) = fetches.next().await {
            let failed = records.is_err();
            if tx.send(records).await.is_err() || failed {
                break;
            }
        }
    }));
    let mut state = match &plan.snapshot {
        Some(s) => {
            let s = snapshot::fetch(repo, s).await?;
            progress.inc(1);
            s
        }
        None => M::empty(plan.timeline),
    };
    let target = plan.target_epoch;
    let mut replayed = 0u64;
    let mut received = 0usize;
    'segments: loop {
        let Some(records) = fetched.recv().await else {
            // The fetcher ends after the last segment; ending before it means it died.
            if received < plan.segments.len() {
                return Err(Error::internal(format!(
                    "segment fetching stopped after {received} of {} segments",
                    plan.segments.len()
                )));
            }
            break;
        };
        received += 1;
        progress.inc(1);
        for r in records? {
            if r.lsn <= state.lsn() {
                continue;
            }
            if r.epoch > target {
                break 'segments;
            }
            if r.lsn != state.lsn() + 1 {
                return Err(Error::corrupt(
                    crate::repo::segment_key(plan.timeline, r.lsn),
                    0,
                    format!(
                        "lsn {} follows lsn {}: records are missing",
                        r.lsn,
                        state.lsn()
                    ),
                ));
            }
            r.apply_to(&mut state)?;
            replayed += 1;
        }
    }
    state.set_epoch(target);
    progress.finish();
    info!(
        epoch = target,
        replayed,
        lsn = state.lsn(),
        "restored state"
    );
    Ok(state)
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Plans and executes against the newest manifest: [`as_recorded`] with the id
/// generators raised, as a restore writes it.
pub async fn materialize<M: Model>(
    repo: &Repo<M>,
    timeline: Option<u32>,
    target: Target,
) -> Result<(Plan, M)> {
    let (plan, mut state) = as_recorded(repo, timeline, target).await?;
    state.raise_ids(&plan.id_high_water);
    Ok((plan, state))
}

/// The state exactly as recorded at the target, id generators not raised: what time
/// travel (`show`, `hummock-version`, `diff`) looks at, never what a restore writes.
pub async fn as_recorded<M: Model>(
    repo: &Repo<M>,
    timeline: Option<u32>,
    target: Target,
) -> Result<(Plan, M)> {
    let m = repo.manifest().await?;
    let plan = plan(repo, &m, timeline, target).await?;
    let state = replay(repo, &plan).await?;
    Ok((plan, state))
}

/// Refuses a plan whose target is older than the retention window (its SSTs may already be
/// gone), unless it restores exactly a snapshot marked keep, whose objects stay pinned.
pub fn check_window(m: &Manifest, plan: &Plan) -> Result<()> {
    let Some(start) = crate::manifest::window_start(m, plan.timeline) else {
        return Ok(());
    };
    let keep_exact = plan
        .snapshot
        .as_ref()
        .is_some_and(|s| s.keep && s.max_committed_epoch == plan.target_epoch);
    if plan.target_epoch < start && !keep_exact {
        return Err(Error::invalid_input(format!(
            "target epoch {} ({}) is older than the retention window, which starts at epoch {start} ({}); the SSTs it needs may already be garbage collected. Pass --force to restore it anyway",
            plan.target_epoch,
            epoch::format(plan.target_epoch),
            epoch::format(start)
        )));
    }
    Ok(())
}
