//! Timelines and writer fencing: restored stores record on new timelines, abandoned
//! branches stay restorable, and one writer per timeline.

mod common;

use std::path::Path;

use common::{rt, run_opts};
use metapitr::error::ErrorKind;
use metapitr::jsonl;
use metapitr::repo::Repo;
use metapitr::restore::{self, Target};
use metapitr::sim::{self, RunReport, Simulator};
use metapitr::store::{DirStore, MetaStore};

fn assert_truth(state: &metapitr::model::State, truth: &Path, what: &str) {
    let c = jsonl::compare(
        &jsonl::to_string(state),
        &std::fs::read_to_string(truth).unwrap(),
    )
    .unwrap();
    assert!(c.matches(), "{what}: {c:?}");
}

/// Runs the simulator on `wal` (continuing whatever state the store holds) for `epochs`.
async fn run(repo: &Repo, wal: &Path, truth: &Path, seed: u64, epochs: u64) -> RunReport {
    let opts = run_opts(seed, epochs, Some(40), 10, truth);
    let mut sim = Simulator::new(opts.sim.clone());
    sim::run_with_repo(repo.clone(), wal, opts, &mut sim)
        .await
        .unwrap()
}

/// Restores `target` on `timeline` of `repo` into a fresh dir store under `dir`.
async fn restore_into(repo: &Repo, timeline: Option<u32>, target: u64, dir: &Path) {
    let (_, state) = restore::materialize(repo, timeline, Target::Epoch(target))
        .await
        .unwrap();
    DirStore::new(dir).write(&state, false).await.unwrap();
}

/// Restore twice in a row, each time going on recording; then restore a point of the
/// first branch. Every branch stays restorable and equal to its own truth.
#[test]
fn restores_fork_new_timelines_and_every_branch_stays_restorable() {
    let rt = rt();
    rt.block_on(async {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::open("memory://", metapitr::clock::system()).unwrap();
        // The simulator's clock is its own; the repo's only stamps archive times.
        let first = run(&repo, &d.path().join("wal1"), &d.path().join("t1"), 1, 200).await;
        let t1 = &first.truth_files;

        // Restore timeline 1 at its 8th truth epoch and go on: timeline 2.
        let (e1, _) = t1[7];
        restore_into(&repo, None, e1, &d.path().join("wal2")).await;
        let second = run(&repo, &d.path().join("wal2"), &d.path().join("t2"), 2, 120).await;
        let m = repo.manifest().await.unwrap();
        let tl2 = m.timeline(2).expect("timeline 2 registered");
        assert_eq!((tl2.parent, tl2.fork_epoch), (1, e1));
        assert_eq!(m.newest_timeline(), 2);
        // The default is the newest timeline; it equals the second run's truth.
        for (e, p) in second.truth_files.iter().step_by(3) {
            let (plan, s) = restore::materialize(&repo, None, Target::Epoch(*e))
                .await
                .unwrap();
            assert_eq!(plan.timeline, 2);
            assert_truth(&s, p, &format!("timeline 2 at {e}"));
        }
        // The fork epoch itself is restorable on timeline 2.
        let (_, mut at_fork) = restore::materialize(&repo, Some(2), Target::Epoch(e1))
            .await
            .unwrap();
        assert_eq!(at_fork.timeline, 2);
        at_fork.timeline = 1;
        assert_truth(&at_fork, &t1[7].1, "timeline 2 at its fork");

        // Restore timeline 2 and go on again: timeline 3, child of 2.
        let (e2, _) = second.truth_files[5];
        restore_into(&repo, Some(2), e2, &d.path().join("wal3")).await;
        let third = run(&repo, &d.path().join("wal3"), &d.path().join("t3"), 3, 60).await;
        let m = repo.manifest().await.unwrap();
        let tl3 = m.timeline(3).expect("timeline 3 registered");
        assert_eq!((tl3.parent, tl3.fork_epoch), (2, e2));
        let (e, p) = third.truth_files.last().unwrap();
        let (_, s) = restore::materialize(&repo, None, Target::Epoch(*e))
            .await
            .unwrap();
        assert_truth(&s, p, "timeline 3, latest");

        // The abandoned first branch, after the first fork: still there.
        for (e, p) in t1.iter().skip(8).step_by(3) {
            let (_, s) = restore::materialize(&repo, Some(1), Target::Epoch(*e))
                .await
                .unwrap();
            assert_truth(&s, p, &format!("timeline 1 at {e}"));
        }
        // And a restore from it forks yet again, as timeline 4 with parent 1.
        let (e4, _) = t1[15];
        restore_into(&repo, Some(1), e4, &d.path().join("wal4")).await;
        let fourth = run(&repo, &d.path().join("wal4"), &d.path().join("t4"), 4, 30).await;
        let m = repo.manifest().await.unwrap();
        assert_eq!(
            m.timeline(4).map(|t| (t.parent, t.fork_epoch)),
            Some((1, e4))
        );
        let (e, p) = fourth.truth_files.last().unwrap();
        let (_, s) = restore::materialize(&repo, Some(4), Target::Epoch(*e))
            .await
            .unwrap();
        assert_truth(&s, p, "timeline 4");
        // Ids never go back across branches: the newest timeline's generators are at or
        // above everything any branch handed out.
        let hw = m.id_high_water();
        let (_, latest) = restore::materialize(&repo, None, Target::Latest)
            .await
            .unwrap();
        for (i, v) in latest.ids.iter().enumerate() {
            assert!(
                *v >= hw.get(&(i as u32)).copied().unwrap_or(0),
                "generator {i}"
            );
        }
    });
}

/// Registering a fork is repeatable: a crash after the manifest names the new timeline
/// but before the store moved onto it finds the same timeline again.
#[test]
fn a_fork_registered_twice_is_one_timeline() {
    let rt = rt();
    rt.block_on(async {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::open("memory://", metapitr::clock::system()).unwrap();
        let first = run(&repo, &d.path().join("wal1"), &d.path().join("t1"), 5, 80).await;
        let store = d.path().join("restored");
        restore_into(&repo, None, first.truth_files[3].0, &store).await;
        let saved: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&store)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        let fork = metapitr::timeline::read_fork(&store).unwrap().unwrap();
        let state = metapitr::snapshot::read_checkpoint(&store)
            .unwrap()
            .unwrap();
        let a = metapitr::timeline::start_fork(&repo, &store, state.clone(), &fork)
            .await
            .unwrap();
        assert!(metapitr::timeline::read_fork(&store).unwrap().is_none());
        // As if the process had died before rewriting the store.
        for (p, b) in &saved {
            std::fs::write(p, b).unwrap();
        }
        let b = metapitr::timeline::start_fork(&repo, &store, state, &fork)
            .await
            .unwrap();
        assert_eq!(a.timeline, b.timeline);
        let m = repo.manifest().await.unwrap();
        assert_eq!(m.timelines.len(), 2, "{:?}", m.timelines);
        assert_eq!(
            m.snapshots
                .iter()
                .filter(|s| s.timeline == a.timeline)
                .count(),
            1
        );
    });
}

/// Two writers on one timeline (a failover that left the old one running): the one that
/// took the timeline over last wins; the other is fenced with a clear error, stops
/// committing, and none of its objects enter the manifest.
#[test]
fn a_second_writer_fences_the_first() {
    use metapitr::recorder::{Recorder, RecorderOptions};
    let rt = rt();
    rt.block_on(async {
        let d = tempfile::tempdir().unwrap();
        let repo = Repo::open("memory://", metapitr::clock::system()).unwrap();
        let first = run(&repo, &d.path().join("wal1"), &d.path().join("t1"), 6, 60).await;
        // The standby takes over with a copy of the primary's store.
        let primary = d.path().join("wal1");
        let standby = d.path().join("standby");
        std::fs::create_dir_all(&standby).unwrap();
        for e in std::fs::read_dir(&primary).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap() != "LOCK" {
                std::fs::copy(&p, standby.join(p.file_name().unwrap())).unwrap();
            }
        }
        let opts = || {
            let mut o = RecorderOptions::default();
            o.wal.sync = false;
            o.wal.segment_max_age_ms = 1;
            o.archive_poll = std::time::Duration::from_millis(20);
            o
        };
        let old = Recorder::open(&primary, repo.clone(), opts())
            .await
            .unwrap();
        let new = Recorder::open(&standby, repo.clone(), opts())
            .await
            .unwrap();
        let m = repo.manifest().await.unwrap();
        assert_eq!(m.timeline(1).unwrap().writer_epoch, old_epoch(&old) + 1);

        let e = first.last_epoch;
        let next = |k: u64| e + (k << 16);
        let adv = |n: u64| vec![common::id_advance(metapitr::model::IdCategory::Actor, n)];
        // The new writer commits and archives.
        new.commit(next(1), adv(10_000)).await.unwrap();
        // The old one commits (locally durable), but cannot publish: fenced.
        old.commit(next(2), adv(20_000)).await.unwrap();
        let mut fenced = None;
        for _ in 0..200 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let _ = old.commit(next(3), adv(20_001)).await;
            if let Some(st) = old.archive_status().filter(|s| s.fenced) {
                fenced = st.last_error;
                break;
            }
        }
        let why = fenced.expect("the old writer is fenced");
        assert!(
            why.contains("another writer") && why.contains("timeline 1"),
            "{why}"
        );
        let err = old.commit(next(4), adv(20_002)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
        let _ = old.close().await;
        new.commit(next(5), adv(10_001)).await.unwrap();
        new.close().await.unwrap();

        // The archive holds the new writer's history only, without gap or overlap.
        let m = repo.manifest().await.unwrap();
        let tl = m.timeline(1).unwrap();
        let segs = metapitr::archive::segment_entries(&repo, &m, 1, 0, u64::MAX)
            .await
            .unwrap();
        for w in segs.windows(2) {
            assert_eq!(w[1].first_lsn, w[0].last_lsn + 1);
        }
        let (_, latest) = restore::materialize(&repo, Some(1), Target::Latest)
            .await
            .unwrap();
        assert_eq!(latest.epoch, next(5));
        // Nothing of the fenced writer's got in.
        assert_eq!(
            latest.ids[metapitr::model::IdCategory::Actor as usize],
            10_001
        );
        assert!(tl.writer_epoch >= 2);
    });
}

fn old_epoch(r: &metapitr::recorder::Recorder) -> u64 {
    r.repo().fence().map_or(0, |f| f.1)
}
