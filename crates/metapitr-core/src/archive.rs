//! Continuous archiving: sealed WAL segments → the repo.
//!
//! A segment is read back from disk and checked record by record, compressed into one
//! zstd frame, and written with a conditional create under
//! `wal/{timeline:08}/{first_lsn:020}.wal.zst`. Uploads run concurrently, but segments
//! join the manifest strictly in lsn order, each starting right after the previous one, so
//! the archived watermark only moves forward and never over a gap. A local segment is
//! deleted only once a manifest version that lists it exists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::codec::{self, Kind};
use crate::error::{Error, ErrorKind, Result};
use crate::model_api::Model;
use crate::pb::{Manifest, SegmentChunkRef, SegmentEntry, SegmentIndexChunk};
use crate::pin::PinSet;
use crate::repo::{index_key, Repo};
use crate::wal;

pub use crate::segments::{
    fetch_index_chunk, fetch_segment, segment_entries, summarize, ArchivedSegment,
};

/// Segment entries kept inline in the manifest before the oldest [`INDEX_CHUNK`] of them
/// move into an immutable index object.
pub const INDEX_CHUNK: usize = 1024;
/// Segments uploaded at once.
pub const UPLOAD_CONCURRENCY: usize = 4;
/// Segments published to the manifest per compare-and-swap.
pub const PUBLISH_BATCH: usize = 64;

/// Uploads one sealed local segment (not yet published).
pub async fn upload_segment<M: Model>(repo: &Repo<M>, path: &Path) -> Result<ArchivedSegment> {
    let data = tokio::fs::read(path)
        .await
        .map_err(|e| Error::io(path, e))?;
    let what = path.display().to_string();
    let (mut entry, ids, inserted, z) = tokio::task::spawn_blocking(move || -> Result<_> {
        let (entry, ids, inserted) = summarize::<M>(&data, &what)?;
        let z = codec::compress(&data)?;
        Ok((entry, ids, inserted, z))
    })
    .await
    .map_err(|e| Error::internal(format!("compression task: {e}")))??;
    entry.stored_size = z.len() as u64;
    entry.archived_at_ms = repo.clock().now_ms();
    entry.writer_epoch = match repo.fence() {
        Some((tl, we)) if tl == entry.timeline => we,
        _ => 0,
    };
    repo.put_new(&entry.key(), Bytes::from(z)).await?;
    Ok(ArchivedSegment {
        entry,
        ids,
        inserted,
        local: Some(path.to_path_buf()),
    })
}

/// Adds uploaded segments to the manifest, in order. A segment already listed with the
/// same checksum is skipped (an earlier attempt published it); one that does not start
/// right after the archived end is refused.
pub async fn publish<M: Model>(repo: &Repo<M>, segs: &[ArchivedSegment]) -> Result<Manifest> {
    // The manifest version whose pin set was found missing, once.
    let mut missing_in: Option<u64> = None;
    'publish: loop {
        let m = repo.manifest_for_update().await?.unwrap_or_default();
        // Pin sets first: the new segments' objects are pinned in the same manifest version
        // that makes their epochs restorable.
        let mut new_pins = Vec::new();
        let mut timelines: Vec<u32> = segs.iter().map(|s| s.entry.timeline).collect();
        timelines.dedup();
        for tl in timelines {
            let base = m.pins.iter().find(|p| p.timeline == tl).copied();
            let mut pins = match &base {
                Some(r) => match PinSet::fetch(repo, r).await {
                    Ok(p) => p,
                    // Missing twice from the same manifest version: the object is gone
                    // (a repair going on from an older version); rebuild it.
                    Err(e) if e.kind() == ErrorKind::NotFound && missing_in == Some(m.version) => {
                        crate::pin::rebuild(repo, &m, tl).await?
                    }
                    // Replaced (and deleted) since the manifest was read: start over.
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        missing_in = Some(m.version);
                        continue 'publish;
                    }
                    Err(e) => return Err(e),
                },
                None => crate::pin::initial(repo, &m, tl, segs).await?,
            };
            let before = (pins.to_lsn, pins.window.len());
            let covered = pins.to_lsn;
            for s in segs
                .iter()
                .filter(|s| s.entry.timeline == tl && s.entry.last_lsn > covered)
            {
                pins.window.extend(s.inserted.iter().copied());
                pins.to_lsn = s.entry.last_lsn;
                pins.to_epoch = s.entry.last_epoch;
            }
            if base.is_none() || (pins.to_lsn, pins.window.len()) != before {
                new_pins.push((base, pins.upload(repo).await?));
            }
        }
        let mut pins_moved = false;
        let m = repo
            .update_manifest(|m| {
                for (base, new) in &new_pins {
                    if m.pins.iter().find(|p| p.timeline == new.timeline) != base.as_ref() {
                        pins_moved = true;
                        return Ok(false);
                    }
                }
                let mut changed = add_segments(m, segs)?;
                for (_, new) in &new_pins {
                    m.pins.retain(|p| p.timeline != new.timeline);
                    m.pins.push(*new);
                    changed = true;
                }
                m.pins.sort_by_key(|p| p.timeline);
                Ok(changed)
            })
            .await?;
        if pins_moved {
            debug!("the pin set moved while publishing; recomputing");
            for (base, new) in &new_pins {
                if base.is_none_or(|b| crate::pin::pin_key(&b) != crate::pin::pin_key(new)) {
                    repo.delete(&crate::pin::pin_key(new)).await?;
                }
            }
            continue;
        }
        for (_, new) in &new_pins {
            sweep_pins(repo, new).await;
        }
        return compact_index(repo, &m).await;
    }
}

/// Deletes the pin sets of `current`'s timeline that end before it: replaced ones, and any
/// an interrupted publish or retention left behind. None of them can be published any
/// more, since every new pin set extends the one the manifest names. Failures are logged
/// and left to the next pass.
async fn sweep_pins<M: Model>(repo: &Repo<M>, current: &crate::pb::PinSetRef) {
    let keep = crate::keys::pin_key(current);
    // LIST takes whole path segments: list pins/ and match the timeline's keys.
    let keys = match repo.list(crate::keys::PINS_PREFIX).await {
        Ok(k) => k,
        Err(e) => {
            warn!(error = %e, "cannot list old pin sets; leaving them for the next pass");
            return;
        }
    };
    for (key, _) in keys {
        let Some((timeline, to_lsn)) = crate::keys::parse_pin_key(&key) else {
            continue;
        };
        if timeline != current.timeline || key == keep || to_lsn >= current.to_lsn {
            continue;
        }
        if let Err(e) = repo.delete(&key).await {
            warn!(key, error = %e, "cannot delete a replaced pin set; the next pass retries");
        }
    }
}

/// Appends segments to their timelines in the manifest, in order; see [`publish`].
fn add_segments(m: &mut Manifest, segs: &[ArchivedSegment]) -> Result<bool> {
    let mut changed = false;
    for s in segs {
        let e = &s.entry;
        let tl = m.timeline_mut(e.timeline);
        let (last_lsn, _) = tl.last();
        if e.last_lsn <= last_lsn {
            match tl.segments.iter().find(|x| x.first_lsn == e.first_lsn) {
                Some(x) if x.payload_crc32 == e.payload_crc32 && x.last_lsn == e.last_lsn => continue,
                Some(_) => {
                    return Err(Error::fenced(format!(
                        "segment {} of timeline {} is already archived with different content; another writer is active on this timeline",
                        e.first_lsn, e.timeline
                    )))
                }
                // Older than the inline entries: archived long ago.
                None if e.last_lsn < tl.segments.first().map_or(u64::MAX, |x| x.first_lsn) => continue,
                None => {
                    return Err(Error::fenced(format!(
                        "segment lsn {}..={} of timeline {} overlaps the archive, which ends at lsn {last_lsn}",
                        e.first_lsn, e.last_lsn, e.timeline
                    )))
                }
            }
        }
        if e.first_lsn != last_lsn + 1 {
            return Err(Error::invalid_input(format!(
                "segment {} of timeline {} starts at lsn {} but the archive ends at lsn {last_lsn}; the records between are missing from the WAL directory",
                e.key(),
                e.timeline,
                e.first_lsn
            )));
        }
        tl.segments.push(*e);
        m.raise_id_high_water(&s.ids);
        changed = true;
    }
    Ok(changed)
}

/// Moves the oldest inline segment entries of a timeline into an index object once there
/// are enough of them, keeping the manifest small however long the history.
async fn compact_index<M: Model>(repo: &Repo<M>, m: &Manifest) -> Result<Manifest> {
    let mut m = m.clone();
    let tls: Vec<u32> = m
        .timelines
        .iter()
        .filter(|t| t.segments.len() >= 2 * INDEX_CHUNK)
        .map(|t| t.id)
        .collect();
    for tl_id in tls {
        let Some(tl) = m.timeline(tl_id) else {
            continue;
        };
        let run: Vec<SegmentEntry> = tl.segments[..INDEX_CHUNK].to_vec();
        let first = run[0].first_lsn;
        let chunk = SegmentIndexChunk {
            segments: run.clone(),
        };
        let (_, object_size) = repo
            .put_message(&index_key(tl_id, first), Kind::SegmentIndex, &chunk)
            .await?;
        let last = &run[run.len() - 1];
        let r = SegmentChunkRef {
            first_lsn: first,
            last_lsn: last.last_lsn,
            first_epoch: run[0].first_epoch,
            last_epoch: last.last_epoch,
            count: run.len() as u32,
            raw_size: run.iter().map(|s| s.raw_size).sum(),
            stored_size: run.iter().map(|s| s.stored_size).sum(),
            object_size,
        };
        m = repo
            .update_manifest(|m| {
                let tl = m.timeline_mut(tl_id);
                if tl.segments.len() < INDEX_CHUNK || tl.segments[0].first_lsn != first {
                    return Ok(false);
                }
                tl.segments.drain(..INDEX_CHUNK);
                tl.chunks.push(r);
                Ok(true)
            })
            .await?;
        debug!(
            timeline = tl_id,
            first_lsn = first,
            "moved {INDEX_CHUNK} segment entries into an index object"
        );
    }
    Ok(m)
}

/// Splits a directory's sealed segments into those the manifest already covers (the next
/// segment starts at or before the archive's end) and those still to upload.
fn split_covered(
    m: &Manifest,
    sealed: Vec<wal::SegmentFile>,
) -> (Vec<wal::SegmentFile>, Vec<wal::SegmentFile>) {
    let mut covered = Vec::new();
    let mut todo = Vec::new();
    for (i, s) in sealed.iter().enumerate() {
        let tl_last = m.timeline(s.timeline).map_or(0, |t| t.last().0);
        let next_first = sealed
            .get(i + 1)
            .filter(|n| n.timeline == s.timeline)
            .map(|n| n.first_lsn);
        match next_first {
            Some(n) if n - 1 <= tl_last => covered.push(s.clone()),
            _ => todo.push(s.clone()),
        }
    }
    (covered, todo)
}

/// Checks, without writing anything, that the sealed segments of a WAL directory would be
/// accepted by the repo: none is archived already with other content, and the first one
/// chains onto the archive's end. An archiver runs it before it claims the timeline, so a
/// stray directory is refused before it fences the live writer.
/// Returns how many segments a pass would upload.
pub async fn preflight_dir<M: Model>(repo: &Repo<M>, wal_dir: &Path) -> Result<usize> {
    let sealed: Vec<wal::SegmentFile> = wal::list_segments(wal_dir)?
        .into_iter()
        .filter(|s| s.sealed)
        .collect();
    if sealed.is_empty() {
        return Ok(0);
    }
    let m = repo.load_manifest().await?.unwrap_or_default();
    let (_, todo) = split_covered(&m, sealed);
    let mut entries = Vec::new();
    for s in todo {
        let data = std::fs::read(&s.path).map_err(|e| Error::io(&s.path, e))?;
        let (entry, ids, _) = summarize::<M>(&data, &s.path.display().to_string())?;
        entries.push(ArchivedSegment {
            entry,
            ids,
            inserted: Vec::new(),
            local: None,
        });
    }
    let n = entries.len();
    add_segments(&mut m.clone(), &entries)
        .map(|_| n)
        .map_err(|e| {
            let why = format!(
                "{e}; {} was not archived and the timeline was not taken over",
                wal_dir.display()
            );
            match e.kind() {
                ErrorKind::Fenced => Error::fenced(why),
                ErrorKind::InvalidInput => Error::invalid_input(why),
                _ => e,
            }
        })
}

/// The timeline a meta store directory records on: its newest WAL segment's, else its
/// checkpoint's; `None` when it holds neither. An archiver claims this timeline before
/// shipping the directory's segments.
pub fn dir_timeline<M: Model>(dir: &Path) -> Result<Option<u32>> {
    if let Some(s) = wal::list_segments(dir)?.last() {
        return Ok(Some(s.timeline));
    }
    Ok(crate::snapshot::read_checkpoint::<M>(dir)?.map(|s| s.timeline()))
}

/// Refuses a `--wal-dir` that is not a meta store directory: one that does not exist
/// (a typo must not report "nothing to archive"), or that holds neither a `CHECKPOINT` nor
/// a WAL segment.
pub fn require_wal_dir(dir: &Path) -> Result<()> {
    let what = "it is the meta store directory the recorder writes (LOCK, CHECKPOINT, *.wal)";
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::invalid_input(format!(
                "WAL directory {} is not a directory; check --wal-dir: {what}",
                dir.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::not_found(format!(
                "WAL directory {} does not exist; check --wal-dir: {what}",
                dir.display()
            )))
        }
        Err(e) => return Err(Error::io(dir, e)),
    }
    let has_checkpoint = dir.join(crate::snapshot::CHECKPOINT_FILE).is_file();
    if !has_checkpoint && wal::list_segments(dir)?.is_empty() {
        return Err(Error::not_found(format!(
            "{} holds no metapitr WAL (no CHECKPOINT and no WAL segment); check --wal-dir: {what}",
            dir.display()
        )));
    }
    Ok(())
}

/// What one archiving pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    pub segments: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// The archive's end after the pass, for the timelines touched.
    pub archived_lsn: u64,
    pub archived_epoch: u64,
}

/// Ships every sealed segment of a WAL directory that the repo does not hold yet, and
/// deletes the local copies the manifest lists.
pub async fn archive_dir<M: Model>(repo: &Repo<M>, wal_dir: &Path) -> Result<ArchiveReport> {
    let sealed: Vec<wal::SegmentFile> = wal::list_segments(wal_dir)?
        .into_iter()
        .filter(|s| s.sealed)
        .collect();
    let mut report = ArchiveReport::default();
    if sealed.is_empty() {
        return Ok(report);
    }
    let m = repo.load_manifest().await?.unwrap_or_default();
    // Segments the manifest already covers are deleted; the rest are uploaded.
    let (covered, todo) = split_covered(&m, sealed);
    for s in &covered {
        remove_local(&s.path)?;
    }
    let mut uploads = futures::stream::iter(todo.into_iter().map(|s| {
        let repo = repo.clone();
        async move { upload_segment(&repo, &s.path).await }
    }))
    .buffered(UPLOAD_CONCURRENCY);
    let mut batch = Vec::new();
    loop {
        let next = uploads.next().await.transpose()?;
        let done = next.is_none();
        if let Some(s) = next {
            batch.push(s);
        }
        if batch.len() >= PUBLISH_BATCH || (done && !batch.is_empty()) {
            let m = publish(repo, &batch).await?;
            for s in &batch {
                report.segments += 1;
                report.raw_bytes += s.entry.raw_size;
                report.stored_bytes += s.entry.stored_size;
                if let Some(p) = &s.local {
                    remove_local(p)?;
                }
                if let Some(tl) = m.timeline(s.entry.timeline) {
                    (report.archived_lsn, report.archived_epoch) = tl.last();
                }
            }
            batch.clear();
        }
        if done {
            break;
        }
    }
    if report.segments > 0 {
        info!(
            segments = report.segments,
            bytes = report.stored_bytes,
            archived_lsn = report.archived_lsn,
            "archived WAL segments"
        );
    }
    Ok(report)
}

/// Deletes a local segment that a manifest version lists (invariant 19).
fn remove_local(p: &Path) -> Result<()> {
    fail::fail_point!("archive::before_delete_local");
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p, e)),
    }
}

/// The archiver's progress, as last observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveStatus {
    pub archived_lsn: u64,
    pub archived_epoch: u64,
    pub segments: u64,
    pub stored_bytes: u64,
    pub last_error: Option<String>,
    /// What to do about `last_error`.
    pub last_error_kind: Option<crate::error::ErrorKind>,
    /// Another writer took the timeline over; the archiver has stopped for good.
    pub fenced: bool,
}

/// A running archiver task.
pub struct Archiver {
    task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
    status: watch::Receiver<ArchiveStatus>,
}

impl Archiver {
    /// Archives `wal_dir` whenever `sealed` changes, and every `poll` in any case.
    pub fn spawn<M: Model>(
        repo: Repo<M>,
        wal_dir: PathBuf,
        mut sealed: watch::Receiver<u64>,
        poll: Duration,
    ) -> Archiver {
        let (stop, mut stop_rx) = watch::channel(false);
        let (status_tx, status) = watch::channel(ArchiveStatus::default());
        let task = tokio::spawn(async move {
            let mut backoff = poll;
            loop {
                let stopping = *stop_rx.borrow();
                let r = archive_dir(&repo, &wal_dir).await;
                status_tx.send_modify(|st| match &r {
                    Ok(rep) => {
                        if rep.segments > 0 {
                            st.archived_lsn = rep.archived_lsn;
                            st.archived_epoch = rep.archived_epoch;
                            st.segments += rep.segments;
                            st.stored_bytes += rep.stored_bytes;
                        }
                        st.last_error = None;
                        st.last_error_kind = None;
                    }
                    Err(e) => {
                        st.last_error = Some(e.to_string());
                        st.last_error_kind = Some(e.kind());
                        st.fenced = e.kind() == crate::error::ErrorKind::Fenced;
                    }
                });
                match &r {
                    Ok(_) => backoff = poll,
                    Err(e) if e.kind() == crate::error::ErrorKind::Fenced => {
                        tracing::error!(error = %e, "archiver fenced; stopping");
                        break;
                    }
                    Err(e) => {
                        warn!(error = %e, "archiving failed; will retry");
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
                if stopping {
                    break;
                }
                // Closed channels mean the recorder is gone without stopping us: stop too
                // (a closed channel's changed() returns at once and would spin).
                let gone = tokio::select! {
                    r = sealed.changed() => r.is_err(),
                    r = stop_rx.changed() => r.is_err(),
                    _ = tokio::time::sleep(backoff) => false,
                };
                if gone {
                    break;
                }
            }
        });
        Archiver { task, stop, status }
    }

    pub fn status(&self) -> watch::Receiver<ArchiveStatus> {
        self.status.clone()
    }

    /// Runs one last pass and stops. Returns the final status.
    pub async fn stop(self) -> ArchiveStatus {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let st = self.status.borrow().clone();
        st
    }
}
