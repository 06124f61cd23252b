//! Retention: expire what no epoch in the retention window needs, and never anything one
//! does.
//!
//! The window ends at the newest archived epoch and reaches back `window` (time) and/or
//! over the newest `keep_last` snapshots, whichever reaches further. Applying it keeps the
//! newest snapshot at or before the window's start (the *base*), every segment after the
//! base, and every snapshot marked keep; it deletes older snapshots and the segments
//! entirely before the base. The pin set is advanced first and swapped in by the same
//! manifest version that removes the expired entries, so no object is ever unpinned while
//! a restorable epoch still needs it; objects are deleted only after that version exists.

use crate::epoch;
use crate::error::{Error, ErrorKind, Result};
use crate::model_api::Model;
use crate::pb::{Manifest, SegmentEntry, SnapshotEntry};
use crate::pin::{self, PinSet};
use crate::repo::{index_key, snapshot_entry_key, Repo};

/// A retention policy. Every field states its default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep every epoch this far behind the newest archived one. Default none.
    pub window_ms: Option<u64>,
    /// Keep every epoch from the newest `keep_last` snapshots on. Default none.
    pub keep_last: Option<u32>,
}

impl Policy {
    /// The policy the manifest records as last applied (unset parts as `None`).
    pub fn last_applied(m: &Manifest) -> Policy {
        Policy {
            window_ms: (m.retention_window_ms > 0).then_some(m.retention_window_ms),
            keep_last: (m.retention_keep_last > 0).then_some(m.retention_keep_last),
        }
    }

    /// Parses a duration such as `7d`, `36h` or `90min`.
    pub fn parse_window(s: &str) -> Result<u64> {
        humantime::parse_duration(s.trim())
            .map(|d| d.as_millis() as u64)
            .map_err(|e| {
                Error::invalid_input(format!(
                    "retention window '{s}': {e} (use e.g. 7d, 36h, 90min)"
                ))
            })
    }

    pub fn is_empty(&self) -> bool {
        self.window_ms.is_none() && self.keep_last.is_none()
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(w) = self.window_ms {
            parts.push(format!(
                "window {}",
                humantime::format_duration(std::time::Duration::from_millis(w))
            ));
        }
        if let Some(k) = self.keep_last {
            parts.push(format!("keep-last {k}"));
        }
        parts.join(", ")
    }
}

/// What applying retention did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub timeline: u32,
    pub dry_run: bool,
    /// The first restorable epoch of the window after applying.
    pub window_start: u64,
    pub newest_epoch: u64,
    /// The snapshot the window now starts from.
    pub base_snapshot: Option<u64>,
    pub deleted_snapshots: Vec<u64>,
    pub deleted_segments: u64,
    pub deleted_bytes: u64,
    pub pinned: u64,
}

/// The snapshot a window starting at `w0` is based on: the newest at or before `w0` from
/// which the archive chains on.
fn base_for(m: &Manifest, timeline: u32, w0: u64) -> Option<SnapshotEntry> {
    let tl = m.timeline(timeline)?;
    let first = tl.first_archived().map(|(l, _)| l)?;
    let last = tl.last().0;
    m.snapshots
        .iter()
        .filter(|s| {
            s.timeline == timeline
                && s.max_committed_epoch <= w0
                && s.lsn + 1 >= first
                && s.lsn <= last
        })
        .max_by_key(|s| (s.max_committed_epoch, s.lsn))
        .copied()
}

/// The window start a policy asks for, given the newest archived epoch.
fn wanted_start(m: &Manifest, timeline: u32, newest: u64, policy: &Policy) -> u64 {
    let by_window = policy
        .window_ms
        .map(|w| epoch::from_unix_ms(epoch::to_unix_ms(newest).saturating_sub(w)));
    let by_count = policy.keep_last.map(|n| {
        let mut epochs: Vec<u64> = m
            .snapshots
            .iter()
            .filter(|s| s.timeline == timeline)
            .map(|s| s.max_committed_epoch)
            .collect();
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        match n {
            0 => newest,
            n => epochs.get(n as usize - 1).copied().unwrap_or(0),
        }
    });
    // Both given: keep whichever reaches further back.
    match (by_window, by_count) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => 0,
    }
}

/// The pin set of a timeline, rebuilding it if the manifest names none.
async fn current_pins<M: Model>(
    repo: &Repo<M>,
    m: &Manifest,
    timeline: u32,
) -> Result<(Option<crate::pb::PinSetRef>, PinSet)> {
    match m.pins.iter().find(|p| p.timeline == timeline) {
        Some(r) => Ok((Some(*r), PinSet::fetch(repo, r).await?)),
        None => Ok((None, pin::rebuild(repo, m, timeline).await?)),
    }
}

/// Applies `policy` to the newest timeline. A policy that keeps less than the one last
/// applied is refused unless `force`.
pub async fn apply<M: Model>(
    repo: &Repo<M>,
    policy: Policy,
    dry_run: bool,
    force: bool,
) -> Result<Report> {
    if policy.keep_last == Some(0) {
        return Err(Error::invalid_input("--keep-last must be at least 1"));
    }
    if policy.is_empty() {
        return Err(Error::invalid_input(
            "no retention policy: pass --window (e.g. 7d) and/or --keep-last N, or set [retention] in metapitr.toml",
        ));
    }
    let mut missing_in: Option<u64> = None;
    loop {
        let m = repo.manifest_for_update().await?.ok_or_else(|| {
            Error::not_found(format!(
                "{} holds no metapitr manifest; archive to it first",
                repo.url()
            ))
        })?;
        let shrinks = policy
            .window_ms
            .is_some_and(|w| m.retention_window_ms > 0 && w < m.retention_window_ms)
            || policy
                .keep_last
                .is_some_and(|k| m.retention_keep_last > 0 && k < m.retention_keep_last)
            || (m.retention_window_ms > 0
                && policy.window_ms.is_none()
                && policy.keep_last.is_some())
            || (m.retention_keep_last > 0
                && policy.keep_last.is_none()
                && policy.window_ms.is_some());
        if shrinks && !force {
            let last = Policy::last_applied(&m);
            return Err(Error::invalid_input(format!(
                "retention policy ({}) keeps less than the policy last applied ({}); pass --force to shrink the restorable window",
                policy.describe(),
                last.describe()
            )));
        }
        let timeline = m.newest_timeline();
        let Some(tl) = m.timeline(timeline) else {
            return Err(Error::not_found(format!(
                "{} has no archived history to apply retention to",
                repo.url()
            )));
        };
        let newest = tl.last().1;
        let (base_ref, old) = match current_pins(repo, &m, timeline).await {
            Ok(x) => x,
            // Missing twice from the same manifest version: the object is gone.
            Err(e) if e.kind() == ErrorKind::NotFound && missing_in == Some(m.version) => {
                return Err(e)
            }
            // Replaced (and deleted) since the manifest was read: start over.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                missing_in = Some(m.version);
                continue;
            }
            Err(e) => return Err(e),
        };
        let w0 = wanted_start(&m, timeline, newest, &policy);
        let mut report = Report {
            timeline,
            dry_run,
            window_start: old.from_epoch,
            newest_epoch: newest,
            pinned: old.count(),
            ..Default::default()
        };
        let base = base_for(&m, timeline, w0).filter(|b| b.max_committed_epoch > old.from_epoch);
        let Some(base) = base else {
            // Nothing to expire: no snapshot inside the window's reach moves its start.
            report.base_snapshot = None;
            if !dry_run {
                record_policy(repo, &policy).await?;
            }
            return Ok(report);
        };
        let expired_snaps: Vec<SnapshotEntry> = m
            .snapshots
            .iter()
            .filter(|s| {
                s.timeline == timeline
                    && !s.keep
                    && s.max_committed_epoch < base.max_committed_epoch
            })
            .copied()
            .collect();
        let expired_segs: Vec<SegmentEntry> =
            crate::segments::segment_entries(repo, &m, timeline, 0, u64::MAX)
                .await?
                .into_iter()
                .filter(|s| s.last_lsn <= base.lsn)
                .collect();
        let expired_chunks: Vec<u64> = tl
            .chunks
            .iter()
            .filter(|c| c.last_lsn <= base.lsn)
            .map(|c| c.first_lsn)
            .collect();
        // The newest segment entry always stays: it records where the archive ends, so the
        // next segment chains on even when the base is at the archive's last lsn.
        let newest_first = tl.segments.last().map(|s| s.first_lsn);
        let expired_segs: Vec<SegmentEntry> = expired_segs
            .into_iter()
            .filter(|s| Some(s.first_lsn) != newest_first)
            .collect();
        // Segments inside a chunk that also holds needed segments stay.
        let chunk_kept = |lsn: u64| {
            tl.chunks
                .iter()
                .any(|c| c.last_lsn > base.lsn && (c.first_lsn..=c.last_lsn).contains(&lsn))
        };
        let expired_segs: Vec<SegmentEntry> = expired_segs
            .into_iter()
            .filter(|s| !chunk_kept(s.first_lsn))
            .collect();
        report.base_snapshot = Some(base.id);
        report.window_start = base.max_committed_epoch;
        report.deleted_snapshots = expired_snaps.iter().map(|s| s.id).collect();
        report.deleted_segments = expired_segs.len() as u64;
        report.deleted_bytes = expired_snaps.iter().map(|s| s.stored_size).sum::<u64>()
            + expired_segs.iter().map(|s| s.stored_size).sum::<u64>();
        if dry_run {
            return Ok(report);
        }
        // 1. The new pin set, written before anything refers to it.
        let new = match pin::advance(repo, &m, &old, &base).await {
            Ok(p) => p,
            // The old window start is no longer restorable (its base was deleted with
            // --force): compute the new pin set from scratch instead.
            Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::NotFound) => {
                pin::rebuild_from(repo, &m, timeline, base.max_committed_epoch).await?
            }
            Err(e) => return Err(e),
        };
        let new_ref = new.upload(repo).await?;
        report.pinned = new.count();
        // 2. One manifest version swaps the pin set and drops the expired entries.
        let mut moved = false;
        let expired_ids: Vec<u64> = report.deleted_snapshots.clone();
        repo.update_manifest(|m| {
            if m.pins.iter().find(|p| p.timeline == timeline) != base_ref.as_ref() {
                moved = true;
                return Ok(false);
            }
            m.pins.retain(|p| p.timeline != timeline);
            m.pins.push(new_ref);
            m.pins.sort_by_key(|p| p.timeline);
            m.snapshots.retain(|s| !expired_ids.contains(&s.id));
            let t = m.timeline_mut(timeline);
            // The newest entry stays (its object too, above): it records where the archive
            // ends, so that the next segment chains on.
            let newest_first = t.segments.last().map(|s| s.first_lsn);
            t.segments.retain(|s| {
                s.last_lsn > base.lsn
                    || Some(s.first_lsn) == newest_first
                    || t_chunk_kept(&t.chunks, base.lsn, s.first_lsn)
            });
            t.chunks.retain(|c| c.last_lsn > base.lsn);
            m.retention_window_ms = policy.window_ms.unwrap_or(0);
            m.retention_keep_last = policy.keep_last.unwrap_or(0);
            Ok(true)
        })
        .await?;
        if moved {
            repo.delete(&pin::pin_key(&new_ref)).await?;
            continue;
        }
        // 3. Only now delete the objects nothing names any more.
        let unnamed = expired_snaps
            .iter()
            .map(snapshot_entry_key)
            .chain(expired_segs.iter().map(|s| s.key()))
            .chain(expired_chunks.iter().map(|f| index_key(timeline, *f)))
            .chain(
                base_ref
                    .filter(|b| pin::pin_key(b) != pin::pin_key(&new_ref))
                    .map(|b| pin::pin_key(&b)),
            );
        for key in unnamed {
            fail::fail_point!("retention::before_delete");
            repo.delete(&key).await?;
        }
        return Ok(report);
    }
}

fn t_chunk_kept(chunks: &[crate::pb::SegmentChunkRef], base_lsn: u64, lsn: u64) -> bool {
    chunks
        .iter()
        .any(|c| c.last_lsn > base_lsn && (c.first_lsn..=c.last_lsn).contains(&lsn))
}

async fn record_policy<M: Model>(repo: &Repo<M>, policy: &Policy) -> Result<()> {
    let (w, k) = (policy.window_ms.unwrap_or(0), policy.keep_last.unwrap_or(0));
    repo.update_manifest(|m| {
        if (m.retention_window_ms, m.retention_keep_last) == (w, k) {
            return Ok(false);
        }
        m.retention_window_ms = w;
        m.retention_keep_last = k;
        Ok(true)
    })
    .await?;
    Ok(())
}

/// Marks a snapshot keep (never expired, its objects always pinned) or clears the mark.
pub async fn set_keep<M: Model>(repo: &Repo<M>, id: u64, keep: bool) -> Result<SnapshotEntry> {
    let mut missing_in: Option<u64> = None;
    loop {
        let m = repo.manifest_for_update().await?.ok_or_else(|| {
            Error::not_found(format!(
                "{} holds no metapitr manifest; archive to it first",
                repo.url()
            ))
        })?;
        let Some(s) = m.snapshot(id).copied() else {
            return Err(Error::not_found(format!(
                "snapshot {id} is not in {}; see metapitr snapshot list",
                repo.url()
            )));
        };
        if s.keep == keep {
            return Ok(s);
        }
        let timeline = s.timeline;
        let (base_ref, mut pins) = match current_pins(repo, &m, timeline).await {
            Ok(x) => x,
            // Missing twice from the same manifest version: the object is gone.
            Err(e) if e.kind() == ErrorKind::NotFound && missing_in == Some(m.version) => {
                return Err(e)
            }
            // Replaced (and deleted) since the manifest was read: start over.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                missing_in = Some(m.version);
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut m2 = m.clone();
        if let Some(x) = m2.snapshots.iter_mut().find(|x| x.id == id) {
            x.keep = keep;
        }
        pins.keep = pin::keep_objects(repo, &m2, timeline).await?;
        let new_ref = pins.upload(repo).await?;
        let mut moved = false;
        let m = repo
            .update_manifest(|m| {
                if m.pins.iter().find(|p| p.timeline == timeline) != base_ref.as_ref()
                    || m.snapshot(id).is_none()
                {
                    moved = true;
                    return Ok(false);
                }
                if let Some(x) = m.snapshots.iter_mut().find(|x| x.id == id) {
                    x.keep = keep;
                }
                m.pins.retain(|p| p.timeline != timeline);
                m.pins.push(new_ref);
                m.pins.sort_by_key(|p| p.timeline);
                Ok(true)
            })
            .await?;
        if moved {
            continue;
        }
        if let Some(b) = base_ref.filter(|b| pin::pin_key(b) != pin::pin_key(&new_ref)) {
            repo.delete(&pin::pin_key(&b)).await?;
        }
        return m
            .snapshot(id)
            .copied()
            .ok_or_else(|| Error::internal("snapshot vanished"));
    }
}

pub use crate::manifest::window_start;
