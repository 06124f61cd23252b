//! Restore equals the truth; restore refuses what it must refuse.

mod common;

use common::{rt, simulate};
use metapitr::error::ErrorKind;
use metapitr::jsonl;
use metapitr::model::ID_CATEGORIES;
use metapitr::restore::{self, restorable_ranges, Target};
use metapitr::snapshot;
use metapitr::store::{DirStore, JsonlStore, MetaStore, TargetStore};
use proptest::prelude::*;

async fn restore_jsonl(repo: &metapitr::repo::Repo, target: Target) -> (restore::Plan, String) {
    let (plan, state) = restore::materialize(repo, None, target).await.unwrap();
    (plan, jsonl::to_string(&state))
}

fn assert_matches(restored: &str, truth: &str, what: &str) {
    common::assert_matches(restored, truth, what);
    assert!(jsonl::compare(restored, truth).unwrap().lines > 10);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// For random histories and random target epochs, restore(E) equals the simulator's live
    /// state at E, from a snapshot plus WAL and from the WAL alone.
    #[test]
    fn restore_equals_truth(seed in 0u64..1_000_000, epochs in 40u64..260, snap in 7u64..60, picks in prop::collection::vec(any::<prop::sample::Index>(), 3)) {
        let rt = rt();
        rt.block_on(async {
            let s = simulate(seed, epochs, Some(snap), 1).await;
            let truths = &s.report.truth_files;
            for p in &picks {
                let (e, _) = truths[p.index(truths.len())];
                let (plan, restored) = restore_jsonl(&s.repo, Target::Epoch(e)).await;
                assert_matches(&restored, &s.truth(e), &format!("seed {seed} epoch {e} with snapshot"));
                if let Some(sn) = &plan.snapshot {
                    assert!(sn.max_committed_epoch <= e);
                }
            }
            // The same targets from the WAL alone: drop every snapshot.
            let ids: Vec<u64> = snapshot::list(&s.repo).await.unwrap().iter().map(|x| x.id).collect();
            if !ids.is_empty() {
                snapshot::delete(&s.repo, &ids, false).await.unwrap();
            }
            for p in &picks {
                let (e, _) = truths[p.index(truths.len())];
                let (plan, restored) = restore_jsonl(&s.repo, Target::Epoch(e)).await;
                assert!(plan.snapshot.is_none());
                assert_matches(&restored, &s.truth(e), &format!("seed {seed} epoch {e} from WAL alone"));
            }
        });
    }
}

#[test]
fn a_target_between_epochs_is_the_state_of_the_epoch_before() {
    let rt = rt();
    rt.block_on(async {
        let s = simulate(3, 120, Some(50), 1).await;
        let (e, _) = s.report.truth_files[60];
        let (_, at) = restore::materialize(&s.repo, None, Target::Epoch(e))
            .await
            .unwrap();
        // One ms later, before the next barrier (1 s apart).
        let (_, later) = restore::materialize(&s.repo, None, Target::Epoch(e + (1 << 16)))
            .await
            .unwrap();
        assert_eq!(at.lsn, later.lsn);
        assert_eq!(at.catalog, later.catalog);
        assert_eq!(at.hummock, later.hummock);
        assert_eq!(later.epoch, e + (1 << 16));
        // Time targets work the same way.
        let ms = metapitr::epoch::to_unix_ms(e);
        let (_, by_time) = restore::materialize(&s.repo, None, Target::Time(ms))
            .await
            .unwrap();
        assert_eq!(by_time.lsn, at.lsn);
    });
}

#[test]
fn id_generators_are_raised_to_the_latest_values() {
    let rt = rt();
    rt.block_on(async {
        let s = simulate(11, 200, Some(40), 10).await;
        let latest = s.sim.state().ids;
        let (early, _) = s.report.truth_files[0];
        let (_, state) = restore::materialize(&s.repo, None, Target::Epoch(early))
            .await
            .unwrap();
        for c in ID_CATEGORIES {
            assert!(
                state.id(c) >= latest[c as usize],
                "{c:?}: {} < {}",
                state.id(c),
                latest[c as usize]
            );
        }
        // ... and the restored generators moved: the early truth had lower values.
        let truth_sst: u64 = s
            .truth(early)
            .lines()
            .find(|l| l.contains("\"sstable_object\""))
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| v["value"].as_u64())
            .unwrap();
        assert!(truth_sst < state.id(metapitr::model::IdCategory::SstableObject));
    });
}

#[test]
fn out_of_range_targets_name_the_restorable_ranges() {
    let rt = rt();
    rt.block_on(async {
        let s = simulate(5, 80, Some(30), 10).await;
        let m = s.repo.manifest().await.unwrap();
        let ranges = restorable_ranges(&m, 1);
        assert_eq!(ranges.len(), 1);
        let (lo, hi) = ranges[0];
        assert_eq!(hi, s.report.last_epoch);
        assert_eq!(lo, s.report.first_epoch);
        for bad in [hi + (1 << 16), lo - 1, 42] {
            let err = restore::plan(&s.repo, &m, None, Target::Epoch(bad))
                .await
                .err()
                .unwrap();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            let msg = err.to_string();
            assert!(
                msg.contains(&lo.to_string()) && msg.contains(&hi.to_string()),
                "{msg}"
            );
        }
        let err = restore::plan(&s.repo, &m, Some(9), Target::Latest)
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("timeline 9"));
        let err = restore::plan(&s.repo, &m, None, Target::Snapshot(999))
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    });
}

#[test]
fn snapshot_id_and_latest_targets() {
    let rt = rt();
    rt.block_on(async {
        let s = simulate(8, 100, Some(25), 25).await;
        let snap = &s.report.snapshots[1];
        let (plan, restored) = restore_jsonl(&s.repo, Target::Snapshot(snap.id)).await;
        assert!(plan.segments.is_empty());
        assert_matches(&restored, &s.truth(snap.max_committed_epoch), "snapshot 2");
        let (plan, restored) = restore_jsonl(&s.repo, Target::Latest).await;
        assert_eq!(plan.target_epoch, s.report.last_epoch);
        assert_matches(&restored, &s.truth(s.report.last_epoch), "latest");
    });
}

#[test]
fn non_empty_targets_are_refused_unless_forced() {
    let rt = rt();
    rt.block_on(async {
        let s = simulate(2, 30, None, 30).await;
        let (_, state) = restore::materialize(&s.repo, None, Target::Latest)
            .await
            .unwrap();
        let d = tempfile::tempdir().unwrap();
        let dir_store = DirStore::new(d.path().join("store"));
        std::fs::create_dir_all(d.path().join("store")).unwrap();
        std::fs::write(d.path().join("store/something"), b"x").unwrap();
        let err = dir_store.write(&state, false).await.unwrap_err();
        assert!(err.is_target_not_empty(), "{err}");
        assert!(err.to_string().contains("--force"));
        assert!(d.path().join("store/something").exists());
        // A file no meta store holds: --force alone leaves it, --force-clear removes it.
        let err = dir_store.write(&state, true).await.unwrap_err();
        assert!(err.to_string().contains("--force-clear"), "{err}");
        assert!(d.path().join("store/something").exists());
        dir_store.write_with(&state, true, true).await.unwrap();
        assert!(!d.path().join("store/something").exists());
        assert_eq!(dir_store.read().await.unwrap(), state);

        let file = d.path().join("out.jsonl");
        std::fs::write(&file, b"{}\n").unwrap();
        let js = JsonlStore::File(file.clone());
        assert!(js.write(&state, false).await.is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"{}\n");
    });
    let _ = "jsonl:-".parse::<TargetStore>().unwrap();
    assert!("etcd".parse::<TargetStore>().is_err());
    assert!("dir:".parse::<TargetStore>().is_err());
    assert!("etcd://".parse::<TargetStore>().is_err());
    #[cfg(feature = "sqlite")]
    assert!(matches!(
        "sqlite:/x/y.db".parse::<TargetStore>().unwrap(),
        TargetStore::Sqlite(_)
    ));
}

#[test]
fn dir_restore_reopens_as_a_recorder_and_continues() {
    let rt = rt();
    rt.block_on(async {
        let s = simulate(21, 90, Some(30), 30).await;
        let (e, _) = s.report.truth_files[1];
        let (_, state) = restore::materialize(&s.repo, None, Target::Epoch(e))
            .await
            .unwrap();
        let d = tempfile::tempdir().unwrap();
        let store = DirStore::new(d.path().join("meta"));
        store.write(&state, false).await.unwrap();
        // A recorder opened on the restored store sees the same state, and commits on top.
        let other = common::mem_repo(&s.sim);
        let rec = metapitr::recorder::Recorder::open(
            &d.path().join("meta"),
            other.clone(),
            Default::default(),
        )
        .await
        .unwrap();
        // It records on a new timeline forked from the restored one at the restored epoch.
        let got = rec.with_state(|st| st.clone()).unwrap();
        assert_ne!(got.timeline, state.timeline);
        let m = other.manifest().await.unwrap();
        let t = m.timeline(got.timeline).unwrap();
        assert_eq!(
            (t.parent, t.fork_epoch, t.fork_lsn),
            (state.timeline, e, state.lsn)
        );
        let mut want = state.clone();
        want.timeline = got.timeline;
        assert!(got == want, "the reopened store holds the restored state");
        rec.commit(
            e + (5 << 16),
            vec![common::id_advance(
                metapitr::model::IdCategory::Actor,
                state.ids[6] + 10,
            )],
        )
        .await
        .unwrap();
        let continued = rec.with_state(|st| st.clone()).unwrap();
        rec.close().await.unwrap();
        assert!(!store.is_empty().await.unwrap());
        // The new repo restores both the starting point and what was committed after it.
        let (_, start) = restore::materialize(&other, None, Target::Epoch(e))
            .await
            .unwrap();
        assert_eq!(start.catalog, state.catalog);
        assert_eq!(start.hummock, state.hummock);
        let (_, end) = restore::materialize(&other, None, Target::Latest)
            .await
            .unwrap();
        assert_eq!(end.lsn, continued.lsn);
        assert_eq!(end.ids, continued.ids);
    });
}
