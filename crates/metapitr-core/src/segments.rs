//! The archived WAL's read path: describing a sealed segment, finding the archived
//! segments a range of lsns needs (inline in the manifest or in index chunks), and fetching
//! one checked against its manifest entry. Below archiving, restoring, pinning and
//! verifying, which all read segments.

use std::path::PathBuf;

use futures::{StreamExt, TryStreamExt};

use crate::codec::{self, Kind};
use crate::error::{Error, Result};
use crate::model_api::{IdMarks, Model};
use crate::pb::{Manifest, SegmentChunkRef, SegmentEntry, SegmentIndexChunk};
use crate::repo::{index_key, Repo};
use crate::wal::format;

/// A segment that is uploaded and ready to be published.
#[derive(Debug, Clone)]
pub struct ArchivedSegment {
    pub entry: SegmentEntry,
    /// The highest `next` each id generator reaches inside the segment.
    pub ids: IdMarks,
    /// SST object ids the segment's Hummock deltas insert.
    pub inserted: Vec<u64>,
    pub local: Option<PathBuf>,
}

/// Checks a sealed segment's bytes and describes them.
pub fn summarize<M: Model>(data: &[u8], what: &str) -> Result<(SegmentEntry, IdMarks, Vec<u64>)> {
    let (h, records) = format::read_sealed::<M::Change>(data, what)?;
    let mut ids = IdMarks::new();
    let mut inserted = Vec::new();
    for r in &records {
        inserted.extend(M::inserted_objects(&r.change));
        if let Some((c, next)) = M::id_mark_of(&r.change) {
            let slot = ids.entry(c).or_insert(0);
            *slot = (*slot).max(next);
        }
    }
    // read_sealed refuses an empty segment, so first and last exist.
    let (first, last) = match (records.first(), records.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err(Error::corrupt(what, 0, "segment holds no records")),
    };
    Ok((
        SegmentEntry {
            timeline: h.timeline,
            first_lsn: first.lsn,
            last_lsn: last.lsn,
            first_epoch: first.epoch,
            last_epoch: last.epoch,
            raw_size: data.len() as u64,
            stored_size: 0,
            payload_crc32: crc32fast::hash(data),
            archived_at_ms: 0,
            writer_epoch: 0,
        },
        ids,
        inserted,
    ))
}

/// Reads a segment index chunk and checks it against the run the manifest describes.
pub async fn fetch_index_chunk<M: Model>(
    repo: &Repo<M>,
    timeline: u32,
    r: &SegmentChunkRef,
) -> Result<Vec<SegmentEntry>> {
    let key = index_key(timeline, r.first_lsn);
    let c = repo
        .get_message::<SegmentIndexChunk>(&key, Kind::SegmentIndex)
        .await?;
    let first = c.segments.first().map(|s| s.first_lsn);
    let last = c.segments.last().map(|s| s.last_lsn);
    if c.segments.len() != r.count as usize
        || first != Some(r.first_lsn)
        || last != Some(r.last_lsn)
    {
        return Err(Error::corrupt(
            key,
            0,
            "segment index does not match the run the manifest describes",
        ));
    }
    Ok(c.segments)
}

/// Every archived segment entry of a timeline, reading index objects as needed, limited
/// to those that may hold records in (after_lsn, ..] with epoch <= max_epoch.
pub async fn segment_entries<M: Model>(
    repo: &Repo<M>,
    m: &Manifest,
    timeline: u32,
    after_lsn: u64,
    max_epoch: u64,
) -> Result<Vec<SegmentEntry>> {
    let Some(tl) = m.timeline(timeline) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let wanted = |last_lsn: u64, first_epoch: u64| last_lsn > after_lsn && first_epoch <= max_epoch;
    let refs: Vec<SegmentChunkRef> = tl
        .chunks
        .iter()
        .filter(|c| wanted(c.last_lsn, c.first_epoch))
        .copied()
        .collect();
    let fetched: Vec<Vec<SegmentEntry>> = futures::stream::iter(refs.into_iter().map(|c| {
        let repo = repo.clone();
        async move { fetch_index_chunk(&repo, timeline, &c).await }
    }))
    .buffered(8)
    .try_collect()
    .await?;
    for segments in fetched {
        out.extend(
            segments
                .into_iter()
                .filter(|s| wanted(s.last_lsn, s.first_epoch)),
        );
    }
    out.extend(
        tl.segments
            .iter()
            .filter(|s| wanted(s.last_lsn, s.first_epoch))
            .cloned(),
    );
    Ok(out)
}

/// Fetches an archived segment and checks it against its manifest entry, every record's
/// checksum and its lsn range.
pub async fn fetch_segment<M: Model>(
    repo: &Repo<M>,
    e: &SegmentEntry,
) -> Result<Vec<format::Record<M::Change>>> {
    let key = e.key();
    let z = repo.get(&key).await?;
    let e = *e;
    tokio::task::spawn_blocking(move || {
        let data = codec::decompress(&z, &key)?;
        if data.len() as u64 != e.raw_size || crc32fast::hash(&data) != e.payload_crc32 {
            return Err(Error::corrupt(
                &key,
                0,
                "segment does not match the size and checksum the manifest recorded",
            ));
        }
        let (h, records) = format::read_sealed(&data, &key)?;
        let last = records.last().map(|r| r.lsn).unwrap_or(0);
        if h.first_lsn != e.first_lsn || last != e.last_lsn || h.timeline != e.timeline {
            return Err(Error::corrupt(
                &key,
                0,
                "segment's lsn range differs from its manifest entry",
            ));
        }
        Ok(records)
    })
    .await
    .map_err(|e| Error::internal(format!("segment decode task: {e}")))?
}
