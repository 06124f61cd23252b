//! Pinning and retention: nothing a window epoch needs is ever safe to delete, and every
//! epoch in the window stays restorable with its SSTs present.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::rt;
use metapitr::error::ErrorKind;
use metapitr::hummock;
use metapitr::jsonl;
use metapitr::pin::{self, GcAnswer, PinSet};
use metapitr::repo::Repo;
use metapitr::restore::{self, Target};
use metapitr::retention::{self, Policy};
use metapitr::sim::{self, Simulator};
use proptest::prelude::*;
use roaring::RoaringTreemap;

fn mem(url: &str, sim: &Simulator) -> Repo {
    Repo::from_store(
        Arc::new(object_store::memory::InMemory::new()),
        object_store::path::Path::default(),
        url,
        sim.clock(),
    )
}

struct Run {
    repo: Repo,
    storage: Repo,
    report: sim::RunReport,
    truth: BTreeMap<u64, String>,
    _dir: tempfile::TempDir,
}

/// Simulates with Hummock storage, retention every snapshot and vacuum; truth every epoch.
async fn run(
    seed: u64,
    epochs: u64,
    snapshot_every: u64,
    window_epochs: u64,
    vacuum_every: u64,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = common::run_opts(seed, epochs, Some(snapshot_every), 1, dir.path());
    opts.sim.compaction_rate = 0.8;
    opts.sim.target_ssts = 150;
    let mut sim = Simulator::new(opts.sim.clone());
    let repo = mem("memory://repo", &sim);
    let storage = mem("memory://hummock", &sim);
    opts.hummock_storage = Some(storage.clone());
    opts.retention = Some(Policy {
        window_ms: Some(window_epochs * opts.sim.epoch_interval_ms),
        keep_last: None,
    });
    opts.vacuum_every = Some(vacuum_every);
    let report = sim::run_with_repo(repo.clone(), &dir.path().join("wal"), opts, &mut sim)
        .await
        .unwrap();
    let truth = report
        .truth_files
        .iter()
        .map(|(e, p)| (*e, std::fs::read_to_string(p).unwrap()))
        .collect();
    Run {
        repo,
        storage,
        report,
        truth,
        _dir: dir,
    }
}

fn objects_of(jsonl: &str) -> RoaringTreemap {
    jsonl
        .lines()
        .filter(|l| l.contains("\"kind\":\"sst\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["object_id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(6),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// Random histories, retention windows and vacuum timing: every object that a version in
    /// the window references is pinned, still stored, and never reported safe; every epoch
    /// in the window restores, passes integrity validation, and equals the truth.
    #[test]
    fn window_epochs_stay_restorable_and_pinned(
        seed in 0u64..100_000,
        epochs in 150u64..320,
        snapshot_every in 10u64..40,
        window in 20u64..90,
        vacuum_every in 1u64..30,
        picks in prop::collection::vec(any::<prop::sample::Index>(), 4),
    ) {
        rt().block_on(async {
            let r = run(seed, epochs, snapshot_every, window, vacuum_every).await;
            let m = r.repo.manifest().await.unwrap();
            let start = retention::window_start(&m, 1).unwrap();
            assert!(r.report.retention_moves > 0 || start == r.report.first_epoch);
            // Ground truth: every object any window epoch's version references.
            let mut needed = RoaringTreemap::new();
            for (_, t) in r.truth.range(start..) {
                needed |= objects_of(t);
            }
            let pins = pin::load_all(&r.repo).await.unwrap();
            let pinned = pins[0].pinned();
            assert!((&needed - &pinned).is_empty(), "needed but unpinned: {:?}", (&needed - &pinned).iter().take(5).collect::<Vec<_>>());
            let stored = hummock::list_objects(&r.storage).await.unwrap();
            assert!((&needed - &stored).is_empty(), "needed but vacuumed: {:?}", (&needed - &stored).iter().take(5).collect::<Vec<_>>());
            // Asking about every object ever created never yields a needed one.
            let all: RoaringTreemap = (1..=r.report.objects_written * 2).collect();
            match pin::gc_check(&pins, pins[0].to_epoch, &all) {
                GcAnswer::Safe(safe) => {
                    let safe: RoaringTreemap = safe.into_iter().collect();
                    assert!((&safe & &needed).is_empty());
                }
                other => panic!("{other:?}"),
            }
            // Window epochs restore, validate and equal the truth.
            let window: Vec<(&u64, &String)> = r.truth.range(start..).collect();
            for p in &picks {
                let (e, truth) = window[p.index(window.len())];
                let (_, state) = restore::materialize(&r.repo, None, Target::Epoch(*e)).await.unwrap();
                hummock::validate_integrity(&r.storage, &state).await.unwrap();
                assert!(jsonl::compare(&jsonl::to_string(&state), truth).unwrap().matches());
            }
            // Epochs before the window are refused by the operator-facing check.
            if let Some((old, _)) = r.truth.range(..start).next() {
                let plan = restore::plan(&r.repo, &m, None, Target::Epoch(*old)).await;
                if let Ok(plan) = plan {
                    assert!(restore::check_window(&m, &plan).is_err());
                }
            }
        });
    }
}

#[test]
fn a_stale_pin_set_never_reports_a_needed_object_safe() {
    let mut p = PinSet {
        timeline: 1,
        from_epoch: 10 << 16,
        to_epoch: 100 << 16,
        to_lsn: 50,
        ..Default::default()
    };
    p.window.extend([1u64, 2, 3]);
    let candidates: RoaringTreemap = [1u64, 2, 3, 4, 5].into_iter().collect();
    // Objects 4 and 5 may have been inserted and removed after epoch 100: not covered.
    assert_eq!(
        pin::gc_check(std::slice::from_ref(&p), 101 << 16, &candidates),
        GcAnswer::NotCovered {
            covered_to: 100 << 16,
            current_epoch: 101 << 16
        }
    );
    assert_eq!(
        pin::gc_check(std::slice::from_ref(&p), 100 << 16, &candidates),
        GcAnswer::Safe(vec![4, 5])
    );
    assert!(matches!(
        pin::gc_check(&[], 1, &candidates),
        GcAnswer::NotCovered { .. }
    ));
    // A keep set pins too.
    p.keep.insert(5);
    assert_eq!(
        pin::gc_check(std::slice::from_ref(&p), 50 << 16, &candidates),
        GcAnswer::Safe(vec![4])
    );
}

#[test]
fn pin_sets_round_trip_and_every_flipped_byte_is_detected() {
    let mut p = PinSet {
        timeline: 3,
        from_epoch: 7,
        to_epoch: 9,
        to_lsn: 11,
        ..Default::default()
    };
    p.window.extend((0..5000u64).map(|i| i * 3 + (1 << 33)));
    p.keep.extend([5u64, 6, 1 << 40]);
    let bytes = p.encode().unwrap();
    assert_eq!(PinSet::decode(&bytes, "p").unwrap(), p);
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x04;
        let err = PinSet::decode(&bad, "pin-object").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corruption, "byte {i}");
        assert!(err.to_string().contains("pin-object"));
    }
    assert!(PinSet::decode(&bytes[..bytes.len() - 3], "p").is_err());
}

#[test]
fn a_damaged_stored_pin_set_is_named() {
    rt().block_on(async {
        let r = run(4, 80, 20, 30, 10).await;
        let m = r.repo.manifest().await.unwrap();
        let key = pin::pin_key(&m.pins[0]);
        common::damage_object(&r.repo, &key, 1).await;
        let err = pin::load_all(&r.repo).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corruption);
        assert!(err.to_string().contains(&key), "{err}");
    });
}

#[test]
fn keep_snapshots_survive_retention_and_stay_pinned() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = common::run_opts(12, 200, Some(20), 200, dir.path());
        opts.sim.target_ssts = 100;
        opts.sim.compaction_rate = 0.9;
        let mut sim = Simulator::new(opts.sim.clone());
        let repo = mem("memory://repo", &sim);
        let storage = mem("memory://hummock", &sim);
        opts.hummock_storage = Some(storage.clone());
        sim::run_with_repo(repo.clone(), &dir.path().join("wal"), opts, &mut sim)
            .await
            .unwrap();
        let snaps = metapitr::snapshot::list(&repo).await.unwrap();
        let kept = snaps[1];
        retention::set_keep(&repo, kept.id, true).await.unwrap();
        // Deleting a keep snapshot is refused.
        let err = metapitr::snapshot::delete(&repo, &[kept.id], false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("keep"), "{err}");
        // Retention to the newest two snapshots' reach.
        let r = retention::apply(
            &repo,
            Policy {
                window_ms: None,
                keep_last: Some(2),
            },
            false,
            false,
        )
        .await
        .unwrap();
        assert!(r.base_snapshot.is_some());
        let after = metapitr::snapshot::list(&repo).await.unwrap();
        assert!(after.iter().any(|s| s.id == kept.id && s.keep));
        assert!(after.len() < snaps.len());
        assert!(!after.iter().any(|s| s.id == snaps[0].id));
        // Its objects stay pinned, and the keep snapshot restores with all SSTs present
        // after a vacuum of everything gc-check allows.
        let pins = pin::load_all(&repo).await.unwrap();
        let (plan, state) = restore::materialize(&repo, None, Target::Snapshot(kept.id))
            .await
            .unwrap();
        let m = repo.manifest().await.unwrap();
        restore::check_window(&m, &plan).unwrap();
        for o in state.hummock.object_ids() {
            assert!(pins[0].is_pinned(o));
        }
        let stored = hummock::list_objects(&storage).await.unwrap();
        if let GcAnswer::Safe(safe) = pin::gc_check(&pins, pins[0].to_epoch, &stored) {
            for id in safe {
                storage.delete(&hummock::object_key(id)).await.unwrap();
            }
        }
        hummock::validate_integrity(&storage, &state).await.unwrap();
        // Shrinking the policy is refused without --force.
        let err = retention::apply(
            &repo,
            Policy {
                window_ms: None,
                keep_last: Some(1),
            },
            true,
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        // Unkeep: the snapshot's objects are no longer held by the keep set.
        retention::set_keep(&repo, kept.id, false).await.unwrap();
        let pins = pin::load_all(&repo).await.unwrap();
        assert!(pins[0].keep.is_empty());
    });
}

#[test]
fn integrity_validation_lists_missing_objects() {
    rt().block_on(async {
        let r = run(9, 60, 20, 1000, 1000).await;
        let (_, state) = restore::materialize(&r.repo, None, Target::Latest)
            .await
            .unwrap();
        let victim = state.hummock.object_ids().next().unwrap();
        r.storage
            .delete(&hummock::object_key(victim))
            .await
            .unwrap();
        let err = hummock::validate_integrity(&r.storage, &state)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().contains(&victim.to_string()), "{err}");
        hummock::write_checkpoint(&r.storage, &state).await.unwrap();
        assert!(r.storage.get(hummock::CHECKPOINT_KEY).await.is_ok());
    });
}

#[test]
fn a_repo_without_pins_rebuilds_the_same_pin_set() {
    rt().block_on(async {
        let r = run(31, 150, 25, 60, 5).await;
        let m = r.repo.manifest().await.unwrap();
        let kept = pin::load_all(&r.repo).await.unwrap().remove(0);
        let rebuilt = pin::rebuild(&r.repo, &m, 1).await.unwrap();
        assert_eq!(rebuilt.from_epoch, kept.from_epoch);
        assert_eq!(rebuilt.to_lsn, kept.to_lsn);
        // Maintained incrementally (archiver adds, retention advances) or computed from
        // scratch, the pin set is the same.
        assert_eq!(rebuilt.window, kept.window);
        assert_eq!(rebuilt.to_epoch, kept.to_epoch);
    });
}

#[test]
fn retention_up_to_the_archive_end_then_more_history_and_a_forced_base_delete() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = common::run_opts(17, 120, Some(30), 1000, dir.path());
        let mut sim = Simulator::new(opts.sim.clone());
        let repo = mem("memory://repo", &sim);
        let storage = mem("memory://hummock", &sim);
        opts.hummock_storage = Some(storage.clone());
        let wal = dir.path().join("wal");
        sim::run_with_repo(repo.clone(), &wal, opts.clone(), &mut sim)
            .await
            .unwrap();
        // A snapshot at the archive's very end becomes the window's base.
        let (_, latest) = restore::materialize(&repo, None, Target::Latest)
            .await
            .unwrap();
        let (_, exact) = {
            let m = repo.manifest().await.unwrap();
            let plan = restore::plan(&repo, &m, None, Target::Latest)
                .await
                .unwrap();
            (plan.clone(), restore::replay(&repo, &plan).await.unwrap())
        };
        assert_eq!(exact.lsn, latest.lsn);
        let top = metapitr::snapshot::upload(&repo, &exact).await.unwrap();
        let r = retention::apply(
            &repo,
            Policy {
                window_ms: Some(0),
                keep_last: None,
            },
            false,
            true,
        )
        .await
        .unwrap();
        assert_eq!(r.base_snapshot, Some(top.id));
        assert_eq!(top.lsn, exact.lsn);
        // More history chains on, and every epoch from the base on restores.
        opts.epochs = 60;
        sim::run_with_repo(repo.clone(), &wal, opts.clone(), &mut sim)
            .await
            .unwrap();
        let (_, end) = restore::materialize(&repo, None, Target::Latest)
            .await
            .unwrap();
        assert_eq!(end.hummock, sim.state().hummock);
        restore::materialize(&repo, None, Target::Epoch(top.max_committed_epoch))
            .await
            .unwrap();
        // Deleting the window's base needs --force; retention still works afterwards.
        let err = metapitr::snapshot::delete(&repo, &[top.id], false)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        metapitr::snapshot::delete(&repo, &[top.id], true)
            .await
            .unwrap();
        opts.epochs = 90;
        sim::run_with_repo(repo.clone(), &wal, opts, &mut sim)
            .await
            .unwrap();
        let r = retention::apply(
            &repo,
            Policy {
                window_ms: Some(1),
                keep_last: Some(1),
            },
            false,
            true,
        )
        .await
        .unwrap();
        assert!(r.base_snapshot.is_some());
        let pins = pin::load_all(&repo).await.unwrap();
        let (_, now) = restore::materialize(&repo, None, Target::Latest)
            .await
            .unwrap();
        for o in now.hummock.object_ids() {
            assert!(pins[0].is_pinned(o));
        }
        hummock::validate_integrity(&storage, &now).await.unwrap();
    });
}
