//! Every object key metapitr writes or reads, built (and parsed) here and nowhere else.
//! The layouts are docs/format.md §9.1 (the repo) and §13 (Hummock object storage).

use crate::pb::{PinSetRef, SnapshotEntry};

/// The prefixes a LIST reads: manifest versions and head markers, archived segments,
/// snapshots, pin sets.
pub const MANIFEST_PREFIX: &str = "manifest/";
pub const WAL_PREFIX: &str = "wal/";
pub const SNAPSHOTS_PREFIX: &str = "snapshots/";
pub const PINS_PREFIX: &str = "pins/";

/// Whether a key is a snapshot's (as [`snapshot_key`] builds it).
pub fn is_snapshot_key(key: &str) -> bool {
    key.starts_with(SNAPSHOTS_PREFIX) && key.ends_with(".snap.zst")
}

/// (timeline, to_lsn) of a pin set key, as [`pin_key`] builds it.
pub fn parse_pin_key(key: &str) -> Option<(u32, u64)> {
    let rest = key.strip_prefix(PINS_PREFIX)?.strip_suffix(".pin.zst")?;
    let mut parts = rest.split('-');
    let timeline = parts.next()?.parse().ok()?;
    let to_lsn = parts.next()?.parse().ok()?;
    Some((timeline, to_lsn))
}

/// The verify state (docs/format.md §5.6), named by no manifest.
pub const VERIFY_STATE_KEY: &str = "verify/state.mpv.zst";

/// The Hummock checkpoint a restore writes into the cluster's object storage.
pub const HUMMOCK_CHECKPOINT_KEY: &str = "checkpoint/0";

/// A (simulated) SST object in Hummock object storage.
pub fn sst_object_key(object_id: u64) -> String {
    format!("{object_id}.data")
}

/// The object id an SST object key names.
pub fn sst_object_id(key: &str) -> Option<u64> {
    key.strip_suffix(".data")?.parse().ok()
}

pub fn manifest_key(version: u64) -> String {
    format!("manifest/{version:020}.mpm.zst")
}

pub fn manifest_version(key: &str) -> Option<u64> {
    key.strip_prefix("manifest/")?
        .strip_suffix(".mpm.zst")?
        .parse()
        .ok()
}

/// The head marker of a manifest version: an empty object, created after the version is
/// written, whose key says that the version exists. A marker newer than every manifest
/// object means the newest manifest was lost (deleted or never readable again): writing
/// on would silently rewind the repo. See docs/format.md §9.4.
pub fn head_key(version: u64) -> String {
    format!("manifest/{version:020}.head")
}

pub fn head_version(key: &str) -> Option<u64> {
    key.strip_prefix("manifest/")?
        .strip_suffix(".head")?
        .parse()
        .ok()
}

pub fn segment_key(timeline: u32, first_lsn: u64) -> String {
    format!("wal/{timeline:08}/{first_lsn:020}.wal.zst")
}

/// The key of a segment archived by the timeline's writer of `writer_epoch` (0: a
/// segment archived before writers were fenced, under the plain key).
pub fn segment_key_of(timeline: u32, first_lsn: u64, writer_epoch: u64) -> String {
    if writer_epoch == 0 {
        segment_key(timeline, first_lsn)
    } else {
        format!("wal/{timeline:08}/{first_lsn:020}-{writer_epoch:010}.wal.zst")
    }
}

pub fn index_key(timeline: u32, first_lsn: u64) -> String {
    format!("wal-index/{timeline:08}/{first_lsn:020}.idx.zst")
}

pub fn snapshot_key(timeline: u32, lsn: u64, epoch: u64) -> String {
    format!("snapshots/{timeline:08}-{lsn:020}-{epoch:020}.snap.zst")
}

pub fn snapshot_entry_key(s: &SnapshotEntry) -> String {
    snapshot_key(s.timeline, s.lsn, s.max_committed_epoch)
}

/// (timeline, first lsn, writer epoch) of a segment key, as [`segment_key_of`] builds it.
pub fn parse_segment_key(key: &str) -> Option<(u32, u64, u64)> {
    let rest = key.strip_prefix("wal/")?.strip_suffix(".wal.zst")?;
    let (tl, name) = rest.split_once('/')?;
    let (lsn, we) = match name.split_once('-') {
        Some((l, w)) => (l, w.parse().ok()?),
        None => (name, 0),
    };
    Some((tl.parse().ok()?, lsn.parse().ok()?, we))
}

pub fn pin_key(r: &PinSetRef) -> String {
    format!(
        "pins/{:08}-{:020}-{:08x}.pin.zst",
        r.timeline, r.to_lsn, r.payload_crc32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let p = PinSetRef {
            timeline: 3,
            to_lsn: 77,
            payload_crc32: 0xdead_beef,
            ..Default::default()
        };
        assert_eq!(parse_pin_key(&pin_key(&p)), Some((3, 77)));
        assert_eq!(
            parse_segment_key(&segment_key_of(2, 15, 4)),
            Some((2, 15, 4))
        );
        assert_eq!(
            parse_segment_key(&segment_key_of(2, 15, 0)),
            Some((2, 15, 0))
        );
        assert_eq!(manifest_version(&manifest_key(9)), Some(9));
        assert_eq!(head_version(&head_key(9)), Some(9));
        assert!(is_snapshot_key(&snapshot_key(1, 2, 3)));
        assert_eq!(sst_object_id(&sst_object_key(42)), Some(42));
    }
}
