//! What a manifest says, computed from it alone: the epochs a restore can reach on each
//! timeline, and where the retention window starts. Pure functions of [`Manifest`], below
//! every module that plans, snapshots or expires.

use crate::epoch;
use crate::pb::Manifest;

/// The epoch ranges of a timeline that a restore can reach, merged and in order.
pub fn restorable_ranges(m: &Manifest, timeline: u32) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let tl = m.timeline(timeline);
    let (last_lsn, last_epoch) = tl.map_or((0, 0), |t| t.last());
    let first = tl.and_then(|t| t.first_archived());
    if let (Some(t), Some((first_lsn, first_epoch))) = (tl, first) {
        if t.parent == 0 && first_lsn == 1 {
            ranges.push((first_epoch, last_epoch));
        }
    }
    for s in m.snapshots.iter().filter(|s| s.timeline == timeline) {
        let chained = first.is_some_and(|(f, _)| s.lsn + 1 >= f) && s.lsn <= last_lsn;
        let end = if chained {
            last_epoch.max(s.max_committed_epoch)
        } else {
            s.max_committed_epoch
        };
        ranges.push((s.max_committed_epoch, end));
    }
    ranges.sort();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

pub fn format_ranges(ranges: &[(u64, u64)]) -> String {
    if ranges.is_empty() {
        return "nothing (the repo holds no snapshot and no WAL from the first record; a meta \
                node's directory can give it a base again: metapitr snapshot create --wal-dir DIR)"
            .into();
    }
    ranges
        .iter()
        .map(|(a, b)| format!("[{a} ({}), {b} ({})]", epoch::format(*a), epoch::format(*b)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The start of the retention window of a timeline (the pin set's first epoch), if a pin
/// set exists.
pub fn window_start(m: &Manifest, timeline: u32) -> Option<u64> {
    m.pins
        .iter()
        .find(|p| p.timeline == timeline)
        .map(|p| p.from_epoch)
}
