//! `metapitr verify`: checks every object the newest manifest names — archived WAL
//! segments, segment index chunks, snapshots and pin sets — and the WAL's continuity on
//! every timeline, so that a damaged or missing object is found before a restore needs it.
//!
//! What passed is remembered in [`STATE_KEY`] (envelope kind 6, `VerifyState`; see
//! docs/format.md §5.6). Repo objects are immutable, so a later run reads only objects it
//! has not verified yet; `--full` reads everything again (for bit rot in the storage).
//! Continuity is checked from the manifest alone on every run:
//!
//! - within a timeline, each segment (or index chunk, standing for its run) starts at the
//!   lsn after the previous one ends, and its epochs do not go back;
//! - the first segment starts right after the timeline's fork lsn (lsn 1 on the first
//!   timeline), or a snapshot on the timeline covers what is missing before it.
//!
//! A segment's contents are checked by [`crate::segments::fetch_segment`] (zstd checksum, size and
//! crc32 against the manifest, every record's crc32, lsn range) plus the epochs of its
//! records against its entry.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use crate::codec::{self, Kind};
use crate::error::{Error, ErrorKind, Result};
use crate::model_api::Model;
use crate::pb::{
    Manifest, SegmentChunkRef, SegmentEntry, VerifiedChunk, VerifiedObject, VerifyState,
};
use crate::pin::{pin_key, PinSet};
use crate::progress::Progress;
use crate::repo::{index_key, snapshot_entry_key, Repo};
use crate::snapshot;

/// Where the verify state lives in the repo.
pub use crate::keys::VERIFY_STATE_KEY as STATE_KEY;

/// Objects read at once.
const CONCURRENCY: usize = 8;

/// One thing wrong with the repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `missing` (an object the manifest names is gone), `corrupt` (its bytes fail a
    /// check) or `gap` (no archived segment holds a run of lsns).
    pub kind: &'static str,
    /// The object's key, or for a gap `timeline T lsn A..B`.
    pub object: String,
    pub timeline: u32,
    /// For a gap, the first and last lsn missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lsns: Option<[u64; 2]>,
    /// What is wrong, where, and what to do.
    pub message: String,
}

/// What one run did and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub manifest_version: u64,
    pub full: bool,
    /// Objects read and checked by this run (the manifest and the verify state, read on
    /// every run, are not counted).
    pub objects_read: u64,
    /// Their stored bytes.
    pub bytes_read: u64,
    /// Objects skipped because an earlier run verified them.
    pub objects_skipped: u64,
    pub segments: u64,
    pub index_chunks: u64,
    pub snapshots: u64,
    pub pin_sets: u64,
    pub problems: Vec<Problem>,
    /// When the previous run finished (unix ms), if one is remembered.
    pub previous_run_ms: Option<u64>,
    /// Set when the remembered state could not be used (then everything is read).
    pub note: Option<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The error `metapitr verify` exits with when problems were found: corruption if any
    /// object is corrupt or a gap was found, else not found.
    pub fn error(&self) -> Option<Error> {
        if self.problems.is_empty() {
            return None;
        }
        let count = |k: &str| self.problems.iter().filter(|p| p.kind == k).count();
        let (missing, corrupt, gaps) = (count("missing"), count("corrupt"), count("gap"));
        Some(Error::verify(
            format!(
                "the repo has {} problem(s): {missing} missing, {corrupt} corrupt, {gaps} gaps in the WAL; each is listed above with what to do",
                self.problems.len()
            ),
            if missing == self.problems.len() {
                ErrorKind::NotFound
            } else {
                ErrorKind::Corruption
            },
        ))
    }
}

/// Reads the remembered state (None: no run yet).
pub async fn load_state<M: Model>(repo: &Repo<M>) -> Result<Option<VerifyState>> {
    match repo
        .get_message::<VerifyState>(STATE_KEY, Kind::VerifyState)
        .await
    {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn save_state<M: Model>(repo: &Repo<M>, s: &VerifyState) -> Result<()> {
    use prost::Message;
    let payload = codec::seal(Kind::VerifyState, &s.encode_to_vec());
    repo.put_overwrite(STATE_KEY, Bytes::from(codec::compress(&payload)?))
        .await
}

/// An object to read and check.
enum Check {
    Segment(SegmentEntry),
    Snapshot(crate::pb::SnapshotEntry),
    Pins(crate::pb::PinSetRef),
}

impl Check {
    fn key(&self) -> String {
        match self {
            Check::Segment(e) => e.key(),
            Check::Snapshot(s) => snapshot_entry_key(s),
            Check::Pins(r) => pin_key(r),
        }
    }

    fn size(&self) -> u64 {
        match self {
            Check::Segment(e) => e.stored_size,
            Check::Snapshot(s) => s.stored_size,
            Check::Pins(r) => r.stored_size,
        }
    }

    fn timeline(&self) -> u32 {
        match self {
            Check::Segment(e) => e.timeline,
            Check::Snapshot(s) => s.timeline,
            Check::Pins(r) => r.timeline,
        }
    }

    async fn run<M: Model>(&self, repo: &Repo<M>) -> Result<()> {
        match self {
            Check::Segment(e) => {
                let records = crate::segments::fetch_segment(repo, e).await?;
                check_epochs(e, &records)
            }
            Check::Snapshot(s) => snapshot::fetch::<M>(repo, s).await.map(|_| ()),
            Check::Pins(r) => PinSet::fetch(repo, r).await.map(|_| ()),
        }
    }
}

/// The records' epochs never go back and span exactly the entry's epochs.
fn check_epochs<C>(e: &SegmentEntry, records: &[crate::wal::format::Record<C>]) -> Result<()> {
    let key = e.key();
    let mut prev = 0;
    for r in records {
        if r.epoch < prev {
            return Err(Error::corrupt(
                &key,
                0,
                format!(
                    "record lsn {} has epoch {} after epoch {prev}",
                    r.lsn, r.epoch
                ),
            ));
        }
        prev = r.epoch;
    }
    let (first, last) = (
        records.first().map_or(0, |r| r.epoch),
        records.last().map_or(0, |r| r.epoch),
    );
    if first != e.first_epoch || last != e.last_epoch {
        return Err(Error::corrupt(
            &key,
            0,
            format!(
                "records span epochs {first}..{last}, the manifest says {}..{}",
                e.first_epoch, e.last_epoch
            ),
        ));
    }
    Ok(())
}

/// Turns a failed check into a problem; errors that say nothing about the object
/// (storage unreachable, wrong credentials or key) stop the run.
fn problem(key: &str, timeline: u32, e: Error) -> Result<Problem> {
    let (kind, what_to_do) = match e.kind() {
        ErrorKind::NotFound => (
            "missing",
            "restores that need it will fail; restore to an epoch outside the ranges it holds, \
             or put the object back from a copy of the repo",
        ),
        ErrorKind::Corruption => (
            "corrupt",
            "restores that need it will fail; restore to an epoch outside the ranges it holds, \
             or put back an intact copy of the object",
        ),
        _ => return Err(e),
    };
    Ok(Problem {
        kind,
        object: key.to_string(),
        timeline,
        lsns: None,
        message: format!("{e}; {what_to_do}"),
    })
}

/// A run of lsns on a timeline known to be archived: one segment, or one index chunk.
#[derive(Debug, Clone, Copy)]
struct Run {
    first_lsn: u64,
    last_lsn: u64,
    first_epoch: u64,
    last_epoch: u64,
}

/// Gaps and overlaps between consecutive runs of one timeline, and a missing start.
fn continuity(m: &Manifest, timeline: u32, runs: &mut [Run]) -> Vec<Problem> {
    runs.sort_by_key(|r| r.first_lsn);
    let mut out = Vec::new();
    let Some(tl) = m.timeline(timeline) else {
        return out;
    };
    let start = tl.fork_lsn + 1;
    if let Some(first) = runs.first() {
        // Records before the first segment must be in a snapshot on this timeline.
        let covered = first.first_lsn <= start
            || m.snapshots
                .iter()
                .any(|s| s.timeline == timeline && s.lsn + 1 >= first.first_lsn);
        if !covered {
            out.push(Problem {
                kind: "gap",
                object: format!("timeline {timeline} lsn {start}..{}", first.first_lsn - 1),
                timeline,
                lsns: Some([start, first.first_lsn - 1]),
                message: format!(
                    "timeline {timeline}: lsns {start}..{} are in no archived segment and no snapshot covers them; epochs before {} cannot be restored on this timeline",
                    first.first_lsn - 1,
                    first.first_epoch
                ),
            });
        }
    }
    for w in runs.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b.first_lsn == a.last_lsn + 1 && b.first_epoch >= a.last_epoch {
            continue;
        }
        let (lsns, message) = if b.first_lsn > a.last_lsn + 1 {
            (
                [a.last_lsn + 1, b.first_lsn - 1],
                format!(
                    "timeline {timeline}: lsns {}..{} (after epoch {}, before epoch {}) are in no archived segment; epochs from {} up to the next snapshot after {} cannot be restored. Archive them again from a WAL directory that still holds them (`metapitr archive --once`), or take a snapshot after the gap",
                    a.last_lsn + 1,
                    b.first_lsn - 1,
                    a.last_epoch,
                    b.first_epoch,
                    a.last_epoch,
                    b.first_epoch
                ),
            )
        } else {
            (
                [b.first_lsn, a.last_lsn],
                format!(
                    "timeline {timeline}: segments overlap or go back in epoch at lsn {} (epoch {} after {}); the manifest is inconsistent, report it",
                    b.first_lsn, b.first_epoch, a.last_epoch
                ),
            )
        };
        out.push(Problem {
            kind: "gap",
            object: format!("timeline {timeline} lsn {}..{}", lsns[0], lsns[1]),
            timeline,
            lsns: Some(lsns),
            message,
        });
    }
    out
}

/// Verifies the repo; remembers what passed. `full` reads everything again.
pub async fn run<M: Model>(repo: &Repo<M>, full: bool, progress: &Progress) -> Result<Report> {
    // A lost or unreadable newest manifest is a problem to report; the newest readable
    // version is verified.
    let (m, listing) = repo.load_manifest_for_repair().await?;
    let m = m.ok_or_else(|| {
        Error::not_found(format!(
            "{} holds no readable metapitr manifest; archive to it first (metapitr archive or simulate)",
            repo.url()
        ))
    })?;
    let mut report = Report {
        manifest_version: m.version,
        full,
        ..Default::default()
    };
    if let Some(lost) = listing.lost() {
        let what = crate::repair::unlisted(repo, &m).await?;
        report.problems.push(Problem {
            kind: "missing",
            object: crate::repo::manifest_key(lost),
            timeline: 0,
            lsns: None,
            message: format!(
                "the newest manifest version {lost} is lost (deleted or unreadable); the newest \
                 readable is version {}. The repo holds {} that version {} does not list: \
                 restores cannot reach what was archived after it, and archiving is refused \
                 until `metapitr repair` lists them again in a new version (or put back an \
                 intact {})",
                m.version,
                what.describe(),
                m.version,
                crate::repo::manifest_key(lost)
            ),
        });
    }
    let previous = match load_state(repo).await {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::Corruption => {
            report.note = Some(format!(
                "the remembered verify state is unreadable ({e}); everything was read again"
            ));
            None
        }
        Err(e) => return Err(e),
    };
    report.previous_run_ms = previous.as_ref().map(|s| s.verified_at_ms);
    let (known, known_chunks): (BTreeMap<String, u64>, BTreeMap<String, Vec<String>>) =
        match (previous, full) {
            (Some(s), false) => (
                s.objects
                    .into_iter()
                    .map(|o| (o.key, o.listed_size))
                    .collect(),
                s.chunks
                    .into_iter()
                    .map(|c| (c.key, c.segment_keys))
                    .collect(),
            ),
            _ => Default::default(),
        };
    // One listing shows what was deleted or truncated since it was verified, without
    // reading it.
    let listed: BTreeMap<String, u64> = repo.list("").await?.into_iter().collect();
    let mut verified: BTreeMap<String, u64> = BTreeMap::new();
    let mut verified_chunks: Vec<VerifiedChunk> = Vec::new();
    // Whether `key` was verified before; if so it is checked against the listing only. A
    // verified object no longer listed, or listed at another size, is a problem, and stays
    // remembered at the size it was verified with, so that every run reports it again
    // until it is back (a segment known only through a remembered chunk is never read
    // again, so forgetting it would hide it).
    let still_there = |key: &str,
                       timeline: u32,
                       verified: &mut BTreeMap<String, u64>,
                       report: &mut Report| {
        let Some(size) = known.get(key) else {
            return false;
        };
        report.objects_skipped += 1;
        verified.insert(key.to_string(), *size);
        match listed.get(key) {
            Some(l) if l == size => {}
            Some(l) => report.problems.push(Problem {
                kind: "corrupt",
                object: key.to_string(),
                timeline,
                lsns: None,
                message: format!(
                    "{key} is {l} bytes in {}, {size} when it was verified; it was changed in storage. Restores that need it will fail; put back an intact copy",
                    repo.url()
                ),
            }),
            None => report.problems.push(Problem {
                kind: "missing",
                object: key.to_string(),
                timeline,
                lsns: None,
                message: format!(
                    "{key} was verified but is no longer in {}; restores that need it will fail. Put it back from a copy of the repo, or restore to an epoch outside the ranges it holds",
                    repo.url()
                ),
            }),
        }
        true
    };

    // Segment entries: inline ones from the manifest, the others from index chunks not
    // verified yet (a verified chunk stands for its whole run, every segment verified).
    let mut checks: Vec<Check> = Vec::new();
    let mut runs: BTreeMap<u32, Vec<Run>> = BTreeMap::new();
    let mut chunk_members: Vec<(u32, SegmentChunkRef, String, Vec<String>)> = Vec::new();
    for tl in &m.timelines {
        let r = runs.entry(tl.id).or_default();
        for c in &tl.chunks {
            let key = index_key(tl.id, c.first_lsn);
            let chunk_run = Run {
                first_lsn: c.first_lsn,
                last_lsn: c.last_lsn,
                first_epoch: c.first_epoch,
                last_epoch: c.last_epoch,
            };
            if let Some(members) = known_chunks.get(&key) {
                if still_there(&key, tl.id, &mut verified, &mut report) {
                    for k in members {
                        still_there(k, tl.id, &mut verified, &mut report);
                    }
                    verified_chunks.push(VerifiedChunk {
                        key,
                        segment_keys: members.clone(),
                    });
                    r.push(chunk_run);
                    continue;
                }
            }
            report.index_chunks += 1;
            report.objects_read += 1;
            report.bytes_read += listed.get(&key).copied().unwrap_or(c.object_size);
            match crate::segments::fetch_index_chunk(repo, tl.id, c).await {
                Ok(entries) => {
                    chunk_members.push((tl.id, *c, key, entries.iter().map(|e| e.key()).collect()));
                    for e in entries {
                        r.push(run_of(&e));
                        checks.push(Check::Segment(e));
                    }
                }
                Err(e) => {
                    report.problems.push(problem(&key, tl.id, e)?);
                    // Its run is unknown: stand for it from the manifest, so that the
                    // continuity check does not report a second, made-up gap.
                    r.push(chunk_run);
                }
            }
            progress.inc(1);
        }
        for e in &tl.segments {
            r.push(run_of(e));
            checks.push(Check::Segment(*e));
        }
    }
    checks.extend(m.snapshots.iter().map(|s| Check::Snapshot(*s)));
    checks.extend(m.pins.iter().map(|p| Check::Pins(*p)));
    checks.retain(|c| !still_there(&c.key(), c.timeline(), &mut verified, &mut report));
    progress.set_length(report.index_chunks + checks.len() as u64);

    let results: Vec<Result<()>> = futures::stream::iter(checks.iter().map(|c| async move {
        let r = c.run(repo).await;
        progress.inc(1);
        r
    }))
    .buffered(CONCURRENCY)
    .collect()
    .await;
    for (c, r) in checks.iter().zip(results) {
        let key = c.key();
        report.objects_read += 1;
        report.bytes_read += listed.get(&key).copied().unwrap_or(c.size());
        match c {
            Check::Segment(_) => report.segments += 1,
            Check::Snapshot(_) => report.snapshots += 1,
            Check::Pins(_) => report.pin_sets += 1,
        }
        match r {
            Ok(()) => {
                // Not listed (a store whose listing lags): read again next time.
                if let Some(size) = listed.get(&key) {
                    verified.insert(key, *size);
                }
            }
            Err(e) => {
                let mut p = problem(&key, c.timeline(), e)?;
                if let Check::Segment(e) = c {
                    p.lsns = Some([e.first_lsn, e.last_lsn]);
                    p.message = format!(
                        "{} (it holds lsns {}..{}, epochs {}..{} ({} .. {}) of timeline {})",
                        p.message,
                        e.first_lsn,
                        e.last_lsn,
                        e.first_epoch,
                        e.last_epoch,
                        crate::epoch::format(e.first_epoch),
                        crate::epoch::format(e.last_epoch),
                        e.timeline
                    );
                }
                report.problems.push(p);
            }
        }
    }

    let mut gaps = Vec::new();
    for (tl, r) in runs.iter_mut() {
        gaps.extend(continuity(&m, *tl, r));
    }
    // A chunk is remembered only when its run is contiguous and all its segments passed.
    for (timeline, c, key, members) in chunk_members {
        let touches_gap = gaps.iter().any(|g| {
            g.timeline == timeline
                && g.lsns
                    .is_some_and(|[a, b]| a <= c.last_lsn + 1 && b + 1 >= c.first_lsn)
        });
        let size = listed.get(&key).copied();
        if let (false, true, Some(size)) = (
            touches_gap,
            members.iter().all(|k| verified.contains_key(k)),
            size,
        ) {
            verified.insert(key.clone(), size);
            verified_chunks.push(VerifiedChunk {
                key,
                segment_keys: members,
            });
        }
    }
    report.problems.extend(gaps);
    report.problems.sort_by(|a, b| a.object.cmp(&b.object));

    let state = VerifyState {
        verified_at_ms: repo.clock().now_ms(),
        objects: verified
            .into_iter()
            .map(|(key, listed_size)| VerifiedObject { key, listed_size })
            .collect(),
        chunks: verified_chunks,
        last_objects_read: report.objects_read,
        last_bytes_read: report.bytes_read,
        last_problems: report.problems.len() as u32,
        last_full: full,
        manifest_version: m.version,
    };
    progress.finish();
    // The verdict stands whether or not it can be remembered: a repo this process may not
    // write (read-only credentials) is still verified, only read again in full next time.
    if let Err(e) = save_state(repo, &state).await {
        report.note = Some(format!(
            "the verify state could not be saved ({e}); the next run reads everything again"
        ));
    }
    Ok(report)
}

fn run_of(e: &SegmentEntry) -> Run {
    Run {
        first_lsn: e.first_lsn,
        last_lsn: e.last_lsn,
        first_epoch: e.first_epoch,
        last_epoch: e.last_epoch,
    }
}
