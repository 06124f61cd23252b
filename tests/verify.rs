//! `metapitr verify`: damage is found and named before a restore needs it, and a later run
//! reads nothing it verified before.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::rt;
use metapitr::archive;
use metapitr::error::ErrorKind;
use metapitr::faulty_store::{FaultConfig, FaultyObjectStore, OpFaults};
use metapitr::progress::Progress;
use metapitr::repo::{snapshot_entry_key, Repo};
use metapitr::restore::{self, Target};
use metapitr::sim::{self, Simulator};
use metapitr::verify;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

struct Fixture {
    inner: Arc<dyn ObjectStore>,
    sim: Simulator,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A repo handle over the shared store.
    fn repo(&self) -> Repo {
        Repo::from_store(
            self.inner.clone(),
            Path::default(),
            "memory://verify",
            self.sim.clock(),
        )
    }

    /// A repo handle over the same store on which every read of a segment, index chunk,
    /// snapshot or pin set fails: a verify that succeeds on it read none of them.
    fn repo_reading_no_data(&self) -> Repo {
        let cfg = FaultConfig {
            get: OpFaults::NONE.with_fail_before(1.0),
            prefixes: ["wal", "wal-index", "snapshots", "pins"]
                .into_iter()
                .map(Path::from)
                .collect(),
            ..FaultConfig::none()
        };
        let store = FaultyObjectStore::new(self.inner.clone(), cfg, 1);
        Repo::from_store(
            Arc::new(store),
            Path::default(),
            "memory://verify",
            self.sim.clock(),
        )
        .with_retry(metapitr::repo::RetryPolicy {
            attempts: 1,
            ..Default::default()
        })
    }

    async fn get(&self, key: &str) -> Bytes {
        self.inner
            .get(&Path::from(key))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    }

    async fn put(&self, key: &str, b: Bytes) {
        self.inner
            .put(&Path::from(key), PutPayload::from_bytes(b))
            .await
            .unwrap();
    }

    async fn delete(&self, key: &str) {
        self.inner.delete(&Path::from(key)).await.unwrap();
    }

    /// Flips one bit in the middle of an object; its size stays the same.
    async fn flip(&self, key: &str) -> Bytes {
        let orig = self.get(key).await;
        let mut b = orig.to_vec();
        let i = b.len() / 2;
        b[i] ^= 0x10;
        self.put(key, Bytes::from(b)).await;
        orig
    }
}

/// A history long enough that the oldest segment entries live in index chunks.
async fn fixture(seed: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = common::run_opts(
        seed,
        2 * archive::INDEX_CHUNK as u64 + 300,
        Some(500),
        1000,
        dir.path(),
    );
    // One commit per group and a seal per simulated second: a segment per epoch.
    opts.in_flight = 1;
    opts.recorder.wal.segment_max_age_ms = 0;
    let mut sim = Simulator::new(opts.sim.clone());
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let repo = Repo::from_store(
        inner.clone(),
        Path::default(),
        "memory://verify",
        sim.clock(),
    );
    sim::run_with_repo(repo, &dir.path().join("wal"), opts, &mut sim)
        .await
        .unwrap();
    Fixture {
        inner,
        sim,
        _dir: dir,
    }
}

async fn verify(repo: &Repo, full: bool) -> verify::Report {
    verify::run(repo, full, &Progress::hidden()).await.unwrap()
}

#[test]
fn verify_finds_damage_then_reads_only_what_is_new() {
    rt().block_on(async {
        let f = fixture(21).await;
        let repo = f.repo();
        let m = repo.manifest().await.unwrap();
        let tl = m.timeline(1).unwrap().clone();
        assert!(!tl.chunks.is_empty(), "the fixture has no index chunk");
        let segs = archive::segment_entries(&repo, &m, 1, 0, u64::MAX)
            .await
            .unwrap();
        let total = (tl.chunks.len() + segs.len() + m.snapshots.len() + m.pins.len()) as u64;

        // Before the first run: a segment inside a chunk's run is deleted, and a byte of
        // an inline one is flipped.
        let gone = segs[10];
        let flipped = tl.segments[tl.segments.len() / 2];
        let gone_bytes = f.get(&gone.key()).await;
        f.delete(&gone.key()).await;
        let flipped_bytes = f.flip(&flipped.key()).await;

        let r1 = verify(&f.repo(), false).await;
        assert_eq!(r1.objects_read, total);
        assert_eq!(r1.index_chunks as usize, tl.chunks.len());
        assert_eq!(r1.segments as usize, segs.len());
        assert_eq!(r1.snapshots as usize, m.snapshots.len());
        assert_eq!(r1.pin_sets as usize, m.pins.len());
        assert_eq!(r1.problems.len(), 2, "{:#?}", r1.problems);
        let missing = r1.problems.iter().find(|p| p.kind == "missing").unwrap();
        assert_eq!(missing.object, gone.key());
        assert_eq!(missing.lsns, Some([gone.first_lsn, gone.last_lsn]));
        assert!(
            missing.message.contains("put the object back"),
            "{}",
            missing.message
        );
        let corrupt = r1.problems.iter().find(|p| p.kind == "corrupt").unwrap();
        assert_eq!(corrupt.object, flipped.key());
        assert!(corrupt
            .message
            .contains(&format!("lsns {}..", flipped.first_lsn)));
        assert_eq!(r1.error().unwrap().kind(), ErrorKind::Corruption);

        // The restore that needs the missing segment fails naming it: verify said so first.
        let err = restore::materialize(&repo, None, Target::Epoch(gone.last_epoch))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&gone.key()), "{err}");

        // Put back: the next run reads the two objects and the chunk holding the missing
        // one (not remembered, as one of its segments failed), and nothing else.
        f.put(&gone.key(), gone_bytes).await;
        f.put(&flipped.key(), flipped_bytes).await;
        let r2 = verify(&f.repo(), false).await;
        assert!(r2.ok(), "{:#?}", r2.problems);
        assert_eq!((r2.objects_read, r2.segments, r2.index_chunks), (3, 2, 1));
        assert_eq!(r2.objects_skipped, total - 3);

        // A third run reads no segment, chunk, snapshot or pin set at all.
        let strict = f.repo_reading_no_data();
        let r3 = verify(&strict, false).await;
        assert!(r3.ok(), "{:#?}", r3.problems);
        assert_eq!((r3.objects_read, r3.bytes_read), (0, 0));
        assert_eq!(r3.objects_skipped, total);

        // A verified object deleted later is found from the listing alone, still reading
        // nothing old.
        let later = segs[700];
        let later_bytes = f.get(&later.key()).await;
        f.delete(&later.key()).await;
        let r4 = verify(&strict, false).await;
        assert_eq!(r4.objects_read, 0);
        assert_eq!(r4.problems.len(), 1, "{:#?}", r4.problems);
        assert_eq!(r4.problems[0].kind, "missing");
        assert_eq!(r4.problems[0].object, later.key());
        assert_eq!(r4.error().unwrap().kind(), ErrorKind::NotFound);
        // And on every later run until it is back, still reading nothing old.
        for _ in 0..2 {
            let again = verify(&strict, false).await;
            assert_eq!(again.objects_read, 0);
            assert_eq!(again.problems.len(), 1, "{:#?}", again.problems);
            assert_eq!(again.problems[0].object, later.key());
        }
        f.put(&later.key(), later_bytes).await;
        let back = verify(&strict, false).await;
        assert!(back.ok(), "{:#?}", back.problems);
        assert_eq!(back.objects_read, 0);

        // A verified object changed in place (same size) is not read again by an
        // incremental run; --full reads everything and finds it.
        let snap = snapshot_entry_key(&m.snapshots[0]);
        f.flip(&snap).await;
        assert!(verify(&strict, false).await.ok());
        let r5 = verify(&f.repo(), true).await;
        assert_eq!(r5.objects_read, total);
        assert_eq!(r5.problems.len(), 1, "{:#?}", r5.problems);
        assert_eq!(
            (r5.problems[0].kind, &r5.problems[0].object),
            ("corrupt", &snap)
        );
    });
}

#[test]
fn a_gap_in_the_archived_wal_is_reported_with_its_lsns() {
    rt().block_on(async {
        let f = fixture(22).await;
        let repo = f.repo();
        // The manifest loses an inline segment entry: its lsns are in no segment.
        let m = repo.manifest().await.unwrap();
        let victim = m.timeline(1).unwrap().segments[5];
        repo.update_manifest(|m| {
            m.timelines[0]
                .segments
                .retain(|s| s.first_lsn != victim.first_lsn);
            Ok(true)
        })
        .await
        .unwrap();
        let r = verify(&f.repo(), false).await;
        assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
        let g = &r.problems[0];
        assert_eq!(g.kind, "gap");
        assert_eq!(g.lsns, Some([victim.first_lsn, victim.last_lsn]));
        assert!(g.message.contains("cannot be restored"), "{}", g.message);
        assert_eq!(r.error().unwrap().kind(), ErrorKind::Corruption);
        // The gap is found again by the next run: continuity is checked every time.
        let again = verify(&f.repo_reading_no_data(), false).await;
        assert_eq!(again.problems, r.problems);
    });
}

#[test]
fn a_damaged_verify_state_only_costs_a_full_read() {
    rt().block_on(async {
        let f = fixture(23).await;
        let first = verify(&f.repo(), false).await;
        assert!(first.ok() && first.note.is_none());
        f.flip(verify::STATE_KEY).await;
        let r = verify(&f.repo(), false).await;
        assert!(r.ok(), "{:#?}", r.problems);
        assert!(
            r.note.as_deref().unwrap_or("").contains("unreadable"),
            "{:?}",
            r.note
        );
        assert_eq!(r.objects_read, first.objects_read);
        // And it is whole again afterwards.
        let r = verify(&f.repo_reading_no_data(), false).await;
        assert_eq!((r.objects_read, r.note), (0, None));
    });
}
