//! A crash at every durability step loses nothing acknowledged.
//!
//! Built only with `--features failpoints` (scripts/test runs
//! `cargo test --features failpoints --test failpoints`). The crash tests run the real binary
//! with `FAILPOINTS=<point>=N*off->panic`: the N+1-th time the step is reached, the fail
//! point aborts the process there (`src/main.rs`), as a crash at that step would. What the
//! crash left is then checked as it is, recovered as an operator would (`archive --once`,
//! a restarted simulator, `retention apply` again), and every acknowledged epoch must be
//! archived and restore equal to the simulator's truth. The fail points are listed in
//! docs/reliability.md §1.1.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::bin::{ok, run};
use metapitr::pb::Manifest;
use metapitr::repo::Repo;
use metapitr::restore::{self, Target};
use metapitr::wal::{self, Wal, WalOptions};

/// Simulator flags: a snapshot every 20 epochs (20 s), each followed by retention with a
/// 60 s window.
const WITH_RETENTION: [&str; 4] = ["--snapshot-every", "20", "--retention-window", "60s"];

/// A simulated meta service's directory, its repo and the simulator's records of what it
/// acknowledged.
struct Service {
    _dir: tempfile::TempDir,
    repo_url: String,
    wal: PathBuf,
    truth: PathBuf,
    acks: PathBuf,
    repo: Repo,
    rt: tokio::runtime::Runtime,
}

impl Service {
    fn new() -> Service {
        let dir = tempfile::tempdir().unwrap();
        let repo_url = format!("file://{}", dir.path().join("repo").display());
        let repo = Repo::open(&repo_url, metapitr::clock::system()).unwrap();
        Service {
            wal: dir.path().join("wal"),
            truth: dir.path().join("truth"),
            acks: dir.path().join("acks"),
            repo_url,
            repo,
            rt: common::rt(),
            _dir: dir,
        }
    }

    fn simulate_args<'a>(&'a self, epochs: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "simulate",
            "--repo",
            &self.repo_url,
            "--wal-dir",
            self.wal.to_str().unwrap(),
            "--epochs",
            epochs,
            "--truth-dir",
            self.truth.to_str().unwrap(),
            "--truth-every",
            "5",
            "--ack-log",
            self.acks.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args
    }

    /// Runs the simulator (fsync on) until the fail point `point` crashes it, the time
    /// after it was passed `passes` times. Returns the last acknowledged epoch.
    fn simulate_until_crash(&self, point: &str, passes: u32, extra: &[&str]) -> u64 {
        let before = self.last_acked();
        let args = self.simulate_args("5000", extra);
        crashes_at(&args, point, passes);
        let acked = self.last_acked();
        assert!(
            acked > before,
            "nothing was acknowledged before the crash at {point}"
        );
        acked
    }

    /// `retention apply` with the window [`WITH_RETENTION`] applies.
    fn retention_apply(&self) -> [&str; 6] {
        [
            "retention",
            "apply",
            "--repo",
            &self.repo_url,
            "--window",
            "60s",
        ]
    }

    fn last_acked(&self) -> u64 {
        common::last_acked(&self.acks)
    }

    fn manifest(&self) -> Manifest {
        self.rt.block_on(self.repo.manifest()).unwrap()
    }

    /// Invariant 19, on what a crash left before anything but WAL recovery touched it:
    /// every record up to the acknowledged epoch is either listed by the manifest or still
    /// in the local directory, with no lsn missing in between.
    fn assert_every_record_is_archived_or_local(&self, acked: u64) {
        // WAL recovery only cuts a torn tail off the active segment; it never touches a
        // sealed one, so it cannot hide a segment deleted too early.
        drop(
            Wal::open(
                &self.wal,
                1,
                1,
                WalOptions::default(),
                metapitr::clock::system(),
            )
            .unwrap(),
        );
        let m = self.rt.block_on(self.repo.load_manifest()).unwrap();
        let m = m.unwrap_or_default();
        let (archived_lsn, archived_epoch) = self.archived_chain(&m);
        let local = wal::read_local_records(&self.wal, archived_lsn).unwrap();
        for (i, r) in local.iter().enumerate() {
            assert_eq!(
                r.lsn,
                archived_lsn + 1 + i as u64,
                "lsn {} is neither archived (the archive ends at lsn {archived_lsn}) nor in {}",
                archived_lsn + 1 + i as u64,
                self.wal.display()
            );
        }
        let last = local.last().map_or(archived_epoch, |r| r.epoch);
        assert!(
            last >= acked,
            "acknowledged epoch {acked} is neither archived nor local (both end at epoch {last})"
        );
    }

    /// Checks that the archive of timeline 1 chains; returns where it ends.
    fn archived_chain(&self, m: &Manifest) -> (u64, u64) {
        let Some(tl) = m.timeline(1) else {
            return (0, 0);
        };
        self.rt.block_on(common::archive_chain(&self.repo, m, 1));
        tl.last()
    }

    /// Recovers what a crash left as an operator would (`archive --once`), then checks that
    /// every acknowledged epoch is archived, the repo verifies, restores equal the truth,
    /// and the simulated service goes on from the directory.
    fn recover_and_check(&self, acked: u64) {
        ok(&[
            "archive",
            "--once",
            "--wal-dir",
            self.wal.to_str().unwrap(),
            "--repo",
            &self.repo_url,
        ]);
        let m = self.manifest();
        assert_eq!(m.timelines.len(), 1, "a crash never starts a timeline");
        let (_, archived_epoch) = self.archived_chain(&m);
        assert!(
            archived_epoch >= acked,
            "acknowledged epoch {acked} is not archived (the archive ends at epoch {archived_epoch})"
        );
        ok(&["verify", "--repo", &self.repo_url]);
        self.check_truth(acked);
        ok(&self.simulate_args("20", &[]));
        assert!(self.last_acked() > acked);
    }

    /// Restores the acknowledged end, and the oldest, a middle and the newest truth file
    /// inside the retention window, and compares them with the simulator's truth.
    fn check_truth(&self, acked: u64) {
        let m = self.manifest();
        let window_start = metapitr::retention::window_start(&m, 1).unwrap_or(0);
        let files: Vec<(u64, PathBuf)> = common::truth_files(&self.truth)
            .into_iter()
            .filter(|(e, _)| *e >= window_start)
            .collect();
        assert!(files.len() > 2, "{} truth files in the window", files.len());
        self.rt.block_on(async {
            for (e, p) in [&files[0], &files[files.len() / 2], &files[files.len() - 1]] {
                common::assert_restores_truth(&self.repo, *e, p, "after a crash").await;
            }
            restore::materialize(&self.repo, None, Target::Epoch(acked))
                .await
                .unwrap();
        });
    }
}

/// Runs `args` with the fail point `point` crashing the process the time after it was
/// passed `passes` times, and checks that it did crash there.
fn crashes_at(args: &[&str], point: &str, passes: u32) {
    let o = run(
        args,
        &[("FAILPOINTS", format!("{point}={passes}*off->panic"))],
        None,
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGABRT),
        "{args:?} did not crash at {point} ({}): {stderr}",
        o.status
    );
    assert!(
        stderr.contains(&format!("failpoint {point} panic: crashing here")),
        "{args:?} crashed elsewhere than at {point}: {stderr}"
    );
}

/// A simulated service crashed at `point` (see [`Service::simulate_until_crash`]), checked
/// as the crash left it and after recovery.
fn crash_and_recover(point: &str, passes: u32, extra: &[&str]) -> Service {
    let s = Service::new();
    let acked = s.simulate_until_crash(point, passes, extra);
    s.assert_every_record_is_archived_or_local(acked);
    s.recover_and_check(acked);
    s
}

#[test]
fn a_crash_before_the_wal_fsync_loses_nothing_acknowledged() {
    crash_and_recover("wal::before_fsync", 60, &[]);
}

#[test]
fn a_crash_after_the_wal_fsync_before_the_ack_loses_nothing_acknowledged() {
    crash_and_recover("wal::after_fsync_before_ack", 60, &[]);
}

/// Invariant 19: a local segment is deleted only once a manifest version lists it, so a
/// crash right before the compare-and-swap that would list it leaves it on disk.
#[test]
fn a_crash_before_the_manifest_cas_leaves_every_record_archived_or_local() {
    crash_and_recover("repo::before_manifest_cas", 12, &[]);
}

#[test]
fn a_crash_after_the_manifest_cas_leaves_every_record_archived_or_local() {
    crash_and_recover("repo::after_manifest_cas", 12, &[]);
}

/// Invariant 19, the other side: a crash right before a published segment's local copy is
/// deleted leaves it on disk, and the next pass skips it in the manifest and deletes it.
#[test]
fn a_crash_before_deleting_a_published_local_segment_loses_nothing() {
    let s = Service::new();
    let acked = s.simulate_until_crash("archive::before_delete_local", 10, &[]);
    let m = s.manifest();
    let archived_lsn = m.timeline(1).unwrap().last().0;
    let published_left: Vec<_> = wal::list_segments(&s.wal)
        .unwrap()
        .into_iter()
        .filter(|f| f.sealed && f.first_lsn <= archived_lsn)
        .collect();
    assert!(
        !published_left.is_empty(),
        "the crash left no published segment in {}",
        s.wal.display()
    );
    s.assert_every_record_is_archived_or_local(acked);
    s.recover_and_check(acked);
    for f in published_left {
        assert!(
            !f.path.exists(),
            "{} is archived but still there",
            f.path.display()
        );
    }
}

/// The pin-set swap: a new pin set is written, then a manifest version names it. A crash
/// in between, in retention and in the archiver, keeps the old window and loses nothing.
#[test]
fn a_crash_before_the_pin_set_swap_loses_nothing() {
    let s = Service::new();
    ok(&s.simulate_args("300", &["--snapshot-every", "20"]));
    let acked = s.last_acked();
    let before = s.manifest();
    let retention = s.retention_apply();
    crashes_at(&retention, "pin::before_swap", 0);
    let after = s.manifest();
    assert_eq!(after.pins, before.pins, "the old pin set stays named");
    assert_eq!(after.snapshots, before.snapshots, "no snapshot expired");
    s.check_truth(acked);
    ok(&retention);
    let window_start = metapitr::retention::window_start(&s.manifest(), 1).unwrap();
    assert!(
        window_start > metapitr::retention::window_start(&before, 1).unwrap(),
        "retention applied again moves the window"
    );
    ok(&["verify", "--repo", &s.repo_url]);

    // The archiver swaps a pin set in with every publish, retention after every snapshot.
    crash_and_recover("pin::before_swap", 40, &WITH_RETENTION);
}

/// Retention deletes objects only after the manifest version that drops them exists: a
/// crash between two deletes keeps every epoch of the window restorable.
#[test]
fn a_crash_between_retention_deletes_keeps_the_window_restorable() {
    let s = crash_and_recover("retention::before_delete", 6, &WITH_RETENTION);
    ok(&s.retention_apply());
    ok(&["verify", "--repo", &s.repo_url]);
    s.check_truth(s.last_acked());
}

/// Invariant 6: a commit is acknowledged only after its group's fsync, one fsync serves a
/// whole group, and a failed fsync acknowledges nothing.
#[test]
fn a_commit_is_acknowledged_only_after_its_group_fsync() {
    let d = tempfile::tempdir().unwrap();
    let rt = common::rt();
    let w = Wal::open(
        d.path(),
        1,
        1,
        WalOptions::default(),
        metapitr::clock::system(),
    )
    .unwrap();
    // Set up after the WAL, so that a failing assertion clears the fail points (releasing
    // a paused writer) before the WAL joins its writer thread.
    let scenario = fail::FailScenario::setup();
    let change = || common::id_advance(metapitr::model::IdCategory::Catalog, 1);
    fail::cfg("wal::before_fsync", "pause").unwrap();
    let mut first = Box::pin(w.append(1, &[change()]).unwrap());
    assert!(
        rt.block_on(async { tokio::time::timeout(Duration::from_millis(300), &mut first).await })
            .is_err(),
        "a commit was acknowledged while its group's fsync had not run"
    );
    // More commits queue behind the group held before its fsync.
    let rest: Vec<_> = (2..22).map(|e| w.append(e, &[change()]).unwrap()).collect();
    let fsyncs = Arc::new(AtomicUsize::new(0));
    let counter = fsyncs.clone();
    fail::cfg_callback("wal::before_fsync", move || {
        counter.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    rt.block_on(async {
        first.await.unwrap();
        for f in rest {
            f.await.unwrap();
        }
    });
    assert!(
        fsyncs.load(Ordering::SeqCst) <= 1,
        "20 queued commits took {} fsyncs; one group shares one",
        fsyncs.load(Ordering::SeqCst)
    );

    fail::cfg("wal::before_fsync", "return").unwrap();
    let r = rt.block_on(w.append(22, &[change()]).unwrap());
    assert!(
        matches!(&r, Err(e) if e.is_poisoned() && e.to_string().contains("wal::before_fsync")),
        "a commit whose fsync failed was acknowledged: {r:?}"
    );
    fail::cfg("wal::before_fsync", "off").unwrap();
    let r = rt.block_on(w.append(23, &[change()]).unwrap());
    assert!(
        matches!(&r, Err(e) if e.is_poisoned()),
        "the WAL goes on after a failed fsync: {r:?}"
    );
    drop(w);
    scenario.teardown();
    // What was acknowledged is there after a reopen.
    let w = Wal::open(
        d.path(),
        1,
        1,
        WalOptions::default(),
        metapitr::clock::system(),
    )
    .unwrap();
    assert!(w.next_lsn() > 21, "next lsn {}", w.next_lsn());
    drop(w);
    let local = wal::read_local_records(d.path(), 0).unwrap();
    let epochs: Vec<u64> = local.iter().map(|r| r.epoch).take(21).collect();
    assert_eq!(epochs, (1..22).collect::<Vec<_>>());
}
