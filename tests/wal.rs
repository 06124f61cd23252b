//! WAL recovery, rotation and continuation.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use common::{id_advance, rt};
use metapitr::clock::{self, ManualClock};
use metapitr::error::ErrorKind;
use metapitr::model::IdCategory;
use metapitr::wal::{self, Wal, WalOptions};

fn opts() -> WalOptions {
    WalOptions {
        sync: true,
        segment_max_age_ms: u64::MAX,
        ..Default::default()
    }
}

/// Appends `n` single-change commits at epochs 1.. and returns the last lsn.
async fn fill(w: &Wal, from_epoch: u64, n: u64) -> u64 {
    let mut last = 0;
    for i in 0..n {
        let e = from_epoch + i;
        last = w
            .append(e << 16, &[id_advance(IdCategory::Actor, e)])
            .unwrap()
            .await
            .unwrap()
            .last;
    }
    last
}

/// The WAL of `dir` with the tests' default options.
fn open(dir: &Path) -> Wal {
    Wal::open(dir, 1, 1, opts(), clock::system()).unwrap()
}

/// A directory holding a WAL with `n` single-change commits, left as a dropped writer
/// leaves it (active segment unsealed).
fn written(rt: &tokio::runtime::Runtime, n: u64) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let w = open(d.path());
        fill(&w, 1, n).await;
    });
    d
}

fn records(dir: &Path) -> Vec<(u64, u64)> {
    wal::read_local_records(dir, 0)
        .unwrap()
        .iter()
        .map(|r| (r.lsn, r.epoch))
        .collect()
}

fn active_segment(dir: &Path) -> std::path::PathBuf {
    wal::list_segments(dir)
        .unwrap()
        .into_iter()
        .find(|s| !s.sealed)
        .unwrap()
        .path
}

#[test]
fn torn_tail_is_truncated_and_reported() {
    let rt = rt();
    let d = written(&rt, 10);
    let seg = active_segment(d.path());
    let good_len = std::fs::metadata(&seg).unwrap().len();
    // A frame header promising 100 bytes, followed by only 5: a torn write.
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&100u32.to_le_bytes()).unwrap();
    f.write_all(&[0xab; 9]).unwrap();
    drop(f);
    rt.block_on(async {
        let w = open(d.path());
        let t = w.recovery().truncated.clone().expect("truncation reported");
        assert_eq!(t.offset, good_len);
        assert_eq!(t.dropped_bytes, 13);
        assert_eq!(t.file, seg);
        assert_eq!(w.next_lsn(), 11);
        // The reopened WAL continues where it left off.
        assert_eq!(fill(&w, 11, 5).await, 15);
        w.close().await.unwrap();
    });
    let recs = records(d.path());
    assert_eq!(recs.len(), 15);
    assert!(recs
        .iter()
        .enumerate()
        .all(|(i, (lsn, _))| *lsn == i as u64 + 1));
}

#[test]
fn checksum_failing_last_record_is_truncated() {
    let rt = rt();
    let d = written(&rt, 4);
    let seg = active_segment(d.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    rt.block_on(async {
        let w = open(d.path());
        assert!(w
            .recovery()
            .truncated
            .as_ref()
            .unwrap()
            .reason
            .contains("checksum"));
        assert_eq!(w.next_lsn(), 4);
    });
    assert_eq!(records(d.path()).len(), 3);
}

#[test]
fn corruption_in_the_middle_names_file_and_offset() {
    let rt = rt();
    let d = written(&rt, 20);
    let seg = active_segment(d.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    // Inside the third record's body (header 32 bytes, records ~30 bytes each).
    let off = 32 + 2 * 30 + 20;
    bytes[off] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    let err = Wal::open(d.path(), 1, 1, opts(), clock::system())
        .err()
        .expect("must fail");
    assert_eq!(err.kind(), ErrorKind::Corruption);
    assert_eq!(err.corrupt_what(), Some(&*seg.display().to_string()));
    let offset = err.corrupt_offset().expect("a corruption has an offset");
    assert!(offset <= off as u64 && offset >= 32, "offset {offset}");
    // Nothing was truncated: the file is as damaged as before.
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
}

#[test]
fn damage_in_a_sealed_segment_is_an_error() {
    let rt = rt();
    let d = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let w = open(d.path());
        fill(&w, 1, 3).await;
        w.seal().await.unwrap();
        fill(&w, 4, 3).await;
    });
    let sealed = wal::list_segments(d.path())
        .unwrap()
        .into_iter()
        .find(|s| s.sealed)
        .unwrap()
        .path;
    let mut bytes = std::fs::read(&sealed).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&sealed, &bytes).unwrap();
    let err = Wal::open(d.path(), 1, 1, opts(), clock::system())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains(&sealed.display().to_string()),
        "{err}"
    );
}

#[test]
fn segments_rotate_by_size_and_reopen_continues() {
    let rt = rt();
    let d = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let o = WalOptions {
            segment_max_bytes: 300,
            ..opts()
        };
        let w = Wal::open(d.path(), 1, 1, o.clone(), clock::system()).unwrap();
        fill(&w, 1, 40).await;
        drop(w);
        let sealed = wal::list_segments(d.path())
            .unwrap()
            .iter()
            .filter(|s| s.sealed)
            .count();
        assert!(sealed >= 3, "only {sealed} sealed segments");
        let w = Wal::open(d.path(), 1, 1, o, clock::system()).unwrap();
        assert_eq!(w.next_lsn(), 41);
        fill(&w, 41, 10).await;
        w.close().await.unwrap();
    });
    let recs = records(d.path());
    assert_eq!(recs.len(), 50);
    assert!(recs.windows(2).all(|p| p[1].0 == p[0].0 + 1));
    assert!(wal::list_segments(d.path())
        .unwrap()
        .iter()
        .all(|s| s.sealed));
}

#[test]
fn segments_seal_by_age_on_the_injected_clock() {
    let rt = rt();
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    rt.block_on(async {
        let o = WalOptions {
            segment_max_age_ms: 1000,
            ..opts()
        };
        let w = Wal::open(d.path(), 1, 1, o, clock.clone()).unwrap();
        let mut sealed = w.sealed_watch();
        fill(&w, 1, 3).await;
        assert!(wal::list_segments(d.path())
            .unwrap()
            .iter()
            .all(|s| !s.sealed));
        clock.advance(1000);
        // The writer notices on its idle timer.
        tokio::time::timeout(std::time::Duration::from_secs(5), sealed.changed())
            .await
            .unwrap()
            .unwrap();
        let segs = wal::list_segments(d.path()).unwrap();
        assert_eq!(segs.len(), 1);
        assert!(segs[0].sealed);
    });
}

#[test]
fn incomplete_batch_at_the_tail_is_dropped() {
    let rt = rt();
    let d = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let w = open(d.path());
        fill(&w, 1, 2).await;
        let batch = [
            id_advance(IdCategory::Actor, 10),
            id_advance(IdCategory::Actor, 11),
            id_advance(IdCategory::Actor, 12),
        ];
        w.append(3 << 16, &batch).unwrap().await.unwrap();
    });
    let seg = active_segment(d.path());
    let bytes = std::fs::read(&seg).unwrap();
    // Cut the last record of the 3-record batch off exactly at a frame boundary.
    let scan = wal::format::scan(&bytes, "x").unwrap();
    assert_eq!(scan.records.len(), 5);
    let mut off = wal::format::HEADER_LEN;
    for _ in 0..4 {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        off += 8 + len;
    }
    std::fs::write(&seg, &bytes[..off]).unwrap();
    rt.block_on(async {
        let w = open(d.path());
        assert!(w
            .recovery()
            .truncated
            .as_ref()
            .unwrap()
            .reason
            .contains("incomplete"));
        assert_eq!(w.next_lsn(), 3);
    });
    assert_eq!(records(d.path()), vec![(1, 1 << 16), (2, 2 << 16)]);
}

#[test]
fn a_second_writer_is_locked_out() {
    let d = tempfile::tempdir().unwrap();
    let _w = open(d.path());
    let err = Wal::open(d.path(), 1, 1, opts(), clock::system())
        .err()
        .unwrap();
    assert_eq!(err.locked_dir(), Some(d.path()), "{err}");
    assert_eq!(err.kind(), ErrorKind::Fenced);
}

#[test]
fn epochs_never_go_back() {
    let rt = rt();
    let d = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let w = open(d.path());
        fill(&w, 5, 1).await;
        let e = w
            .append(4 << 16, &[id_advance(IdCategory::Actor, 1)])
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn a_recovered_active_segment_seals_by_age_after_open() {
    let rt = rt();
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let o = WalOptions {
        segment_max_age_ms: 1000,
        ..opts()
    };
    rt.block_on(async {
        let w = Wal::open(d.path(), 1, 1, o.clone(), clock.clone()).unwrap();
        fill(&w, 1, 3).await;
    });
    rt.block_on(async {
        let w = Wal::open(d.path(), 1, 1, o, clock.clone()).unwrap();
        let mut sealed = w.sealed_watch();
        clock.advance(1000);
        tokio::time::timeout(std::time::Duration::from_secs(5), sealed.changed())
            .await
            .expect("the recovered segment was never sealed")
            .unwrap();
        assert!(wal::list_segments(d.path())
            .unwrap()
            .iter()
            .all(|s| s.sealed));
    });
}

#[test]
fn sealed_segments_end_on_a_commit_boundary_and_versions_are_checked() {
    let rt = rt();
    let d = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let o = WalOptions {
            segment_max_bytes: 200,
            ..opts()
        };
        let w = Wal::open(d.path(), 1, 1, o, clock::system()).unwrap();
        for i in 0..30u64 {
            let batch: Vec<_> = (0..5)
                .map(|j| id_advance(IdCategory::Actor, i * 5 + j))
                .collect();
            w.append((i + 1) << 16, &batch).unwrap().await.unwrap();
        }
        w.close().await.unwrap();
    });
    let segs = wal::list_segments(d.path()).unwrap();
    assert!(segs.len() > 3);
    for s in &segs {
        let bytes = std::fs::read(&s.path).unwrap();
        // read_sealed refuses a segment that ends inside a batch.
        let (_, recs) = wal::format::read_sealed(&bytes, "seg").unwrap();
        assert_eq!(recs.len() % 5, 0);
        assert!(recs.last().unwrap().end_of_batch);
    }
    // An unknown format version is refused with the object and the offset.
    let mut bytes = std::fs::read(&segs[0].path).unwrap();
    bytes[8] = 9;
    let crc = crc32fast::hash(&bytes[0..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    let err = wal::format::read_sealed(&bytes, "seg-x").unwrap_err();
    assert_eq!(err.corrupt_offset(), Some(8), "{err}");
    assert!(err.to_string().contains("seg-x") && err.to_string().contains("version 9"));
}

/// Segments span at most the segment age in epoch time, however the commits were grouped:
/// the same history makes the same segments whether each commit waits for the previous one
/// or all are queued at once (one group), on a clock that never moves.
#[test]
fn segments_split_by_epoch_time_whatever_the_grouping() {
    let rt = rt();
    let o = WalOptions {
        sync: false,
        segment_max_age_ms: 1000,
        ..Default::default()
    };
    // 12 commits 300 ms of epoch time apart: a segment takes 4 (0, 300, 600, 900 ms after
    // its first), the 5th is 1200 ms after it.
    let epoch = |i: u64| metapitr::epoch::from_unix_ms(1_800_000_000_000 + i * 300);
    let mut shapes = Vec::new();
    for queued in [false, true] {
        let d = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let w = Wal::open(d.path(), 1, 1, o.clone(), ManualClock::new(0)).unwrap();
            let mut pending = Vec::new();
            for i in 0..12 {
                let f = w
                    .append(epoch(i), &[id_advance(IdCategory::Actor, i + 1)])
                    .unwrap();
                if queued {
                    pending.push(f);
                } else {
                    f.await.unwrap();
                }
            }
            for f in pending {
                f.await.unwrap();
            }
            w.close().await.unwrap();
        });
        let firsts: Vec<u64> = wal::list_segments(d.path())
            .unwrap()
            .iter()
            .map(|s| s.first_lsn)
            .collect();
        shapes.push(firsts);
    }
    assert_eq!(shapes[0], vec![1, 5, 9], "segments of 4 commits each");
    assert_eq!(
        shapes[1], shapes[0],
        "queued commits make the same segments"
    );
}
