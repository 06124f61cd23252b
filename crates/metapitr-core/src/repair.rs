//! Going on after the newest manifest version was lost (deleted, or unreadable).
//!
//! Every manifest version is created after the objects it names, and a head marker
//! ([`crate::repo::head_key`]) after the version. When the newest version is gone, the
//! objects it named are still in the repo, unlisted: the WAL segments archived since the
//! version before it (their local copies were deleted once the lost version listed them)
//! and the snapshots taken since. [`unlisted`] finds them; [`run`] lists them again in a
//! new version numbered past the lost one, so that nothing acknowledged is lost and the
//! archiver chains on.

use crate::archive::{self, ArchivedSegment};
use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::model_api::Model;
use crate::pb::Manifest;
use crate::pin::{self, PinSet};
use crate::repo::{snapshot_entry_key, Repo};

/// A WAL segment object the manifest does not list, past its timeline's archived end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlistedSegment {
    pub key: String,
    pub timeline: u32,
    pub first_lsn: u64,
    pub writer_epoch: u64,
    pub size: u64,
}

/// Objects in the repo that a manifest does not name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unlisted {
    /// In (timeline, lsn) order.
    pub segments: Vec<UnlistedSegment>,
    pub snapshots: Vec<String>,
}

impl Unlisted {
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.snapshots.is_empty()
    }

    /// One line: what the manifest does not list.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut tls: Vec<u32> = self.segments.iter().map(|s| s.timeline).collect();
        tls.dedup();
        for tl in tls {
            let segs: Vec<&UnlistedSegment> =
                self.segments.iter().filter(|s| s.timeline == tl).collect();
            parts.push(format!(
                "{} WAL segments of timeline {tl} from lsn {}",
                segs.len(),
                segs[0].first_lsn
            ));
        }
        if !self.snapshots.is_empty() {
            parts.push(format!("{} snapshots", self.snapshots.len()));
        }
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The WAL segments past each timeline's archived end, and the snapshots, that the repo
/// holds but `m` does not list.
pub async fn unlisted<M: Model>(repo: &Repo<M>, m: &Manifest) -> Result<Unlisted> {
    let mut out = Unlisted::default();
    for (key, size) in repo.list(crate::keys::WAL_PREFIX).await? {
        let Some((timeline, first_lsn, writer_epoch)) = crate::keys::parse_segment_key(&key) else {
            continue;
        };
        let end = m.timeline(timeline).map_or(0, |t| t.last().0);
        if first_lsn > end {
            out.segments.push(UnlistedSegment {
                key,
                timeline,
                first_lsn,
                writer_epoch,
                size,
            });
        }
    }
    out.segments
        .sort_by_key(|s| (s.timeline, s.first_lsn, s.writer_epoch));
    let listed: std::collections::BTreeSet<String> =
        m.snapshots.iter().map(snapshot_entry_key).collect();
    for (key, _) in repo.list(crate::keys::SNAPSHOTS_PREFIX).await? {
        if crate::keys::is_snapshot_key(&key) && !listed.contains(&key) {
            out.snapshots.push(key);
        }
    }
    Ok(out)
}

/// What a repair did (or, dry, would do).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The lost version (0: none was lost).
    pub lost_version: u64,
    /// The newest readable version it went on from.
    pub from_version: u64,
    /// The version it wrote (0: dry run, or nothing to do).
    pub new_version: u64,
    pub unlisted: Unlisted,
    pub segments_listed: u64,
    pub snapshots_listed: u64,
    /// Unlisted segments that do not chain onto the archive (left as they are).
    pub segments_skipped: u64,
    /// Pin sets the lost version had replaced and deleted, computed again.
    pub pin_sets_rebuilt: u64,
}

/// Lists again what a lost newest manifest named, in a new version numbered past it.
/// Does nothing when no version was lost.
pub async fn run<M: Model>(repo: &Repo<M>, dry_run: bool) -> Result<Report> {
    let repo = repo.clone().accepting_lost_manifest();
    let (m, listing) = repo.load_manifest_for_repair().await?;
    let mut report = Report {
        lost_version: listing.lost().unwrap_or(0),
        from_version: m.as_ref().map_or(0, |m| m.version),
        ..Default::default()
    };
    let Some(m) = m else {
        return Err(Error::not_found(format!(
            "{} holds no readable manifest; nothing to repair from",
            repo.url()
        )));
    };
    if listing.lost().is_none() {
        return Ok(report);
    }
    report.unlisted = unlisted(&repo, &m).await?;
    if dry_run {
        return Ok(report);
    }
    // Segments, timeline by timeline, as long as they chain onto the archived end.
    let mut batch = Vec::new();
    let mut ends: std::collections::BTreeMap<u32, u64> = Default::default();
    for s in &report.unlisted.segments {
        let end = *ends
            .entry(s.timeline)
            .or_insert_with(|| m.timeline(s.timeline).map_or(0, |t| t.last().0));
        if s.first_lsn != end + 1 {
            report.segments_skipped += 1;
            continue;
        }
        let z = repo.get(&s.key).await?;
        let data = codec::decompress(&z, &s.key)?;
        let (mut entry, ids, inserted) = crate::segments::summarize::<M>(&data, &s.key)?;
        entry.stored_size = z.len() as u64;
        entry.archived_at_ms = repo.clock().now_ms();
        entry.writer_epoch = s.writer_epoch;
        if entry.key() != s.key {
            report.segments_skipped += 1;
            continue;
        }
        ends.insert(s.timeline, entry.last_lsn);
        batch.push(ArchivedSegment {
            entry,
            ids,
            inserted,
            local: None,
        });
    }
    // The pin sets the lost version replaced were deleted after it: rebuild them (from the
    // same window start) before anything reads them.
    let mut rebuilt = Vec::new();
    for r in &m.pins {
        match PinSet::fetch(&repo, r).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let p = match pin::rebuild_from(&repo, &m, r.timeline, r.from_epoch).await {
                    Ok(p) => p,
                    Err(_) => pin::rebuild(&repo, &m, r.timeline).await?,
                };
                rebuilt.push((*r, p.upload(&repo).await?));
            }
            Err(e) => return Err(e),
        }
    }
    // A version past the lost one, which the writers go on from.
    let mut written = repo
        .update_manifest(|next| {
            for (old, new) in &rebuilt {
                for p in next.pins.iter_mut().filter(|p| *p == old) {
                    *p = *new;
                }
            }
            Ok(true)
        })
        .await?;
    report.pin_sets_rebuilt = rebuilt.len() as u64;
    if !batch.is_empty() {
        report.segments_listed = batch.len() as u64;
        written = archive::publish(&repo, &batch).await?;
    }
    report.new_version = written.version;
    for key in &report.unlisted.snapshots {
        let payload = repo.get_payload(key).await?;
        let state: M = crate::snapshot::decode_payload(&payload, key)?;
        crate::snapshot::upload(&repo, &state).await?;
        report.snapshots_listed += 1;
    }
    Ok(report)
}
