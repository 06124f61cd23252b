//! Archiving: ordering, index chunks, conditional creates, manifest CAS, corruption.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{rt, simulate};
use metapitr::archive;
use metapitr::clock;
use metapitr::error::ErrorKind;
use metapitr::jsonl;
use metapitr::recorder::{Recorder, RecorderOptions};
use metapitr::repo::{Created, Repo};
use metapitr::restore::{self, Target};
use metapitr::sim::{self, SimConfig, Simulator};
use metapitr::wal::WalOptions;

fn mem_repo_on(store: Arc<object_store::memory::InMemory>) -> Repo {
    Repo::from_store(
        store,
        object_store::path::Path::default(),
        "memory://t",
        clock::system(),
    )
}

#[test]
fn conditional_create_detects_other_writers_and_tolerates_retries() {
    rt().block_on(async {
        let repo = mem_repo_on(Arc::new(object_store::memory::InMemory::new()));
        assert_eq!(
            repo.put_new("a/b", Bytes::from_static(b"one"))
                .await
                .unwrap(),
            Created::New
        );
        // An earlier attempt that landed: same bytes.
        assert_eq!(
            repo.put_new("a/b", Bytes::from_static(b"one"))
                .await
                .unwrap(),
            Created::AlreadyThere
        );
        let err = repo
            .put_new("a/b", Bytes::from_static(b"two"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fenced);
        assert!(err.to_string().contains("a/b"));
        let err = repo.get("missing/object").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().contains("missing/object"));
    });
}

#[test]
fn racing_manifest_writers_lose_no_update() {
    rt().block_on(async {
        let store = Arc::new(object_store::memory::InMemory::new());
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let repo = mem_repo_on(store.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..15 {
                    repo.update_manifest(|m| {
                        m.next_snapshot_id += 1;
                        Ok(true)
                    })
                    .await
                    .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let m = mem_repo_on(store).manifest().await.unwrap();
        assert_eq!(m.next_snapshot_id, 60);
        assert_eq!(m.version, 60);
    });
}

#[test]
fn long_histories_move_segment_entries_into_index_objects() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = common::run_opts(
            9,
            2 * archive::INDEX_CHUNK as u64 + 300,
            None,
            97,
            dir.path(),
        );
        // One commit per group and a seal per simulated second: a segment per epoch.
        opts.in_flight = 1;
        opts.recorder.wal.segment_max_age_ms = 0;
        let mut sim = Simulator::new(opts.sim.clone());
        let repo = common::mem_repo(&sim);
        let report = sim::run_with_repo(repo.clone(), &dir.path().join("wal"), opts, &mut sim)
            .await
            .unwrap();
        let m = repo.manifest().await.unwrap();
        let tl = m.timeline(1).unwrap();
        assert!(
            !tl.chunks.is_empty(),
            "{} inline entries",
            tl.segments.len()
        );
        assert!(tl.segments.len() < 2 * archive::INDEX_CHUNK);
        assert_eq!(tl.segment_count(), report.archive.segments);
        // Restores that need segments listed only in index objects still equal the truth.
        for (e, path) in [
            report.truth_files[1].clone(),
            report.truth_files[report.truth_files.len() / 2].clone(),
        ] {
            let (plan, state) = restore::materialize(&repo, None, Target::Epoch(e))
                .await
                .unwrap();
            assert!(plan.snapshot.is_none());
            let truth = std::fs::read_to_string(path).unwrap();
            assert!(jsonl::compare(&jsonl::to_string(&state), &truth)
                .unwrap()
                .matches());
        }
    });
}

#[test]
fn a_damaged_archived_segment_is_named_and_other_epochs_still_restore() {
    rt().block_on(async {
        let s = simulate(13, 150, Some(50), 10).await;
        let m = s.repo.manifest().await.unwrap();
        let segs = archive::segment_entries(&s.repo, &m, 1, 0, u64::MAX)
            .await
            .unwrap();
        // A segment between the first and second snapshot.
        let snap1 = &s.report.snapshots[0];
        let victim = *segs.iter().find(|x| x.first_lsn > snap1.lsn + 5).unwrap();
        let key = victim.key();
        common::damage_object(&s.repo, &key, 0x20).await;

        let err = restore::materialize(&s.repo, None, Target::Epoch(victim.last_epoch))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
        assert!(err.to_string().contains(&key), "{err}");
        // Before the damage, and from the later snapshot on, restores still work.
        let before = s
            .report
            .truth_files
            .iter()
            .find(|(e, _)| *e <= snap1.max_committed_epoch)
            .unwrap()
            .0;
        restore::materialize(&s.repo, None, Target::Epoch(before))
            .await
            .unwrap();
        let after = s.report.snapshots[1].max_committed_epoch + (1 << 16);
        restore::materialize(&s.repo, None, Target::Epoch(after))
            .await
            .unwrap();
    });
}

#[test]
fn a_missing_archived_segment_is_named() {
    rt().block_on(async {
        let s = simulate(14, 60, None, 10).await;
        let m = s.repo.manifest().await.unwrap();
        let segs = archive::segment_entries(&s.repo, &m, 1, 0, u64::MAX)
            .await
            .unwrap();
        let victim = &segs[segs.len() / 2];
        s.repo.delete(&victim.key()).await.unwrap();
        let err = restore::materialize(&s.repo, None, Target::Latest)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().contains(&victim.key()), "{err}");
    });
}

#[test]
fn a_reopened_recorder_reads_archived_records_back_from_the_repo() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = Simulator::new(SimConfig {
            seed: 2,
            ..Default::default()
        });
        let repo = common::mem_repo(&sim);
        let opts = RecorderOptions {
            wal: WalOptions {
                sync: false,
                ..Default::default()
            },
            snapshot_every_ms: None,
            ..Default::default()
        };
        let rec = Recorder::open(dir.path(), repo.clone(), opts.clone())
            .await
            .unwrap();
        for _ in 0..50 {
            let (e, b) = sim.next_epoch().unwrap();
            rec.commit(e, b).await.unwrap();
        }
        rec.close().await.unwrap();
        // Lose the checkpoint: everything past it must come from the archive.
        std::fs::remove_file(dir.path().join("CHECKPOINT")).unwrap();
        assert!(metapitr::wal::list_segments(dir.path()).unwrap().is_empty());
        let rec = Recorder::open(dir.path(), repo.clone(), opts)
            .await
            .unwrap();
        let st = rec.with_state(|s| s.clone()).unwrap();
        assert_eq!(st.catalog, sim.state().catalog);
        assert_eq!(st.hummock, sim.state().hummock);
        let (e, b) = sim.next_epoch().unwrap();
        rec.commit(e, b).await.unwrap();
        rec.close().await.unwrap();
        let (_, latest) = restore::materialize(&repo, None, Target::Latest)
            .await
            .unwrap();
        assert_eq!(latest.hummock, sim.state().hummock);
    });
}

#[test]
fn archiving_refuses_a_gap() {
    rt().block_on(async {
        let s = simulate(15, 30, None, 10).await;
        // A segment that does not start where the archive ends.
        let mut bogus =
            archive::segment_entries(&s.repo, &s.repo.manifest().await.unwrap(), 1, 0, u64::MAX)
                .await
                .unwrap()
                .pop()
                .unwrap();
        bogus.first_lsn = bogus.last_lsn + 10;
        bogus.last_lsn += 20;
        let seg = archive::ArchivedSegment {
            entry: bogus,
            ids: Default::default(),
            inserted: vec![],
            local: None,
        };
        let err = archive::publish(&s.repo, &[seg]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
    });
}

#[test]
fn a_stale_writer_cannot_write_into_a_pruned_version() {
    rt().block_on(async {
        let store = Arc::new(object_store::memory::InMemory::new());
        let stale = mem_repo_on(store.clone());
        stale
            .update_manifest(|m| {
                m.next_snapshot_id += 1;
                Ok(true)
            })
            .await
            .unwrap();
        // Another writer moves far ahead; old versions get pruned, version 2 among them.
        let busy = mem_repo_on(store.clone());
        for _ in 0..(3 * metapitr::repo::MANIFEST_KEEP) {
            busy.update_manifest(|m| {
                m.next_snapshot_id += 1;
                Ok(true)
            })
            .await
            .unwrap();
        }
        let keys = busy.list("manifest/").await.unwrap();
        assert!(!keys
            .iter()
            .any(|(k, _)| k.ends_with("00000000000000000002.mpm.zst")));
        // The stale writer still believes version 1 is the newest.
        let m = stale
            .update_manifest(|m| {
                m.next_snapshot_id += 1;
                Ok(true)
            })
            .await
            .unwrap();
        let n = 3 * metapitr::repo::MANIFEST_KEEP + 2;
        assert_eq!(m.next_snapshot_id, n);
        assert_eq!(m.version, n);
        let fresh = mem_repo_on(store).manifest().await.unwrap();
        assert_eq!(fresh.next_snapshot_id, n);
        // Nothing was left behind in the pruned range.
        let keys = busy.list("manifest/").await.unwrap();
        assert!(!keys
            .iter()
            .any(|(k, _)| k.ends_with("00000000000000000002.mpm.zst")));
    });
}

#[test]
fn an_oversized_change_is_refused_before_anything_is_applied() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = Simulator::new(SimConfig {
            seed: 5,
            ..Default::default()
        });
        let repo = common::mem_repo(&sim);
        let rec = Recorder::open(dir.path(), repo, RecorderOptions::default())
            .await
            .unwrap();
        let (e, b) = sim.next_epoch().unwrap();
        rec.commit(e, b).await.unwrap();
        let before = rec.with_state(|s| s.clone()).unwrap();
        let huge = metapitr::model::Change {
            kind: Some(metapitr::model::change::Kind::SetParam(
                metapitr::model::pb::SystemParam {
                    name: "blob".into(),
                    value: "x".repeat(metapitr::wal::format::MAX_BODY),
                },
            )),
        };
        let err = rec.commit(e + 1, vec![huge]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("nothing was committed"), "{err}");
        assert_eq!(rec.with_state(|s| s.clone()).unwrap(), before);
        // The recorder is not poisoned: the next valid commit goes through.
        let (e2, b2) = sim.next_epoch().unwrap();
        rec.commit(e2, b2).await.unwrap();
        rec.close().await.unwrap();
    });
}

#[test]
fn publishing_twice_is_skipped_and_a_different_segment_is_fenced() {
    rt().block_on(async {
        let s = simulate(16, 40, None, 10).await;
        let m = s.repo.manifest().await.unwrap();
        let last = archive::segment_entries(&s.repo, &m, 1, 0, u64::MAX)
            .await
            .unwrap()
            .pop()
            .unwrap();
        let again = archive::ArchivedSegment {
            entry: last,
            ids: Default::default(),
            inserted: vec![],
            local: None,
        };
        let m2 = archive::publish(&s.repo, std::slice::from_ref(&again))
            .await
            .unwrap();
        assert_eq!(
            m2.version, m.version,
            "a re-publish must not move the manifest"
        );
        let mut other = again.clone();
        other.entry.payload_crc32 ^= 1;
        let err = archive::publish(&s.repo, &[other]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    });
}

#[test]
fn a_snapshot_object_and_the_checkpoint_hold_the_same_bytes() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = Simulator::new(SimConfig {
            seed: 6,
            ..Default::default()
        });
        let repo = common::mem_repo(&sim);
        let rec = Recorder::open(dir.path(), repo.clone(), RecorderOptions::default())
            .await
            .unwrap();
        for _ in 0..20 {
            let (e, b) = sim.next_epoch().unwrap();
            rec.commit(e, b).await.unwrap();
        }
        let entry = rec.snapshot().await.unwrap();
        let object = repo
            .get(&metapitr::repo::snapshot_entry_key(&entry))
            .await
            .unwrap();
        let checkpoint = std::fs::read(dir.path().join("CHECKPOINT")).unwrap();
        assert_eq!(object.as_ref(), checkpoint.as_slice());
        rec.close().await.unwrap();
    });
}
