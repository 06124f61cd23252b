//! The pin set: every SST object id that some restorable epoch still needs, so that the
//! database's garbage collector can ask, cheaply and safely, which objects it may delete.
//!
//! For a timeline whose retention window starts at epoch W0 and whose archive ends at epoch
//! T, the *window set* holds the objects of the Hummock version at W0 plus every object a
//! delta inserted after W0 up to T; the *keep set* holds the objects of every snapshot
//! marked keep. An object is pinned if it is in either.
//!
//! Stored as envelope kind 4 ([`crate::codec`]) inside a zstd frame, under
//! `pins/{timeline:08}-{to_lsn:020}-{crc32:08x}.pin.zst`, and named by the manifest. Body
//! (little-endian):
//!
//! ```text
//! offset size field
//!      0    4 timeline
//!      4    4 reserved       0
//!      8    8 from_epoch     window start W0
//!     16    8 to_epoch       last archived epoch covered
//!     24    8 to_lsn         last archived lsn covered
//!     32    8 window_len     bytes of the window bitmap
//!     40    n window bitmap  RoaringTreemap portable serialization
//!   40+n    8 keep_len
//!   48+n    m keep bitmap    RoaringTreemap portable serialization
//! ```

use bytes::Bytes;
use futures::StreamExt;
use roaring::RoaringTreemap;

use crate::codec::{self, le4, le8, Kind};
use crate::error::{Error, ErrorKind, Result};
use crate::model_api::Model;
use crate::pb::{Manifest, PinSetRef, SnapshotEntry};
use crate::repo::Repo;
use crate::restore::{self, Target};
use crate::segments::ArchivedSegment;
use crate::snapshot;
use crate::wal::Record;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PinSet {
    pub timeline: u32,
    pub from_epoch: u64,
    pub to_epoch: u64,
    pub to_lsn: u64,
    pub window: RoaringTreemap,
    pub keep: RoaringTreemap,
}

pub use crate::keys::pin_key;

impl PinSet {
    pub fn is_pinned(&self, object_id: u64) -> bool {
        self.window.contains(object_id) || self.keep.contains(object_id)
    }

    /// Window and keep sets together.
    pub fn pinned(&self) -> RoaringTreemap {
        &self.window | &self.keep
    }

    pub fn count(&self) -> u64 {
        self.pinned().len()
    }

    /// Adds the objects a change inserts.
    pub fn extend_with<M: Model>(&mut self, c: &M::Change) {
        for id in M::inserted_objects(c) {
            self.window.insert(id);
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut body =
            Vec::with_capacity(56 + self.window.serialized_size() + self.keep.serialized_size());
        body.extend_from_slice(&self.timeline.to_le_bytes());
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&self.from_epoch.to_le_bytes());
        body.extend_from_slice(&self.to_epoch.to_le_bytes());
        body.extend_from_slice(&self.to_lsn.to_le_bytes());
        for set in [&self.window, &self.keep] {
            body.extend_from_slice(&(set.serialized_size() as u64).to_le_bytes());
            set.serialize_into(&mut body)
                .map_err(|e| Error::internal(format!("pin set serialization: {e}")))?;
        }
        Ok(codec::seal(Kind::PinSet, &body))
    }

    /// Checks and decodes an envelope. Lengths are bounded by the input before anything is
    /// allocated.
    pub fn decode(payload: &[u8], what: &str) -> Result<PinSet> {
        let body = codec::open(Kind::PinSet, payload, what)?;
        let base = codec::HEADER_LEN as u64;
        let bad = |off: usize, why: &str| Error::corrupt(what, base + off as u64, why.to_string());
        if body.len() < 48 {
            return Err(bad(0, "pin set body is truncated"));
        }
        if body[4..8] != [0; 4] {
            return Err(bad(4, "reserved bytes are not zero"));
        }
        let mut p = PinSet {
            timeline: u32::from_le_bytes(le4(&body[0..4])),
            from_epoch: u64::from_le_bytes(le8(&body[8..16])),
            to_epoch: u64::from_le_bytes(le8(&body[16..24])),
            to_lsn: u64::from_le_bytes(le8(&body[24..32])),
            ..Default::default()
        };
        let mut off = 32;
        for which in 0..2 {
            if body.len() < off + 8 {
                return Err(bad(off, "pin set body is truncated"));
            }
            let len = u64::from_le_bytes(le8(&body[off..off + 8]));
            if len > (body.len() - off - 8) as u64 {
                return Err(bad(off, "bitmap length runs past the end"));
            }
            let bytes = &body[off + 8..off + 8 + len as usize];
            check_treemap_layout(bytes).map_err(|(at, why)| {
                bad(
                    off + 8,
                    &format!("bitmap does not decode: {why} (at byte {at} of the bitmap)"),
                )
            })?;
            let set = RoaringTreemap::deserialize_from(bytes)
                .map_err(|e| bad(off + 8, &format!("bitmap does not decode: {e}")))?;
            if set.serialized_size() as u64 != len {
                return Err(bad(off, "bitmap length does not match its content"));
            }
            if which == 0 {
                p.window = set;
            } else {
                p.keep = set;
            }
            off += 8 + len as usize;
        }
        if off != body.len() {
            return Err(bad(off, "trailing bytes after the keep bitmap"));
        }
        Ok(p)
    }

    /// Writes the pin set to the repo (not yet named by the manifest) and returns its ref.
    pub async fn upload<M: Model>(&self, repo: &Repo<M>) -> Result<PinSetRef> {
        let payload = self.encode()?;
        let crc = codec::envelope_crc(&payload);
        let z = codec::compress(&payload)?;
        let r = PinSetRef {
            timeline: self.timeline,
            from_epoch: self.from_epoch,
            to_epoch: self.to_epoch,
            to_lsn: self.to_lsn,
            count: self.count(),
            stored_size: z.len() as u64,
            payload_crc32: crc,
        };
        repo.put_new(&pin_key(&r), Bytes::from(z)).await?;
        // Every caller swaps the new pin set into the manifest next.
        fail::fail_point!("pin::before_swap");
        Ok(r)
    }

    pub async fn fetch<M: Model>(repo: &Repo<M>, r: &PinSetRef) -> Result<PinSet> {
        let key = pin_key(r);
        let payload = repo.get_payload(&key).await?;
        if codec::envelope_crc(&payload) != r.payload_crc32 {
            return Err(Error::corrupt(
                &key,
                0,
                "pin set does not match the checksum the manifest recorded",
            ));
        }
        let p = PinSet::decode(&payload, &key)?;
        if p.timeline != r.timeline
            || p.from_epoch != r.from_epoch
            || p.to_epoch != r.to_epoch
            || p.to_lsn != r.to_lsn
        {
            return Err(Error::corrupt(
                &key,
                0,
                "pin set header differs from its manifest entry",
            ));
        }
        Ok(p)
    }
}

/// Checks that every length a RoaringTreemap portable serialization states (bitmap count,
/// container count, run count, array cardinality) is backed by bytes that are present and
/// that the bitmaps end exactly at the end of `b`, without allocating; on failure returns
/// the offset into `b` and the reason. Run before the bytes are deserialized, so that the
/// deserializer never sizes a buffer by a claim the bytes do not back.
fn check_treemap_layout(b: &[u8]) -> std::result::Result<(), (usize, String)> {
    /// Container cookie of the format without run containers, followed by a u32 count.
    const COOKIE_NO_RUNS: u32 = 12346;
    /// Low 16 bits of the cookie of the format with run containers; count - 1 in the high
    /// 16 bits.
    const COOKIE_RUNS: u32 = 12347;
    /// A container holding more values than this is an 8 KiB bitset, else a sorted array.
    const ARRAY_MAX: usize = 4096;
    const BITSET_BYTES: usize = 8192;
    const MAX_CONTAINERS: usize = 1 << 16;

    let mut at = 0usize;
    let take =
        |at: &mut usize, n: usize, what: &str| -> std::result::Result<usize, (usize, String)> {
            let start = *at;
            match start.checked_add(n) {
                Some(end) if end <= b.len() => {
                    *at = end;
                    Ok(start)
                }
                _ => Err((
                    start,
                    format!(
                        "{what} of {n} bytes runs past the end ({} left)",
                        b.len() - start
                    ),
                )),
            }
        };
    // `at` never passes the end of `b`, and every index below is into bytes `take` has
    // just found present, so none can be out of range.
    let u16_at = |p: usize| u16::from_le_bytes([b[p], b[p + 1]]) as usize;
    let u32_at = |p: usize| u32::from_le_bytes(le4(&b[p..p + 4]));

    let p = take(&mut at, 8, "bitmap count")?;
    let bitmaps = u64::from_le_bytes(le8(&b[p..p + 8]));
    // Every bitmap takes at least 12 bytes, so the count is bounded by the bytes present.
    for _ in 0..bitmaps {
        take(&mut at, 4, "bitmap key")?;
        let cookie_at = take(&mut at, 4, "container cookie")?;
        let cookie = u32_at(cookie_at);
        let (containers, offsets, runs_at) = if cookie == COOKIE_NO_RUNS {
            let p = take(&mut at, 4, "container count")?;
            (u32_at(p) as usize, true, None)
        } else if cookie & 0xffff == COOKIE_RUNS {
            let n = (cookie >> 16) as usize + 1;
            let p = take(&mut at, n.div_ceil(8), "run container bitset")?;
            (n, n >= 4, Some(p))
        } else {
            return Err((
                cookie_at,
                format!("unknown container cookie {cookie:#010x}"),
            ));
        };
        if containers > MAX_CONTAINERS {
            return Err((
                cookie_at,
                format!("{containers} containers is more than {MAX_CONTAINERS}"),
            ));
        }
        let descriptions = take(&mut at, containers * 4, "container descriptions")?;
        if offsets {
            take(&mut at, containers * 4, "container offsets")?;
        }
        for i in 0..containers {
            let is_run = runs_at.is_some_and(|r| b[r + i / 8] & (1 << (i % 8)) != 0);
            let cardinality = u16_at(descriptions + i * 4 + 2) + 1;
            if is_run {
                let p = take(&mut at, 2, "run count")?;
                take(&mut at, u16_at(p) * 4, "runs")?;
            } else if cardinality <= ARRAY_MAX {
                take(&mut at, cardinality * 2, "array container")?;
            } else {
                take(&mut at, BITSET_BYTES, "bitset container")?;
            }
        }
    }
    if at != b.len() {
        return Err((at, format!("{} bytes after the last bitmap", b.len() - at)));
    }
    Ok(())
}

/// The answer to "which of these objects may be deleted?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcAnswer {
    /// These candidates are safe to delete; every other candidate is not.
    Safe(Vec<u64>),
    /// The pin set does not reach the epoch asked about, so nothing is safe yet.
    NotCovered { covered_to: u64, current_epoch: u64 },
}

/// Which `candidates` are safe to delete, given the pin sets of every timeline and the
/// epoch at which the caller saw the candidates leave the live version. Nothing is safe
/// unless the newest pin set covers `current_epoch`; then an id is safe iff no pin set
/// pins it.
pub fn gc_check(pins: &[PinSet], current_epoch: u64, candidates: &RoaringTreemap) -> GcAnswer {
    let covered_to = pins.iter().map(|p| p.to_epoch).max().unwrap_or(0);
    if pins.is_empty() || covered_to < current_epoch {
        return GcAnswer::NotCovered {
            covered_to,
            current_epoch,
        };
    }
    let mut safe = candidates.clone();
    for p in pins {
        safe -= &p.window;
        safe -= &p.keep;
    }
    GcAnswer::Safe(safe.iter().collect())
}

/// The pin sets the repo names, one per timeline (none for an empty repo, which pins
/// nothing and covers no epoch).
pub async fn load_all<M: Model>(repo: &Repo<M>) -> Result<Vec<PinSet>> {
    let mut missing: Option<(u64, Error)> = None;
    'again: for _ in 0..8 {
        let Some(m) = repo.load_manifest().await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for r in &m.pins {
            match PinSet::fetch(repo, r).await {
                Ok(p) => out.push(p),
                // Missing twice from the same manifest version: the object is gone.
                Err(e)
                    if e.kind() == ErrorKind::NotFound
                        && missing.as_ref().is_some_and(|(v, _)| *v == m.version) =>
                {
                    return Err(e)
                }
                // Replaced by a newer pin set after the manifest was read: read it again.
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    missing = Some((m.version, e));
                    continue 'again;
                }
                Err(e) => return Err(e),
            }
        }
        return Ok(out);
    }
    Err(missing.map_or_else(
        || Error::internal("the pin set kept moving while being read"),
        |(_, e)| e,
    ))
}

/// The pin set a timeline starts with when the manifest names none: empty for a timeline
/// archived from its first record, otherwise rebuilt from the repo.
pub async fn initial<M: Model>(
    repo: &Repo<M>,
    m: &Manifest,
    timeline: u32,
    segs: &[ArchivedSegment],
) -> Result<PinSet> {
    let fresh = m
        .timeline(timeline)
        .is_none_or(|t| t.first_archived().is_none() && t.fork_lsn == 0);
    if fresh {
        let first_epoch = segs
            .iter()
            .filter(|s| s.entry.timeline == timeline)
            .map(|s| s.entry.first_epoch)
            .min()
            .unwrap_or(0);
        return Ok(PinSet {
            timeline,
            from_epoch: first_epoch,
            ..Default::default()
        });
    }
    rebuild(repo, m, timeline).await
}

/// Calls `f` on every archived record of a timeline with lsn in (after, upto], in order.
pub async fn for_each_record<M: Model>(
    repo: &Repo<M>,
    m: &Manifest,
    timeline: u32,
    after: u64,
    upto: u64,
    mut f: impl FnMut(&Record<M::Change>) -> Result<()>,
) -> Result<()> {
    let segs = crate::segments::segment_entries(repo, m, timeline, after, u64::MAX).await?;
    let wanted: Vec<_> = segs.into_iter().filter(|s| s.first_lsn <= upto).collect();
    let mut fetches = futures::stream::iter(wanted.into_iter().map(|s| {
        let repo = repo.clone();
        async move { crate::segments::fetch_segment(&repo, &s).await }
    }))
    .buffered(restore::FETCH_CONCURRENCY);
    while let Some(records) = fetches.next().await {
        for r in records?.iter().filter(|r| r.lsn > after && r.lsn <= upto) {
            f(r)?;
        }
    }
    Ok(())
}

/// The objects of every snapshot of `timeline` marked keep.
pub async fn keep_objects<M: Model>(
    repo: &Repo<M>,
    m: &Manifest,
    timeline: u32,
) -> Result<RoaringTreemap> {
    let mut out = RoaringTreemap::new();
    let keep: Vec<SnapshotEntry> = m
        .snapshots
        .iter()
        .filter(|s| s.keep && s.timeline == timeline)
        .copied()
        .collect();
    for s in keep {
        let st: M = snapshot::fetch(repo, &s).await?;
        out |= st.referenced_objects();
    }
    Ok(out)
}

/// Computes a timeline's pin set from the repo alone: the objects of the version at the
/// start of the newest restorable range, every object inserted after it, and the objects
/// of keep snapshots.
pub async fn rebuild<M: Model>(repo: &Repo<M>, m: &Manifest, timeline: u32) -> Result<PinSet> {
    let ranges = restore::restorable_ranges(m, timeline);
    let Some(&(w0, _)) = ranges.last() else {
        return Ok(PinSet {
            timeline,
            ..Default::default()
        });
    };
    rebuild_from(repo, m, timeline, w0).await
}

/// [`rebuild`] for a window starting at `w0`, which must be restorable.
pub async fn rebuild_from<M: Model>(
    repo: &Repo<M>,
    m: &Manifest,
    timeline: u32,
    w0: u64,
) -> Result<PinSet> {
    let plan = restore::plan(repo, m, Some(timeline), Target::Epoch(w0)).await?;
    let state: M = restore::replay(repo, &plan).await?;
    let (last_lsn, last_epoch) = m.timeline(timeline).map_or((0, 0), |t| t.last());
    let mut p = PinSet {
        timeline,
        from_epoch: w0,
        to_epoch: last_epoch.max(w0),
        to_lsn: last_lsn.max(state.lsn()),
        window: state.referenced_objects(),
        keep: keep_objects(repo, m, timeline).await?,
    };
    let mut inserted = RoaringTreemap::new();
    for_each_record(repo, m, timeline, state.lsn(), u64::MAX, |r| {
        inserted.extend(M::inserted_objects(&r.change));
        Ok(())
    })
    .await?;
    p.window |= inserted;
    Ok(p)
}

/// Moves a pin set's window start forward to the state of `base` (a snapshot at or before
/// the new window start): drops exactly the objects that every version from the new start
/// on no longer references. Replays only the history between the two starts.
///
/// Relies on Hummock never reusing an object id: an object that leaves the version never
/// returns, so one that no version at or after `base` references is needed by none later.
pub async fn advance<M: Model>(
    repo: &Repo<M>,
    m: &Manifest,
    old: &PinSet,
    base: &SnapshotEntry,
) -> Result<PinSet> {
    let tl = old.timeline;
    let plan = restore::plan(repo, m, Some(tl), Target::Epoch(old.from_epoch)).await?;
    let mut state: M = restore::replay(repo, &plan).await?;
    let mut seen: RoaringTreemap = state.referenced_objects();
    for_each_record(repo, m, tl, state.lsn(), base.lsn, |r| {
        seen.extend(M::inserted_objects(&r.change));
        r.apply_to(&mut state)
    })
    .await?;
    if state.lsn() != base.lsn {
        return Err(Error::not_found(format!(
            "the archive of timeline {tl} does not reach lsn {} of snapshot {}",
            base.lsn, base.id
        )));
    }
    let live: RoaringTreemap = state.referenced_objects();
    let died = seen - live;
    Ok(PinSet {
        timeline: tl,
        from_epoch: base.max_committed_epoch,
        to_epoch: old.to_epoch,
        to_lsn: old.to_lsn,
        window: &old.window - &died,
        keep: keep_objects(repo, m, tl).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PinSet {
        let mut window: RoaringTreemap = (0..10u64).map(|i| i * 3).collect();
        // A dense run: a bitset container.
        window.extend(100_000..110_000u64);
        // A second high key.
        window.insert(7 << 40);
        PinSet {
            timeline: 2,
            from_epoch: 10,
            to_epoch: 20,
            to_lsn: 30,
            window,
            keep: [5u64, 1 << 33].into_iter().collect(),
        }
    }

    /// An envelope around a body with the given two bitmap serializations.
    fn with_bitmaps(window: &[u8], keep: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8; 32];
        for b in [window, keep] {
            body.extend_from_slice(&(b.len() as u64).to_le_bytes());
            body.extend_from_slice(b);
        }
        codec::seal(Kind::PinSet, &body)
    }

    fn serialized(t: &RoaringTreemap) -> Vec<u8> {
        let mut v = Vec::new();
        t.serialize_into(&mut v).unwrap();
        v
    }

    #[test]
    fn round_trip_and_layout_check_accepts_what_is_written() {
        let p = sample();
        assert_eq!(PinSet::decode(&p.encode().unwrap(), "p").unwrap(), p);
        for t in [&p.window, &p.keep, &RoaringTreemap::new()] {
            check_treemap_layout(&serialized(t)).unwrap();
        }
    }

    #[test]
    fn container_counts_must_be_backed_by_bytes() {
        // One bitmap whose container count claims 65536 containers in 16 bytes: the
        // deserializer used to allocate 256 KiB of descriptions for it before reading.
        let mut b = 1u64.to_le_bytes().to_vec();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&12346u32.to_le_bytes());
        b.extend_from_slice(&65536u32.to_le_bytes());
        let e = PinSet::decode(&with_bitmaps(&b, &serialized(&RoaringTreemap::new())), "p")
            .unwrap_err()
            .to_string();
        // The window bitmap starts at body offset 40, payload offset 56; its container
        // descriptions at byte 20 of it.
        assert!(
            e.contains("at byte offset 56: bitmap does not decode"),
            "{e}"
        );
        assert!(e.contains("container descriptions"), "{e}");
        assert!(e.contains("at byte 20 of the bitmap"), "{e}");
        // A count above what the format allows.
        let mut over = b.clone();
        over[16..20].copy_from_slice(&65537u32.to_le_bytes());
        over.extend_from_slice(&[0; 64]);
        assert!(check_treemap_layout(&over)
            .unwrap_err()
            .1
            .contains("more than"));
        // A huge bitmap count in 8 bytes.
        let e = check_treemap_layout(&u64::MAX.to_le_bytes()).unwrap_err();
        assert_eq!(e.0, 8);
    }

    #[test]
    fn every_truncation_and_cookie_is_checked() {
        let w = serialized(&sample().window);
        for n in 0..w.len() {
            assert!(check_treemap_layout(&w[..n]).is_err(), "cut at {n}");
        }
        let mut extra = w.clone();
        extra.push(0);
        assert_eq!(check_treemap_layout(&extra).unwrap_err().0, w.len());
        let mut bad = w.clone();
        bad[12] ^= 0x10;
        assert!(check_treemap_layout(&bad).unwrap_err().1.contains("cookie"));
    }

    #[test]
    fn run_containers_follow_the_portable_format() {
        // One bitmap of one run container [10, 10 + 5]: cookie 12347 with count - 1 = 0,
        // run bitset, description (key 0, cardinality - 1 = 5), 1 run.
        let mut b = 1u64.to_le_bytes().to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&12347u32.to_le_bytes());
        b.push(1);
        b.extend_from_slice(&[0, 0, 5, 0]);
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&[10, 0, 5, 0]);
        check_treemap_layout(&b).unwrap();
        let t = RoaringTreemap::deserialize_from(&b[..]).unwrap();
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            (10..=15).map(|v| (3 << 32) | v).collect::<Vec<_>>()
        );
        // A run count the bytes do not hold.
        let mut short = b.clone();
        short[21..23].copy_from_slice(&1000u16.to_le_bytes());
        assert!(check_treemap_layout(&short).unwrap_err().1.contains("runs"));
    }
}
